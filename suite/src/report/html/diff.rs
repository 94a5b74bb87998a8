//! `diff.html`: the check-by-check diff of two runs, the HTML view of
//! `vfio-mig-conform report A B --diff`. Every check of every run is a row with each run's
//! raw verdict ([`CheckResult::raw_verdict`], the verdict before any profile, as the CLI
//! compares); two selects choose the runs A and B and the page shows the checks whose raw
//! verdict differs between them (a check missing from one run differs), with the count.

use std::collections::BTreeMap;

use super::assets::page;
use super::runs::{label_of, unfinished_badge};
use super::{Page, anchor, class_of, esc, run_file};
use crate::report::record::{CheckResult, Run};

/// The check ids of all runs, in the order they first appear.
fn check_ids(runs: &[(String, Run)]) -> Vec<&str> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (_, run) in runs {
        for c in &run.checks {
            if seen.insert(c.id.as_str()) {
                out.push(c.id.as_str());
            }
        }
    }
    out
}

fn select(id: &str, what: &str, n: usize, chosen: usize) -> String {
    let mut s = format!("<label>{what} <select id=\"{id}\">");
    for i in 0..n {
        s.push_str(&format!(
            "<option value=\"{i}\"{}>R{}</option>",
            if i == chosen { " selected" } else { "" },
            i + 1
        ));
    }
    s.push_str("</select></label> ");
    s
}

/// Whether two raw verdicts differ, as the CLI counts them (a missing check differs).
pub(super) fn raw_differs(a: Option<&CheckResult>, b: Option<&CheckResult>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.raw_verdict() != b.raw_verdict(),
        (None, None) => false,
        _ => true,
    }
}

pub(super) fn diff_page(runs: &[(String, Run)]) -> Page {
    let by_id: Vec<BTreeMap<&str, &CheckResult>> =
        runs.iter().map(|(_, r)| r.checks.iter().map(|c| (c.id.as_str(), c)).collect()).collect();
    let ids = check_ids(runs);
    let pair = |id: &str| (by_id[0].get(id).copied(), by_id[1].get(id).copied());
    let differ = ids
        .iter()
        .filter(|id| {
            let (a, b) = pair(id);
            raw_differs(a, b)
        })
        .count();
    let compared = ids
        .iter()
        .filter(|id| {
            let (a, b) = pair(id);
            a.is_some() && b.is_some()
        })
        .count();
    let mut b = String::from(
        "<nav class=\"top\"><a href=\"index.html\">&larr; all runs</a></nav>\n<h1>Check-by-check diff</h1>\n\
<p class=\"muted\">Each run's raw verdict of every check (before any profile: XFAIL shows as the FAIL or NON-STRICT/INFO it declares, XPASS as PASS), as <code>vfio-mig-conform report A B --diff</code> compares them. A check missing from a run differs.</p>\n<ul class=\"diff-runs\">\n",
    );
    for (i, (name, run)) in runs.iter().enumerate() {
        let l = label_of(run);
        b.push_str(&format!(
            "<li><a href=\"{}\">R{}</a> <code>{}</code> <small>{}</small>{}</li>\n",
            run_file(i),
            i + 1,
            esc(&l.spec),
            esc(name),
            unfinished_badge(&l)
        ));
    }
    b.push_str("</ul>\n");
    b.push_str(&format!(
        "<div class=\"toolbar\" id=\"diff-controls\">{}{}<label><input type=\"checkbox\" id=\"diff-all\"> show agreeing checks</label> <label>check id starts with <input type=\"text\" id=\"diff-filter\" size=\"24\"></label> <b id=\"diff-summary\">{} checks compared, {differ} differ (R1 vs R2)</b></div>\n",
        select("diff-a", "A", runs.len(), 0),
        select("diff-b", "B", runs.len(), 1),
        compared
    ));
    b.push_str("<div class=\"wide\"><table class=\"diff\" id=\"diff\">\n<thead><tr><th>Check</th>");
    for i in 0..runs.len() {
        b.push_str(&format!("<th class=\"run\" data-run=\"{}\">R{}</th>", i + 1, i + 1));
    }
    b.push_str("</tr></thead>\n<tbody>\n");
    for id in &ids {
        let first_two = raw_differs(by_id[0].get(id).copied(), by_id[1].get(id).copied());
        b.push_str(&format!(
            "<tr data-check=\"{}\" class=\"{}\"><th><code>{}</code></th>",
            esc(id),
            if first_two { "differs" } else { "same" },
            esc(id)
        ));
        for (i, m) in by_id.iter().enumerate() {
            match m.get(id) {
                Some(c) => b.push_str(&format!(
                    "<td class=\"{}\" data-raw=\"{}\" title=\"recorded: {}\"><a href=\"{}#{}\">{}</a></td>",
                    class_of(c.outcome),
                    c.raw_verdict(),
                    c.outcome.as_str(),
                    run_file(i),
                    esc(&anchor("check", id)),
                    c.raw_verdict()
                )),
                None => b.push_str("<td class=\"o-none\" data-raw=\"\">not in run</td>"),
            }
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</tbody></table></div>\n");
    Page { file: "diff.html".to_string(), html: page("vfio-mig-conform: check-by-check diff", &b) }
}
