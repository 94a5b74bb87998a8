//! The simulator run (`bench-simrun`): the `vfio-mig-conform` binary end to end on `sim:v2`
//! (wall clock of the whole process, as a user sees it), how the time grows with the number
//! of checks and with the simulated state size, with and without process isolation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::stats::{Summary, dur, dur_spread, table};

/// The `vfio-mig-conform` binary: `--bin`, `$VMC_BIN`, or next to this executable (building
/// it with `$CARGO` when run from cargo and it is missing).
fn find_runner(explicit: Option<String>) -> Result<PathBuf, String> {
    if let Some(b) = explicit.or_else(|| std::env::var("VMC_BIN").ok()) {
        return Ok(PathBuf::from(b));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dirs: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(Path::to_path_buf).collect();
    dirs.dedup();
    let found = dirs.iter().map(|d| d.join("vfio-mig-conform")).find(|p| p.is_file());
    if let Some(p) = found {
        return Ok(p);
    }
    if let Ok(cargo) = std::env::var("CARGO") {
        eprintln!("bench-simrun: building vfio-mig-conform (release)");
        let st = Command::new(cargo)
            .args(["build", "--release", "-q", "-p", "vfio-mig-conform"])
            .status()
            .map_err(|e| e.to_string())?;
        if st.success()
            && let Some(p) = dirs.iter().map(|d| d.join("vfio-mig-conform")).find(|p| p.is_file())
        {
            return Ok(p);
        }
    }
    Err("no vfio-mig-conform binary: `cargo build --release -p vfio-mig-conform`, or pass --bin PATH"
        .to_string())
}

/// Wall-clock seconds and the number of checks the run reports.
fn run(bin: &Path, args: &[String]) -> Result<(f64, usize), String> {
    let t = Instant::now();
    let out = Command::new(bin).args(args).output().map_err(|e| format!("{}: {e}", bin.display()))?;
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && !args.iter().any(|a| a == "--list") {
        return Err(format!(
            "vfio-mig-conform {} exited with {}: {}",
            args.join(" "),
            out.status,
            text.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok((secs, checks_of(&text)))
}

/// The number of checks of the runner's summary line (`vfio-mig-conform: 1 check in ...`,
/// `237 checks in ...`); 0 when there is none (`--list`).
fn checks_of(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("vfio-mig-conform: "))
        .find_map(|r| r.split_once(" check in ").or_else(|| r.split_once(" checks in ")))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0)
}

fn args_of(device: &str, extra: &[&str], fork: bool) -> Vec<String> {
    let mut v = vec![device.to_string(), "--format".to_string(), "terse".to_string()];
    v.extend(extra.iter().map(|s| (*s).to_string()));
    if !fork {
        v.push("--no-fork".to_string());
    }
    v
}

/// Least-squares line through (x, y): (intercept, slope).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

/// Runs the benchmark; `args` are the command-line arguments after the program name.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut reps = 11usize;
    let mut bin = None;
    let mut state_sizes = vec!["20k", "1m", "16m", "64m"].into_iter().map(String::from).collect::<Vec<_>>();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--reps" => reps = val()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--bin" => bin = Some(val()?),
            "--sizes" => state_sizes = val()?.split(',').map(String::from).collect(),
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let bin = find_runner(bin)?;
    crate::sys::header("Simulator run: the whole default suite on sim:v2, end to end");
    println!("binary {}; {reps} reps per cell, alternating", bin.display());
    println!();

    // Subsets of the default suite, from nothing run (start-up) to everything.
    let subsets: Vec<(&str, Vec<&str>)> = vec![
        ("--list (start-up only)", vec!["--list"]),
        ("1 check", vec!["fsm.arc.running.stop", "--exact"]),
        ("stream.*", vec!["stream."]),
        ("fsm.arc.*", vec!["fsm.arc."]),
        ("fsm.*", vec!["fsm."]),
        ("full default suite", vec![]),
    ];
    let mut samples: Vec<[Vec<f64>; 2]> = vec![Default::default(); subsets.len()];
    let mut counts = vec![0usize; subsets.len()];
    for rep in 0..=reps {
        for (i, (_, extra)) in subsets.iter().enumerate() {
            for k in 0..2 {
                let fork = (rep + k) % 2 == 0;
                let (s, n) = run(&bin, &args_of("sim:v2", extra, fork))?;
                if rep > 0 {
                    samples[i][usize::from(!fork)].push(s);
                }
                counts[i] = n;
            }
        }
    }
    println!("## Time by number of checks (sim:v2, default state size 20.1 KiB)");
    println!();
    let mut rows = vec![vec![
        "selection".to_string(),
        "checks".to_string(),
        "fork per check (default)".to_string(),
        "--no-fork".to_string(),
        "fork / no-fork".to_string(),
    ]];
    let mut pts = [Vec::new(), Vec::new()];
    for (i, (label, _)) in subsets.iter().enumerate() {
        let (f, n) = (Summary::of(&samples[i][0]), Summary::of(&samples[i][1]));
        pts[0].push((counts[i] as f64, f.median));
        pts[1].push((counts[i] as f64, n.median));
        rows.push(vec![
            (*label).to_string(),
            counts[i].to_string(),
            dur_spread(&f),
            dur_spread(&n),
            format!("{:.2}×", f.median / n.median),
        ]);
    }
    table(&rows);
    let (a_f, b_f) = fit(&pts[0]);
    let (a_n, b_n) = fit(&pts[1]);
    let full = Summary::of(&samples[subsets.len() - 1][0]);
    println!();
    println!(
        "linear fit: fork {} + {} per check; --no-fork {} + {} per check (process isolation: {} per check)",
        dur(a_f),
        dur(b_f),
        dur(a_n),
        dur(b_n),
        dur(b_f - b_n)
    );
    println!(
        "goal: the full default suite on sim:v2 in < 1 s: {} ({}, worst {})",
        if full.median < 1.0 { "met" } else { "MISSED" },
        dur(full.median),
        dur(full.max)
    );
    println!();

    println!("## Time by simulated state size (full default suite, fork per check)");
    println!();
    let mut rows = vec![vec![
        "device".to_string(),
        "checks".to_string(),
        "wall clock".to_string(),
        "vs 20k".to_string(),
    ]];
    let mut by: Vec<Vec<f64>> = vec![Vec::new(); state_sizes.len()];
    let mut n_by = vec![0usize; state_sizes.len()];
    let size_reps = reps.div_ceil(2).max(3);
    for rep in 0..=size_reps {
        for (i, sz) in state_sizes.iter().enumerate() {
            let (s, n) = run(&bin, &args_of(&format!("sim:v2?size={sz}"), &[], true))?;
            if rep > 0 {
                by[i].push(s);
            }
            n_by[i] = n;
        }
    }
    let base = Summary::of(&by[0]).median;
    for (i, sz) in state_sizes.iter().enumerate() {
        let s = Summary::of(&by[i]);
        rows.push(vec![
            format!("sim:v2?size={sz}"),
            n_by[i].to_string(),
            dur_spread(&s),
            format!("{:.2}×", s.median / base),
        ]);
    }
    table(&rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::checks_of;

    #[test]
    fn the_summary_line_gives_the_number_of_checks_in_singular_and_plural() {
        assert_eq!(checks_of("x\nvfio-mig-conform: 1 check in 0.01s: pass:1\n"), 1);
        assert_eq!(checks_of("vfio-mig-conform: 237 checks in 0.13s: pass:200\n"), 237);
        assert_eq!(checks_of("fsm.arc.running.stop: test\n"), 0);
    }
}
