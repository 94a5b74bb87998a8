//! Which clauses the oracle can report in a check, from its steps alone: coverage credits a
//! clause to a check only when one of its judged steps could break it.
//!
//! SET steps are followed through the FSM from RUNNING (the state every check starts in)
//! assuming a conforming device; once a step makes the state unknown (a raw feature call,
//! closing or reopening the device) later SETs are credited nothing.

use std::collections::BTreeMap;

use crate::check::Step;
use crate::clauses::ClauseId;
use crate::clauses::id::*;
use crate::device::MigrationApi;
use crate::errno::Errno;
use crate::op::Op;
use crate::oracle::feature::{FeatureFacts, judge_feature};
use crate::oracle::fsm::{SetPrediction, predict_set};
use crate::oracle::model::Observation;
use crate::state::{MigFlags, MigState};

/// The clauses the oracle's SET judgement can report for `SET(new)` from `cur` on a device
/// with `flags` (see `Model::judge_set`).
pub fn reportable_on_set(flags: MigFlags, cur: MigState, new: u32) -> Vec<ClauseId> {
    let mut out = match predict_set(flags, cur, new) {
        SetPrediction::Refuse(r) => vec![r.clause(), V2_STATE_004],
        SetPrediction::Noop | SetPrediction::Walk(_) => {
            vec![
                V2_MIG_003,
                V2_STATE_008,
                V2_STATE_004,
                V2_STATE_005,
                V2_STATE_002,
                V2_STATE_001,
                V2_STATE_009,
            ]
        }
    };
    if cur == MigState::Resuming && new != MigState::Resuming.raw() {
        // Leaving RESUMING judges the stream that was written (V2-ARC-RES-001, V2-RESUME-002).
        out.extend([V2_ARC_RES_001, V2_RESUME_002]);
    }
    out
}

/// The clauses the feature judgement can report for a raw feature call with `argsz` and
/// `flags`, on any device: what [`judge_feature`] says for a call that succeeded and for one
/// that failed, with and without migration and DMA logging support.
pub fn reportable_on_feature(argsz: u32, flags: u32) -> Vec<ClauseId> {
    let mut out = Vec::new();
    for api in [MigrationApi::V2, MigrationApi::V1] {
        for dma_logging in [false, true] {
            let facts = FeatureFacts { api, dma_logging };
            for obs in [Observation::ok(), Observation::err(Errno::EIO)] {
                out.extend(judge_feature(&facts, argsz, flags, &obs).into_iter().flat_map(|v| v.clauses));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The clauses `Model::judge_data_size` can report on a GET of MIG_DATA_SIZE: a failure in any
/// state (V2-DATASIZE-002), ENOTTY on a migration device (V2-DATASIZE-003).
pub const REPORTABLE_ON_DATA_SIZE: [ClauseId; 2] = [V2_DATASIZE_002, V2_DATASIZE_003];

/// The clauses the judged SET, feature and MIG_DATA_SIZE steps of `steps` can report on a v2 device with `flags`;
/// `first` is the label of the check's first device.
pub fn set_clauses(flags: MigFlags, steps: &[Step], first: &str) -> Vec<ClauseId> {
    let mut state: BTreeMap<&str, Option<MigState>> = BTreeMap::new();
    let mut out = Vec::new();
    for s in steps {
        let label = s.device.as_deref().unwrap_or(first);
        let cur = state.entry(label).or_insert(Some(MigState::Running));
        match &s.op {
            Op::SetState(arg) => {
                let Some(at) = *cur else { continue };
                if s.oracle {
                    out.extend(reportable_on_set(flags, at, arg.raw()));
                }
                *cur = match predict_set(flags, at, arg.raw()) {
                    SetPrediction::Refuse(_) => Some(at),
                    SetPrediction::Noop => Some(at),
                    SetPrediction::Walk(arcs) => arcs.last().map(|a| a.to),
                };
            }
            Op::Feature(f) => {
                if s.oracle {
                    out.extend(reportable_on_feature(f.argsz(), f.flags()));
                }
                *cur = None;
            }
            Op::DataSize if s.oracle => out.extend(REPORTABLE_ON_DATA_SIZE),
            Op::Reset => *cur = Some(MigState::Running),
            Op::CloseDevice | Op::Reopen => *cur = None,
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateArg;

    fn set(s: MigState) -> Step {
        Step::new(Op::SetState(StateArg::Named(s))).oracle()
    }

    #[test]
    fn a_sequence_that_never_asks_stop_copy_to_pre_copy_is_not_credited_v2_state_007() {
        let steps = [set(MigState::Stop), set(MigState::Running)];
        let c = set_clauses(MigFlags(7), &steps, "A");
        assert!(!c.contains(&V2_STATE_007));
        assert!(c.contains(&V2_STATE_002));
    }

    #[test]
    fn asking_stop_copy_to_pre_copy_credits_v2_state_007() {
        let steps = [set(MigState::StopCopy), set(MigState::PreCopy)];
        assert!(set_clauses(MigFlags(7), &steps, "A").contains(&V2_STATE_007));
    }

    #[test]
    fn unjudged_sets_and_sets_after_an_unknown_state_credit_nothing() {
        let unjudged = [Step::new(Op::SetState(StateArg::Named(MigState::Stop)))];
        assert!(set_clauses(MigFlags(7), &unjudged, "A").is_empty());
        let after_close = [Step::new(Op::CloseDevice), set(MigState::Stop)];
        assert!(set_clauses(MigFlags(7), &after_close, "A").is_empty());
    }

    #[test]
    fn a_feature_call_is_credited_only_the_clauses_its_arguments_can_break() {
        let short = reportable_on_feature(4, crate::uapi::FEATURE_GET | crate::uapi::FEATURE_MIGRATION);
        assert_eq!(short, vec![V2_FEAT_001]);
        let logging =
            reportable_on_feature(8, crate::uapi::FEATURE_SET | crate::uapi::FEATURE_DMA_LOGGING_STOP);
        assert!(logging.contains(&V2_FEAT_004));
    }

    #[test]
    fn only_a_judged_data_size_step_credits_the_data_size_clauses() {
        let judged = [Step::new(Op::DataSize).oracle()];
        assert!(set_clauses(MigFlags(1), &judged, "A").contains(&V2_DATASIZE_003));
        assert!(set_clauses(MigFlags(1), &[Step::new(Op::DataSize)], "A").is_empty());
    }

    #[test]
    fn leaving_resuming_credits_the_stream_clauses() {
        let steps = [set(MigState::Stop), set(MigState::Resuming), set(MigState::Stop)];
        assert!(set_clauses(MigFlags(1), &steps, "A").contains(&V2_ARC_RES_001));
    }
}
