//! Coverage feedback makes the live fuzzer reach what blind walks do not: on the reference
//! simulator, a fake coverage source reports one new "PC" per state of a secret path through
//! the FSM that the device walked through in order (the states it reported after each SET,
//! from RUNNING). Kept walks are extended by mutation, so a guided session climbs the path;
//! blind walks must draw the whole path at once. Same seed, same number of runs.

use std::cell::Cell;
use std::rc::Rc;

use vmc::check::{Check, Step};
use vmc::device::sim::SimConfig;
use vmc::engine::{CheckRun, Engine, EngineOptions};
use vmc::fuzz::coverage::{CoverageSource, RunCoverage};
use vmc::fuzz::live::{LiveOptions, Session, WalkOutcome};
use vmc::op::Op;
use vmc::state::{MigFlags, MigState};

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

#[test]
fn every_entry_of_the_checked_in_mtty_corpus_loads_and_runs_on_the_reference_simulator() {
    // Arrange: CI's guided run starts warm from fuzz/corpus/live-mtty/; an entry the loader
    // refuses is skipped there with a message only, so a format change would silently cost
    // the run its start.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/live-mtty");
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
