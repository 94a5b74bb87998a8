//! Coverage feedback makes the live fuzzer reach what blind walks do not: on the reference
//! simulator, a fake coverage source reports one new "PC" per state of a secret path through
//! the FSM that the device walked through in order (the states it reported after each SET,
//! from RUNNING). Kept walks are extended by mutation, so a guided session climbs the path;
//! blind walks must draw the whole path at once. Same seed, same number of runs.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;

use vmc::check::{Check, Step};
use vmc::device::sim::SimConfig;
use vmc::device::{DevInfoRaw, DevResult, Device, DeviceInfo, FdFlags, IrqCounts, IrqInfo, RegionInfo};
use vmc::engine::{CheckRun, Engine, EngineOptions};
use vmc::errno::Errno;
use vmc::fuzz::coverage::{CoverageSource, RunCoverage};
use vmc::fuzz::live::{LiveOptions, Session, WalkOutcome};
use vmc::op::Op;
use vmc::op::{Access, IrqAction, IrqData};
use vmc::state::{MigFlags, MigState};
use vmc::uapi::{FEATURE_MIG_DEVICE_STATE, FEATURE_SET};

/// A path through the stop-copy FSM, 10 SETs deep (every arc valid, none leaves RESUMING:
/// that needs a stream).
const PATH: [MigState; 10] = [
    MigState::Stop,
    MigState::StopCopy,
    MigState::Running,
    MigState::Stop,
    MigState::Running,
    MigState::StopCopy,
    MigState::Stop,
    MigState::StopCopy,
    MigState::Running,
    MigState::Resuming,
];

/// Depth reached by a run: how many states of PATH the device went through, in order, from
/// the first SET on (any other state reported by a SET ends the climb).
fn depth_of(check: &Check, run: &CheckRun) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for rec in &run.trace {
        let Some(step) = check.steps.get(rec.step) else { continue };
        if rec.device != "A" || !matches!(step.op, Op::SetState(_)) {
            continue;
        }
        if depth < PATH.len() && rec.obs.errno.is_none() && rec.obs.state == Some(PATH[depth].raw()) {
            depth += 1;
            out.push((rec.step, depth));
        } else {
            break;
        }
    }
    out
}

#[derive(Debug, Default)]
struct PathCoverage {
    /// The deepest point any run reached, whatever the session did with it.
    deepest: Rc<Cell<usize>>,
}

impl CoverageSource for PathCoverage {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn attach(&mut self, _engine: &mut Engine) {}
    fn begin(&mut self) {}
    fn collect(&mut self, check: &Check, run: &CheckRun) -> RunCoverage {
        let mut steps: Vec<Vec<u64>> = vec![Vec::new(); check.steps.len()];
        for (step, depth) in depth_of(check, run) {
            steps[step].push(0x1000 + depth as u64);
            self.deepest.set(self.deepest.get().max(depth));
        }
        RunCoverage { steps, ..RunCoverage::default() }
    }
}

/// Runs `runs` walks and returns the depth reached.
fn session(guided: bool, seed: u64, runs: u64) -> usize {
    let cfg = SimConfig { flags: MigFlags::STOP_COPY, ..SimConfig::v2() };
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions { max_stream: 1 << 20 });
    let opts = LiveOptions {
        seed,
        guided,
        kinds: Some(vec!["set_state".into(), "get_state".into()]),
        ..LiveOptions::default()
    };
    let mut s = Session::new(&mut engine, opts);
    let deepest = Rc::new(Cell::new(0));
    s.set_coverage(&mut engine, Box::new(PathCoverage { deepest: Rc::clone(&deepest) }));
    let mut exec = |e: &mut Engine, c: &Check| e.run(c);
    while s.execs < runs {
        match s.walk(&mut engine, &mut exec) {
            WalkOutcome::Done(new) => assert!(new.is_empty(), "the reference simulator has no finding"),
            other => panic!("walk stopped: {other:?}"),
        }
    }
    assert_eq!(s.pcs(), deepest.get(), "one PC per level reached");
    deepest.get()
}

#[test]
fn guided_walks_climb_a_path_that_blind_walks_with_the_same_budget_do_not() {
    const RUNS: u64 = 3000;
    for seed in [1, 2, 3] {
        let guided = session(true, seed, RUNS);
        let blind = session(false, seed, RUNS);
        assert_eq!(guided, PATH.len(), "seed {seed}: guided reached depth {guided} of {}", PATH.len());
        assert!(blind < 7, "seed {seed}: blind reached depth {blind}");
    }
}

/// One new "PC" for every step that ran, numbered across the whole session.
#[derive(Debug, Default)]
struct EveryStep {
    next: u64,
}

impl CoverageSource for EveryStep {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn attach(&mut self, _engine: &mut Engine) {}
    fn begin(&mut self) {}
    fn collect(&mut self, check: &Check, _run: &CheckRun) -> RunCoverage {
        let steps = (0..check.steps.len())
            .map(|_| {
                self.next += 1;
                vec![self.next]
            })
            .collect();
        RunCoverage { steps, ..RunCoverage::default() }
    }
}

#[test]
fn a_corpus_entry_keeps_only_the_steps_that_ran_and_loads_as_a_sequence() {
    // Arrange: a seed whose second step splices with a capture no step made and whose third
    // queries a data fd no step returned: the engine skips both as harness errors. Kept as
    // they were, the entry is refused by the sequence loader ("stream `s1` is used before any
    // step captures it"), so `--corpus` skipped it and `--sequence` could not replay it.
    let cfg = SimConfig { flags: MigFlags(7), ..SimConfig::v2() };
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions { max_stream: 1 << 20 });
    let opts = LiveOptions { seed: 1, guided: true, ..LiveOptions::default() };
    let mut s = Session::new(&mut engine, opts);
    s.set_coverage(&mut engine, Box::new(EveryStep::default()));
    // Built as the walker builds steps, from ops (the loader would refuse the splice).
    let ops = [
        "set_state: STOP",
        "write: {data: {zeros: 12}, fd: current, mutate: {splice: {other: s1, at: 3}}}",
        "precopy_info: {fd: previous}",
        "get_state: null",
    ];
    let steps: Vec<Step> = ops
        .iter()
        .map(|o| Step::new(serde_saphyr::from_str::<Op>(o).unwrap_or_else(|e| panic!("{o}: {e}"))).oracle())
        .collect();
    let mut exec = |e: &mut Engine, c: &Check| e.run(c);
    // Act
    let outcome = s.seed(&mut engine, &mut exec, "seed", steps);
    // Assert
    assert!(matches!(outcome, WalkOutcome::Done(_)), "{outcome:?}");
    let texts = s.corpus_texts();
    assert_eq!(texts.len(), 1, "{texts:?}");
    let check = vmc::sequence::load_str("c.yaml", texts[0].as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{}", texts[0]));
    let ops: Vec<String> = check.steps.iter().map(|st| format!("{:?}", st.op)).collect();
    assert_eq!(check.steps.len(), 2, "{ops:?}");
    assert!(
        matches!(check.steps[0].op, Op::SetState(_)) && matches!(check.steps[1].op, Op::GetState),
        "{ops:?}"
    );
}

/// Loads every sequence of `dir` (relative to the workspace) as `fuzz --corpus` would, then
/// runs each on the reference simulator (three devices): none may be refused or end in a
/// harness error.
fn assert_corpus_loads_and_runs(dir: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("the corpus directory").flatten().map(|e| e.path()).collect();
    files.sort();
    // Act
    let (seeds, errors) = vmc::fuzz::corpus::load(&dir);
    // Assert
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        !seeds.is_empty() && seeds.len() == files.len(),
        "{} of {} files loaded",
        seeds.len(),
        files.len()
    );
    for path in files {
        let name = path.display().to_string();
        let check = vmc::sequence::load_str(&name, &std::fs::read(&path).expect("readable"))
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = SimConfig { flags: MigFlags(7), ..SimConfig::v2() };
        let devices = (0..3).map(|_| cfg.clone().build()).collect();
        let r = Engine::new(devices, EngineOptions::default()).run(&check);
        assert!(r.end.error().is_none(), "{name}: {:?}", r.end);
    }
}

#[test]
fn every_entry_of_the_checked_in_mtty_corpus_loads_and_runs_on_the_reference_simulator() {
    // Arrange: CI's guided run starts warm from fuzz/corpus/live-mtty/; an entry the loader
    // refuses is skipped there with a message only, so a format change would silently cost
    // the run its start.
    assert_corpus_loads_and_runs("fuzz/corpus/live-mtty");
}

#[test]
fn every_sequence_of_the_kcov_blocks_bench_loads_and_runs_on_the_reference_simulator() {
    // Arrange: bench/kcov-blocks.sh runs each as a one-entry corpus, where a refused file is
    // only a message and its session would show the blocks of `get_state` walks alone.
    assert_corpus_loads_and_runs("bench/kcov-blocks");
}

/// The reference simulator with fault injection: a SET to STOP_COPY makes [`ALLOCATIONS`]
/// injectable calls (a driver building its migration file), so a fault armed at 1 to
/// ALLOCATIONS fails that SET with ENOMEM (the state unchanged) and is reported as injected.
const ALLOCATIONS: u32 = 10;

struct FaultySim {
    inner: Box<dyn Device>,
    armed: Option<u32>,
    fired: bool,
}

impl Device for FaultySim {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn feature(&mut self, argsz: u32, flags: u32, payload: &mut [u8]) -> DevResult<()> {
        let set_stop_copy = flags == FEATURE_SET | FEATURE_MIG_DEVICE_STATE
            && payload.get(..4) == Some(&MigState::StopCopy.raw().to_le_bytes()[..]);
        if set_stop_copy && self.armed.is_some_and(|n| n <= ALLOCATIONS) {
            self.armed = None;
            self.fired = true;
            return Err(Errno::ENOMEM);
        }
        self.inner.feature(argsz, flags, payload)
    }
    fn dma_log_start(&mut self, page_size: u64, ranges: &[(u64, u64)]) -> DevResult<u64> {
        self.inner.dma_log_start(page_size, ranges)
    }
    fn dma_log_report(
        &mut self,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &mut [u64],
    ) -> DevResult<()> {
        self.inner.dma_log_report(iova, length, page_size, bitmap)
    }
    fn reset(&mut self) -> DevResult<()> {
        self.inner.reset()
    }
    fn data_read(&mut self, fd: i32, buf: &mut [u8]) -> DevResult<usize> {
        self.inner.data_read(fd, buf)
    }
    fn data_pread(&mut self, fd: i32, buf: &mut [u8], offset: u64) -> DevResult<usize> {
        self.inner.data_pread(fd, buf, offset)
    }
    fn data_write(&mut self, fd: i32, buf: &[u8]) -> DevResult<usize> {
        self.inner.data_write(fd, buf)
    }
    fn data_pwrite(&mut self, fd: i32, buf: &[u8], offset: u64) -> DevResult<usize> {
        self.inner.data_pwrite(fd, buf, offset)
    }
    fn data_poll(&mut self, fd: i32, timeout_ms: i32) -> DevResult<i16> {
        self.inner.data_poll(fd, timeout_ms)
    }
    fn data_ioctl(&mut self, fd: i32, cmd: u64, arg: &mut [u8]) -> DevResult<i32> {
        self.inner.data_ioctl(fd, cmd, arg)
    }
    fn data_fd_flags(&mut self, fd: i32) -> DevResult<FdFlags> {
        self.inner.data_fd_flags(fd)
    }
    fn data_close(&mut self, fd: i32) -> DevResult<()> {
        self.inner.data_close(fd)
    }
    fn inject_fault(&mut self, nth: u32) -> DevResult<()> {
        self.armed = (nth > 0).then_some(nth);
        self.fired = false;
        Ok(())
    }
    fn fault_injected(&mut self) -> DevResult<bool> {
        self.armed = None;
        Ok(std::mem::take(&mut self.fired))
    }
    fn close(&mut self) -> DevResult<()> {
        self.inner.close()
    }
    fn reopen(&mut self) -> DevResult<()> {
        self.inner.reopen()
    }
    fn device_info(&mut self) -> DevResult<DevInfoRaw> {
        self.inner.device_info()
    }
    fn region_info(&mut self, index: u32) -> DevResult<RegionInfo> {
        self.inner.region_info(index)
    }
    fn region_read(&mut self, index: u32, offset: u64, buf: &mut [u8], via: Access) -> DevResult<usize> {
        self.inner.region_read(index, offset, buf, via)
    }
    fn region_write(&mut self, index: u32, offset: u64, buf: &[u8], via: Access) -> DevResult<usize> {
        self.inner.region_write(index, offset, buf, via)
    }
    fn irq_info(&mut self, index: u32) -> DevResult<IrqInfo> {
        self.inner.irq_info(index)
    }
    fn set_irqs(
        &mut self,
        index: u32,
        action: IrqAction,
        start: u32,
        count: u32,
        data: IrqData,
    ) -> DevResult<()> {
        self.inner.set_irqs(index, action, start, count, data)
    }
    fn irq_counts(&mut self) -> IrqCounts {
        self.inner.irq_counts()
    }
    fn wait(&mut self, ms: u64) {
        self.inner.wait(ms);
    }
    fn debugfs_state(&mut self) -> Option<DevResult<String>> {
        self.inner.debugfs_state()
    }
    fn restore(&mut self) -> DevResult<()> {
        self.inner.restore()
    }
}

/// One "PC" per SET target the device reached, and one per allocation whose injected failure
/// a SET ran into (its own error path).
#[derive(Debug, Default)]
struct FaultPaths;

impl CoverageSource for FaultPaths {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn attach(&mut self, _engine: &mut Engine) {}
    fn begin(&mut self) {}
    fn collect(&mut self, check: &Check, run: &CheckRun) -> RunCoverage {
        let mut steps: Vec<Vec<u64>> = vec![Vec::new(); check.steps.len()];
        for rec in &run.trace {
            let Some(step) = check.steps.get(rec.step) else { continue };
            let Op::SetState(arg) = &step.op else { continue };
            if rec.obs.fault == Some(true) {
                steps[rec.step].push(0x2000 + u64::from(step.fail_nth.unwrap_or(0)));
            } else if rec.obs.errno.is_none() {
                steps[rec.step].push(0x1000 + u64::from(arg.raw()));
            }
        }
        RunCoverage { steps, ..RunCoverage::default() }
    }
}

/// Runs `runs` walks on [`FaultySim`] and returns the allocations whose failure was reached.
fn fault_session(guided: bool, seed: u64, runs: u64) -> (BTreeSet<u64>, u64) {
    let cfg = SimConfig { flags: MigFlags::STOP_COPY, ..SimConfig::v2() };
    let dev = FaultySim { inner: cfg.build(), armed: None, fired: false };
    let mut engine = Engine::new(vec![Box::new(dev)], EngineOptions { max_stream: 1 << 20 });
    let opts = LiveOptions {
        seed,
        guided,
        fault_sweep: true,
        kinds: Some(["set_state", "get_state", "read", "reset", "fail_nth"].map(String::from).to_vec()),
        ..LiveOptions::default()
    };
    let mut s = Session::new(&mut engine, opts);
    assert!(s.kinds().contains(&"fail_nth"), "the device can inject faults: {:?}", s.kinds());
    s.set_coverage(&mut engine, Box::new(FaultPaths));
    let mut exec = |e: &mut Engine, c: &Check| e.run(c);
    while s.execs < runs {
        match s.walk(&mut engine, &mut exec) {
            WalkOutcome::Done(new) => {
                assert!(new.is_empty(), "{:?}", s.findings.iter().map(|f| &f.record).collect::<Vec<_>>());
            }
            other => panic!("walk stopped: {other:?}"),
        }
    }
    let record = s.coverage_record().expect("coverage");
    let faults = record.pc_values().into_iter().filter(|pc| *pc >= 0x2000).map(|pc| pc - 0x2000).collect();
    (faults, s.sweeps.runs)
}

#[test]
fn a_guided_session_fails_each_allocation_of_a_new_code_path_in_turn_which_blind_walks_do_not() {
    const RUNS: u64 = 300;
    let all: BTreeSet<u64> = (1..=u64::from(ALLOCATIONS)).collect();
    for seed in [1, 2, 3] {
        // Act
        let (guided, sweeps) = fault_session(true, seed, RUNS);
        let (blind, blind_sweeps) = fault_session(false, seed, RUNS);
        // Assert: the guided session swept the SET to STOP_COPY through every allocation;
        // fresh walks inject into 1, 2, 3, 4, 6, 8 or 12 only.
        assert_eq!(
            guided, all,
            "seed {seed}: guided reached the failures of allocations {guided:?} ({sweeps} sweep runs)"
        );
        assert!(sweeps > u64::from(ALLOCATIONS), "seed {seed}: {sweeps} sweep runs");
        assert_eq!(blind_sweeps, 0, "blind sessions do not sweep");
        assert!(blind.iter().all(|n| [1, 2, 3, 4, 6, 8].contains(n)), "seed {seed}: blind {blind:?}");
    }
}

/// One "PC" per SET target the device reached, one for a write that brought a migration file
/// past its first [`HEADER`] bytes, and one for a write into a file that already had them (a
/// second write after the header: what `mtty_resume_write` takes a branch of its own for).
/// Files are told apart by the SETs that returned a data fd (`current` is the last one,
/// `previous` the one before).
const HEADER: u64 = 24;
const FIRST_PAST_HEADER: u64 = 0x3001;
const AFTER_HEADER: u64 = 0x3002;

#[derive(Debug, Default)]
struct ResumeWrites;

impl CoverageSource for ResumeWrites {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn attach(&mut self, _engine: &mut Engine) {}
    fn begin(&mut self) {}
    fn collect(&mut self, check: &Check, run: &CheckRun) -> RunCoverage {
        let mut steps: Vec<Vec<u64>> = vec![Vec::new(); check.steps.len()];
        // Bytes written into each file, in the order the SETs returned them.
        let mut files: Vec<u64> = Vec::new();
        for rec in &run.trace {
            let Some(step) = check.steps.get(rec.step) else { continue };
            if rec.device != "A" {
                continue;
            }
            match &step.op {
                Op::SetState(arg) if rec.obs.errno.is_none() => {
                    steps[rec.step].push(0x1000 + u64::from(arg.raw()));
                    if rec.obs.data_fd.is_some_and(|fd| fd >= 0) {
                        files.push(0);
                    }
                }
                Op::Write(w) => {
                    let back = match w.fd {
                        vmc::op::FdRef::Current => 1,
                        vmc::op::FdRef::Previous => 2,
                        vmc::op::FdRef::Named(_) => continue,
                    };
                    let Some(at) = files.len().checked_sub(back) else { continue };
                    let moved = rec.obs.bytes.unwrap_or(0);
                    let before = files[at];
                    if moved > 0 && before >= HEADER {
                        steps[rec.step].push(AFTER_HEADER);
                    } else if before + moved >= HEADER {
                        steps[rec.step].push(FIRST_PAST_HEADER);
                    }
                    files[at] += moved;
                }
                _ => {}
            }
        }
        RunCoverage { steps, ..RunCoverage::default() }
    }
}

/// Runs guided walks on the reference simulator (`flags`, walks of `kinds`, coverage from
/// `source`) until `first` is reached, then `after` more; returns whether `target` was reached
/// by then.
fn reached_within(
    flags: MigFlags,
    kinds: &[&str],
    source: Box<dyn CoverageSource>,
    neighbours: bool,
    seed: u64,
    (first, target, after): (u64, u64, u64),
) -> bool {
    let cfg = SimConfig { flags, ..SimConfig::v2() };
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions { max_stream: 1 << 20 });
    let opts = LiveOptions {
        seed,
        neighbours,
        kinds: Some(kinds.iter().map(|k| k.to_string()).collect()),
        ..LiveOptions::default()
    };
    let mut s = Session::new(&mut engine, opts);
    s.set_coverage(&mut engine, source);
    let mut exec = |e: &mut Engine, c: &Check| e.run(c);
    let reached = |s: &Session, pc: u64| s.coverage_record().is_some_and(|r| r.pc_values().contains(&pc));
    let mut deadline = None;
    while deadline.is_none_or(|d| s.execs < d) && s.execs < 5000 {
        match s.walk(&mut engine, &mut exec) {
            WalkOutcome::Done(new) => assert!(new.is_empty(), "the reference simulator has no finding"),
            other => panic!("walk stopped: {other:?}"),
        }
        if deadline.is_none() && reached(&s, first) {
            deadline = Some(s.execs + after);
        }
        if reached(&s, target) {
            return true;
        }
    }
    assert!(deadline.is_some(), "seed {seed}: PC {first:#x} not reached in 5000 runs");
    false
}

/// Whether a write into a file after its header follows, within `after` runs, the first
/// write that brought a file past it.
fn resume_session(neighbours: bool, seed: u64, after: u64) -> bool {
    let kinds = ["set_state", "get_state", "read", "write"];
    let pcs = (FIRST_PAST_HEADER, AFTER_HEADER, after);
    reached_within(MigFlags::STOP_COPY, &kinds, Box::new(ResumeWrites), neighbours, seed, pcs)
}

#[test]
fn a_guided_session_writes_again_into_a_file_whose_first_write_was_new_which_it_does_not_without_neighbour_runs()
 {
    // Within four runs of the first write past a file's header, the neighbour run "again"
    // (the prefix up to that write, and the write once more) writes into the file after its
    // header; without neighbour runs, a mutant or a fresh walk must happen to make two writes
    // into one file.
    let seeds = 1..=6;
    let with: Vec<bool> = seeds.clone().map(|seed| resume_session(true, seed, 4)).collect();
    let without: Vec<bool> = seeds.map(|seed| resume_session(false, seed, 4)).collect();
    assert!(with.iter().all(|r| *r), "with neighbour runs: {with:?}");
    assert!(without.iter().filter(|r| **r).count() <= 2, "without neighbour runs: {without:?}");
}

/// One "PC" per SET target the device reached, one for a PRECOPY_INFO on the file of the
/// device's current PRE_COPY, and one for a PRECOPY_INFO on the file of an earlier migration
/// while the device is in PRE_COPY again (what `mtty_precopy_ioctl` tests `migf->disabled`
/// for).
const INFO_CURRENT: u64 = 0x4001;
const INFO_STALE: u64 = 0x4002;

#[derive(Debug, Default)]
struct StaleCalls;

impl CoverageSource for StaleCalls {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn attach(&mut self, _engine: &mut Engine) {}
    fn begin(&mut self) {}
    fn collect(&mut self, check: &Check, run: &CheckRun) -> RunCoverage {
        let mut steps: Vec<Vec<u64>> = vec![Vec::new(); check.steps.len()];
        // Files opened so far, and the state the device is in.
        let mut files = 0usize;
        let mut state = Some(MigState::Running);
        for rec in &run.trace {
            let Some(step) = check.steps.get(rec.step) else { continue };
            if rec.device != "A" {
                continue;
            }
            match &step.op {
                Op::SetState(arg) => {
                    if rec.obs.errno.is_none() {
                        steps[rec.step].push(0x1000 + u64::from(arg.raw()));
                        files += usize::from(rec.obs.data_fd.is_some_and(|fd| fd >= 0));
                    }
                    state = rec.obs.state.and_then(MigState::from_raw);
                }
                Op::PrecopyInfo(p) if state == Some(MigState::PreCopy) => {
                    let pc = match p.fd {
                        vmc::op::FdRef::Current if files >= 1 => INFO_CURRENT,
                        vmc::op::FdRef::Previous if files >= 2 => INFO_STALE,
                        _ => continue,
                    };
                    steps[rec.step].push(pc);
                }
                _ => {}
            }
        }
        RunCoverage { steps, ..RunCoverage::default() }
    }
}

/// Whether a PRECOPY_INFO on an earlier file in PRE_COPY follows, within `after` runs, the
/// first one on the file of the current PRE_COPY.
fn stale_session(neighbours: bool, seed: u64, after: u64) -> bool {
    let flags = MigFlags(MigFlags::STOP_COPY.0 | MigFlags::PRE_COPY.0);
    let kinds = ["set_state", "get_state", "precopy_info"];
    reached_within(flags, &kinds, Box::new(StaleCalls), neighbours, seed, (INFO_CURRENT, INFO_STALE, after))
}

#[test]
fn a_guided_session_calls_the_disabled_file_of_an_earlier_pre_copy_which_it_does_not_without_neighbour_runs()
{
    // Within eight runs of the first PRECOPY_INFO in PRE_COPY, the neighbour run "stale"
    // (back to RUNNING, PRE_COPY again, the call on `previous`) makes it on the first file.
    let seeds = 1..=6;
    let with: Vec<bool> = seeds.clone().map(|seed| stale_session(true, seed, 8)).collect();
    let without: Vec<bool> = seeds.map(|seed| stale_session(false, seed, 8)).collect();
    assert!(with.iter().all(|r| *r), "with neighbour runs: {with:?}");
    assert!(without.iter().filter(|r| **r).count() <= 2, "without neighbour runs: {without:?}");
}
