//! Fuzzing figures (printed, never asserted): `cargo bench -p vfio-mig-conform --bench fuzz`.
//!
//! 1. Throughput of each harness function on the simulator (the cargo-fuzz targets call them),
//!    on pseudo-random inputs and on the checked-in seed corpus.
//! 2. Time the live fuzzer (`vfio-mig-conform fuzz --until-covered`) takes to exercise every
//!    (cur, new) state pair of each flag set on `sim:v2`.
//! 3. Cold start: the live fuzzer, with no corpus, against each injected defect of the
//!    simulators (`--stop-on-finding`): whether and when it finds it.
//!
//! Arguments (after `--`): `harness`, `arcs`, `defects` select parts (default: all);
//! `--quick` uses fewer inputs and seeds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmc::device::MigrationApi;
use vmc::device::sim::Defect;
use vmc::fuzz::{FuzzCase, Target};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vfio-mig-conform")
}

struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 16 + (self.next() as usize) % max;
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn corpus(target: Target) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target.name());
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// Runs `inputs` through the target for at least `min` and returns (inputs/s, ops/s).
fn measure(target: Target, inputs: &[Vec<u8>], min: Duration) -> (f64, f64, u64) {
    let api = match target {
        Target::FsmV2 => Some(MigrationApi::V2),
        Target::V1Region => Some(MigrationApi::V1),
        _ => None,
    };
    let start = Instant::now();
    let mut n = 0u64;
    let mut ops = 0u64;
    while start.elapsed() < min {
        for data in inputs {
            n += 1;
            match api {
                Some(api) => {
                    // What the target does (decode, run), counting the steps that ran.
                    if let Some(case) = FuzzCase::decode(api, data) {
                        let out = case.run();
                        ops += (out.keep.len() - out.run.skipped.len()) as u64;
                        assert!(out.problem().is_none(), "{:?}", out.problem());
                    }
                }
                None => {
                    target.run(data);
                    ops += match target {
                        Target::ResumeStream => {
                            vmc::fuzz::stream::decode(data).map_or(0, |c| 3 + c.segments.len() as u64)
                        }
                        _ => 1,
                    };
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, ops as f64 / secs, ops)
}

fn harness(quick: bool) {
    println!("== harness throughput on the simulator (one thread)");
    println!(
        "{:<14} {:>14} {:>14} {:>14} {:>14}",
        "target", "random in/s", "random ops/s", "corpus in/s", "corpus ops/s"
    );
    let min = Duration::from_secs(if quick { 1 } else { 3 });
    for t in Target::ALL {
        let mut rng = Prng(0x9e37_79b9 ^ t.name().len() as u64);
        let random: Vec<Vec<u8>> = (0..if quick { 500 } else { 2000 }).map(|_| rng.bytes(600)).collect();
        let (ri, ro, _) = measure(t, &random, min);
        let seeds = corpus(t);
        let (ci, co, _) = measure(t, &seeds, min);
        println!("{:<14} {ri:>14.0} {ro:>14.0} {ci:>14.0} {co:>14.0}", t.name());
    }
    println!(
        "(ops: steps run for fsm_v2/v1_region; SETs and writes for resume_stream; documents for the YAML loaders)"
    );
}

fn run_fuzz(args: &[&str]) -> (Option<serde_json::Value>, String) {
    let json = std::env::temp_dir().join(format!("vmc-bench-fuzz-{}.jsonl", std::process::id()));
    let out = Command::new(bin())
        .args(["fuzz", "-q", "--out"])
        .arg(std::env::temp_dir().join("vmc-bench-findings"))
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("run vfio-mig-conform fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let fuzz = std::fs::read_to_string(&json).ok().and_then(|t| {
        t.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "fuzz")
    });
    let _ = std::fs::remove_file(&json);
    (fuzz, stdout)
}

fn arcs(quick: bool) {
    println!(
        "\n== time to exercise every (cur,new) pair with the live fuzzer (vfio-mig-conform fuzz --until-covered)"
    );
    let seeds: Vec<u64> = if quick { vec![1, 2, 3] } else { (1..=10).collect() };
    for flags in ["stop_copy", "stop_copy,p2p", "stop_copy,pre_copy", "stop_copy,p2p,pre_copy"] {
        let dev = format!("sim:v2?flags={flags}");
        let mut times = Vec::new();
        let mut pairs = 0;
        for s in &seeds {
            let (_, stdout) =
                run_fuzz(&[&dev, "--until-covered", "--duration", "30s", "--seed", &s.to_string()]);
            // "  (cur,new) pairs: 49 of 49 covered, all after 0.04 s (533 ops)"
            if let Some(line) = stdout.lines().find(|l| l.contains("pairs:")) {
                pairs = line.split_whitespace().nth(4).and_then(|x| x.parse().ok()).unwrap_or(0);
                if let Some(t) = line.split("all after ").nth(1).and_then(|r| r.split(' ').next()) {
                    times.push(t.parse::<f64>().unwrap_or(f64::NAN));
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let covered = times.len();
        let median = times.get(covered / 2).copied().unwrap_or(f64::NAN);
        let max = times.last().copied().unwrap_or(f64::NAN);
        println!(
            "{dev:<40} {pairs:>2} pairs: covered in {covered}/{} seeds, median {median:.3} s, max {max:.3} s",
            seeds.len()
        );
    }
}

fn defects(quick: bool) {
    println!(
        "\n== cold start: the live fuzzer (no corpus, --seed 1, --stop-on-finding) against each injected defect"
    );
    let budget = if quick { "5s" } else { "20s" };
    let mut caught = 0;
    let mut total = 0;
    // The held-out defects are measured by suite/tests/detection_heldout.rs only.
    for d in Defect::ALL.iter().filter(|d| !d.needs_watchdog() && !d.held_out()) {
        total += 1;
        let base = if d.api() == MigrationApi::V1 { "sim:v1" } else { "sim:v2" };
        let dev = format!("{base}?defect={}", d.name());
        let start = Instant::now();
        // On the simulator nothing is disruptive; peers of the same and of another type let
        // streams move between devices.
        let mut args = vec![
            dev.as_str(),
            "--stop-on-finding",
            "--duration",
            budget,
            "--seed",
            "1",
            "--allow-disruptive",
        ];
        if d.api() == MigrationApi::V2 {
            args.extend(["--peer", "sim:v2", "--peer", "sim:v2?type=other"]);
        }
        let (fuzz, _) = run_fuzz(&args);
        let wall = start.elapsed().as_secs_f64();
        let first = fuzz.as_ref().and_then(|f| f["findings"].as_array()).and_then(|a| a.first().cloned());
        match first {
            Some(f) => {
                caught += 1;
                let clauses: Vec<String> = f["clauses"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let on_own = clauses.iter().any(|c| d.clauses().iter().any(|x| x.as_str() == c));
                println!(
                    "{:<44} caught after {:>7.3} s ({:.1} s wall) on {}{}",
                    d.name(),
                    f["after_secs"].as_f64().unwrap_or(f64::NAN),
                    wall,
                    clauses.join(","),
                    if on_own { "" } else { "  (not one of the defect's clauses)" }
                );
            }
            None => println!("{:<44} not found within {budget}", d.name()),
        }
    }
    println!("{caught} of {total} defects found from a cold start");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let quick = args.iter().any(|a| a == "--quick");
    let parts: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    let want = |p: &str| parts.is_empty() || parts.contains(&p);
    println!(
        "machine: {} cpus, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()))
            .unwrap_or_default()
    );
    if want("harness") {
        harness(quick);
    }
    if want("arcs") {
        arcs(quick);
    }
    if want("defects") {
        defects(quick);
    }
}
