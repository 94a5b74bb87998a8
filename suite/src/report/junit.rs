//! JUnit XML: one `<testsuite>` per check family, `<failure>` for violations (FAIL), `<error>`
//! for TIMEOUT and ERROR (the harness or environment, not the driver), `<skipped>` for
//! UNSUPPORTED and XFAIL. Every `<testcase>` has `name` and `classname`.

use super::ktap::suite_of;
use super::record::{CheckResult, Totals};
use crate::outcome::Outcome;

/// XML-escapes text (and drops characters XML 1.0 cannot carry).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Renders the results as JUnit XML. Under `strict_profile` an XPASS is a `<failure>`.
pub fn render(results: &[CheckResult], name: &str, strict_profile: bool) -> String {
    let xpass_fails = |t: &Totals| if strict_profile { t.xpass } else { 0 };
    let mut suites: Vec<(String, Vec<&CheckResult>)> = Vec::new();
    for r in results {
        let s = suite_of(&r.id);
        match suites.iter_mut().find(|(n, _)| n == s) {
            Some((_, v)) => v.push(r),
            None => suites.push((s.to_string(), vec![r])),
        }
    }
    let totals = Totals::from_results(results);
    let secs = |us: u64| format!("{:.6}", us as f64 / 1e6);
    let all_time: u64 = results.iter().map(|r| r.duration_us).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">\n",
        esc(name),
        totals.total(),
        totals.fail + xpass_fails(&totals),
        totals.error + totals.timeout,
        totals.unsupported + totals.xfail,
        secs(all_time)
    ));
    for (suite, rs) in &suites {
        let t = Totals::from_results(&rs.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
        let time: u64 = rs.iter().map(|r| r.duration_us).sum();
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">\n",
            esc(suite),
            rs.len(),
            t.fail + xpass_fails(&t),
            t.error + t.timeout,
            t.unsupported + t.xfail,
            secs(time)
        ));
        for r in rs {
            x.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">\n",
                esc(&r.id),
                esc(suite),
                secs(r.duration_us)
            ));
            let first = r.findings.first();
            let message = first
                .map(|f| format!("{} [{}] {}", f.clauses.join(", "), f.level, f.title))
                .or_else(|| r.reason.clone())
                .unwrap_or_default();
            match r.outcome {
                Outcome::Fail => x.push_str(&format!(
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                    esc(&message),
                    first.map(|f| f.level.as_str()).unwrap_or("FAIL"),
                    esc(&r.failure_block())
                )),
                Outcome::Timeout | Outcome::Error => x.push_str(&format!(
                    "      <error message=\"{}\" type=\"{}\">{}</error>\n",
                    esc(&message),
                    r.outcome,
                    esc(&r.failure_block())
                )),
                Outcome::Xpass if strict_profile => x.push_str(&format!(
                    "      <failure message=\"{}\" type=\"XPASS\">{}</failure>\n",
                    esc(&format!(
                        "XPASS fails under --strict-profile: {}",
                        r.reason.as_deref().unwrap_or("a declared deviation did not happen")
                    )),
                    esc(&r.failure_block())
                )),
                Outcome::Unsupported | Outcome::Xfail => x.push_str(&format!(
                    "      <skipped message=\"{}: {}\"/>\n",
                    r.outcome,
                    esc(r.reason.as_deref().unwrap_or(&message))
                )),
                _ => {}
            }
            if matches!(r.outcome, Outcome::NonStrict | Outcome::Info | Outcome::Xpass | Outcome::Xfail)
                || !r.notes.is_empty()
            {
                let mut out = format!("{}\n", r.outcome);
                if r.outcome != Outcome::Pass {
                    out.push_str(&r.failure_block());
                }
                for n in &r.notes {
                    out.push_str(&format!("note: {n}\n"));
                }
                x.push_str(&format!("      <system-out>{}</system-out>\n", esc(&out)));
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_control_characters() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;?");
    }
}
