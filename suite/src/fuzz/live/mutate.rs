//! Mutating corpus walks: insert generated steps, delete a chunk, splice with another walk,
//! change one step's arguments, change how a stream is mutated or cut before it is written,
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
    Stream,
    Interleave,
    Append,
}

impl Operator {
    pub const ALL: [Operator; 7] = [
        Operator::Insert,
        Operator::Delete,
        Operator::Splice,
        Operator::ChangeArgs,
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
