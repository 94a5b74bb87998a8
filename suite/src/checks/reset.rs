//! Generated families: VFIO_DEVICE_RESET from every state, and close/reopen in every state.

use super::arcs::reach;
use super::build::{check, drain, get, set, v2};
use crate::check::{Check, ExpectKind, Step};
use crate::clauses::id::*;
use crate::op::{FdRef, Op, Source, WriteArgs};
use crate::state::MigState;

fn has_session(s: MigState) -> bool {
    matches!(s, MigState::PreCopy | MigState::PreCopyP2p | MigState::StopCopy | MigState::Resuming)
}

/// Uses the session fd after it must have ended: a read (saving) or a write (resuming).
fn touch_old_fd(s: MigState) -> Step {
    if s == MigState::Resuming {
        Step::new(Op::Write(WriteArgs {
            fd: FdRef::Current,
            data: Source::Zeros(8),
            mutate: None,
            segment: Default::default(),
            offset: None,
            keep_going: false,
            from_thread: false,
        }))
        .oracle()
    } else {
        Step::new(Op::Read(crate::op::ReadArgs { once: true, chunk: 4096, ..Default::default() })).oracle()
    }
}

fn states() -> impl Iterator<Item = MigState> {
    MigState::ALL.into_iter().filter(|s| *s != MigState::Error)
}

/// `fsm.reset.<state>`: reset returns to RUNNING, ends any session, and a new session works.
pub fn reset_checks() -> Vec<Check> {
    states()
        .map(|s| {
            let mut steps = reach(s);
            steps.push(Step::new(Op::Reset).oracle().expect(ExpectKind::Ok, &[V2_RESET_001]));
            steps.push(get().expect(ExpectKind::State(MigState::Running), &[V2_RESET_001, V2_ERR_002]));
            if has_session(s) {
                steps.push(touch_old_fd(s));
            }
            steps.push(set(MigState::StopCopy));
            steps.push(drain().expect(ExpectKind::Eof(true), &[V2_RESET_001]));
            check(
                &format!("fsm.reset.{}", s.ident()),
                &format!("VFIO_DEVICE_RESET from {s} returns to RUNNING and ends its data session"),
                v2(s.required_flags().map_or(1, |f| f.0)),
                steps,
                &[V2_RESET_001, V2_ARC_STOP_004],
            )
        })
        .collect()
}

/// `fsm.reopen.<state>`: close the device in a state, reopen it, look at the state and at the
/// data fd of the session that was open.
pub fn reopen_checks() -> Vec<Check> {
    states()
        .map(|s| {
            let mut steps = reach(s);
            steps.push(Step::new(Op::CloseDevice).expect(ExpectKind::Ok, &[V2_FD_002]));
            if has_session(s) {
                steps.push(touch_old_fd(s));
            }
            steps.push(Step::new(Op::Reopen).expect(ExpectKind::Ok, &[V2_OPEN_001]));
            steps.push(get());
            check(
                &format!("fsm.reopen.{}", s.ident()),
                &format!("close the device in {s} and reopen it: RUNNING, old data fd ended"),
                v2(s.required_flags().map_or(1, |f| f.0)),
                steps,
                &[V2_OPEN_001, V2_FD_002, V2_STATE_001],
            )
        })
        .collect()
}
