//! The outcomes a libtest-style listing prints as `ok` although a reader must see them: known
//! deviations (XFAIL), declared deviations that did not happen (XPASS), broken SHOULD clauses
//! (NON-STRICT) and INFO observations. Printed after the listing, one line per check.

use crate::outcome::Outcome;
use crate::report::record::CheckResult;

/// The sections, in order, with their headings.
const SECTIONS: [(Outcome, &str); 4] = [
    (Outcome::Xfail, "XFAIL (known deviations of the profile; the check failed as declared)"),
    (Outcome::Xpass, "XPASS (declared deviations that did not happen; --strict-profile fails on them)"),
    (Outcome::NonStrict, "NON-STRICT (SHOULD clauses broken; --strict fails on them)"),
    (Outcome::Info, "INFO (observations on INFO clauses, not failures)"),
];

/// The text to print, empty when no result has one of these outcomes.
pub fn render(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for (outcome, heading) in SECTIONS {
        let of: Vec<&CheckResult> = results.iter().filter(|r| r.outcome == outcome).collect();
        if of.is_empty() {
            continue;
        }
        out.push_str(&format!("{heading}:\n"));
        for r in of {
            out.push_str(&format!("  {}: {}\n", r.id, line(r)));
        }
    }
    out
}

fn line(r: &CheckResult) -> String {
    let finding = r.findings.first().map(|f| {
        format!("{} [{}] expected {}; actual {}", f.clauses.join(","), f.level, f.expected, f.actual)
    });
    match (finding, &r.deviation, r.outcome) {
        (_, Some(d), Outcome::Xpass) => format!("passed, yet {d}"),
        (Some(f), Some(d), _) => format!("{f} ({d})"),
        (Some(f), None, _) => f,
        (None, _, _) => r.reason.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::FindingRecord;

    fn result(id: &str, outcome: Outcome) -> CheckResult {
        CheckResult { clauses: vec!["V2-PRECOPY-007".to_string()], ..CheckResult::bare(id, outcome) }
    }

    #[test]
    fn passing_and_failing_checks_are_not_listed() {
        let text = render(&[result("a.b.c", Outcome::Pass), result("a.b.d", Outcome::Fail)]);

        assert_eq!(text, "");
    }

    #[test]
    fn an_xfail_names_the_clause_expected_actual_and_the_deviation() {
        let mut r = result("precopy.read.temporary_end_enomsg", Outcome::Xfail);
        r.findings.push(FindingRecord {
            clauses: vec!["V2-PRECOPY-007".to_string()],
            level: crate::clauses::Level::Should,
            title: String::new(),
            statement: String::new(),
            source: String::new(),
            expected: "ENOMSG".to_string(),
            actual: "read returned 0".to_string(),
            step: 3,
            op: "read".to_string(),
            device: "A".to_string(),
            loc: None,
            setup: false,
        });
        r.deviation = Some("mtty: read() returns 0 [profiles/mtty.yaml:80:9]".to_string());

        let text = render(&[r, result("x.y.z", Outcome::Xpass)]);

        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("XFAIL"), "{text}");
        assert_eq!(
            lines[1],
            "  precopy.read.temporary_end_enomsg: V2-PRECOPY-007 [SHOULD] expected ENOMSG; actual read \
             returned 0 (mtty: read() returns 0 [profiles/mtty.yaml:80:9])"
        );
        assert!(lines[2].starts_with("XPASS"), "{text}");
        assert!(lines[3].starts_with("  x.y.z: "), "{text}");
    }
}
