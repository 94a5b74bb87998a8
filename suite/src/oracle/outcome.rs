//! Outcomes: PASS / NON-STRICT / INFO / UNSUPPORTED / XFAIL / XPASS / FAIL / TIMEOUT / ERROR,
//! computed from the broken clauses' levels and the vendor profile: of a check
//! ([`classify`], [`judge`]), of a check on each of its clauses ([`clause_outcomes`]), and
//! when a broken clause ends a check ([`stops_check`]). Report writers only format these.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clauses::{Level, catalog};
use crate::engine::{CheckEnd, CheckRun, Finding};
use crate::oracle::Violation;
use crate::profile::Profile;

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Outcome {
    Pass,
    /// A SHOULD is broken (still conformant; FAIL with --strict).
    NonStrict,
    /// Only INFO/MAY-level observations.
    Info,
    /// An optional feature the check needs is absent, or the environment cannot observe it.
    Unsupported,
    /// A known deviation the profile declares.
    Xfail,
    /// The profile declares a deviation but the check passed (stale profile).
    Xpass,
    /// A MUST (or CORE, DRV-DOC) is broken.
    Fail,
    /// A device operation blocked beyond the watchdog.
    Timeout,
    /// The harness or environment failed (not a driver verdict).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Pass,
        Outcome::NonStrict,
        Outcome::Info,
        Outcome::Unsupported,
        Outcome::Xfail,
        Outcome::Xpass,
        Outcome::Fail,
        Outcome::Timeout,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::NonStrict => "NON-STRICT",
            Outcome::Info => "INFO",
            Outcome::Unsupported => "UNSUPPORTED",
            Outcome::Xfail => "XFAIL",
            Outcome::Xpass => "XPASS",
            Outcome::Fail => "FAIL",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Error => "ERROR",
        }
    }

    /// How bad an outcome is, for "worst of": UNSUPPORTED < PASS < INFO < XFAIL < NON-STRICT <
    /// XPASS < FAIL < TIMEOUT < ERROR.
    pub fn severity(self) -> u8 {
        match self {
            Outcome::Unsupported => 0,
            Outcome::Pass => 1,
            Outcome::Info => 2,
            Outcome::Xfail => 3,
            Outcome::NonStrict => 4,
            Outcome::Xpass => 5,
            Outcome::Fail => 6,
            Outcome::Timeout => 7,
            Outcome::Error => 8,
        }
    }

    /// The worse of two outcomes.
    pub fn worst(self, other: Outcome) -> Outcome {
        if other.severity() > self.severity() { other } else { self }
    }

    /// Whether the outcome makes the run fail (exit 1).
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Timeout | Outcome::Error)
    }

    /// Whether the outcome fails the run under `--strict-profile` or not: every report
    /// (exit code, KTAP, JUnit, pretty) decides with this one rule.
    pub fn fails(self, strict_profile: bool) -> bool {
        self.is_failure() || (strict_profile && self == Outcome::Xpass)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most severe level among a finding's clauses.
pub fn finding_level(f: &Finding) -> Level {
    clauses_level(f.violation.clauses.iter().map(|c| c.as_str())).unwrap_or(Level::Must)
}

/// The most severe level among `clauses` (catalog ids); None when none is in the catalog
/// (`TIMEOUT`, `ERROR`, or a clause of a newer catalog).
pub fn clauses_level<'a>(clauses: impl IntoIterator<Item = &'a str>) -> Option<Level> {
    let rank = |l: Level| match l {
        Level::Must | Level::Core | Level::DrvDoc => 3,
        Level::Should | Level::Qemu => 2,
        Level::May | Level::Info => 1,
        Level::User => 0,
    };
    clauses.into_iter().filter_map(|c| catalog().get(c).map(|cl| cl.level)).max_by_key(|l| rank(*l))
}

/// The outcome of a live-fuzzing finding: a declared deviation is XFAIL, a hang TIMEOUT, a
/// harness problem ERROR, anything else what its level says ([`level_outcome`], as without
/// `--strict`): a SHOULD the fuzzer saw broken is NON-STRICT, never FAIL.
pub fn fuzz_finding_outcome(clauses: &[String], level: Option<Level>, known: bool) -> Outcome {
    match clauses.first().map(String::as_str) {
        _ if known => Outcome::Xfail,
        Some("TIMEOUT") => Outcome::Timeout,
        Some("ERROR") => Outcome::Error,
        _ => level_outcome(
            level.or_else(|| clauses_level(clauses.iter().map(String::as_str))).unwrap_or(Level::Must),
            false,
        ),
    }
}

/// The outcome from the findings alone (before the profile is applied).
pub fn classify(run: &CheckRun, strict: bool) -> (Outcome, Option<String>) {
    match &run.end {
        CheckEnd::Timeout(t) => return (Outcome::Timeout, Some(t.clone())),
        CheckEnd::HarnessError(e) => return (Outcome::Error, Some(e.clone())),
        // Findings made before the check found it could not go on still count.
        CheckEnd::Unsupported(u) if run.findings.is_empty() => {
            return (Outcome::Unsupported, Some(u.clone()));
        }
        CheckEnd::Unsupported(_) | CheckEnd::Completed => {}
    }
    let levels: Vec<Level> = run.findings.iter().map(finding_level).collect();
    if levels.iter().any(|l| l.is_mandatory()) {
        return (Outcome::Fail, None);
    }
    if levels.contains(&Level::Should) {
        return (if strict { Outcome::Fail } else { Outcome::NonStrict }, None);
    }
    // What QEMU needs but the uAPI does not say is a warning even under --strict: a FAIL
    // promises that a sentence of the uAPI was broken.
    if levels.contains(&Level::Qemu) {
        return (Outcome::NonStrict, None);
    }
    if !levels.is_empty() {
        return (Outcome::Info, None);
    }
    if let Some(e) = &run.restore_error {
        return (Outcome::Error, Some(e.clone()));
    }
    (Outcome::Pass, None)
}

/// The outcome a broken clause of `level` gives: MUST, CORE and DRV-DOC are FAIL; SHOULD is
/// NON-STRICT (FAIL under `--strict`); what QEMU needs where the uAPI is silent stays
/// NON-STRICT even under `--strict`; MAY, INFO and USER are INFO.
pub fn level_outcome(level: Level, strict: bool) -> Outcome {
    match level {
        l if l.is_mandatory() => Outcome::Fail,
        Level::Should if strict => Outcome::Fail,
        Level::Should | Level::Qemu => Outcome::NonStrict,
        _ => Outcome::Info,
    }
}

/// Whether a violation ends its check: a broken MUST leaves the device in a state the
/// following steps were not written for.
pub fn stops_check(v: &Violation) -> bool {
    v.clauses.iter().any(|c| c.level().is_mandatory())
}

/// The outcome of one check on each clause it lists or a finding names. A check that broke
/// other clauses is PASS on this one; TIMEOUT, ERROR, UNSUPPORTED, XPASS and PASS concern
/// the whole check; an XFAIL check is XFAIL on the clauses its findings name.
/// `findings` gives each finding's clauses and level.
pub fn clause_outcomes<'a>(
    outcome: Outcome,
    clauses: impl IntoIterator<Item = &'a str>,
    findings: &[(Vec<&'a str>, Level)],
    strict: bool,
) -> BTreeMap<String, Outcome> {
    let mut out: BTreeMap<String, Outcome> = BTreeMap::new();
    let per_check = !matches!(outcome, Outcome::Fail | Outcome::NonStrict | Outcome::Info | Outcome::Xfail);
    let base = if per_check { outcome } else { Outcome::Pass };
    for c in clauses.into_iter().chain(findings.iter().flat_map(|(cl, _)| cl.iter().copied())) {
        out.entry(c.to_string()).or_insert(base);
    }
    if per_check {
        return out;
    }
    for (cl, level) in findings {
        let o = if outcome == Outcome::Xfail { Outcome::Xfail } else { level_outcome(*level, strict) };
        for c in cl {
            if let Some(x) = out.get_mut(*c) {
                *x = x.worst(o);
            }
        }
    }
    out
}

/// A check's verdict: its outcome with the reason, and the profile deviation that applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// `PROFILE: what [file:line:col]` of the deviation that made it XFAIL or XPASS.
    pub deviation: Option<String>,
}

/// The verdict of a check run: [`classify`], then the profile's deviations for a device of
/// `model`.
pub fn judge(
    run: &CheckRun,
    check_id: &str,
    strict: bool,
    profile: Option<&Profile>,
    model: Option<&str>,
) -> Verdict {
    let (outcome, reason) = classify(run, strict);
    let mut verdict = Verdict { outcome, reason, deviation: None };
    if let Some(p) = profile {
        let broken: Vec<crate::clauses::ClauseId> =
            run.findings.iter().flat_map(|f| f.violation.clauses.iter().copied()).collect();
        let (o, d) = p.apply(check_id, model, outcome, &broken);
        if let Some(d) = d {
            verdict.deviation = Some(format!("{}: {} [{}]", p.name, d.describe(), d.at));
            verdict.reason = Some(if o == Outcome::Xpass {
                format!("profile {} declares a deviation that did not happen: {}", p.name, d.describe())
            } else {
                format!("known deviation of {}: {}", p.name, d.describe())
            });
        }
        verdict.outcome = o;
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::ClauseId;
    use crate::clauses::id::*;
    use crate::oracle::Violation;

    #[test]
    fn a_fuzz_finding_is_judged_by_its_level_not_failed_for_being_found() {
        let should = vec![V2_PRECOPY_007.as_str().to_string()];
        let must = vec![V2_STATE_007.as_str().to_string()];
        assert_eq!(V2_PRECOPY_007.level(), Level::Should, "the test needs a SHOULD clause");
        assert_eq!(fuzz_finding_outcome(&should, None, false), Outcome::NonStrict);
        assert_eq!(fuzz_finding_outcome(&should, Some(Level::Should), false), Outcome::NonStrict);
        assert_eq!(fuzz_finding_outcome(&must, None, false), Outcome::Fail);
        // The recorded level wins over today's catalog.
        assert_eq!(fuzz_finding_outcome(&must, Some(Level::Info), false), Outcome::Info);
        assert_eq!(fuzz_finding_outcome(&must, None, true), Outcome::Xfail);
        assert_eq!(fuzz_finding_outcome(&["TIMEOUT".to_string()], None, false), Outcome::Timeout);
        assert_eq!(fuzz_finding_outcome(&["ERROR".to_string()], None, false), Outcome::Error);
        assert_eq!(clauses_level(["V2-PRECOPY-007", "V2-STATE-007"]), Some(Level::Must));
        assert_eq!(clauses_level(["TIMEOUT"]), None);
    }

    fn run_with(clauses: &[ClauseId]) -> CheckRun {
        CheckRun {
            findings: clauses
                .iter()
                .map(|c| Finding {
                    violation: Violation::new([*c], String::new(), String::new()),
                    step: 0,
                    op: String::new(),
                    device: "A".into(),
                    loc: None,
                    setup: false,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn must_breaks_fail_should_breaks_are_non_strict_unless_strict() {
        assert_eq!(classify(&run_with(&[V2_STATE_007]), false).0, Outcome::Fail);
        assert_eq!(classify(&run_with(&[V2_PRECOPY_007]), false).0, Outcome::NonStrict);
        assert_eq!(classify(&run_with(&[V2_PRECOPY_007]), true).0, Outcome::Fail);
        assert_eq!(classify(&run_with(&[V2_MIG_004]), false).0, Outcome::Info);
        assert_eq!(classify(&run_with(&[V2_OPEN_001]), false).0, Outcome::NonStrict);
        assert_eq!(classify(&run_with(&[V2_OPEN_001]), true).0, Outcome::NonStrict);
        assert_eq!(classify(&run_with(&[]), false).0, Outcome::Pass);
    }

    #[test]
    fn a_check_is_pass_on_the_clauses_its_findings_do_not_name() {
        let f = vec![(vec!["V2-STATE-007"], Level::Must), (vec!["V2-PRECOPY-007"], Level::Should)];
        let o = clause_outcomes(Outcome::Fail, ["V2-STATE-007", "V2-STATE-005"], &f, false);
        assert_eq!(o["V2-STATE-007"], Outcome::Fail);
        assert_eq!(o["V2-STATE-005"], Outcome::Pass);
        assert_eq!(o["V2-PRECOPY-007"], Outcome::NonStrict);
    }

    #[test]
    fn strict_makes_a_should_clause_fail_but_not_a_qemu_one() {
        let f = vec![(vec!["V2-PRECOPY-007"], Level::Should), (vec!["V2-OPEN-001"], Level::Qemu)];
        let o = clause_outcomes(Outcome::Fail, [], &f, true);
        assert_eq!(o["V2-PRECOPY-007"], Outcome::Fail);
        assert_eq!(o["V2-OPEN-001"], Outcome::NonStrict);
    }

    #[test]
    fn whole_check_outcomes_apply_to_every_clause() {
        let o = clause_outcomes(Outcome::Unsupported, ["V2-STATE-007"], &[], false);
        assert_eq!(o["V2-STATE-007"], Outcome::Unsupported);
        let f = vec![(vec!["V2-STATE-007"], Level::Must)];
        assert_eq!(
            clause_outcomes(Outcome::Xfail, ["V2-STATE-005"], &f, false)["V2-STATE-007"],
            Outcome::Xfail
        );
    }

    #[test]
    fn only_mandatory_breaks_stop_a_check() {
        assert!(stops_check(&Violation::new([V2_STATE_007], String::new(), String::new())));
        assert!(!stops_check(&Violation::new([V2_PRECOPY_007], String::new(), String::new())));
    }

    #[test]
    fn harness_errors_are_not_driver_failures() {
        let run = CheckRun { end: CheckEnd::HarnessError("EBUSY".into()), ..Default::default() };
        assert_eq!(classify(&run, false).0, Outcome::Error);
    }
}
