//! What running a check produced: findings, the trace, how the run ended ([`CheckEnd`]),
//! notes and the restore error; and the JSON form it crosses the process boundary of
//! `isolate` in.

use serde::{Deserialize, Serialize};

use crate::check::Loc;
use crate::oracle::Violation;
use crate::oracle::model::Observation;

/// One broken expectation, located.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(flatten)]
    pub violation: Violation,
    /// 0-based step index.
    pub step: usize,
    /// The step as YAML (`set_state: STOP_COPY`).
    pub op: String,
    pub device: String,
    pub loc: Option<Loc>,
    /// The step was preparation for the behaviour under test.
    pub setup: bool,
}

/// One executed step, for traces and reproducers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub device: String,
    pub op: String,
    pub obs: Observation,
    pub micros: u64,
}

/// How a check's run ended. Findings are kept beside it: a run can break clauses and then
/// end on anything (a harness error at a later step, a precondition that turns out unmet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CheckEnd {
    /// Every step ran, or the run stopped at a broken MUST ([`CheckRun::stopped_early`]).
    #[default]
    Completed,
    /// The check could not observe what it is about here (a feature, a device or a kernel
    /// it needs is absent, a precondition failed): why.
    Unsupported(String),
    /// A harness or environment problem, not a driver violation (a sequence naming what
    /// does not exist, a crashed check process, an interrupt): what.
    HarnessError(String),
    /// A device operation did not return within the watchdog: which step, how long.
    Timeout(String),
}

impl CheckEnd {
    /// The reason, if the run was UNSUPPORTED.
    pub fn unsupported(&self) -> Option<&str> {
        if let CheckEnd::Unsupported(s) = self { Some(s) } else { None }
    }

    /// The harness error, if there was one.
    pub fn error(&self) -> Option<&str> {
        if let CheckEnd::HarnessError(s) = self { Some(s) } else { None }
    }

    /// The watchdog's report, if an operation timed out.
    pub fn timeout(&self) -> Option<&str> {
        if let CheckEnd::Timeout(s) = self { Some(s) } else { None }
    }

    /// The run was interrupted (SIGINT/SIGTERM) before it finished.
    pub fn interrupted(&self) -> bool {
        self.error().is_some_and(|e| e.starts_with("interrupted"))
    }
}

/// The raw result of running a check (the runner turns it into an outcome). It crosses the
/// process boundary of `isolate` as JSON in the form it had before [`CheckEnd`]: the end is
/// one of three optional fields (`unsupported`, `error`, `timeout`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CheckRunWire", into = "CheckRunWire")]
pub struct CheckRun {
    pub findings: Vec<Finding>,
    pub trace: Vec<StepRecord>,
    /// How the run ended.
    pub end: CheckEnd,
    /// Facts worth reporting that are not violations (environment limits, values).
    pub notes: Vec<String>,
    /// The device could not be restored to RUNNING (before or after the check): the run
    /// must stop. Not a [`CheckEnd`]: the restore after a check happens whatever the check
    /// ended with, so it can fail after findings, UNSUPPORTED, a harness error or a timeout,
    /// and both must be reported (the end judges the driver, this stops the run).
    pub restore_error: Option<String>,
    pub duration_us: u64,
    /// The run stopped at a broken MUST before the last step.
    pub stopped_early: bool,
    /// Steps skipped as harness errors (an fd or stream that does not exist) when the engine
    /// runs with [`Engine::skip_harness_errors`](super::Engine::skip_harness_errors) (fuzzing); 0-based.
    pub skipped: Vec<usize>,
}

/// [`CheckRun`] as JSON: its end as the three optional fields it had before [`CheckEnd`].
#[derive(Serialize, Deserialize)]
struct CheckRunWire {
    findings: Vec<Finding>,
    trace: Vec<StepRecord>,
    unsupported: Option<String>,
    error: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    notes: Vec<String>,
    restore_error: Option<String>,
    duration_us: u64,
    stopped_early: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<usize>,
}

impl From<CheckRunWire> for CheckRun {
    fn from(w: CheckRunWire) -> CheckRun {
        // More than one field set (never written, only possible in hand-made JSON): the most
        // severe wins, in the order `oracle::outcome::classify` has always read them.
        let end = match (w.timeout, w.error, w.unsupported) {
            (Some(t), _, _) => CheckEnd::Timeout(t),
            (None, Some(e), _) => CheckEnd::HarnessError(e),
            (None, None, Some(u)) => CheckEnd::Unsupported(u),
            (None, None, None) => CheckEnd::Completed,
        };
        CheckRun {
            findings: w.findings,
            trace: w.trace,
            end,
            notes: w.notes,
            restore_error: w.restore_error,
            duration_us: w.duration_us,
            stopped_early: w.stopped_early,
            skipped: w.skipped,
        }
    }
}

impl From<CheckRun> for CheckRunWire {
    fn from(r: CheckRun) -> CheckRunWire {
        let (mut unsupported, mut error, mut timeout) = (None, None, None);
        match r.end {
            CheckEnd::Completed => {}
            CheckEnd::Unsupported(u) => unsupported = Some(u),
            CheckEnd::HarnessError(e) => error = Some(e),
            CheckEnd::Timeout(t) => timeout = Some(t),
        }
        CheckRunWire {
            findings: r.findings,
            trace: r.trace,
            unsupported,
            error,
            timeout,
            notes: r.notes,
            restore_error: r.restore_error,
            duration_us: r.duration_us,
            stopped_early: r.stopped_early,
            skipped: r.skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_run_crosses_the_process_boundary_in_its_old_json_form() {
        let run = CheckRun {
            end: CheckEnd::Timeout("step 2 `read: {}` did not return within 5 s".to_string()),
            restore_error: Some("device A did not return to RUNNING after the check: EIO".to_string()),
            duration_us: 7,
            ..Default::default()
        };
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["timeout"], "step 2 `read: {}` did not return within 5 s");
        assert!(json["error"].is_null() && json["unsupported"].is_null(), "{json}");
        assert!(json.get("end").is_none(), "{json}");
        let back: CheckRun = serde_json::from_value(json).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn a_check_run_written_before_check_end_reads_with_the_most_severe_end() {
        let old = r#"{"findings":[],"trace":[],"unsupported":"device lacks p2p","error":null,
            "notes":[],"restore_error":null,"duration_us":1,"stopped_early":false}"#;
        let run: CheckRun = serde_json::from_str(old).unwrap();
        assert_eq!(run.end, CheckEnd::Unsupported("device lacks p2p".to_string()));
        let both = old.replace(r#""error":null"#, r#""error":"EBUSY""#);
        let run: CheckRun = serde_json::from_str(&both).unwrap();
        assert_eq!(run.end, CheckEnd::HarnessError("EBUSY".to_string()));
    }
}
