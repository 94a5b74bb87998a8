//! Stream throughput and memory (`bench-stream`): GiB-sized simulated saving streams drained
//! through the engine's read loop (chunked read, hashing, optional capture that spills to a
//! temporary file past 64 MiB) against a plain `Device::data_read` loop with the same 1 MiB
//! buffer on the same device; the resume side written with every segmentation the suite
//! uses (`stream.replay.*`) against a plain `Device::data_write` loop; peak RSS of each way
//! at 16 MiB, 1 GiB and 4 GiB, each in a fresh process.

use std::time::Instant;

use vmc::check::{Check, Step};
use vmc::checks::build::{capture, check, drain, set, v2, write};
use vmc::device::Device;
use vmc::engine::capture::Segments;
use vmc::engine::{CheckRun, Engine, EngineOptions};
use vmc::hash::StreamHash;
use vmc::op::{Op, Segmentation};
use vmc::state::MigState;
use vmc::uapi;

use crate::stats::{Summary, dur, rate, size, table};

/// The engine's read chunk (`ReadArgs::default().chunk`), used by the plain loop too.
const CHUNK: usize = 1 << 20;

fn parse_size(s: &str) -> Result<u64, String> {
    vmc::units::parse_size(s).ok_or_else(|| format!("`{s}` is not a size like 16m or 4g"))
}

fn engine(state: u64) -> Result<Engine, String> {
    let cfg = vmc::device::sim::parse_spec(&format!("sim:v2?size={state}")).map_err(|e| e.to_string())?;
    // Above the stream of a 4 GiB state (the runner's default --max-stream is 4g).
    Ok(Engine::new(vec![cfg.build()], EngineOptions { max_stream: 64 << 30 }))
}

/// SET MIG_DEVICE_STATE through the device interface; the data fd.
fn set_state(dev: &mut dyn Device, s: MigState) -> Result<i32, String> {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&s.raw().to_le_bytes());
    p[4..].copy_from_slice(&(-1i32).to_le_bytes());
    dev.feature(16, uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE, &mut p)
        .map_err(|e| format!("SET {s}: {e}"))?;
    Ok(i32::from_le_bytes([p[4], p[5], p[6], p[7]]))
}

/// The plain loop with the hash added inline (where the engine's extra time goes).
fn plain_hashed(dev: &mut dyn Device, buf: &mut [u8]) -> Result<(u64, f64), String> {
    dev.restore().map_err(|e| format!("restore: {e}"))?;
    let t = Instant::now();
    let fd = set_state(dev, MigState::StopCopy)?;
    let mut total = 0u64;
    let mut h = StreamHash::default();
    loop {
        match dev.data_read(fd, buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                h.update(&buf[..n]);
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    std::hint::black_box(h.value());
    let secs = t.elapsed().as_secs_f64();
    dev.restore().map_err(|e| format!("restore: {e}"))?;
    Ok((total, secs))
}

/// The plain read loop: SET STOP_COPY, then `data_read` with a 1 MiB buffer until 0.
fn plain_read(
    dev: &mut dyn Device,
    buf: &mut [u8],
    keep: Option<&mut Vec<u8>>,
) -> Result<(u64, f64), String> {
    dev.restore().map_err(|e| format!("restore: {e}"))?;
    let t = Instant::now();
    let fd = set_state(dev, MigState::StopCopy)?;
    let mut total = 0u64;
    let mut keep = keep;
    loop {
        match dev.data_read(fd, buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if let Some(k) = keep.as_deref_mut() {
                    k.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    std::hint::black_box(&buf);
    let secs = t.elapsed().as_secs_f64();
    dev.restore().map_err(|e| format!("restore: {e}"))?;
    Ok((total, secs))
}

/// The plain write loop: `data_write` of `stream` in pieces of `sizes` (short writes resumed,
/// as the engine does), timed; then SET STOP must accept the stream.
fn plain_write(dev: &mut dyn Device, stream: &[u8], sizes: &[usize]) -> Result<f64, String> {
    dev.restore().map_err(|e| format!("restore: {e}"))?;
    let fd = set_state(dev, MigState::Resuming)?;
    let t = Instant::now();
    let mut pos = 0usize;
    for &n in sizes {
        let piece = &stream[pos..pos + n];
        let mut off = 0;
        while off < n {
            match dev.data_write(fd, &piece[off..]) {
                Ok(w) if w > 0 => off += w,
                Ok(_) => return Err("write returned 0".to_string()),
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        pos += n;
    }
    let secs = t.elapsed().as_secs_f64();
    set_state(dev, MigState::Stop).map_err(|e| format!("the plainly written stream was refused: {e}"))?;
    dev.restore().map_err(|e| format!("restore: {e}"))?;
    Ok(secs)
}

fn checked(c: &Check, run: &CheckRun) -> Result<(), String> {
    if run.end.error().is_some() || run.end.unsupported().is_some() || !run.findings.is_empty() {
        return Err(format!(
            "{}: error {:?}, unsupported {:?}, findings {:?}",
            c.id,
            run.end.error(),
            run.end.unsupported(),
            run.findings.iter().map(|f| &f.violation).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// `set STOP_COPY` then a read loop (draining or capturing).
fn read_check(capturing: bool) -> Check {
    let read = if capturing { capture("s") } else { drain() };
    check("bench.stream.read", "drain", v2(0), vec![set(MigState::StopCopy), read], &[])
}

/// Bytes and seconds of the engine's read step (the whole `Engine::run`).
fn engine_read(e: &mut Engine, c: &Check) -> Result<(u64, f64), String> {
    let t = Instant::now();
    let run = e.run(c);
    let secs = t.elapsed().as_secs_f64();
    checked(c, &run)?;
    Ok((run.trace.get(1).and_then(|s| s.obs.bytes).unwrap_or(0), secs))
}

/// The segmentations of the `stream.replay.*` checks, by name.
pub fn replay_segmentations() -> Vec<(String, Segmentation)> {
    vmc::checks::streams::replay_checks()
        .into_iter()
        .filter_map(|c| {
            let name = c.id.strip_prefix("stream.replay.")?.to_string();
            let seg = c.steps.iter().find_map(|s| match &s.op {
                Op::Write(w) if w.mutate.is_none() => Some(w.segment.clone()),
                _ => None,
            })?;
            (name != "with_pre_copy").then_some((name, seg))
        })
        .collect()
}

/// Capture once, then for each segmentation: RESUMING, write, STOP (the stream must load).
fn write_check(segs: &[(String, Segmentation)]) -> Check {
    let mut steps = vec![set(MigState::StopCopy), capture("s"), Step::new(Op::Reset).oracle()];
    for (_, seg) in segs {
        steps.push(set(MigState::Resuming));
        steps.push(write("s", None, seg.clone()));
        steps.push(set(MigState::Stop));
    }
    check("bench.stream.write", "replay", v2(0), steps, &[])
}

struct Opts {
    read_sizes: Vec<u64>,
    write_sizes: Vec<u64>,
    rss_sizes: Vec<u64>,
    reps: Option<usize>,
}

fn reps_for(o: &Opts, bytes: u64) -> usize {
    o.reps.unwrap_or(if bytes >= 4 << 30 {
        3
    } else if bytes >= 1 << 30 {
        5
    } else {
        11
    })
}

fn sizes(s: &str) -> Result<Vec<u64>, String> {
    s.split(',').filter(|x| !x.is_empty()).map(parse_size).collect()
}

fn parse(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        read_sizes: sizes("16m,1g,4g")?,
        write_sizes: sizes("16m,1g,4g")?,
        rss_sizes: sizes("16m,1g,4g")?,
        reps: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--child" => {
                let mode = val()?;
                let bytes = parse_size(&val()?)?;
                child(&mode, bytes)?;
                return Ok(None);
            }
            "--read" => o.read_sizes = sizes(&val()?)?,
            "--write" => o.write_sizes = sizes(&val()?)?,
            "--rss" => o.rss_sizes = sizes(&val()?)?,
            "--reps" => o.reps = Some(val()?.parse().map_err(|e| format!("--reps: {e}"))?),
            "--quick" => {
                o.read_sizes = sizes("16m,256m")?;
                o.write_sizes = sizes("16m,256m")?;
                o.rss_sizes = sizes("16m,256m")?;
            }
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(o))
}

/// One RSS measurement in this (fresh) process; prints `RESULT hwm_kib rss_kib bytes secs`.
fn child(mode: &str, state: u64) -> Result<(), String> {
    let mut e = engine(state)?;
    let (bytes, secs) = match mode {
        "idle" => (0, 0.0),
        "plain" => {
            let mut buf = vec![0u8; CHUNK];
            plain_read(e.slots[0].dev.as_mut(), &mut buf, None)?
        }
        "read" => engine_read(&mut e, &read_check(false))?,
        "capture" => engine_read(&mut e, &read_check(true))?,
        "replay" => {
            let segs = vec![("whole".to_string(), Segmentation::Whole)];
            let c = write_check(&segs);
            let t = Instant::now();
            let run = e.run(&c);
            checked(&c, &run)?;
            (run.trace.get(1).and_then(|s| s.obs.bytes).unwrap_or(0), t.elapsed().as_secs_f64())
        }
        other => return Err(format!("unknown child mode `{other}`")),
    };
    let (hwm, rss) = crate::sys::rss_kib();
    println!("RESULT {hwm} {rss} {bytes} {secs}");
    Ok(())
}

fn run_child(mode: &str, state: u64) -> Result<(u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--child", mode, &state.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).ok_or_else(|| {
        format!("child {mode} {state}: no result ({})", String::from_utf8_lossy(&out.stderr).trim())
    })?;
    let v: Vec<u64> = line.split_whitespace().take(2).filter_map(|x| x.parse().ok()).collect();
    Ok((v.first().copied().unwrap_or(0), v.get(1).copied().unwrap_or(0)))
}

fn ratio_row(label: String, bytes: u64, plain: &[f64], eng: &[f64]) -> Vec<String> {
    let (p, e) = (Summary::of(plain), Summary::of(eng));
    let pairs: Vec<f64> = plain.iter().zip(eng).map(|(p, e)| p / e).collect();
    let r = Summary::of(&pairs);
    vec![
        label,
        format!("{} ({}–{})", rate(bytes, p.median), rate(bytes, p.q3), rate(bytes, p.q1)),
        format!("{} ({}–{})", rate(bytes, e.median), rate(bytes, e.q3), rate(bytes, e.q1)),
        format!("{:.3}", p.median / e.median),
        format!("{:.3}–{:.3}", r.min, r.max),
        if p.median / e.median >= 0.95 { "met".to_string() } else { "missed".to_string() },
    ]
}

/// Runs the benchmark; `args` are the command-line arguments after the program name.
pub fn main(args: &[String]) -> Result<(), String> {
    let Some(o) = parse(args)? else { return Ok(()) };
    crate::sys::header("Stream throughput and memory (simulated device)");

    // The hash alone, for scale.
    let buf = vec![0x5au8; CHUNK];
    let mut hs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut h = StreamHash::default();
        for _ in 0..256 {
            h.update(&buf);
        }
        std::hint::black_box(h.value());
        hs.push(t.elapsed().as_secs_f64());
    }
    println!("StreamHash alone: {} (256 MiB, median of 5)", rate(256 << 20, Summary::of(&hs).median));
    println!();

    if !o.read_sizes.is_empty() {
        println!("## Saving side: engine read loop vs plain data_read loop (1 MiB buffer)");
        println!();
        println!(
            "rate: median (IQR); ratio: engine throughput / plain throughput (ratio of medians; range of per-rep ratios)"
        );
        println!();
        let mut rows = vec![vec![
            "stream".to_string(),
            "plain read".to_string(),
            "engine read".to_string(),
            "ratio".to_string(),
            "per-rep".to_string(),
            "goal ≥ 0.95".to_string(),
        ]];
        let mut cap_rows = rows.clone();
        cap_rows[0][2] = "engine read + capture".to_string();
        let mut hash_rows = rows.clone();
        hash_rows[0][2] = "plain read + StreamHash inline (for scale)".to_string();
        for &st in &o.read_sizes {
            let mut e = engine(st)?;
            let (drain_c, cap_c) = (read_check(false), read_check(true));
            let mut buf = vec![0u8; CHUNK];
            let reps = reps_for(&o, st);
            let mut bytes = 0;
            // Two phases, each alternating its ways: captures fill the page cache and leave
            // writeback behind, which would slow whatever runs next.
            let mut phase = |ways: &[u8]| -> Result<Vec<Vec<f64>>, String> {
                let mut out = vec![Vec::new(); ways.len()];
                for rep in 0..=reps {
                    for k in 0..ways.len() {
                        let i = (rep + k) % ways.len();
                        let (b, s) = match ways[i] {
                            0 => plain_read(e.slots[0].dev.as_mut(), &mut buf, None)?,
                            1 => engine_read(&mut e, &drain_c)?,
                            2 => engine_read(&mut e, &cap_c)?,
                            _ => plain_hashed(e.slots[0].dev.as_mut(), &mut buf)?,
                        };
                        bytes = b;
                        // rep 0 warms up (page faults, the first spill file).
                        if rep > 0 {
                            out[i].push(s);
                        }
                    }
                }
                Ok(out)
            };
            let a = phase(&[0, 1, 3])?;
            let b = phase(&[0, 2])?;
            let label = format!("{} ({reps} reps)", size(st));
            rows.push(ratio_row(label.clone(), bytes, &a[0], &a[1]));
            let mut scale = ratio_row(label.clone(), bytes, &a[0], &a[2]);
            if let Some(goal) = scale.last_mut() {
                *goal = "(no goal)".to_string();
            }
            hash_rows.push(scale);
            cap_rows.push(ratio_row(label, bytes, &b[0], &b[1]));
            eprintln!("  read {}: done (load {})", size(st), crate::sys::loadavg());
        }
        table(&rows);
        println!();
        table(&hash_rows);
        println!();
        table(&cap_rows);
        println!();
    }

    if !o.write_sizes.is_empty() {
        let segs = replay_segmentations();
        println!(
            "## Resume side: engine write loop vs plain data_write loop, per stream.replay segmentation"
        );
        println!();
        println!(
            "engine: the write step of a check (capture replayed through its view: in memory up to 64 MiB, \
             then from the spill file); plain: the same sizes written from a buffer in memory"
        );
        println!();
        let mut rows = vec![vec![
            "stream, segmentation".to_string(),
            "plain write".to_string(),
            "engine write".to_string(),
            "ratio".to_string(),
            "per-rep".to_string(),
            "goal ≥ 0.95".to_string(),
        ]];
        for &st in &o.write_sizes {
            let mut e = engine(st)?;
            let mut stream = Vec::new();
            let mut buf = vec![0u8; CHUNK];
            plain_read(e.slots[0].dev.as_mut(), &mut buf, Some(&mut stream))?;
            let seg_sizes: Vec<Vec<usize>> =
                segs.iter().map(|(_, s)| Segments::new(s, stream.len() as u64).collect()).collect();
            let c = write_check(&segs);
            let reps = reps_for(&o, st);
            let mut p: Vec<Vec<f64>> = vec![Vec::new(); segs.len()];
            let mut w: Vec<Vec<f64>> = vec![Vec::new(); segs.len()];
            for rep in 0..=reps {
                for k in 0..2 {
                    if (rep + k) % 2 == 0 {
                        let run = e.run(&c);
                        checked(&c, &run)?;
                        for (i, _) in segs.iter().enumerate() {
                            let step = &run.trace[3 + 3 * i + 1];
                            if rep > 0 {
                                w[i].push(step.micros as f64 / 1e6);
                            }
                        }
                    } else {
                        for (i, sz) in seg_sizes.iter().enumerate() {
                            let s = plain_write(e.slots[0].dev.as_mut(), &stream, sz)?;
                            if rep > 0 {
                                p[i].push(s);
                            }
                        }
                    }
                }
            }
            for (i, (name, _)) in segs.iter().enumerate() {
                rows.push(ratio_row(
                    format!("{}, {name} ({} writes, {reps} reps)", size(st), seg_sizes[i].len()),
                    stream.len() as u64,
                    &p[i],
                    &w[i],
                ));
            }
            eprintln!("  write {}: done (load {})", size(st), crate::sys::loadavg());
        }
        table(&rows);
        println!();
    }

    if !o.rss_sizes.is_empty() {
        println!("## Peak RSS (VmHWM of a fresh process per cell)");
        println!();
        let modes = [
            ("idle", "nothing read (baseline)"),
            ("plain", "plain data_read loop"),
            ("read", "engine read (drain, no comparison)"),
            ("capture", "engine read + capture"),
            ("replay", "engine capture + replay (whole)"),
        ];
        let mut rows =
            vec![std::iter::once("way".to_string()).chain(o.rss_sizes.iter().map(|s| size(*s))).collect()];
        for (mode, label) in modes {
            let mut row = vec![label.to_string()];
            for &st in &o.rss_sizes {
                let (hwm, _) = run_child(mode, st)?;
                row.push(size(hwm << 10));
            }
            rows.push(row);
            eprintln!("  rss {mode}: done");
        }
        table(&rows);
        println!();
        println!(
            "the capture keeps up to 64 MiB in memory, then moves to an unlinked temporary file in {}: its bytes \
             are in the page cache, not in the process",
            std::env::temp_dir().display()
        );
    }
    let _ = dur(0.0);
    Ok(())
}
