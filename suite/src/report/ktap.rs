//! KTAP v1 output (kselftest / KernelCI), nested one level by check family, streamed as
//! checks finish. Names are identifier-like; details go in `# ` diagnostics before the
//! result line; a SKIP's reason is in its directive, on the result line, as kselftest writes
//! it (`ok 3 name # SKIP reason`, tools/testing/selftests/kselftest.h ksft_test_result_skip).

use std::io::Write;

use super::record::{CheckResult, Totals};
use crate::outcome::Outcome;

/// The family a check belongs to in KTAP: its first two name components.
pub fn suite_of(id: &str) -> &str {
    match id.match_indices('.').nth(1) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// The test name inside its family.
pub fn test_of(id: &str) -> &str {
    let s = suite_of(id);
    id.strip_prefix(s).map(|t| t.trim_start_matches('.')).filter(|t| !t.is_empty()).unwrap_or(id)
}

fn clean(s: &str) -> String {
    s.replace('#', "").replace('\n', " ")
}

/// Streams KTAP for a known, ordered list of checks.
pub struct KtapWriter<W: Write> {
    out: W,
    flat: bool,
    /// (suite, number of checks) in order.
    plan: Vec<(String, usize)>,
    suite_idx: usize,
    in_suite: usize,
    suite_failed: bool,
    flat_n: usize,
    totals: Totals,
    timeout_secs: u64,
    /// `--strict-profile`: an XPASS is `not ok`.
    strict_profile: bool,
}

impl<W: Write> std::fmt::Debug for KtapWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KtapWriter").field("plan", &self.plan).finish()
    }
}

impl<W: Write> KtapWriter<W> {
    /// Starts the document for these check ids (in run order).
    pub fn start(
        mut out: W,
        ids: &[String],
        flat: bool,
        timeout_secs: u64,
    ) -> std::io::Result<KtapWriter<W>> {
        let mut plan: Vec<(String, usize)> = Vec::new();
        for id in ids {
            let s = suite_of(id);
            match plan.last_mut() {
                Some((last, n)) if last == s => *n += 1,
                _ => plan.push((s.to_string(), 1)),
            }
        }
        writeln!(out, "KTAP version 1")?;
        writeln!(out, "1..{}", if flat { ids.len() } else { plan.len() })?;
        out.flush()?;
        Ok(KtapWriter {
            out,
            flat,
            plan,
            suite_idx: 0,
            in_suite: 0,
            suite_failed: false,
            flat_n: 0,
            totals: Totals::default(),
            timeout_secs,
            strict_profile: false,
        })
    }

    /// Under `--strict-profile` an XPASS fails: its line is `not ok` (as the exit code is 1).
    #[must_use]
    pub fn strict_profile(mut self, on: bool) -> Self {
        self.strict_profile = on;
        self
    }

    /// A whole-run skip (device without migration): one skipped test, `migration_support`.
    /// (kselftest's `1..0 # SKIP reason` is TAP, but the kernel's KTAP parser reports a plan of
    /// 0 as an error.)
    pub fn skip_all(mut out: W, reason: &str) -> std::io::Result<()> {
        writeln!(out, "KTAP version 1")?;
        writeln!(out, "1..1")?;
        writeln!(out, "ok 1 migration_support # SKIP {}", clean(reason))?;
        out.flush()
    }

    fn result_line(&mut self, indent: &str, n: usize, name: &str, r: &CheckResult) -> std::io::Result<bool> {
        let name = clean(name);
        let why = r.reason.as_deref().map(clean);
        if let Some(w) = why.as_ref().filter(|_| r.outcome != Outcome::Unsupported) {
            writeln!(self.out, "{indent}# {name}: {w}")?;
        }
        for f in &r.findings {
            writeln!(
                self.out,
                "{indent}# {name}: {} [{}] {}",
                f.clauses.join(","),
                f.level,
                clean(&f.title)
            )?;
            writeln!(self.out, "{indent}# {name}: expected: {}", clean(&f.expected))?;
            writeln!(self.out, "{indent}# {name}: actual: {}", clean(&f.actual))?;
        }
        let failed = r.outcome.fails(self.strict_profile);
        let (status, directive) = match r.outcome {
            Outcome::Pass => ("ok", String::new()),
            Outcome::NonStrict => ("ok", String::new()),
            Outcome::Info => ("ok", String::new()),
            Outcome::Unsupported => {
                ("ok", format!(" # SKIP {}", why.as_deref().unwrap_or("unsupported").trim()))
            }
            Outcome::Xfail => ("ok", " # XFAIL known deviation".to_string()),
            Outcome::Xpass if failed => ("not ok", String::new()),
            Outcome::Xpass => ("ok", String::new()),
            Outcome::Fail => ("not ok", String::new()),
            Outcome::Timeout => ("not ok", format!(" # TIMEOUT {} seconds", self.timeout_secs)),
            Outcome::Error => ("not ok", " # ERROR".to_string()),
        };
        if matches!(r.outcome, Outcome::NonStrict | Outcome::Info) || (r.outcome == Outcome::Xpass && !failed)
        {
            writeln!(self.out, "{indent}# {name}: {}", r.outcome)?;
        } else if r.outcome == Outcome::Xpass {
            writeln!(self.out, "{indent}# {name}: XPASS fails the run under --strict-profile")?;
        }
        if failed {
            writeln!(self.out, "{indent}# {name}: reproduce: {}", clean(&r.reproduce))?;
        }
        writeln!(self.out, "{indent}{status} {n} {name}{directive}")?;
        self.totals.add(r.outcome);
        Ok(failed)
    }

    /// Writes one finished check (must come in the order given to `start`).
    pub fn result(&mut self, r: &CheckResult) -> std::io::Result<()> {
        if self.flat {
            self.flat_n += 1;
            let n = self.flat_n;
            self.result_line("", n, &r.id, r)?;
            return self.out.flush();
        }
        let Some((suite, count)) = self.plan.get(self.suite_idx).cloned() else { return Ok(()) };
        if self.in_suite == 0 {
            writeln!(self.out, "  KTAP version 1")?;
            writeln!(self.out, "  # Subtest: {suite}")?;
            writeln!(self.out, "  1..{count}")?;
            self.suite_failed = false;
        }
        self.in_suite += 1;
        let n = self.in_suite;
        let failed = self.result_line("  ", n, test_of(&r.id), r)?;
        self.suite_failed |= failed;
        if self.in_suite == count {
            let status = if self.suite_failed { "not ok" } else { "ok" };
            writeln!(self.out, "{status} {} {suite}", self.suite_idx + 1)?;
            self.suite_idx += 1;
            self.in_suite = 0;
        }
        self.out.flush()
    }

    /// Closes the document with the totals line.
    pub fn finish(mut self) -> std::io::Result<W> {
        writeln!(self.out, "# Totals: {}", self.totals.line())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Renders a whole list of results.
pub fn render(results: &[CheckResult], flat: bool, timeout_secs: u64, strict_profile: bool) -> String {
    let ids: Vec<String> = results.iter().map(|r| r.id.clone()).collect();
    let mut buf = Vec::new();
    if let Ok(w) = KtapWriter::start(&mut buf, &ids, flat, timeout_secs) {
        let mut w = w.strict_profile(strict_profile);
        for r in results {
            let _ = w.result(r);
        }
        let _ = w.finish();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_the_first_two_components() {
        assert_eq!(suite_of("fsm.arc.running.stop"), "fsm.arc");
        assert_eq!(test_of("fsm.arc.running.stop"), "running.stop");
        assert_eq!(suite_of("single"), "single");
        assert_eq!(test_of("single"), "single");
    }

    fn skipped(id: &str, reason: Option<&str>) -> CheckResult {
        CheckResult { reason: reason.map(str::to_string), ..CheckResult::bare(id, Outcome::Unsupported) }
    }

    #[test]
    fn a_skip_gives_its_reason_in_the_directive_as_kselftest_does() {
        let ktap =
            render(&[skipped("v1.state.write_000", Some("needs a v1 device # really\n"))], false, 10, false);
        let lines: Vec<&str> = ktap.lines().collect();
        assert!(lines.contains(&"  ok 1 write_000 # SKIP needs a v1 device  really"), "{ktap}");
        assert!(!ktap.contains("# write_000:"), "the reason is not repeated as a diagnostic:\n{ktap}");
        let flat = render(&[skipped("v1.state.write_000", None)], true, 10, false);
        assert!(flat.lines().any(|l| l == "ok 1 v1.state.write_000 # SKIP unsupported"), "{flat}");
    }
}
