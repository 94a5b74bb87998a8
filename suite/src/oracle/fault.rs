//! Fault injection (`fail_nth:` steps, `/proc/thread-self/fail-nth`): what the oracle makes of
//! a step once the engine knows whether its injected kernel fault fired. Pure: the engine arms
//! the fault and reads it back.

use super::Violation;
use super::model::Model;

/// Judges a step whose `fail_nth`-th injectable call was armed to fail, given whether the fault
/// fired (`Err`: unknown). Any error is allowed once an allocation failed (or when it is not
/// known whether one did): the step's oracle violations are dropped and the model forgets the
/// state, learning it again from the next GET or SET. Returns the note for the step's
/// observation.
pub fn judge_injected(
    n: u32,
    fired: Result<bool, String>,
    violations: &mut Vec<Violation>,
    model: &mut Model,
) -> String {
    match fired {
        Ok(false) => format!("fail_nth {n}: no fault injected"),
        fired => {
            violations.clear();
            model.forget();
            match fired {
                Err(e) => format!("fail_nth {n}: unknown whether a fault was injected: {e}"),
                Ok(_) => format!("fault injected (fail_nth {n})"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::id::*;
    use crate::oracle::model::Facts;
    use crate::state::{MigFlags, MigState};

    fn model() -> Model {
        let facts = Facts { flags: MigFlags(7), dma_logging: false, device_type: None };
        Model::new(facts, Some(MigState::Running))
    }

    fn broken() -> Vec<Violation> {
        vec![Violation::new([V2_STATE_007], "x".into(), "y".into())]
    }

    #[test]
    fn a_fault_that_fired_or_may_have_fired_drops_the_steps_violations() {
        let mut m = model();
        let mut v = broken();
        assert_eq!(judge_injected(3, Ok(true), &mut v, &mut m), "fault injected (fail_nth 3)");
        assert!(v.is_empty());
        let mut v = broken();
        assert!(judge_injected(3, Err("EIO".into()), &mut v, &mut m).contains("unknown"));
        assert!(v.is_empty());
    }

    #[test]
    fn a_fault_that_did_not_fire_leaves_the_step_judged() {
        let mut m = model();
        let mut v = broken();
        assert_eq!(judge_injected(2, Ok(false), &mut v, &mut m), "fail_nth 2: no fault injected");
        assert_eq!(v.len(), 1);
    }
}
