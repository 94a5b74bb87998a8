//! The run record: one JSON object per line (JSON Lines), written as checks finish, so a
//! crash, kill or power loss keeps every finished check. Every other format (pretty, KTAP,
//! JUnit, HTML) is rebuilt from it.

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
    /// 1-based step number.
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
    /// Where the check comes from (fixture file:line:col or generator).
    pub origin: String,
    /// The command that runs exactly this check again.
    pub reproduce: String,
    /// The profile deviation that applied (XFAIL/XPASS), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviation: Option<String>,
    /// Every step with what it returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<StepRecord>,
}

impl CheckResult {
    pub fn new(
        check: &Check,
        run: &CheckRun,
        outcome: Outcome,
        reason: Option<String>,
        reproduce: String,
    ) -> CheckResult {
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
            deviation: None,
            trace: run.trace.clone(),
        }
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

/// The header of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    pub tool: String,
    pub version: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub command: Vec<String>,
    pub devices: Vec<DeviceRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub strict: bool,
    /// Host kernel (`uname -r`).
    pub host_kernel: String,
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
    /// The profile deviation that declares it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
    /// Seconds from the start of fuzzing to the first sighting.
    pub after_secs: f64,
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
        let header = header.ok_or_else(|| {
            format!("{}: no run header line (is this a vfio-mig-conform --json record?)", path.display())
        })?;
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
