//! Shrinking a walk that showed a problem: delta debugging (drop chunks of steps, re-run each
//! candidate on the device after the reset every check gets, keep what still shows the
//! problem), then drop the steps skipped as harness errors and those after the problem.

use super::walk::clean;
use crate::check::Step;
use crate::engine::CheckRun;

/// What a shrink produced.
#[derive(Debug)]
pub struct Shrunk {
    pub steps: Vec<Step>,
    /// The last run that showed the problem (empty when no candidate reproduced it).
    pub run: CheckRun,
    /// How many runs it took.
    pub runs: usize,
}

/// The smallest subsequence of `steps[..=step]` whose run still shows the problem. `same`
/// tells whether a run shows it: the step of a finding with the same clauses, or `usize::MAX`
/// for the same error; None when it does not. `run` executes a candidate; at most `budget`
/// candidates are run. A problem that does not reproduce when cut at `step` (or cleaned) keeps
/// the whole walk.
pub fn shrink(
    steps: &[Step],
    step: usize,
    same: &dyn Fn(&CheckRun) -> Option<usize>,
    budget: usize,
    run: &mut dyn FnMut(&[Step]) -> CheckRun,
    interrupted: &dyn Fn(&CheckRun) -> bool,
) -> Shrunk {
    let mut runs = 0usize;
    let mut test = |cand: &[Step], runs: &mut usize| -> Option<CheckRun> {
        *runs += 1;
        let r = run(cand);
        same(&r).is_some().then_some(r)
    };
    let mut best: Vec<Step> = clean(&steps[..=step.min(steps.len().saturating_sub(1))]);
    let Some(mut best_run) = test(&best, &mut runs) else {
        return Shrunk { steps: steps.to_vec(), run: CheckRun::default(), runs };
    };
    let mut n = 2usize;
    while best.len() >= 2 && runs < budget && !interrupted(&best_run) {
        let chunk = best.len().div_ceil(n);
        let mut reduced = None;
        for i in 0..n {
            let lo = i * chunk;
            if lo >= best.len() {
                break;
            }
            let hi = (lo + chunk).min(best.len());
            let mut cand: Vec<Step> = best[..lo].to_vec();
            cand.extend_from_slice(&best[hi..]);
            let cand = clean(&cand);
            if cand.is_empty() || runs >= budget {
                continue;
            }
            if let Some(r) = test(&cand, &mut runs) {
                reduced = Some((cand, r));
                break;
            }
        }
        match reduced {
            Some((cand, r)) => {
                best = cand;
                best_run = r;
                n = (n - 1).max(2);
            }
            None if n >= best.len() => break,
            None => n = (n * 2).min(best.len()),
        }
    }
    // Steps skipped as harness errors do nothing: drop them, and the steps after the finding.
    let last = same(&best_run).filter(|s| *s != usize::MAX);
    let trimmed: Vec<Step> = best
        .iter()
        .enumerate()
        .filter(|(i, _)| !best_run.skipped.contains(i) && last.is_none_or(|l| *i <= l))
        .map(|(_, s)| s.clone())
        .collect();
    if trimmed.len() < best.len()
        && let Some(r) = test(&trimmed, &mut runs)
    {
        return Shrunk { steps: trimmed, run: r, runs };
    }
    Shrunk { steps: best, run: best_run, runs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CheckEnd;
    use crate::op::Op;

    fn wait(ms: u16) -> Step {
        Step::new(Op::Wait { ms })
    }

    #[test]
    fn the_two_steps_that_together_show_a_problem_are_all_that_is_kept() {
        // A problem shows when the walk holds waits of 3 and 7 ms, in that order.
        let steps: Vec<Step> = (1..=12).map(wait).collect();
        let shows = |s: &[Step]| {
            let ms: Vec<u16> =
                s.iter().filter_map(|s| if let Op::Wait { ms } = s.op { Some(ms) } else { None }).collect();
            ms.iter().position(|m| *m == 3).is_some_and(|a| ms[a..].contains(&7))
        };
        let mut run = |s: &[Step]| CheckRun {
            end: if shows(s) { CheckEnd::HarnessError("boom".to_string()) } else { CheckEnd::Completed },
            ..CheckRun::default()
        };
        let same = |r: &CheckRun| r.end.error().map(|_| usize::MAX);
        let out = shrink(&steps, 11, &same, 100, &mut run, &|_| false);
        let ms: Vec<u16> =
            out.steps.iter().map(|s| if let Op::Wait { ms } = s.op { ms } else { 0 }).collect();
        assert_eq!(ms, vec![3, 7]);
        assert!(out.runs <= 40, "{} runs", out.runs);
    }

    #[test]
    fn a_problem_that_does_not_reproduce_keeps_the_whole_walk() {
        let steps: Vec<Step> = (1..=5).map(wait).collect();
        let mut run = |_: &[Step]| CheckRun::default();
        let same = |r: &CheckRun| r.end.error().map(|_| usize::MAX);
        let out = shrink(&steps, 2, &same, 100, &mut run, &|_| false);
        assert_eq!(out.steps.len(), 5);
        assert_eq!(out.runs, 1);
    }
}
