//! Mutating corpus walks: insert generated steps, delete a chunk, splice with another walk,
//! change one step's arguments, nudge one of its numbers (the allocation a fault is injected
//! into, a race's delay or call count, a bad buffer's valid bytes) to a neighbouring value,
//! change how a stream is mutated or cut before it is written,
//! move a step to a peer device (or add a peer's save or restore), append steps. New steps
//! come from the [`Walker`], which follows the devices through the prefix they are inserted
//! after, so they fit the state the walk is expected to be in.

use std::collections::BTreeSet;

use super::walk::{Walker, clean};
use crate::check::Step;
use crate::op::Op;
use crate::state::MigState;

/// The mutation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Insert,
    Delete,
    Splice,
    ChangeArgs,
    Nudge,
    Stream,
    Interleave,
    Append,
}

impl Operator {
    pub const ALL: [Operator; 8] = [
        Operator::Insert,
        Operator::Delete,
        Operator::Splice,
        Operator::ChangeArgs,
        Operator::Nudge,
        Operator::Stream,
        Operator::Interleave,
        Operator::Append,
    ];
}

/// A mutant of `base`: one to three operators; `other` is a second corpus walk to splice with.
pub fn mutate(
    walker: &mut Walker,
    base: &[Step],
    other: Option<&[Step]>,
    covered: &BTreeSet<(MigState, MigState)>,
) -> Vec<Step> {
    let mut steps = base.to_vec();
    let rounds = 1 + walker.rng().below(3);
    for _ in 0..rounds {
        let op = *walker.rng().pick(&Operator::ALL);
        steps = apply(walker, op, &steps, other, covered);
    }
    let mut steps = clean(&steps);
    steps.truncate(walker.max_walk() * 4);
    if steps.is_empty() {
        let mut d = walker.draft(&[]);
        walker.extend(&mut d, 4, None, covered);
        steps = d.into_steps();
    }
    steps
}

/// Applies one operator (an operator that does not apply falls back to inserting).
pub fn apply(
    walker: &mut Walker,
    op: Operator,
    steps: &[Step],
    other: Option<&[Step]>,
    covered: &BTreeSet<(MigState, MigState)>,
) -> Vec<Step> {
    let n = steps.len();
    let pos = |w: &mut Walker, n: usize| w.rng().below(n as u64 + 1) as usize;
    match op {
        Operator::Delete if n > 1 => {
            let at = walker.rng().below(n as u64) as usize;
            let len = 1 + walker.rng().below(((n - at) as u64).min(4)) as usize;
            let mut out = steps[..at].to_vec();
            out.extend_from_slice(&steps[at + len..]);
            out
        }
        Operator::Splice if other.is_some_and(|o| !o.is_empty()) => {
            let o = other.unwrap_or_default();
            let at = pos(walker, n);
            let from = walker.rng().below(o.len() as u64) as usize;
            let mut out = steps[..at].to_vec();
            out.extend_from_slice(&o[from..]);
            out
        }
        Operator::ChangeArgs if n > 0 => {
            let at = walker.rng().below(n as u64) as usize;
            let kind = steps[at].op.name();
            let mut d = walker.draft(&steps[..at]);
            let before = steps[..at].len();
            let kinds: Vec<&'static str> = walker.kinds().iter().copied().filter(|k| *k == kind).collect();
            if kinds.is_empty() {
                return apply(walker, Operator::Insert, steps, other, covered);
            }
            walker.extend(&mut d, 1, Some(&kinds), covered);
            let mut out = d.into_steps();
            // Keep the device the step was on.
            for s in &mut out[before..] {
                if s.device.is_none() {
                    s.device.clone_from(&steps[at].device);
                }
            }
            out.extend_from_slice(&steps[at + 1..]);
            out
        }
        Operator::Nudge => {
            let movable: Vec<usize> = (0..n).filter(|i| !knobs(&steps[*i]).is_empty()).collect();
            if movable.is_empty() {
                return apply(walker, Operator::ChangeArgs, steps, other, covered);
            }
            let at = *walker.rng().pick(&movable);
            let mut out = steps.to_vec();
            nudge(walker, &mut out[at]);
            out
        }
        Operator::Stream => {
            let writes: Vec<usize> = steps
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s.op, Op::Write(_) | Op::V1Resume(_)))
                .map(|(i, _)| i)
                .collect();
            if writes.is_empty() {
                return apply(walker, Operator::Insert, steps, other, covered);
            }
            let at = *walker.rng().pick(&writes);
            let mut out = steps.to_vec();
            let m = if walker.rng().chance(1, 6) { None } else { Some(walker.stream_mutation()) };
            match &mut out[at].op {
                Op::Write(w) => {
                    if walker.rng().chance(1, 3) {
                        w.segment = walker.segmentation();
                    } else {
                        w.mutate = m;
                    }
                }
                Op::V1Resume(r) => r.mutate = m,
                _ => {}
            }
            out
        }
        Operator::Interleave if walker.labels().len() > 1 => {
            let labels = walker.labels();
            if n > 0 && walker.rng().chance(1, 2) {
                let at = walker.rng().below(n as u64) as usize;
                let mut out = steps.to_vec();
                // Another device than the step's.
                let cur = out[at].device.clone().unwrap_or_else(|| labels[0].clone());
                let others: Vec<&String> = labels.iter().filter(|l| **l != cur).collect();
                let to = (*walker.rng().pick(&others)).clone();
                out[at].device = (to != labels[0]).then_some(to);
                out
            } else {
                let at = pos(walker, n);
                let mut d = walker.draft(&steps[..at]);
                let dev = 1 + walker.rng().below(labels.len() as u64 - 1) as usize;
                if walker.rng().chance(1, 2) {
                    walker.save_macro(dev, &mut d);
                } else {
                    walker.restore_macro(dev, &mut d);
                }
                let mut out = d.into_steps();
                out.extend_from_slice(&steps[at..]);
                out
            }
        }
        Operator::Append => {
            let mut d = walker.draft(steps);
            let k = 1 + walker.rng().below(8) as usize;
            walker.extend(&mut d, k, None, covered);
            d.into_steps()
        }
        _ => {
            let at = pos(walker, n);
            let mut d = walker.draft(&steps[..at]);
            let k = 1 + walker.rng().below(4) as usize;
            walker.extend(&mut d, k, None, covered);
            let mut out = d.into_steps();
            out.extend_from_slice(&steps[at..]);
            out
        }
    }
}

/// The highest allocation a nudge injects a fault into (a fresh walk draws 1 to 12).
pub const FAIL_NTH_MAX: u32 = 64;
/// The longest race delay a nudge sets, in microseconds (a fresh walk draws 0 to 1000).
pub const DELAY_US_MAX: u16 = 5000;

/// A number of a step that [`nudge`] can move.
#[derive(Clone, Copy)]
enum Knob {
    FailNth,
    Delay,
    Calls,
    Valid,
}

/// The numbers of a step that [`nudge`] can move.
fn knobs(s: &Step) -> Vec<Knob> {
    let mut k = Vec::new();
    if s.fail_nth.is_some() {
        k.push(Knob::FailNth);
    }
    match &s.op {
        Op::RaceSetRead(_) => k.push(Knob::Delay),
        Op::RaceReset(r) => {
            k.push(Knob::Delay);
            if r.during.max_calls() > 1 {
                k.push(Knob::Calls);
            }
        }
        Op::BadBuffer(b) if b.len > 0 => k.push(Knob::Valid),
        _ => {}
    }
    k
}

/// A number near `v` (one to a quarter of it away, either side), within `lo..=hi`.
fn near(walker: &mut Walker, v: u64, lo: u64, hi: u64) -> u64 {
    let step = 1 + walker.rng().below(v / 4 + 2);
    let to = if walker.rng().chance(1, 2) { v.saturating_sub(step) } else { v.saturating_add(step) };
    to.clamp(lo, hi)
}

/// Moves one number of a step to a neighbouring value. This is where the feedback pays: a
/// walk kept because a fault in allocation N reached an error path is the place to try N+1
/// (the next allocation of the same call), and a race that landed once lands again at a
/// delay near the one that worked; fresh walks draw these numbers from short fixed lists.
fn nudge(walker: &mut Walker, step: &mut Step) {
    let ks = knobs(step);
    if ks.is_empty() {
        return;
    }
    let k = *walker.rng().pick(&ks);
    let delay = |w: &mut Walker, d: u16| near(w, u64::from(d), 0, u64::from(DELAY_US_MAX)) as u16;
    match (k, &mut step.op) {
        (Knob::FailNth, _) => {
            let n = u64::from(step.fail_nth.unwrap_or(1));
            step.fail_nth = Some(near(walker, n, 1, u64::from(FAIL_NTH_MAX)) as u32);
        }
        (Knob::Delay, Op::RaceSetRead(r)) => r.delay_us = delay(walker, r.delay_us),
        (Knob::Delay, Op::RaceReset(r)) => r.delay_us = delay(walker, r.delay_us),
        (Knob::Calls, Op::RaceReset(r)) => {
            let max = u64::from(r.during.max_calls());
            r.calls = near(walker, u64::from(r.calls), 1, max) as u8;
        }
        (Knob::Valid, Op::BadBuffer(b)) => {
            b.valid = near(walker, u64::from(b.valid), 0, u64::from(b.len.saturating_sub(1))) as u32;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::sim::SimConfig;
    use crate::engine::{Engine, EngineOptions};
    use crate::fuzz::live::LiveOptions;

    fn walker(peers: usize) -> (Engine, Walker) {
        let devs = (0..=peers).map(|_| SimConfig::v2().build()).collect();
        let e = Engine::new(devs, EngineOptions { max_stream: 1 << 20 });
        let w = Walker::new(&e, &LiveOptions { seed: 9, ..LiveOptions::default() });
        (e, w)
    }

    #[test]
    fn every_operator_changes_a_walk_and_the_result_runs() {
        let (mut e, mut w) = walker(1);
        e.skip_harness_errors = true;
        let covered = BTreeSet::new();
        let base = w.walk(&covered).steps;
        let other = w.walk(&covered).steps;
        for op in Operator::ALL {
            let mut changed = 0;
            for _ in 0..20 {
                let m = clean(&apply(&mut w, op, &base, Some(&other), &covered));
                if m != base {
                    changed += 1;
                }
                let run = e.run(&w.check(m));
                assert!(run.end.error().is_none(), "{op:?}: {:?}", run.end);
                assert!(run.findings.is_empty(), "{op:?}: {:?}", run.findings);
            }
            assert!(changed >= 10, "{op:?} changed the walk only {changed} times in 20");
        }
    }

    #[test]
    fn a_nudge_moves_a_fault_or_a_race_to_a_neighbouring_value_beyond_what_fresh_walks_draw() {
        // Arrange: a walk whose SET injects a fault into allocation 12 (the largest a fresh
        // walk draws) and a race_reset of 8 GETs 100 us after the first reset.
        let (mut e, mut w) = walker(0);
        e.skip_harness_errors = true;
        let set = |s| Op::SetState(crate::state::StateArg::Named(s));
        let mut faulty = Step::new(set(MigState::Stop)).oracle();
        faulty.fail_nth = Some(12);
        let race = Step::new(Op::RaceReset(crate::op::RaceResetArgs {
            during: crate::op::RaceCall::GetState,
            state: crate::state::StateArg::Named(MigState::Running),
            fd: crate::op::FdRef::Current,
            delay_us: 100,
            calls: 8,
        }));
        let base = vec![faulty, race];
        // Act: 300 nudges of the base.
        let (mut nths, mut delays, mut calls) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for _ in 0..300 {
            let m = apply(&mut w, Operator::Nudge, &base, None, &BTreeSet::new());
            assert_eq!(m.len(), 2, "a nudge changes a number, not the steps");
            let Op::RaceReset(r) = &m[1].op else { panic!("{m:?}") };
            nths.insert(m[0].fail_nth.unwrap_or(0));
            delays.insert(r.delay_us);
            calls.insert(r.calls);
        }
        // Assert: every knob moved, to neighbours (not to a fresh draw's fixed values only),
        // within bounds; allocations past 12 are tried, which no fresh walk injects into.
        assert!(nths.iter().all(|n| (1..=FAIL_NTH_MAX).contains(n)), "{nths:?}");
        assert!(nths.contains(&13) && nths.contains(&11), "{nths:?}");
        assert!(delays.iter().any(|d| ![0, 10, 100, 1000].contains(d)), "{delays:?}");
        assert!(delays.iter().all(|d| (73..=127).contains(d)), "{delays:?}");
        assert!(calls.len() > 1 && calls.iter().all(|c| (4..=12).contains(c)), "{calls:?}");
        // A walk without such numbers is changed another way.
        let plain = vec![Step::new(set(MigState::Stop)).oracle()];
        let changed =
            (0..20).filter(|_| apply(&mut w, Operator::Nudge, &plain, None, &BTreeSet::new()) != plain);
        assert!(changed.count() >= 10);
    }

    #[test]
    fn inserted_steps_fit_the_state_the_prefix_leaves() {
        // After STOP, STOP_COPY the walker expects a live saving fd: reads are drawn often.
        let (_e, mut w) = walker(0);
        let covered = BTreeSet::new();
        let prefix = vec![
            Step::new(Op::SetState(crate::state::StateArg::Named(MigState::Stop))).oracle(),
            Step::new(Op::SetState(crate::state::StateArg::Named(MigState::StopCopy))).oracle(),
        ];
        let mut reads = 0;
        for _ in 0..200 {
            let mut d = w.draft(&prefix);
            w.extend(&mut d, 1, None, &covered);
            if matches!(d.into_steps()[2].op, Op::Read(_)) {
                reads += 1;
            }
        }
        // Reads weigh 16 with a live fd and 3 without (out of about 80): well above 10 %.
        assert!(reads > 20, "{reads} reads in 200 steps after STOP_COPY");
    }
}
