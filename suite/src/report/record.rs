//! The run record: one JSON object per line (JSON Lines), written as checks finish, so a
//! crash, kill or power loss keeps every finished check. Every other format (pretty, KTAP,
//! JUnit, HTML) is rebuilt from it.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::check::{Check, Loc};
use crate::clauses::{Level, catalog};
use crate::device::DeviceInfo;
use crate::engine::{CheckRun, DeviceFacts, Finding, StepRecord};
use crate::outcome::{Outcome, finding_level};

/// One broken clause as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub clauses: Vec<String>,
    pub level: Level,
    /// The first clause's title and statement.
    pub title: String,
    pub statement: String,
    pub source: String,
    pub expected: String,
    pub actual: String,
    /// The step's number, counted from 1 (as `trace[].step` and "Step N" in reports).
    pub step: usize,
    pub op: String,
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loc: Option<Loc>,
    #[serde(default)]
    pub setup: bool,
}

impl FindingRecord {
    pub fn from_finding(f: &Finding) -> FindingRecord {
        let first = f.violation.clauses.first().and_then(|c| catalog().get(c));
        FindingRecord {
            clauses: f.violation.clauses.iter().map(|c| c.to_string()).collect(),
            level: finding_level(f),
            title: first.map(|c| c.title.clone()).unwrap_or_default(),
            statement: first.map(|c| c.statement.clone()).unwrap_or_default(),
            source: first.map(|c| c.sources()).unwrap_or_default(),
            expected: f.violation.expected.clone(),
            actual: f.violation.actual.clone(),
            step: f.step + 1,
            op: f.op.clone(),
            device: f.device.clone(),
            loc: f.loc.clone(),
            setup: f.setup,
        }
    }
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub outcome: Outcome,
    /// Why: the unsupported feature, the harness error, the profile's deviation reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The clauses the check observes.
    pub clauses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub duration_us: u64,
    /// Where the check comes from (sequence file:line:col or generator).
    pub origin: String,
    /// The command that runs exactly this check again.
    pub reproduce: String,
    /// The profile deviation that applied (XFAIL/XPASS), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviation: Option<String>,
    /// Every step with what it returned; `step` counts from 1, as in `findings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<StepRecord>,
    /// The check's outcome on each clause it lists or a finding names
    /// ([`crate::oracle::outcome::clause_outcomes`]), under the run's `--strict`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clause_outcomes: BTreeMap<String, Outcome>,
}

impl CheckResult {
    pub fn new(
        check: &Check,
        run: &CheckRun,
        verdict: crate::oracle::outcome::Verdict,
        strict: bool,
        reproduce: String,
    ) -> CheckResult {
        let crate::oracle::outcome::Verdict { outcome, reason, deviation } = verdict;
        let mut notes = run.notes.clone();
        if run.stopped_early {
            notes.push("stopped at the first broken MUST".to_string());
        }
        if let Some(r) = &run.restore_error {
            notes.push(r.clone());
        }
        CheckResult {
            id: check.id.clone(),
            title: check.title.clone(),
            outcome,
            reason,
            clauses: check.clauses.iter().map(|c| c.to_string()).collect(),
            findings: run.findings.iter().map(FindingRecord::from_finding).collect(),
            notes,
            duration_us: run.duration_us,
            origin: check.origin.to_string(),
            reproduce,
            deviation,
            // The engine counts steps from 0; every report counts them from 1.
            trace: run.trace.iter().map(|t| StepRecord { step: t.step + 1, ..t.clone() }).collect(),
            clause_outcomes: BTreeMap::new(),
        }
        .with_clause_outcomes(strict)
    }

    /// A result with only an id and an outcome: what the writers' tests start from.
    #[cfg(test)]
    pub(crate) fn bare(id: &str, outcome: Outcome) -> CheckResult {
        CheckResult {
            id: id.to_string(),
            title: String::new(),
            outcome,
            reason: None,
            clauses: Vec::new(),
            findings: Vec::new(),
            notes: Vec::new(),
            duration_us: 0,
            origin: "generated".to_string(),
            reproduce: String::new(),
            deviation: None,
            trace: Vec::new(),
            clause_outcomes: BTreeMap::new(),
        }
    }

    /// The verdict before any profile, as `report A B --diff` compares runs: XFAIL is the
    /// FAIL (a MUST finding) or NON-STRICT/INFO it declares, XPASS is PASS, every other
    /// outcome is itself.
    pub fn raw_verdict(&self) -> &'static str {
        match self.outcome {
            Outcome::Xfail => {
                if self.findings.iter().any(|f| f.level.is_mandatory()) {
                    "FAIL"
                } else {
                    "NON-STRICT/INFO"
                }
            }
            Outcome::Xpass => "PASS",
            o => o.as_str(),
        }
    }

    /// Fills [`CheckResult::clause_outcomes`] from the outcome and the findings.
    pub fn with_clause_outcomes(mut self, strict: bool) -> CheckResult {
        let findings: Vec<(Vec<&str>, crate::clauses::Level)> =
            self.findings.iter().map(|f| (f.clauses.iter().map(String::as_str).collect(), f.level)).collect();
        let map = crate::oracle::outcome::clause_outcomes(
            self.outcome,
            self.clauses.iter().map(String::as_str),
            &findings,
            strict,
        );
        self.clause_outcomes = map;
        self
    }

    /// The h2spec-style failure block: clause, statement, source, step, Expected/Actual,
    /// Reproduce.
    pub fn failure_block(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.reason {
            s.push_str(&format!("{}: {r}\n", self.outcome));
        }
        for f in &self.findings {
            s.push_str(&format!("{} [{}] {}: {}\n", f.clauses.join(", "), f.level, f.title, f.statement));
            if !f.source.is_empty() {
                s.push_str(&format!("  Source:   {}\n", f.source));
            }
            let at = f.loc.as_ref().map(|l| format!("  ({l})")).unwrap_or_default();
            let setup = if f.setup { " [setup]" } else { "" };
            s.push_str(&format!("  Step {}{setup}: {} on device {}{at}\n", f.step, f.op, f.device));
            s.push_str(&format!("  Expected: {}\n", f.expected));
            s.push_str(&format!("    Actual: {}\n", f.actual));
        }
        for n in &self.notes {
            s.push_str(&format!("  Note: {n}\n"));
        }
        s.push_str(&format!("Reproduce: {}\n", self.reproduce));
        if self.origin.contains(':') && !self.origin.starts_with("generated") {
            s.push_str(&format!("  Sequence: {}\n", self.origin));
        }
        s
    }
}

/// A device as recorded in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub label: String,
    pub info: DeviceInfo,
    pub facts: DeviceFacts,
}

/// Totals per outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub pass: usize,
    pub non_strict: usize,
    pub info: usize,
    pub unsupported: usize,
    pub xfail: usize,
    pub xpass: usize,
    pub fail: usize,
    pub timeout: usize,
    pub error: usize,
}

impl Totals {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Pass => self.pass += 1,
            Outcome::NonStrict => self.non_strict += 1,
            Outcome::Info => self.info += 1,
            Outcome::Unsupported => self.unsupported += 1,
            Outcome::Xfail => self.xfail += 1,
            Outcome::Xpass => self.xpass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Timeout => self.timeout += 1,
            Outcome::Error => self.error += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.pass
            + self.non_strict
            + self.info
            + self.unsupported
            + self.xfail
            + self.xpass
            + self.fail
            + self.timeout
            + self.error
    }

    pub fn from_results(results: &[CheckResult]) -> Totals {
        let mut t = Totals::default();
        for r in results {
            t.add(r.outcome);
        }
        t
    }

    /// Whether these totals fail a run (FAIL, TIMEOUT, ERROR, or XPASS under
    /// `--strict-profile`).
    pub fn failed(&self, strict_profile: bool) -> bool {
        self.fail + self.timeout + self.error > 0 || (strict_profile && self.xpass > 0)
    }

    /// `pass:N fail:N ...` in kselftest's order plus ours.
    pub fn line(&self) -> String {
        format!(
            "pass:{} fail:{} xfail:{} xpass:{} skip:{} error:{} timeout:{} non-strict:{} info:{}",
            self.pass,
            self.fail,
            self.xfail,
            self.xpass,
            self.unsupported,
            self.error,
            self.timeout,
            self.non_strict,
            self.info
        )
    }
}

/// The record format this version writes. 2: `trace[].step` counts from 1, like
/// `findings[].step` and the "Step N" of failure blocks (version 1, records without the field,
/// counted trace steps from 0; [`Run::read`] renumbers them).
pub const RECORD_VERSION: u32 = 2;

fn record_version_1() -> u32 {
    1
}

/// The header of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The record format ([`RECORD_VERSION`]).
    #[serde(default = "record_version_1")]
    pub record_version: u32,
    pub tool: String,
    pub version: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub command: Vec<String>,
    pub devices: Vec<DeviceRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub strict: bool,
    /// `--strict-profile`: an XPASS fails the run (and every report rebuilt from the record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_profile: bool,
    /// `--timeout` of the run, in seconds (KTAP's TIMEOUT directive names it).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Host kernel (`uname -r`).
    pub host_kernel: String,
}

fn default_timeout_secs() -> u64 {
    10
}

/// The footer of a complete run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFooter {
    pub totals: Totals,
    pub exit_code: i32,
    pub duration_ms: u64,
    /// Set when the run was interrupted (SIGINT/SIGTERM) before the last check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// One discrepancy the fuzzer found (after shrinking).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FuzzFinding {
    pub clauses: Vec<String>,
    pub expected: String,
    pub actual: String,
    /// The minimal YAML sequence that reproduces it (replay with `--sequence`).
    pub reproducer: String,
    /// Where the reproducer was written, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducer_file: Option<String>,
    /// The command that replays it (device, bounds, `--sequence FILE`), when it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// The profile deviation that declares it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
    /// The level of its clauses as the oracle judged them when it was found (the most severe
    /// of them); absent in records written before it was recorded, and for TIMEOUT/ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Seconds from the start of fuzzing to the first sighting.
    pub after_secs: f64,
}

impl FuzzFinding {
    /// The finding as the result of a check named by its reproducer's id (`fuzz.live.*`), so
    /// that every report of a fuzz record (pretty, KTAP, JUnit, exit code) counts it: a new
    /// finding is a FAIL (TIMEOUT, ERROR for a hang or a harness error), a known one an XFAIL.
    pub fn as_check_result(&self) -> CheckResult {
        let id = self
            .reproducer
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| format!("fuzz.live.{}", self.clauses.join("_").to_ascii_lowercase()));
        let outcome =
            crate::oracle::outcome::fuzz_finding_outcome(&self.clauses, self.level, self.known.is_some());
        let harness = matches!(self.clauses.first().map(String::as_str), Some("TIMEOUT" | "ERROR"));
        let level = self
            .level
            .or_else(|| crate::oracle::outcome::clauses_level(self.clauses.iter().map(String::as_str)))
            .unwrap_or(Level::Must);
        let first = self.clauses.first().and_then(|c| catalog().get(c));
        let findings = if harness {
            Vec::new()
        } else {
            vec![FindingRecord {
                clauses: self.clauses.clone(),
                level,
                title: first.map(|c| c.title.clone()).unwrap_or_default(),
                statement: first.map(|c| c.statement.clone()).unwrap_or_default(),
                source: first.map(|c| c.sources()).unwrap_or_default(),
                expected: self.expected.clone(),
                actual: self.actual.clone(),
                // Shrinking drops the steps after the finding: it is at the last step.
                step: self.reproducer.lines().filter(|l| l.starts_with("- ")).count(),
                op: self
                    .reproducer
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("- "))
                    .map_or_else(|| "the last step".to_string(), |l| l.trim_end_matches(':').to_string()),
                device: "A".to_string(),
                loc: None,
                setup: false,
            }]
        };
        CheckResult {
            id,
            title: format!("fuzz finding: {}", self.clauses.join(", ")),
            outcome,
            reason: match (&self.known, harness) {
                (Some(k), _) => Some(format!("known deviation of {k}")),
                (None, true) => Some(format!("expected {}; actual {}", self.expected, self.actual)),
                (None, false) => None,
            },
            clauses: self.clauses.clone(),
            findings,
            notes: Vec::new(),
            duration_us: 0,
            origin: self.reproducer_file.clone().unwrap_or_else(|| "fuzz finding".to_string()),
            reproduce: self.replay.clone().unwrap_or_else(|| {
                "the reproducer is in the record's fuzz line (not written to a file)".to_string()
            }),
            deviation: self.known.clone(),
            trace: Vec::new(),
            clause_outcomes: BTreeMap::new(),
        }
        .with_clause_outcomes(false)
    }
}

/// What a fuzzing session covered and found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FuzzSummary {
    pub device: String,
    pub seed: u64,
    pub duration_ms: u64,
    /// Operations executed.
    pub ops: u64,
    pub ops_per_sec: f64,
    /// (cur, new) SET pairs exercised, as `RUNNING->STOP_COPY`.
    pub arcs_covered: Vec<String>,
    /// How many (cur, new) pairs the device's flags make possible.
    pub arcs_possible: usize,
    /// Error paths hit, as `op:ERRNO` with a count (`set_state:EINVAL`, `read:ENOMSG`).
    pub error_paths: Vec<(String, u64)>,
    pub findings: Vec<FuzzFinding>,
    /// Kernel coverage (`fuzz --coverage kcov`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<super::coverage::CoverageRecord>,
}

/// One line of the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Run(RunHeader),
    Check(Box<CheckResult>),
    Fuzz(Box<FuzzSummary>),
    End(RunFooter),
}

/// A whole run read back from JSON Lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub header: RunHeader,
    pub checks: Vec<CheckResult>,
    /// Fuzzing sessions recorded in the run, if any.
    #[serde(default)]
    pub fuzz: Vec<FuzzSummary>,
    /// None when the run did not finish (crash, kill): the checks present are still valid.
    pub footer: Option<RunFooter>,
}

impl Run {
    /// Every result of the run: its checks, then its fuzz findings as checks.
    pub fn results(&self) -> Vec<CheckResult> {
        let mut all = self.checks.clone();
        all.extend(self.fuzz.iter().flat_map(|f| f.findings.iter().map(FuzzFinding::as_check_result)));
        all
    }

    /// Why the run did not finish, if it did not: the footer's reason, or no footer at all.
    pub fn unfinished(&self) -> Option<String> {
        match &self.footer {
            None => {
                Some("the run did not finish (the record has no end line: killed or crashed)".to_string())
            }
            Some(f) => f.interrupted.clone(),
        }
    }

    /// Reads a record; a truncated last line (a crash mid-write) is ignored, anything else
    /// wrong is an error naming the line.
    pub fn read(path: &std::path::Path) -> Result<Run, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut header = None;
        let mut checks = Vec::new();
        let mut fuzz = Vec::new();
        let mut footer = None;
        let lines: Vec<&[u8]> = bytes.strip_suffix(b"\n").unwrap_or(&bytes).split(|b| *b == b'\n').collect();
        let n = lines.len();
        for (i, raw) in lines.iter().enumerate() {
            // A crash mid-write can cut the last line inside a UTF-8 sequence: torn, not corrupt.
            let line = match std::str::from_utf8(raw) {
                Ok(l) => l,
                Err(_) if i + 1 == n => continue,
                Err(e) => return Err(format!("{}:{}: not UTF-8 text: {e}", path.display(), i + 1)),
            };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Run(h)) => header = Some(h),
                Ok(Line::Check(c)) => checks.push(*c),
                Ok(Line::Fuzz(f)) => fuzz.push(*f),
                Ok(Line::End(e)) => footer = Some(e),
                Err(_) if i + 1 == n => {} // torn last line
                Err(e) => return Err(format!("{}:{}: not a run record line: {e}", path.display(), i + 1)),
            }
        }
        let header: RunHeader = header.ok_or_else(|| {
            format!("{}: no run header line (is this a vfio-mig-conform --json record?)", path.display())
        })?;
        let mut header = header;
        if header.record_version < 2 {
            for t in checks.iter_mut().flat_map(|c: &mut CheckResult| c.trace.iter_mut()) {
                t.step += 1;
            }
            header.record_version = RECORD_VERSION;
        }
        Ok(Run { header, checks, fuzz, footer })
    }
}

/// Appends lines to a record file, flushing each so finished checks survive a crash.
#[derive(Debug)]
pub struct RecordWriter {
    file: std::fs::File,
}

impl RecordWriter {
    pub fn create(path: &std::path::Path) -> std::io::Result<RecordWriter> {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        Ok(RecordWriter { file })
    }

    pub fn write(&mut self, line: &Line) -> std::io::Result<()> {
        let mut s = serde_json::to_string(line).map_err(std::io::Error::other)?;
        s.push('\n');
        self.file.write_all(s.as_bytes())?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"type":"run",VERSION"tool":"vfio-mig-conform","version":"0.1.0","started":1,"command":["vfio-mig-conform","sim:v2"],"devices":[],"strict":false,"host_kernel":"6.12.0"}"#;

    /// A record whose check failed at its second step, with the trace steps numbered `first`
    /// and `first + 1`.
    fn record(version: &str, first: usize) -> Run {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("vmc-record-{}-{n}.jsonl", std::process::id()));
        let check = serde_json::json!({"type":"check","id":"fsm.arc.stop_copy.pre_copy","title":"t","outcome":"FAIL",
            "clauses":["V2-STATE-007"],"duration_us":5,"origin":"generated","reproduce":"r",
            "findings":[{"clauses":["V2-STATE-007"],"level":"MUST","title":"t","statement":"s","source":"",
                "expected":"fails","actual":"succeeded","step":2,"op":"set_state: PRE_COPY","device":"A"}],
            "trace":[{"step":first,"device":"A","op":"set_state: STOP_COPY","obs":{},"micros":1},
                     {"step":first + 1,"device":"A","op":"set_state: PRE_COPY","obs":{},"micros":1}]});
        let text = format!("{}\n{check}\n", HEADER.replace("VERSION", version));
        std::fs::write(&path, text).expect("write record");
        let run = Run::read(&path).expect("read record");
        let _ = std::fs::remove_file(&path);
        run
    }

    fn step_of_finding_in_trace(run: &Run) -> Option<String> {
        let c = &run.checks[0];
        c.trace.iter().find(|t| t.step == c.findings[0].step).map(|t| t.op.clone())
    }

    #[test]
    fn a_finding_and_the_trace_number_the_same_step_alike() {
        let run = record(r#""record_version":2,"#, 1);
        assert_eq!(run.checks[0].trace[0].step, 1);
        assert_eq!(step_of_finding_in_trace(&run).as_deref(), Some("set_state: PRE_COPY"));
    }

    #[test]
    fn a_record_without_a_version_has_its_trace_counted_from_1_on_reading() {
        let run = record("", 0);
        assert_eq!(run.header.record_version, RECORD_VERSION);
        assert_eq!(run.checks[0].trace.iter().map(|t| t.step).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(step_of_finding_in_trace(&run).as_deref(), Some("set_state: PRE_COPY"));
    }

    #[test]
    fn this_version_writes_trace_steps_counted_from_1() {
        let run = CheckRun {
            trace: vec![StepRecord {
                step: 0,
                device: "A".to_string(),
                op: "set_state: STOP".to_string(),
                obs: Default::default(),
                micros: 1,
            }],
            ..Default::default()
        };
        let check =
            crate::checks::build::check("x.y", "t", crate::check::Requires::default(), Vec::new(), &[]);
        let verdict =
            crate::oracle::outcome::Verdict { outcome: Outcome::Pass, reason: None, deviation: None };
        let r = CheckResult::new(&check, &run, verdict, false, String::new());
        assert_eq!(r.trace[0].step, 1);
    }
}
