//! The arc family on the simulator: clean on reference devices, FAIL on the clause of a
//! defect that breaks an arc.

use vmc::checks::arcs;
use vmc::device::sim::{Defect, SimConfig};
use vmc::engine::{Engine, EngineOptions};
use vmc::outcome::{Outcome, classify};
use vmc::state::MigFlags;

fn run_family(cfg: &SimConfig) -> Vec<(String, Outcome, Vec<String>)> {
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions::default());
    arcs::checks()
        .iter()
        .map(|c| {
            let run = engine.run(c);
            let clauses = run
                .findings
                .iter()
                .flat_map(|f| f.violation.clauses.iter().map(ToString::to_string))
                .collect();
            let (o, why) = classify(&run, false);
            if o == Outcome::Error {
                panic!("{}: {why:?}", c.id);
            }
            (c.id.clone(), o, clauses)
        })
        .collect()
}

#[test]
fn reference_sim_passes_every_arc_for_all_four_flag_sets() {
    for flags in MigFlags::DEFINED_SETS {
        let cfg = SimConfig { flags, ..SimConfig::v2() };
        let results = run_family(&cfg);
        let bad: Vec<_> =
            results.iter().filter(|(_, o, _)| !matches!(o, Outcome::Pass | Outcome::Unsupported)).collect();
        assert!(bad.is_empty(), "flags {flags}: {bad:#?}");
        let supported = results.iter().filter(|(_, o, _)| *o == Outcome::Pass).count();
        assert_eq!(supported, flags.states().len() * 8 + 3, "flags {flags}");
    }
}

#[test]
fn accepting_stop_copy_to_pre_copy_fails_on_v2_state_007() {
    let cfg = SimConfig { defects: vec![Defect::StopCopyToPreCopy], ..SimConfig::v2() };
    let results = run_family(&cfg);
    let (_, o, clauses) = results.iter().find(|(id, _, _)| id == "fsm.arc.stop_copy.pre_copy").unwrap();
    assert_eq!(*o, Outcome::Fail);
    assert!(clauses.contains(&"V2-STATE-007".to_string()), "{clauses:?}");
}
