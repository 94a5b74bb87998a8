//! Running the extracted helper: one call ([`KernelTable::step`]) and the driver loop around
//! it ([`KernelTable::resolve`]).

use super::{KernelTable, NUM_STATES, SkipLoop};
use crate::state::{MigFlags, MigState};

/// What one call `vfio_mig_get_next_state(device, cur, new, &next)` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Returns 0 with `*next_fsm` set.
    Next(MigState),
    /// Returns -EINVAL; `warn` when the WARN_ON of the `cur_fsm` check fires.
    Einval { warn: bool },
    /// Never returns: the skip loop revisits a state (with the unguarded loop, any walk that
    /// reaches ERROR).
    Hang,
}

/// What `SET(new)` from `cur` does on a device with `flags` whose driver runs the usual loop
/// `while (cur != new) { ret = helper(cur, new, &next); if (ret) fail; step(next); cur = next; }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// `cur == new`: the loop body never runs; SET returns 0 with data_fd -1.
    Noop,
    /// The states walked, `cur` first and `new` last.
    Path(Vec<MigState>),
    /// The first call fails the `cur_fsm` check (-EINVAL with WARN_ON); `cur` is ERROR or a
    /// state the flags lack.
    CurInvalid(MigState),
    /// The first call returns -EINVAL: the target is ERROR, unsupported, or a blocked arc.
    Einval,
    /// The first call never returns.
    Hang,
    /// A later call returns -EINVAL after these states were walked.
    EinvalAfter(Vec<MigState>),
    /// A later call never returns, after these states were walked.
    HangAfter(Vec<MigState>),
    /// Every call succeeds but the walk revisits a state: the driver loops forever.
    NeverArrives(Vec<MigState>),
}

impl KernelTable {
    /// One call of the helper, as the recognised control flow computes it.
    pub fn step(&self, flags: MigFlags, cur: MigState, new: MigState) -> Step {
        // `cur_fsm >= ARRAY_SIZE(..)` cannot hold for a MigState; the flags check can.
        if !self.supports(flags, cur) {
            return Step::Einval { warn: true };
        }
        if !self.supports(flags, new) {
            return Step::Einval { warn: false };
        }
        let mut next = self.next[cur as usize][new as usize];
        let mut seen = [false; NUM_STATES];
        loop {
            let stop_at_error = self.flow.skip_loop == SkipLoop::StopsAtError && next == MigState::Error;
            if stop_at_error || self.supports(flags, next) {
                break;
            }
            if std::mem::replace(&mut seen[next as usize], true) {
                return Step::Hang;
            }
            next = self.next[next as usize][new as usize];
        }
        if next == MigState::Error { Step::Einval { warn: false } } else { Step::Next(next) }
    }

    /// `SET(new)` from `cur` through the driver loop.
    pub fn resolve(&self, flags: MigFlags, cur: MigState, new: MigState) -> Resolved {
        if cur == new {
            return Resolved::Noop;
        }
        let mut path = vec![cur];
        let mut at = cur;
        while at != new {
            match self.step(flags, at, new) {
                Step::Next(next) => {
                    let again = path.contains(&next);
                    path.push(next);
                    if again {
                        return Resolved::NeverArrives(path);
                    }
                    at = next;
                }
                Step::Einval { warn } if path.len() == 1 => {
                    return if warn { Resolved::CurInvalid(cur) } else { Resolved::Einval };
                }
                Step::Einval { .. } => return Resolved::EinvalAfter(path),
                Step::Hang if path.len() == 1 => return Resolved::Hang,
                Step::Hang => return Resolved::HangAfter(path),
            }
        }
        Resolved::Path(path)
    }
}
