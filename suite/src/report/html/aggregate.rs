//! Aggregation: what each run says about each clause, from the record's per-check,
//! per-clause outcomes (never re-derived here).

use std::collections::{BTreeMap, BTreeSet};

use crate::clauses::catalog;
use crate::outcome::Outcome;
use crate::report::record::{CheckResult, Run};

pub(super) fn worst(a: Outcome, b: Outcome) -> Outcome {
    a.worst(b)
}

/// The verdict of one check on one clause, as the record says
/// ([`CheckResult::clause_outcomes`]). Records written before the field existed carry none:
/// their checks count with their own outcome.
pub fn clause_outcome(c: &CheckResult, clause: &str) -> Outcome {
    c.clause_outcomes.get(clause).copied().unwrap_or(c.outcome)
}

/// What one run says about one clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClauseVerdict {
    /// The worst [`clause_outcome`] of the checks observing the clause.
    pub outcome: Outcome,
    /// (check index, its outcome on this clause).
    pub checks: Vec<(usize, Outcome)>,
    /// (check index, finding index) of the findings naming the clause.
    pub findings: Vec<(usize, usize)>,
}

/// Every clause a run observed (listed by a check or named by a finding), with its verdict.
pub fn clause_verdicts(run: &Run) -> BTreeMap<String, ClauseVerdict> {
    let mut out: BTreeMap<String, ClauseVerdict> = BTreeMap::new();
    for (ci, c) in run.checks.iter().enumerate() {
        let mut clauses: BTreeSet<&str> = c.clauses.iter().map(String::as_str).collect();
        for f in &c.findings {
            clauses.extend(f.clauses.iter().map(String::as_str));
        }
        for k in clauses {
            let o = clause_outcome(c, k);
            let v = out.entry(k.to_string()).or_insert(ClauseVerdict {
                outcome: o,
                checks: Vec::new(),
                findings: Vec::new(),
            });
            v.outcome = worst(v.outcome, o);
            v.checks.push((ci, o));
        }
        for (fi, f) in c.findings.iter().enumerate() {
            for k in &f.clauses {
                if let Some(v) = out.get_mut(k) {
                    v.findings.push((ci, fi));
                }
            }
        }
    }
    out
}

/// The clause ids in catalog order, then any the catalog does not know, sorted.
pub(super) fn ordered_clauses(ids: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> =
        catalog().all().iter().filter(|c| ids.contains(&c.id)).map(|c| c.id.clone()).collect();
    out.extend(ids.iter().filter(|id| catalog().get(id).is_none()).cloned());
    out
}

/// The clauses some run could observe, then (a second group) those every run reported
/// UNSUPPORTED for.
pub(super) fn groups<'a>(
    clauses: &'a [String],
    verdicts: &[BTreeMap<String, ClauseVerdict>],
) -> Vec<(bool, Vec<&'a String>)> {
    let unobservable =
        |k: &String| verdicts.iter().all(|v| v.get(k).is_none_or(|c| c.outcome == Outcome::Unsupported));
    let (late, first): (Vec<&String>, Vec<&String>) = clauses.iter().partition(|k| unobservable(k));
    let mut out = vec![(false, first)];
    if !late.is_empty() {
        out.push((true, late));
    }
    out
}

/// Whether the runs that observed a clause disagree on it. A run with no check on the clause
/// (a partial run, a filtered run, a device without the feature) did not run it: that is not
/// a difference.
pub(super) fn differs(cells: &[Option<&ClauseVerdict>]) -> bool {
    let observed: BTreeSet<Outcome> = cells.iter().flatten().map(|v| v.outcome).collect();
    observed.len() > 1
}

/// The family of a clause: its id without the trailing number (`V2-STATE-007` -> `V2-STATE`).
pub(super) fn family_of(id: &str) -> &str {
    match id.rsplit_once('-') {
        Some((fam, n)) if !fam.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => fam,
        _ => id,
    }
}

/// The outcomes a row of the clause tables shows, for the outcome filter: each run's verdict,
/// `NOT-RUN` for a run that has no check on the clause.
pub(super) fn row_outcomes(cells: &[Option<&ClauseVerdict>]) -> BTreeSet<&'static str> {
    cells.iter().map(|c| c.map_or("NOT-RUN", |v| v.outcome.as_str())).collect()
}
