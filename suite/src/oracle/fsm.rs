//! The v2 FSM oracle: a model of the kernel's `vfio_mig_get_next_state()` (6.12
//! drivers/vfio/vfio_main.c l.653-861) and of the driver loop that calls it.
//!
//! Drivers run `while (cur != new) { next = helper(cur, new); step(cur -> next); cur = next; }`,
//! so a SET walks a path of primitive arcs. This module predicts that path, whether SET must
//! fail with EINVAL before any arc runs, whether a data_fd comes back, which data sessions the
//! path ends and which states a failed SET may leave behind.

use crate::clauses::ClauseId;
use crate::clauses::id::*;
use crate::state::{MigFlags, MigState};

use MigState::{
    Error as E, PreCopy as PC, PreCopyP2p as PCP, Resuming as RES, Running as RUN, RunningP2p as RP2P,
    Stop as STOP, StopCopy as SC,
};

/// `vfio_from_fsm_table[cur][new]`: the next step before unsupported optional states are
/// skipped. Indexed by raw state value. ERROR means "no path".
const RAW_TABLE: [[MigState; 8]; 8] = [
    // cur = ERROR: never consulted (the helper fails earlier).
    [E, E, E, E, E, E, E, E],
    // cur = STOP; new = ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P
    [E, STOP, RP2P, SC, RES, RP2P, RP2P, RP2P],
    // cur = RUNNING
    [E, RP2P, RUN, RP2P, RP2P, RP2P, PC, RP2P],
    // cur = STOP_COPY
    [E, STOP, STOP, SC, STOP, STOP, E, E],
    // cur = RESUMING
    [E, STOP, STOP, STOP, RES, STOP, STOP, STOP],
    // cur = RUNNING_P2P
    [E, STOP, RUN, STOP, STOP, RP2P, RUN, PCP],
    // cur = PRE_COPY
    [E, RUN, RUN, PCP, RUN, RUN, PC, PCP],
    // cur = PRE_COPY_P2P
    [E, RP2P, RP2P, SC, RP2P, RP2P, PC, PCP],
];

/// One entry of the raw table (before optional-state skipping); exposed for the cross-check
/// against the kernel's table.
pub fn raw_table_step(cur: MigState, new: MigState) -> MigState {
    RAW_TABLE[cur as usize][new as usize]
}

/// Why the helper refuses a request with EINVAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The current state is ERROR or a state the flags do not allow: the helper WARNs.
    /// Drivers must not reach this; the suite treats it as a driver/core inconsistency.
    CurrentInvalid,
    /// The target is ERROR (V2-STATE-006).
    TargetError,
    /// The target is >= 8 (V2-STATE-006).
    TargetOutOfRange,
    /// The target needs flags the device does not advertise (V2-STATE-006).
    TargetUnsupported,
    /// No path exists: STOP_COPY -> PRE_COPY / PRE_COPY_P2P (V2-STATE-007).
    NoPath,
}

impl Refusal {
    /// The clause that requires the refusal.
    pub fn clause(self) -> ClauseId {
        match self {
            Refusal::CurrentInvalid => V2_ERR_003,
            Refusal::NoPath => V2_STATE_007,
            Refusal::TargetError | Refusal::TargetOutOfRange | Refusal::TargetUnsupported => V2_STATE_006,
        }
    }

    /// A human reason for reports.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::CurrentInvalid => {
                "the current state is ERROR or not allowed by the flags (the helper WARNs)"
            }
            Refusal::TargetError => "ERROR is never a valid SET target",
            Refusal::TargetOutOfRange => "the target is not a uAPI state (>= 8)",
            Refusal::TargetUnsupported => "the target state needs a flag the device lacks",
            Refusal::NoPath => "STOP_COPY -> PRE_COPY* is forbidden",
        }
    }
}

/// One call of the helper: the next primitive state on the way from `cur` to `new`.
pub fn next_state(flags: MigFlags, cur: u32, new: u32) -> Result<MigState, Refusal> {
    let cur_state = MigState::from_raw(cur).ok_or(Refusal::CurrentInvalid)?;
    if !cur_state.supported_by(flags) {
        return Err(Refusal::CurrentInvalid);
    }
    let new_state = MigState::from_raw(new).ok_or(Refusal::TargetOutOfRange)?;
    if new_state == MigState::Error {
        return Err(Refusal::TargetError);
    }
    if !new_state.supported_by(flags) {
        return Err(Refusal::TargetUnsupported);
    }
    let mut next = RAW_TABLE[cur_state as usize][new_state as usize];
    while next != MigState::Error && !next.supported_by(flags) {
        next = RAW_TABLE[next as usize][new_state as usize];
    }
    if next == MigState::Error { Err(Refusal::NoPath) } else { Ok(next) }
}

/// A primitive arc a driver's step function performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arc {
    pub from: MigState,
    pub to: MigState,
}

impl Arc {
    /// The four session-opening arcs (V2-SAVE-002, V2-RESUME-001).
    pub fn opens_session(self) -> bool {
        matches!((self.from, self.to), (RUN, PC) | (RP2P, PCP) | (STOP, SC) | (STOP, RES))
    }

    /// Whether the arc ends the saving session (leaves the saving group).
    pub fn ends_saving(self) -> bool {
        self.from.is_saving() && !self.to.is_saving()
    }

    /// Whether the arc ends the resuming session (RESUMING -> STOP).
    pub fn ends_resuming(self) -> bool {
        self.from == RES && self.to != RES
    }
}

impl std::fmt::Display for Arc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

/// What the oracle predicts for `SET(new)` from `cur`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetPrediction {
    /// `cur == new`: drivers leave their loop at once; SET succeeds with data_fd = -1.
    Noop,
    /// SET must succeed by walking these arcs (non-empty).
    Walk(Vec<Arc>),
    /// SET must fail with EINVAL before any arc runs; the state stays `cur`.
    Refuse(Refusal),
}

impl SetPrediction {
    /// Whether SET must succeed.
    pub fn succeeds(&self) -> bool {
        !matches!(self, SetPrediction::Refuse(_))
    }

    /// Whether a successful SET returns a data_fd (V2-STATE-005): only when the final arc
    /// opens a session.
    pub fn returns_data_fd(&self) -> bool {
        match self {
            SetPrediction::Walk(arcs) => arcs.last().is_some_and(|a| a.opens_session()),
            _ => false,
        }
    }

    /// The states visited after `cur`, in order.
    pub fn states(&self) -> Vec<MigState> {
        match self {
            SetPrediction::Walk(arcs) => arcs.iter().map(|a| a.to).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the walk ends the saving session.
    pub fn ends_saving(&self) -> bool {
        matches!(self, SetPrediction::Walk(arcs) if arcs.iter().any(|a| a.ends_saving()))
    }

    /// Whether the walk ends the resuming session.
    pub fn ends_resuming(&self) -> bool {
        matches!(self, SetPrediction::Walk(arcs) if arcs.iter().any(|a| a.ends_resuming()))
    }

    /// The states a *failed* SET may leave (V2-STATE-004): the original state, any state on
    /// the path, or ERROR. A refused SET may only leave `cur`.
    pub fn allowed_after_failure(&self, cur: MigState) -> Vec<MigState> {
        match self {
            SetPrediction::Refuse(_) | SetPrediction::Noop => vec![cur],
            SetPrediction::Walk(arcs) => {
                let mut v = vec![cur];
                v.extend(arcs.iter().map(|a| a.to));
                v.push(MigState::Error);
                v.dedup();
                v
            }
        }
    }

    /// `STOP -> RUNNING_P2P -> RUNNING` style rendering of the path.
    pub fn render(&self, cur: MigState) -> String {
        match self {
            SetPrediction::Noop => format!("{cur} (no-op)"),
            SetPrediction::Refuse(r) => format!("EINVAL ({})", r.reason()),
            SetPrediction::Walk(arcs) => {
                let mut s = cur.name().to_string();
                for a in arcs {
                    s.push_str(" -> ");
                    s.push_str(a.to.name());
                }
                s
            }
        }
    }
}

/// Predicts `SET(new)` from `cur` on a device with `flags`.
pub fn predict_set(flags: MigFlags, cur: MigState, new: u32) -> SetPrediction {
    if cur.raw() == new {
        return SetPrediction::Noop;
    }
    let mut arcs = Vec::new();
    let mut at = cur;
    while at.raw() != new {
        match next_state(flags, at.raw(), new) {
            Ok(next) => {
                arcs.push(Arc { from: at, to: next });
                at = next;
            }
            // The kernel helper validates cur/new on every call, so a refusal can only come
            // on the first call; a later one would be an oracle bug.
            Err(r) => {
                debug_assert!(arcs.is_empty(), "refusal in the middle of a path");
                return SetPrediction::Refuse(r);
            }
        }
        if arcs.len() > 8 {
            unreachable!("FSM path longer than the state count: table bug");
        }
    }
    SetPrediction::Walk(arcs)
}

/// Every primitive arc a driver with `flags` can be asked to perform (the union of all
/// paths): 6, 8, 9 or 15 arcs for the four defined flag sets.
pub fn primitive_arcs(flags: MigFlags) -> Vec<Arc> {
    let mut arcs = Vec::new();
    for cur in flags.states() {
        for new in flags.states() {
            if let SetPrediction::Walk(path) = predict_set(flags, cur, new.raw()) {
                arcs.extend(path);
            }
        }
    }
    arcs.sort();
    arcs.dedup();
    arcs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_to_stop_copy_walks_through_p2p_and_returns_a_fd() {
        let p = predict_set(MigFlags::ALL, RUN, SC.raw());
        assert_eq!(p.states(), vec![RP2P, STOP, SC]);
        assert!(p.returns_data_fd());
    }

    #[test]
    fn stop_copy_to_pre_copy_is_refused_for_every_flag_set_with_pre_copy() {
        for flags in [MigFlags(5), MigFlags(7)] {
            assert_eq!(predict_set(flags, SC, PC.raw()), SetPrediction::Refuse(Refusal::NoPath));
        }
        assert_eq!(predict_set(MigFlags(7), SC, PCP.raw()), SetPrediction::Refuse(Refusal::NoPath));
    }

    #[test]
    fn pre_copy_to_stop_copy_keeps_the_session_and_returns_no_fd() {
        let p = predict_set(MigFlags::ALL, PC, SC.raw());
        assert_eq!(p.states(), vec![PCP, SC]);
        assert!(!p.returns_data_fd());
        assert!(!p.ends_saving());
    }

    #[test]
    fn unsupported_and_out_of_range_targets_are_refused() {
        assert_eq!(
            predict_set(MigFlags(1), RUN, RP2P.raw()),
            SetPrediction::Refuse(Refusal::TargetUnsupported)
        );
        assert_eq!(predict_set(MigFlags(7), RUN, 8), SetPrediction::Refuse(Refusal::TargetOutOfRange));
        assert_eq!(predict_set(MigFlags(7), RUN, 0), SetPrediction::Refuse(Refusal::TargetError));
    }

    #[test]
    fn same_state_requests_are_no_ops_even_for_error() {
        assert_eq!(predict_set(MigFlags(1), E, 0), SetPrediction::Noop);
        assert_eq!(predict_set(MigFlags(7), SC, SC.raw()), SetPrediction::Noop);
    }

    #[test]
    fn primitive_arc_counts_match_the_kernel_for_each_flag_set() {
        assert_eq!(primitive_arcs(MigFlags(1)).len(), 6);
        assert_eq!(primitive_arcs(MigFlags(3)).len(), 8);
        assert_eq!(primitive_arcs(MigFlags(5)).len(), 9);
        assert_eq!(primitive_arcs(MigFlags(7)).len(), 15);
    }

    #[test]
    fn failed_walk_may_leave_cur_any_path_state_or_error() {
        let p = predict_set(MigFlags::ALL, RES, RUN.raw());
        assert_eq!(p.allowed_after_failure(RES), vec![RES, STOP, RP2P, RUN, E]);
    }
}
