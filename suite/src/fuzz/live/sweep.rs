//! Fault sweeps of the coverage-guided mode: a step that reached kernel code no earlier run had
//! reached is run again, as the last step of its walk's prefix, with a fault injected into its
//! first, second, third ... injectable kernel call (`fail_nth: 1, 2, ...`), until a run in which
//! the armed fault did not fire says the call has no further allocation: each allocation of the
//! new code path fails once, in order, so each of its out-of-memory paths is tried. This is
//! syzkaller's fault injection of the calls of a new corpus program. Fresh walks put a fault on
//! one step in eight, into one of a few fixed allocations (1 to 12); a sweep goes through all
//! of a new path's allocations, which only the feedback (new PCs to start, "the fault did not
//! fire" to stop) can direct.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use super::mutate::FAIL_NTH_MAX;
use super::walk::can_fault;
use crate::check::Step;

/// The most sweeps waiting at once (a burst of new code queues no more than this).
pub const MAX_QUEUED: usize = 256;
/// A sweep ends after this many injected faults in a row that reached no new PC: deep in a
/// call the allocations are the core's and the allocator's (a file, a dentry, an fd table),
/// whose failures take the same error paths again.
pub const MAX_DRY: u32 = 3;

/// One sweep in progress: `steps` ends with the step under sweep, armed with the `fail_nth`
/// of this run.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub steps: Vec<Step>,
    /// Injected faults in a row that reached no new PC.
    pub dry: u32,
}

impl Sweep {
    /// The index of the step under sweep.
    pub fn at(&self) -> usize {
        self.steps.len() - 1
    }

    /// The allocation this run fails (the `fail_nth` of the step under sweep).
    pub fn nth(&self) -> u32 {
        self.steps[self.at()].fail_nth.unwrap_or(1)
    }
}

/// The sweeps waiting, the code paths already swept, and what the sweeps did.
#[derive(Clone, Debug, Default)]
pub struct Sweeps {
    queue: VecDeque<Sweep>,
    /// Hashes of (device, operation kind, PCs) of the steps swept or queued.
    swept: HashSet<u64>,
    /// Code paths queued for a sweep; check runs made by sweeps, and how many of them
    /// injected their fault.
    pub paths: u64,
    pub runs: u64,
    pub faults: u64,
}

/// The identity of the code path a step took: its device, its operation kind and the set of
/// PCs it reached (another walk through the same path has the same key).
pub fn code_path(step: &Step, pcs: &[u64]) -> u64 {
    let mut sorted = pcs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut h = DefaultHasher::new();
    (step.device.as_deref(), step.op.name(), &sorted).hash(&mut h);
    h.finish()
}

impl Sweeps {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues a sweep of every step of a run (`per_step[i]`: the PCs step `i` reached) that
    /// reached one of the `new` PCs, unless a step of the same kind on the same device that
    /// reached the same PCs was swept before (the same code path).
    pub fn offer(&mut self, steps: &[Step], per_step: &[Vec<u64>], new: &BTreeSet<u64>) {
        for (i, pcs) in per_step.iter().enumerate().take(steps.len()) {
            if !pcs.iter().any(|pc| new.contains(pc)) || !can_fault(&steps[i]) {
                continue;
            }
            if self.queue.len() >= MAX_QUEUED {
                return;
            }
            if !self.swept.insert(code_path(&steps[i], pcs)) {
                continue;
            }
            let mut prefix = steps[..=i].to_vec();
            prefix[i].fail_nth = Some(1);
            self.queue.push_back(Sweep { steps: prefix, dry: 0 });
            self.paths += 1;
        }
    }

    /// The next sweep run.
    pub fn take_next(&mut self) -> Option<Sweep> {
        self.queue.pop_front()
    }

    /// Records a sweep run: `fired`, whether its fault was injected (None: the run did not
    /// get as far as the step, or it is not known); `found`, whether the run reached a new
    /// PC. The sweep goes on with the next allocation, ahead of the other sweeps, while
    /// faults fire, until [`MAX_DRY`] of them in a row found nothing new.
    pub fn done(&mut self, mut sweep: Sweep, fired: Option<bool>, found: bool) {
        self.runs += 1;
        if fired != Some(true) {
            return;
        }
        self.faults += 1;
        sweep.dry = if found { 0 } else { sweep.dry + 1 };
        let nth = sweep.nth();
        if nth >= FAIL_NTH_MAX || sweep.dry >= MAX_DRY {
            return;
        }
        let at = sweep.at();
        sweep.steps[at].fail_nth = Some(nth + 1);
        self.queue.push_front(sweep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Op;
    use crate::state::{MigState, StateArg};

    fn set(s: MigState) -> Step {
        Step::new(Op::SetState(StateArg::Named(s))).oracle()
    }

    #[test]
    fn a_step_that_reached_new_pcs_is_swept_allocation_by_allocation_until_a_fault_does_not_fire() {
        // Arrange: a run of three SETs; the second reached a new PC.
        let mut sw = Sweeps::default();
        let steps = vec![set(MigState::Stop), set(MigState::StopCopy), set(MigState::Stop)];
        let per_step = vec![vec![1, 2], vec![3, 4], vec![5]];
        // Act
        sw.offer(&steps, &per_step, &BTreeSet::from([4]));
        // Assert: one sweep, of the prefix up to that step, armed at the first allocation.
        assert_eq!(sw.len(), 1);
        let mut nths = Vec::new();
        for fired in [Some(true), Some(true), Some(true), Some(false)] {
            let s = sw.take_next().expect("the sweep goes on while faults fire");
            assert_eq!(s.steps.len(), 2);
            assert_eq!(s.steps[0].fail_nth, None);
            assert_eq!(s.steps[1].op, steps[1].op);
            nths.push(s.steps[1].fail_nth.unwrap_or(0));
            sw.done(s, fired, true);
        }
        assert_eq!(nths, [1, 2, 3, 4]);
        assert!(sw.take_next().is_none(), "a fault that did not fire ends the sweep");
        assert_eq!((sw.paths, sw.runs, sw.faults), (1, 4, 3));
    }

    #[test]
    fn the_same_code_path_is_swept_once_and_races_not_at_all() {
        let mut sw = Sweeps::default();
        let steps = vec![set(MigState::Stop), set(MigState::StopCopy)];
        sw.offer(&steps, &[vec![1], vec![2]], &BTreeSet::from([1, 2]));
        assert_eq!(sw.len(), 2);
        // The same PCs again (another walk through the same path): nothing queued; other PCs:
        // queued.
        sw.offer(&steps, &[vec![1], vec![2]], &BTreeSet::from([1, 2]));
        assert_eq!(sw.len(), 2);
        sw.offer(&steps, &[vec![1], vec![2, 9]], &BTreeSet::from([9]));
        assert_eq!(sw.len(), 3);
        // A race is not swept.
        let race = Step::new(Op::RaceReset(crate::op::RaceResetArgs {
            during: crate::op::RaceCall::GetState,
            state: StateArg::Named(MigState::Running),
            fd: crate::op::FdRef::Current,
            delay_us: 0,
            calls: 1,
        }));
        sw.offer(&[race], &[vec![77]], &BTreeSet::from([77]));
        assert_eq!(sw.len(), 3);
    }

    #[test]
    fn a_sweep_stops_at_the_highest_allocation_and_when_the_step_did_not_run() {
        let mut sw = Sweeps::default();
        sw.offer(&[set(MigState::Stop)], &[vec![1]], &BTreeSet::from([1]));
        let mut s = sw.take_next().expect("queued");
        let at = s.at();
        s.steps[at].fail_nth = Some(FAIL_NTH_MAX);
        sw.done(s, Some(true), true);
        assert!(sw.take_next().is_none());
        sw.offer(&[set(MigState::StopCopy)], &[vec![2]], &BTreeSet::from([2]));
        let s = sw.take_next().expect("queued");
        sw.done(s, None, true);
        assert!(sw.take_next().is_none());
    }

    #[test]
    fn a_sweep_ends_after_three_injected_faults_in_a_row_that_reached_nothing_new() {
        let mut sw = Sweeps::default();
        sw.offer(&[set(MigState::Stop)], &[vec![1]], &BTreeSet::from([1]));
        // New PCs at allocations 1 and 3, none at 2 and from 4 on.
        for found in [true, false, true, false, false, false] {
            let s = sw.take_next().expect("the sweep goes on");
            sw.done(s, Some(true), found);
        }
        assert!(sw.take_next().is_none(), "three dry faults in a row end the sweep");
        assert_eq!(sw.runs, 6);
    }
}
