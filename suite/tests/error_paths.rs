//! The live fuzzer's error-path steps on the reference simulator: a SET racing a read of the
//! data fd (`race_set_read`) and fault injection (`fail_nth`). On the simulator the race runs
//! its two halves one after the other and no fault can be injected; what is checked here is
//! what the engine and the oracle make of them (the kernel side runs in the VM: docs/fuzzing.md).

use vmc::check::Check;
use vmc::device::sim::SimConfig;
use vmc::engine::{CheckRun, Engine, EngineOptions};

fn fixture(steps: &str) -> Check {
    let text = format!(
        "id: test.error_paths.t\ntitle: t\nrequires: {{api: v2, flags: [stop_copy, p2p, pre_copy]}}\nsteps:\n{steps}"
    );
    vmc::sequence::load_str("t.yaml", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn run(check: &Check) -> CheckRun {
    let cfg = SimConfig { flags: vmc::state::MigFlags(7), ..SimConfig::v2() };
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions::default());
    engine.keep_trace = true;
    engine.run(check)
}

#[test]
fn a_set_racing_a_read_is_not_judged_and_the_oracle_learns_the_state_again() {
    // Arrange: STOP_COPY, then RUNNING racing a read of the stream, then PRE_COPY. From
    // RUNNING, PRE_COPY is a valid arc; had the oracle kept STOP_COPY it would call the
    // successful SET PRE_COPY a broken V2-STATE-007.
    let check = fixture(
        "  - set_state: STOP_COPY\n    expect: oracle\n  - race_set_read: {state: RUNNING}\n    expect: oracle\n  - set_state: PRE_COPY\n    expect: oracle\n  - get_state\n",
    );
    // Act
    let r = run(&check);
    // Assert
    assert!(r.end.error().is_none(), "{:?}", r.end);
    assert!(r.findings.is_empty(), "{:?}", r.findings.iter().map(|f| &f.violation).collect::<Vec<_>>());
    let race = &r.trace[1];
    assert!(race.obs.errno.is_none(), "{}", race.obs.summary());
    assert!(race.obs.bytes.unwrap_or(0) > 0, "the racing reader read the stream: {}", race.obs.summary());
    assert_eq!(race.obs.state, Some(vmc::state::MigState::Running.raw()));
    assert_eq!(r.trace[3].obs.state, Some(vmc::state::MigState::PreCopy.raw()));
}

#[test]
fn a_capture_read_after_a_racing_reader_starts_where_the_reader_stopped() {
    // Arrange: the racing reader reads the PRE_COPY stream through its own dup of the fd (one
    // open file, one position); a capture read afterwards is the middle of the stream, and
    // the oracle must not take it for the stream's first bytes (mtty refuses such bytes with
    // EFAULT; taken for a prefix of a valid stream, that was a false V2-FD-001 on 7.2).
    let check = fixture(
        "  - set_state: PRE_COPY_P2P\n    expect: oracle\n  - race_set_read: {state: STOP_COPY}\n    expect: oracle\n  - read: {capture: s0, chunk: 24, once: true}\n    expect: oracle\n",
    );
    let cfg = SimConfig { flags: vmc::state::MigFlags(7), ..SimConfig::v2() };
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions::default());
    engine.keep_trace = true;
    // Act
    let r = engine.run(&check);
    // Assert
    assert!(r.end.error().is_none() && r.findings.is_empty(), "{:?} {:?}", r.end, r.findings);
    let raced = r.trace[1].obs.bytes.expect("the racing reader's byte count");
    assert!(raced > 0, "{}", r.trace[1].obs.summary());
    match &engine.capture("s0").expect("capture s0").provenance {
        vmc::engine::capture::Provenance::Stream { start, end, .. } => {
            assert_eq!((*start, *end), (raced, raced + 24));
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn without_the_race_the_same_successful_set_is_a_finding() {
    // The control for the test above: a plain read keeps the oracle in STOP_COPY, where
    // PRE_COPY is not reachable, so the simulator's success is judged.
    let check = fixture(
        "  - set_state: STOP_COPY\n    expect: oracle\n  - read: {}\n    expect: oracle\n  - set_state: PRE_COPY\n    expect: oracle\n",
    );
    let r = run(&check);
    assert!(r.findings.is_empty(), "the simulator refuses STOP_COPY -> PRE_COPY");
    assert!(
        r.trace[2].obs.errno.is_some(),
        "SET PRE_COPY from STOP_COPY fails: {}",
        r.trace[2].obs.summary()
    );
}

#[test]
fn a_set_racing_a_reset_is_not_judged_and_the_device_ends_running() {
    // Arrange: PRE_COPY with its data fd, then STOP_COPY racing a reset. The simulator runs the
    // SET, then the reset: the device ends in RUNNING with no data fd, which the oracle would
    // call a broken SET (V2-STATE-*) and a stale saving fd had it followed the SET alone.
    let check = fixture(
        "  - set_state: PRE_COPY\n    expect: oracle\n  - race_reset: {state: STOP_COPY, delay_us: 10}\n    expect: oracle\n  - set_state: PRE_COPY\n    expect: oracle\n  - read: {}\n    expect: oracle\n",
    );
    // Act
    let r = run(&check);
    // Assert
    assert!(r.end.error().is_none(), "{:?}", r.end);
    assert!(r.findings.is_empty(), "{:?}", r.findings.iter().map(|f| &f.violation).collect::<Vec<_>>());
    let race = &r.trace[1];
    assert!(race.obs.errno.is_none(), "{}", race.obs.summary());
    assert_eq!(race.obs.state, Some(vmc::state::MigState::Running.raw()), "{}", race.obs.summary());
    assert!(
        race.obs.notes.iter().any(|n| n.contains("1 VFIO_DEVICE_RESET(s) raced the SET")),
        "{:?}",
        race.obs.notes
    );
    assert_eq!(r.trace[2].obs.state, Some(vmc::state::MigState::PreCopy.raw()));
}

#[test]
fn race_reset_round_trips_through_yaml_and_its_loader_names_what_is_wrong() {
    let check = fixture("  - race_reset: {state: STOP_COPY, delay_us: 100}\n");
    let text = vmc::engine::render_op(&check.steps[0].op);
    assert!(text.contains("race_reset") && text.contains("STOP_COPY") && text.contains("100"), "{text}");
    let load = |steps: &str| {
        let t = format!("id: t.t.t\ntitle: t\nrequires: {{api: v2}}\nsteps:\n{steps}");
        vmc::sequence::load_str("t.yaml", t.as_bytes()).map(|_| ())
    };
    let e = load("  - race_reset: {state: STOP_COPY, count: 3}\n").expect_err("no field count");
    assert!(e.to_string().contains("t.yaml:5"), "{e}");
    let e = load("  - race_reset: {during: precopy_info, fd: save}\n").expect_err("fd save is not defined");
    assert!(e.to_string().contains("`save`"), "{e}");
    load("  - race_reset: {during: get_state, fd: save}\n").expect("the fd of a raced GET is not used");
    let e = load("  - race_reset: {state: STOP_COPY, calls: 8}\n").expect_err("a SET is made once");
    assert!(e.to_string().contains("t.yaml:5") && e.to_string().contains("race_reset.calls: 8"), "{e}");
    let e = load("  - race_reset: {during: get_state, calls: 65}\n").expect_err("at most 64 calls");
    assert!(e.to_string().contains("race_reset.calls: 65 is out of range 1 to 64"), "{e}");
    let e = load("  - race_reset: {during: get_state, calls: 0}\n").expect_err("at least one call");
    assert!(e.to_string().contains("race_reset.calls: 0 is out of range 1 to 64"), "{e}");
    load("  - race_reset: {during: get_state, calls: 64}\n").expect("64 GETs");
}

#[test]
fn a_repeated_precopy_info_racing_resets_makes_every_call_and_counts_the_failed_ones() {
    // Arrange: the PRE_COPY fd carried into STOP_COPY, where PRECOPY_INFO fails (EINVAL):
    // each of the 8 calls fails, so the count shows that 8 were made; then the round trip.
    let check = fixture(
        "  - set_state: PRE_COPY\n    as: save\n  - set_state: STOP_COPY\n  - race_reset: {during: precopy_info, fd: save, calls: 8}\n",
    );
    let text = vmc::engine::render_op(&check.steps[2].op);
    assert!(text.contains("calls: 8"), "{text}");
    // Act
    let r = run(&check);
    // Assert
    assert!(r.end.error().is_none(), "{:?}", r.end);
    let race = &r.trace[2];
    assert!(race.obs.errno.is_some(), "PRECOPY_INFO in STOP_COPY fails: {}", race.obs.summary());
    assert!(
        race.obs
            .notes
            .iter()
            .any(|n| n.contains("1 VFIO_DEVICE_RESET(s) raced 8 PRECOPY_INFO calls (8 failed")),
        "{:?}",
        race.obs.notes
    );
    assert_eq!(race.obs.state, Some(vmc::state::MigState::Running.raw()), "{}", race.obs.summary());
}

#[test]
fn a_get_or_precopy_info_racing_a_reset_leaves_the_oracle_expecting_running() {
    // Arrange: PRE_COPY, then PRECOPY_INFO racing a reset (the simulator: the ioctl, then the
    // reset), then GET racing a reset, then PRE_COPY again, which is an arc only from RUNNING.
    let check = fixture(
        "  - set_state: PRE_COPY\n    expect: oracle\n  - race_reset: {during: precopy_info}\n    expect: oracle\n  - race_reset: {during: get_state}\n    expect: oracle\n  - set_state: PRE_COPY\n    expect: oracle\n",
    );
    // Act
    let r = run(&check);
    // Assert
    assert!(r.end.error().is_none(), "{:?}", r.end);
    assert!(r.findings.is_empty(), "{:?}", r.findings.iter().map(|f| &f.violation).collect::<Vec<_>>());
    assert!(r.trace[1].obs.errno.is_none(), "PRECOPY_INFO on the live fd: {}", r.trace[1].obs.summary());
    assert!(
        r.trace[1].obs.notes.iter().any(|n| n.contains("raced the PRECOPY_INFO")),
        "{:?}",
        r.trace[1].obs.notes
    );
    assert_eq!(r.trace[2].obs.state, Some(vmc::state::MigState::Running.raw()));
    assert_eq!(
        r.trace[3].obs.state,
        Some(vmc::state::MigState::PreCopy.raw()),
        "{}",
        r.trace[3].obs.summary()
    );
}

#[test]
fn fail_nth_loads_from_yaml_and_on_a_simulator_the_step_runs_unarmed_and_judged() {
    // Arrange
    let check = fixture(
        "  - set_state: STOP\n    fail_nth: 3\n    expect: oracle\n  - set_state: 9\n    fail_nth: 1\n    expect: oracle\n",
    );
    assert_eq!(check.steps[0].fail_nth, Some(3));
    // Act
    let r = run(&check);
    // Assert: the simulator cannot inject faults: said in the notes, and the steps are judged
    // as any other (the raw state 9 is refused).
    assert!(r.end.error().is_none(), "{:?}", r.end);
    assert!(r.notes.iter().any(|n| n.contains("fail_nth 3 not armed")), "{:?}", r.notes);
    assert!(r.trace[1].obs.errno.is_some());
    assert!(r.findings.is_empty());
}

#[test]
fn a_reproducer_keeps_the_fail_nth_of_its_steps() {
    let check = fixture("  - set_state: STOP\n    fail_nth: 4\n    expect: oracle\n");
    let seq = vmc::fuzz::yaml::YamlSequence {
        comments: Vec::new(),
        id: "fuzz.live.t".into(),
        title: "t".into(),
        api: vmc::device::MigrationApi::V2,
        flags: vmc::state::MigFlags(7),
        devices: Vec::new(),
        steps: vec![vmc::fuzz::yaml::YamlStep {
            op: check.steps[0].op.clone(),
            name: None,
            device: None,
            fail_nth: check.steps[0].fail_nth,
        }],
    };
    let text = seq.render();
    assert!(text.contains("fail_nth: 4"), "{text}");
    let back = vmc::sequence::load_str("r.yaml", text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.steps[0].fail_nth, Some(4));
}

#[test]
fn a_capture_joined_from_reads_of_two_saving_streams_is_loaded_without_a_finding() {
    // Arrange (a cargo-fuzz `fsm_v2` finding, minimised): s0 holds the first 24 bytes of one
    // STOP_COPY stream and, appended, the rest of a second one read from the same offset.
    // The device did not change between them, so s0 is a valid stream byte for byte and the
    // reference device loads it; the oracle once called it "mixes several saving streams",
    // certainly invalid, and the successful SET a V2-ARC-RES-001 FAIL.
    let check = fixture(
        "  - set_state: STOP_COPY\n    expect: oracle\n  - read: {capture: s0, chunk: 24, once: true}\n    expect: oracle\n  - set_state: STOP\n    expect: oracle\n  - set_state: STOP_COPY\n    expect: oracle\n  - read: {chunk: 24, once: true}\n    expect: oracle\n  - read: {capture: s0, append: true}\n    expect: oracle\n  - set_state: STOP\n    expect: oracle\n  - set_state: RESUMING\n    expect: oracle\n  - write: {data: {stream: s0}}\n    expect: oracle\n  - set_state: STOP\n    expect: oracle\n",
    );
    // Act
    let r = run(&check);
    // Assert: the join was written whole, the load succeeded, and nothing was judged broken.
    assert!(r.end.error().is_none(), "{:?}", r.end);
    let total = r.trace[1].obs.bytes.unwrap_or(0) + r.trace[5].obs.bytes.unwrap_or(0);
    assert_eq!(r.trace[8].obs.bytes, Some(total), "{}", r.trace[8].obs.summary());
    assert!(r.trace[9].obs.errno.is_none(), "{}", r.trace[9].obs.summary());
    assert!(r.findings.is_empty(), "{:?}", r.findings.iter().map(|f| &f.violation).collect::<Vec<_>>());
}

#[test]
fn fuzz_cases_bound_race_reset_calls_to_what_the_loader_takes_so_they_stay_reproducers() {
    // Arrange: raw fuzz bytes give any u8: 0 calls of a GET, 200 of a SET.
    let race = |during, calls| {
        vmc::op::Op::RaceReset(vmc::op::RaceResetArgs {
            during,
            state: vmc::state::StateArg::Named(vmc::state::MigState::Running),
            fd: vmc::op::FdRef::Current,
            delay_us: 0,
            calls,
        })
    };
    let mut case = vmc::fuzz::FuzzCase {
        api: vmc::device::MigrationApi::V2,
        flags: vmc::state::MigFlags(7),
        dma: false,
        state_size: 64,
        ops: vec![race(vmc::op::RaceCall::GetState, 0), race(vmc::op::RaceCall::SetState, 200)],
        names: vec![None, None],
        defects: Vec::new(),
    };
    // Act
    case.normalize();
    // Assert: both kept (dropped, they would not be in the reproducer), each within the limits.
    let calls: Vec<u8> = case
        .ops
        .iter()
        .filter_map(|op| match op {
            vmc::op::Op::RaceReset(a) => Some(a.calls),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2, "{:?}", case.ops);
    assert!((1..=64).contains(&calls[0]), "{calls:?}");
    assert_eq!(calls[1], 1, "a SET is made once: {calls:?}");
    for op in &case.ops {
        assert_eq!(op.check_limits(), Ok(()), "{op:?}");
    }
}
