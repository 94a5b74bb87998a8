//! Engine heartbeats: a deliberate `wait` step keeps the runner's watchdog fed, so a wait
//! longer than `--timeout` is not reported as a device that hangs.

use vmc::device::sim::SimConfig;
use vmc::engine::{Engine, EngineOptions};
use vmc::outcome::{Outcome, classify};

#[test]
fn a_long_wait_step_keeps_the_watchdog_fed_between_slices() {
    // Arrange: a check that waits 1 s, and a progress callback counting heartbeats
    let check = vmc::sequence::load_str(
        "wait.yaml",
        b"id: test.watchdog.wait\ntitle: t\nrequires: {api: v2}\nsteps:\n  - wait: {ms: 1000}\n",
    )
    .expect("fixture");
    let mut engine = Engine::new(vec![SimConfig::v2().build()], EngineOptions::default());
    let beats = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&beats);
    engine.progress = Some(Box::new(move |_, op: &str| {
        if op.is_empty() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }));
    // Act
    let run = engine.run(&check);
    // Assert: a heartbeat between each 200 ms slice, so no --timeout (>= 1 s) fires on a wait
    assert_eq!(classify(&run, false).0, Outcome::Pass);
    assert_eq!(beats.load(std::sync::atomic::Ordering::SeqCst), 4);
}
