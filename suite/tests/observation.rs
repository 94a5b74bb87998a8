//! Checks that could not observe what they are about are UNSUPPORTED, never PASS.

use vmc::check::Check;
use vmc::checks::{Kind, generated_for};
use vmc::device::sim::{Defect, SimConfig};
use vmc::engine::{Engine, EngineOptions};
use vmc::op::Op;
use vmc::outcome::{Outcome, classify};

fn no_interrupts_check(kind: Kind) -> Check {
    generated_for(kind)
        .into_iter()
        .find(|c| c.id == "stop.no_interrupts.stop")
        .expect("stop.no_interrupts.stop exists")
}

fn outcome(cfg: &SimConfig, check: &Check) -> (Outcome, Option<String>) {
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions::default());
    classify(&engine.run(check), false)
}

#[test]
fn a_stopped_device_that_stays_silent_after_a_working_stimulus_passes() {
    let check = no_interrupts_check(Kind::Sim);
    assert_eq!(outcome(&SimConfig::v2(), &check).0, Outcome::Pass);
}

#[test]
fn a_device_raising_interrupts_while_stopped_fails_v2_arc_stop_001() {
    let check = no_interrupts_check(Kind::Sim);
    assert_eq!(
        outcome(&SimConfig { defects: vec![Defect::IrqInStop], ..SimConfig::v2() }, &check).0,
        Outcome::Fail
    );
}

#[test]
fn without_a_stimulus_that_raises_interrupts_the_check_is_unsupported_not_pass() {
    // Arrange: the same check with the stimulus (the BAR0 write enabling interrupts) removed.
    let mut check = no_interrupts_check(Kind::Sim);
    check.steps.retain(|s| !matches!(s.op, Op::RegionWrite(_)));
    // Act
    let (o, why) = outcome(&SimConfig::v2(), &check);
    // Assert
    assert_eq!(o, Outcome::Unsupported);
    assert!(why.unwrap_or_default().contains("raised no interrupt while RUNNING"));
}

#[test]
fn on_mtty_the_check_says_why_it_cannot_observe() {
    let check = no_interrupts_check(Kind::Mtty);
    let why = check.requires.unavailable.expect("mtty has no asynchronous interrupt source");
    assert!(why.contains("mtty_trigger_interrupt"), "{why}");
}
