//! Harness overhead on a real driver (`bench-overhead`, in the mtty VM): the suite's engine
//! against a raw loop doing the same ioctls with libc ([`crate::raw`]).
//!
//! Three ways to run the same sequence, alternating on the same device:
//! - **suite**: `Engine::run` on a check (kernel backend, spec oracle, trace, progress
//!   callback as the runner installs it);
//! - **raw, same syscalls**: the device syscalls the suite issues for that sequence and no
//!   others (a SET is followed by `fcntl(F_GETFD)`, `fcntl(F_GETFL)` on a new data fd and a
//!   GET; a check is framed by the same restore calls), with plain stack buffers;
//! - **raw, bare**: only the operations of the sequence (a SET is one ioctl).
//!
//! Part 1 times every step of a save/restore cycle repeated many times (per-operation
//! medians). Part 2 times the whole FSM arc family, check by check. Part 3 runs the
//! `vfio-mig-conform` binary on the arc family with and without process isolation.
//! `VMC_BENCH_PRIMITIVES=1` instead times the pieces of a step one by one; `--sim N` runs
//! the engine on `sim:v2` natively, for `perf record`.
//!
//! That the raw loop issues the suite's syscalls was checked with strace: per pass, the
//! same count of every device syscall, apart from the engine's probe when it opens the
//! device and its restore around the cycle check, both outside the timed steps.

use std::os::fd::RawFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmc::check::{Check, Step};
use vmc::checks::build::{capture, check, get, set, v2, write};
use vmc::engine::{Engine, EngineOptions};
use vmc::op::{Op, Segmentation};
use vmc::state::MigState;

use crate::raw::{self, RawDevice};
use crate::stats::{Summary, dur, dur_spread, table};

/// One device syscall (or group of them) of the raw executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawOp {
    Set(u32),
    Get,
    /// read() into a 1 MiB buffer until it returns 0, keeping the bytes.
    ReadAll,
    /// write() the bytes of the last ReadAll.
    WriteLast,
    Reset,
    DmaStop,
    IrqsOff(u32),
    ConfigWrite(u16),
    CloseAll,
}

/// The raw executor: a device, the data fds it was given, the last stream read.
struct RawExec<'a> {
    dev: &'a RawDevice,
    /// Issue the observation calls the suite makes (fcntl and GET after a SET).
    mirror: bool,
    buf: Vec<u8>,
    last: Vec<u8>,
    fds: Vec<RawFd>,
    current: RawFd,
}

impl RawExec<'_> {
    fn new(dev: &RawDevice, mirror: bool) -> RawExec<'_> {
        RawExec { dev, mirror, buf: vec![0u8; 1 << 20], last: Vec::new(), fds: Vec::new(), current: -1 }
    }

    #[inline]
    fn step(&mut self, op: RawOp) {
        match op {
            RawOp::Set(s) => {
                if let Ok(fd) = self.dev.set_state(s)
                    && fd >= 0
                {
                    if self.mirror {
                        let _ = raw::fd_flags(fd);
                    }
                    self.fds.push(fd);
                    self.current = fd;
                }
                if self.mirror {
                    let _ = self.dev.get_state();
                }
            }
            RawOp::Get => {
                let _ = self.dev.get_state();
            }
            RawOp::ReadAll => {
                self.last.clear();
                while let Ok(n) = raw::read(self.current, &mut self.buf)
                    && n > 0
                {
                    self.last.extend_from_slice(&self.buf[..n]);
                }
            }
            RawOp::WriteLast => {
                let mut off = 0;
                while off < self.last.len() {
                    match raw::write(self.current, &self.last[off..]) {
                        Ok(n) if n > 0 => off += n,
                        _ => break,
                    }
                }
            }
            RawOp::Reset => {
                let _ = self.dev.reset();
            }
            RawOp::DmaStop => {
                let _ = self.dev.dma_logging_stop();
            }
            RawOp::IrqsOff(i) => {
                let _ = self.dev.irqs_off(i);
            }
            RawOp::ConfigWrite(cmd) => {
                let _ = self.dev.config_write(4, &cmd.to_le_bytes());
            }
            RawOp::CloseAll => {
                for fd in self.fds.drain(..) {
                    raw::close(fd);
                }
                self.current = -1;
            }
        }
    }
}

/// The raw form of a check step (only the operations the benchmarked families use).
fn raw_op(step: &Step) -> RawOp {
    match &step.op {
        Op::SetState(a) => RawOp::Set(a.raw()),
        Op::GetState => RawOp::Get,
        Op::Read(_) => RawOp::ReadAll,
        Op::Write(_) => RawOp::WriteLast,
        Op::Reset => RawOp::Reset,
        other => panic!("the raw executor has no form for {other:?}"),
    }
}

/// What the engine does around a check on this device: undo logging, interrupts and the
/// command register, close data fds, reset, check RUNNING (`Engine::prepare`/`run`).
fn frame(dma: bool, cmd: Option<u16>) -> Vec<RawOp> {
    let mut v = Vec::new();
    if dma {
        v.push(RawOp::DmaStop);
    }
    v.extend([RawOp::IrqsOff(2), RawOp::IrqsOff(1), RawOp::IrqsOff(0)]);
    if let Some(c) = cmd {
        v.push(RawOp::ConfigWrite(c));
    }
    v.extend([RawOp::CloseAll, RawOp::Reset, RawOp::Get]);
    v
}

/// The device syscalls of a whole check: the suite's (mirror) or the bare minimum.
fn script(c: &Check, mirror: bool, dma: bool, cmd: Option<u16>) -> Vec<RawOp> {
    let mut v = Vec::new();
    if mirror {
        v.extend(frame(dma, cmd));
        v.push(RawOp::Get);
    }
    v.extend(c.steps.iter().map(raw_op));
    if mirror {
        v.extend(frame(dma, cmd));
    } else {
        v.extend([RawOp::CloseAll, RawOp::Reset]);
    }
    v
}

/// The steps of one save/restore cycle and their row labels.
fn cycle() -> Vec<(Step, &'static str)> {
    vec![
        (set(MigState::Stop), "SET RUNNING→STOP"),
        (set(MigState::StopCopy), "SET STOP→STOP_COPY (data fd)"),
        (capture("c"), "read to end of stream"),
        (set(MigState::Stop), "SET STOP_COPY→STOP"),
        (set(MigState::Resuming), "SET STOP→RESUMING (data fd)"),
        (write("c", None, Segmentation::Whole), "write the stream"),
        (set(MigState::Stop), "SET RESUMING→STOP"),
        (get(), "GET"),
        (Step::new(Op::Reset).oracle(), "reset"),
    ]
}

/// The cycle repeated `k` times, then one GET whose end marks the end of the last step.
fn cycle_check(k: usize) -> Check {
    let mut steps = Vec::new();
    for _ in 0..k {
        steps.extend(cycle().into_iter().map(|(s, _)| s));
    }
    steps.push(get());
    check("bench.overhead.cycle", "save/restore cycles", v2(0), steps, &[])
}

/// Timestamps taken before every step.
type Stamps = Arc<Mutex<Vec<Instant>>>;

fn stamp(s: &Stamps) {
    if let Ok(mut v) = s.lock() {
        v.push(Instant::now());
    }
}

/// Durations between consecutive stamps.
fn deltas(s: &Stamps) -> Vec<f64> {
    let v = s.lock().map(|v| v.clone()).unwrap_or_default();
    v.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
}

/// Samples per cycle row, per way of running.
#[derive(Default)]
struct Samples {
    suite: Vec<Vec<f64>>,
    mirror: Vec<Vec<f64>>,
    bare: Vec<Vec<f64>>,
    /// Whole-check times of the arc family: per rep, per check.
    fam_suite: Vec<Vec<f64>>,
    fam_mirror: Vec<Vec<f64>>,
    fam_bare: Vec<Vec<f64>>,
}

fn add_cycle(into: &mut [Vec<f64>], d: &[f64]) {
    let rows = into.len();
    for (i, x) in d.iter().enumerate() {
        into[i % rows].push(*x);
    }
}

struct Config {
    device: String,
    name: String,
    reps: usize,
    cycles: usize,
    runner: Option<String>,
    runner_reps: usize,
}

fn group_device_name(group_path: &str) -> Option<String> {
    let n = group_path.rsplit('/').next()?;
    let dir = format!("/sys/kernel/iommu_groups/{n}/devices");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.into_iter().next()
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config {
        device: std::env::var("VMC_DEV0").unwrap_or_default(),
        name: String::new(),
        reps: 9,
        cycles: 40,
        runner: Some("vfio-mig-conform".to_string()),
        runner_reps: 5,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--device" => c.device = val()?,
            "--name" => c.name = val()?,
            "--reps" => c.reps = val()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--cycles" => c.cycles = val()?.parse().map_err(|e| format!("--cycles: {e}"))?,
            "--runner" => c.runner = Some(val()?),
            "--runner-reps" => c.runner_reps = val()?.parse().map_err(|e| format!("--runner-reps: {e}"))?,
            "--no-runner" => c.runner = None,
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if c.device.is_empty() {
        return Err("no device: pass --device /dev/vfio/N or set VMC_DEV0 (vm/run.sh does)".to_string());
    }
    if c.name.is_empty() {
        c.name = group_device_name(&c.device)
            .ok_or_else(|| format!("{}: cannot find its device in sysfs", c.device))?;
    }
    Ok(c)
}

/// One suite pass: the cycle check (per-step stamps), then the arc family (per check).
fn suite_pass(
    cfg: &Config,
    cyc: &Check,
    family: &[Check],
    s: &mut Samples,
) -> Result<(bool, Option<u16>), String> {
    let dev = vmc::device::kernel::open(&cfg.device, Some(&cfg.name)).map_err(|e| e.to_string())?;
    let mut engine = Engine::new(vec![dev], EngineOptions::default());
    let facts = (engine.slots[0].facts.dma_logging, engine.slots[0].facts.pci_command);
    let stamps: Stamps = Arc::new(Mutex::new(Vec::with_capacity(cyc.steps.len() + 1)));
    let st = Arc::clone(&stamps);
    // What the runner's progress callback is called with; here it only takes the time.
    engine.progress = Some(Box::new(move |_, op: &str| {
        if !op.is_empty() {
            stamp(&st);
        }
    }));
    let run = engine.run(cyc);
    if !run.findings.is_empty() || run.end.error().is_some() || run.end.unsupported().is_some() {
        return Err(format!(
            "the cycle check did not pass: error {:?}, unsupported {:?}, findings {:?}",
            run.end.error(),
            run.end.unsupported(),
            run.findings
        ));
    }
    add_cycle(&mut s.suite, &deltas(&stamps));
    let mut per = Vec::new();
    for c in family {
        let t = Instant::now();
        let r = engine.run(c);
        per.push(t.elapsed().as_secs_f64());
        if r.end.error().is_some() || r.end.unsupported().is_some() {
            return Err(format!(
                "{}: error {:?}, unsupported {:?}",
                c.id,
                r.end.error(),
                r.end.unsupported()
            ));
        }
    }
    s.fam_suite.push(per);
    Ok(facts)
}

/// One raw pass (mirror or bare).
fn raw_pass(
    cfg: &Config,
    cyc: &Check,
    scripts: &[Vec<RawOp>],
    mirror: bool,
    s: &mut Samples,
) -> Result<(), String> {
    let dev = RawDevice::open(&cfg.device, &cfg.name).map_err(|e| e.to_string())?;
    let ops: Vec<RawOp> = cyc.steps.iter().map(raw_op).collect();
    let stamps: Stamps = Arc::new(Mutex::new(Vec::with_capacity(ops.len() + 1)));
    let mut ex = RawExec::new(&dev, mirror);
    for op in [RawOp::CloseAll, RawOp::Reset] {
        ex.step(op);
    }
    for op in &ops {
        stamp(&stamps);
        ex.step(*op);
    }
    for op in [RawOp::CloseAll, RawOp::Reset] {
        ex.step(op);
    }
    let d = deltas(&stamps);
    add_cycle(if mirror { &mut s.mirror } else { &mut s.bare }, &d);
    let mut per = Vec::new();
    for sc in scripts {
        let t = Instant::now();
        for op in sc {
            ex.step(*op);
        }
        per.push(t.elapsed().as_secs_f64());
    }
    if mirror {
        s.fam_mirror.push(per);
    } else {
        s.fam_bare.push(per);
    }
    Ok(())
}

/// Wall-clock seconds of one `vfio-mig-conform` run.
fn runner_secs(bin: &str, args: &[&str]) -> Result<f64, String> {
    let t = Instant::now();
    let st = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{bin}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        return Err(format!("{bin} {} exited with {st}", args.join(" ")));
    }
    Ok(secs)
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

/// `--sim N`: the cycle check run N times on `sim:v2` in this process, for profiling the
/// engine natively (`perf record`); prints the time per step.
fn sim_loop(n: usize) -> Result<(), String> {
    let cfg = vmc::device::sim::parse_spec("sim:v2?size=96").map_err(|e| e.to_string())?;
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions::default());
    engine.progress = Some(Box::new(|_, _| {}));
    let c = cycle_check(40);
    let t = Instant::now();
    for _ in 0..n {
        let r = engine.run(&c);
        if r.end.error().is_some() || !r.findings.is_empty() {
            return Err(format!("{:?} {:?}", r.end.error(), r.findings));
        }
    }
    println!(
        "{} per step (sim:v2?size=96, cycle)",
        dur(t.elapsed().as_secs_f64() / (n * c.steps.len()) as f64)
    );
    let family = vmc::checks::arcs::checks();
    let t = Instant::now();
    for _ in 0..n {
        for c in &family {
            std::hint::black_box(engine.run(c));
        }
    }
    println!(
        "{} per check (sim:v2?size=96, arc family)",
        dur(t.elapsed().as_secs_f64() / (n * family.len()) as f64)
    );
    Ok(())
}

/// Median seconds per call of `f` (5 batches of `n`).
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let mut v = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        v.push(t.elapsed().as_secs_f64() / n as f64);
    }
    crate::stats::median(&v)
}

/// Part 4: what the pieces of a step cost here (the suite's device layer against the raw
/// call, and the engine's bookkeeping).
fn primitives(cfg: &Config) -> Result<(), String> {
    use vmc::oracle::model::{Facts, Model, Observation};
    const N: usize = 2000;
    let mut rows = vec![vec!["primitive".to_string(), "per call".to_string()]];
    let mut row = |name: &str, secs: f64| rows.push(vec![name.to_string(), dur(secs)]);
    {
        let raw = RawDevice::open(&cfg.device, &cfg.name).map_err(|e| e.to_string())?;
        row(
            "raw GET ioctl (stack buffer)",
            per_call(N, || {
                let _ = std::hint::black_box(raw.get_state());
            }),
        );
        // The same GET with its buffer at the end of a page followed by a PROT_NONE page,
        // as the kernel backend's guarded scratch buffers place it.
        // SAFETY: a fresh private anonymous mapping of two pages; nothing else refers to it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        // SAFETY: the second page of the mapping just created.
        unsafe { libc::mprotect(map.cast::<u8>().add(4096).cast(), 4096, libc::PROT_NONE) };
        // SAFETY: the last 16 bytes of the first (read-write) page.
        let p16 = unsafe { map.cast::<u8>().add(4096 - 16) };
        row(
            "raw GET ioctl (buffer before a guard page)",
            per_call(N, || {
                let b = [16u32, 1 << 16 | 2, 0, u32::MAX];
                // SAFETY: `p16` points to 16 writable bytes inside our mapping.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr().cast::<u8>(), p16, 16) };
                // SAFETY: as in `RawDevice::get_state`, with the buffer in our mapping.
                let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&raw), 0x3b75, p16) };
                std::hint::black_box(r);
            }),
        );
        let fd = raw
            .set_state(MigState::Stop.raw())
            .and_then(|_| raw.set_state(MigState::StopCopy.raw()))
            .unwrap_or(-1);
        row(
            "raw fcntl F_GETFD + F_GETFL",
            per_call(N, || {
                let _ = std::hint::black_box(raw::fd_flags(fd));
            }),
        );
        raw::close(fd);
        let _ = raw.reset();
    }
    {
        let mut dev = vmc::device::kernel::open(&cfg.device, Some(&cfg.name)).map_err(|e| e.to_string())?;
        let mut p = [0u8; 8];
        row(
            "Device::feature GET (kernel backend)",
            per_call(N, || {
                let _ = std::hint::black_box(dev.feature(
                    16,
                    vmc::uapi::FEATURE_GET | vmc::uapi::FEATURE_MIG_DEVICE_STATE,
                    &mut p,
                ));
            }),
        );
        row(
            "Device::debugfs_state (stat of the debugfs file)",
            per_call(N, || {
                let _ = std::hint::black_box(dev.debugfs_state());
            }),
        );
        let set = |dev: &mut Box<dyn vmc::device::Device>, s: MigState| {
            let mut p = [0u8; 8];
            p[..4].copy_from_slice(&s.raw().to_le_bytes());
            p[4..].copy_from_slice(&(-1i32).to_le_bytes());
            let _ = dev.feature(16, vmc::uapi::FEATURE_SET | vmc::uapi::FEATURE_MIG_DEVICE_STATE, &mut p);
            i32::from_le_bytes([p[4], p[5], p[6], p[7]])
        };
        row(
            "Device::feature SET STOP, SET RUNNING (two calls)",
            per_call(N, || {
                set(&mut dev, MigState::Stop);
                set(&mut dev, MigState::Running);
            }),
        );
        set(&mut dev, MigState::Stop);
        row(
            "Device::feature SET STOP_COPY (data fd), SET STOP, close",
            per_call(N / 4, || {
                let fd = set(&mut dev, MigState::StopCopy);
                set(&mut dev, MigState::Stop);
                let _ = dev.data_close(fd);
            }),
        );
        let fd = set(&mut dev, MigState::StopCopy);
        row(
            "Device::data_fd_flags",
            per_call(N, || {
                let _ = std::hint::black_box(dev.data_fd_flags(fd));
            }),
        );
        let _ = dev.restore();
    }
    {
        let raw = RawDevice::open(&cfg.device, &cfg.name).map_err(|e| e.to_string())?;
        row(
            "raw SET STOP, SET RUNNING",
            per_call(N, || {
                let _ = raw.set_state(MigState::Stop.raw());
                let _ = raw.set_state(MigState::Running.raw());
            }),
        );
        let _ = raw.set_state(MigState::Stop.raw());
        row(
            "raw SET STOP_COPY (data fd), SET STOP, close",
            per_call(N / 4, || {
                let fd = raw.set_state(MigState::StopCopy.raw()).unwrap_or(-1);
                let _ = raw.set_state(MigState::Stop.raw());
                raw::close(fd);
            }),
        );
        let _ = raw.reset();
    }
    row(
        "Instant::now()",
        per_call(N, || {
            std::hint::black_box(Instant::now());
        }),
    );
    let label = "A".to_string();
    row(
        "String clone + drop (malloc/free)",
        per_call(N, || {
            std::hint::black_box(label.clone());
        }),
    );
    let op = Op::SetState(vmc::state::StateArg::Named(MigState::StopCopy));
    row(
        "render_op(set_state: STOP_COPY)",
        per_call(N, || {
            std::hint::black_box(vmc::engine::render_op(&op));
        }),
    );
    let facts = Facts {
        flags: vmc::state::MigFlags::ALL,
        dma_logging: true,
        device_type: Some("mtty-2".to_string()),
    };
    let obs = Observation { state: Some(MigState::Stop.raw()), data_fd: Some(-1), ..Default::default() };
    row(
        "Model::new + judge_set(RUNNING→STOP)",
        per_call(N, || {
            let mut m = Model::new(facts.clone(), Some(MigState::Running));
            std::hint::black_box(m.judge_set(MigState::Stop.raw(), &obs));
        }),
    );
    row(
        "Model::new alone",
        per_call(N, || {
            std::hint::black_box(Model::new(facts.clone(), Some(MigState::Running)));
        }),
    );
    table(&rows);
    Ok(())
}

/// Runs the benchmark; `args` are the command-line arguments after the program name.
pub fn main(args: &[String]) -> Result<(), String> {
    if let [flag, n] = args
        && flag == "--sim"
    {
        return sim_loop(n.parse().map_err(|e| format!("--sim: {e}"))?);
    }
    let cfg = parse_args(args)?;
    crate::sys::header("Harness overhead: the suite against raw ioctls (real mtty driver)");
    if std::env::var_os("VMC_BENCH_PRIMITIVES").is_some() {
        return primitives(&cfg);
    }
    let cyc = cycle_check(cfg.cycles);
    let labels: Vec<&str> = cycle().into_iter().map(|(_, l)| l).collect();
    let family: Vec<Check> = vmc::checks::arcs::checks();
    println!(
        "device {} ({}); {} reps alternating suite / raw same syscalls / raw bare; {} save/restore cycles per rep; \
         arc family: {} checks",
        cfg.device,
        cfg.name,
        cfg.reps,
        cfg.cycles,
        family.len()
    );
    let mut s = Samples { suite: vec![Vec::new(); labels.len()], ..Default::default() };
    s.mirror = s.suite.clone();
    s.bare = s.suite.clone();
    // Warm-up (page faults, first opens), then measured reps in rotating order.
    let mut warm = Samples {
        suite: s.suite.clone(),
        mirror: s.suite.clone(),
        bare: s.suite.clone(),
        ..Default::default()
    };
    let (dma, cmd) = suite_pass(&cfg, &cyc, &family, &mut warm)?;
    let mirror_scripts: Vec<Vec<RawOp>> = family.iter().map(|c| script(c, true, dma, cmd)).collect();
    let bare_scripts: Vec<Vec<RawOp>> = family.iter().map(|c| script(c, false, dma, cmd)).collect();
    raw_pass(&cfg, &cyc, &mirror_scripts, true, &mut warm)?;
    raw_pass(&cfg, &cyc, &bare_scripts, false, &mut warm)?;
    for rep in 0..cfg.reps {
        for k in 0..3 {
            match (rep + k) % 3 {
                0 => {
                    suite_pass(&cfg, &cyc, &family, &mut s)?;
                }
                1 => raw_pass(&cfg, &cyc, &mirror_scripts, true, &mut s)?,
                _ => raw_pass(&cfg, &cyc, &bare_scripts, false, &mut s)?,
            }
        }
    }

    println!();
    println!("## Per operation (save/restore cycle; median and IQR over {} samples each)", s.suite[0].len());
    println!();
    let mut rows = vec![vec![
        "operation".to_string(),
        "raw bare".to_string(),
        "raw same syscalls".to_string(),
        "suite".to_string(),
        "suite / same syscalls".to_string(),
        "suite / bare".to_string(),
        "engine adds".to_string(),
    ]];
    let (mut tot_s, mut tot_m, mut tot_b) = (0.0, 0.0, 0.0);
    for (i, l) in labels.iter().enumerate() {
        let (a, m, b) = (Summary::of(&s.suite[i]), Summary::of(&s.mirror[i]), Summary::of(&s.bare[i]));
        tot_s += a.median;
        tot_m += m.median;
        tot_b += b.median;
        rows.push(vec![
            (*l).to_string(),
            dur_spread(&b),
            dur_spread(&m),
            dur_spread(&a),
            ratio(a.median, m.median),
            ratio(a.median, b.median),
            dur(a.median - m.median),
        ]);
    }
    rows.push(vec![
        "whole cycle (sum of medians)".to_string(),
        dur(tot_b),
        dur(tot_m),
        dur(tot_s),
        ratio(tot_s, tot_m),
        ratio(tot_s, tot_b),
        dur(tot_s - tot_m),
    ]);
    table(&rows);

    println!();
    println!("## Whole checks: the FSM arc family ({} checks, in-process, no fork)", family.len());
    println!();
    // The family's time: for each check the median over reps (a vCPU preempted by the host
    // makes single checks take milliseconds now and then), summed over the checks.
    let robust = |v: &Vec<Vec<f64>>| {
        let n = v.first().map_or(0, Vec::len);
        (0..n).map(|c| Summary::of(&v.iter().map(|r| r[c]).collect::<Vec<f64>>()).median).sum::<f64>()
    };
    let tot = |v: &Vec<Vec<f64>>| v.iter().map(|r| r.iter().sum::<f64>()).collect::<Vec<f64>>();
    let per_check = |v: &Vec<Vec<f64>>| v.iter().flatten().copied().collect::<Vec<f64>>();
    let (fs, fm, fb) = (robust(&s.fam_suite), robust(&s.fam_mirror), robust(&s.fam_bare));
    let (ts, tm, tb) =
        (Summary::of(&tot(&s.fam_suite)), Summary::of(&tot(&s.fam_mirror)), Summary::of(&tot(&s.fam_bare)));
    let (ps, pm, pb) = (
        Summary::of(&per_check(&s.fam_suite)),
        Summary::of(&per_check(&s.fam_mirror)),
        Summary::of(&per_check(&s.fam_bare)),
    );
    let pair_ratios: Vec<f64> =
        tot(&s.fam_suite).iter().zip(tot(&s.fam_mirror)).map(|(a, b)| a / b).collect();
    let pr = Summary::of(&pair_ratios);
    table(&[
        vec!["".to_string(), "raw bare".to_string(), "raw same syscalls".to_string(), "suite".to_string()],
        vec!["family: sum of per-check medians".to_string(), dur(fb), dur(fm), dur(fs)],
        vec!["family: per-rep totals".to_string(), dur_spread(&tb), dur_spread(&tm), dur_spread(&ts)],
        vec!["one check, median".to_string(), dur_spread(&pb), dur_spread(&pm), dur_spread(&ps)],
    ]);
    println!();
    println!(
        "family: suite / same syscalls = {} (per-rep total ratios {:.2}–{:.2}, median {:.2}); suite / bare = {}",
        ratio(fs, fm),
        pr.min,
        pr.max,
        pr.median,
        ratio(fs, fb)
    );
    println!(
        "goal suite / same syscalls <= 1.10x: {} (arc family {}, save/restore cycle {})",
        if fs / fm <= 1.10 && tot_s / tot_m <= 1.10 { "met" } else { "MISSED" },
        ratio(fs, fm),
        ratio(tot_s, tot_m)
    );

    if let Some(bin) = &cfg.runner {
        println!();
        println!("## Whole checks with process isolation (the vfio-mig-conform binary, end to end)");
        println!();
        let fam: &[&str] = &[&cfg.device, "fsm.arc", "--format", "terse", "-q"];
        let one: &[&str] = &[&cfg.device, "fsm.arc.running.stop", "--exact", "--format", "terse", "-q"];
        let with = |a: &[&str], fork: bool| {
            let mut v: Vec<&str> = a.to_vec();
            if !fork {
                v.push("--no-fork");
            }
            v.iter().map(|s| (*s).to_string()).collect::<Vec<String>>()
        };
        let mut t: [Vec<f64>; 4] = Default::default();
        for rep in 0..cfg.runner_reps {
            for k in 0..4 {
                let i = (rep + k) % 4;
                let a = with(if i < 2 { fam } else { one }, i % 2 == 0);
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                t[i].push(runner_secs(bin, &a)?);
            }
        }
        let m: Vec<Summary> = t.iter().map(|v| Summary::of(v)).collect();
        let n = family.len() as f64;
        let per_fork = (m[0].median - m[2].median) / (n - 1.0);
        let per_nofork = (m[1].median - m[3].median) / (n - 1.0);
        table(&[
            vec!["run".to_string(), "fork per check (default)".to_string(), "--no-fork".to_string()],
            vec![format!("arc family ({} checks)", family.len()), dur_spread(&m[0]), dur_spread(&m[1])],
            vec!["one check (start-up, open, one check)".to_string(), dur_spread(&m[2]), dur_spread(&m[3])],
            vec!["per check (difference / (n-1))".to_string(), dur(per_fork), dur(per_nofork)],
        ]);
        println!();
        println!(
            "process isolation (a child process per check, a watchdog, one pipe message per step) costs {} per \
             check: {} of the in-process cost; a deliberate reliability cost (a check stuck in the kernel cannot \
             hang the run, a crash cannot lose the results)",
            dur(per_fork - per_nofork),
            ratio(per_fork, per_nofork)
        );
    }
    Ok(())
}
