//! Outcomes: PASS / NON-STRICT / INFO / UNSUPPORTED / XFAIL / XPASS / FAIL / TIMEOUT / ERROR,
//! computed from the broken clauses' levels and the vendor profile.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clauses::{Level, catalog};
use crate::engine::{CheckRun, Finding};

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

    /// Whether the outcome makes the run fail (exit 1).
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Timeout | Outcome::Error)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most severe level among a finding's clauses.
pub fn finding_level(f: &Finding) -> Level {
    let rank = |l: Level| match l {
        Level::Must | Level::Core | Level::DrvDoc => 3,
        Level::Should | Level::Qemu => 2,
        Level::May | Level::Info => 1,
        Level::User => 0,
    };
    f.violation
        .clauses
        .iter()
        .filter_map(|c| catalog().get(c).map(|cl| cl.level))
        .max_by_key(|l| rank(*l))
        .unwrap_or(Level::Must)
}

/// The outcome from the findings alone (before the profile is applied).
pub fn classify(run: &CheckRun, strict: bool) -> (Outcome, Option<String>) {
    if let Some(t) = &run.timeout {
        return (Outcome::Timeout, Some(t.clone()));
    }
    if let Some(e) = &run.error {
        return (Outcome::Error, Some(e.clone()));
    }
    if let Some(u) = &run.unsupported
        && run.findings.is_empty()
    {
        return (Outcome::Unsupported, Some(u.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::ClauseId;
    use crate::clauses::id::*;
    use crate::oracle::Violation;

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
    fn harness_errors_are_not_driver_failures() {
        let run = CheckRun { error: Some("EBUSY".into()), ..Default::default() };
        assert_eq!(classify(&run, false).0, Outcome::Error);
    }
}
