//! The index page: the runs, their arc matrices, fuzz coverage, the runs x clauses matrix
//! and the clause table.

use std::collections::{BTreeMap, BTreeSet};

use super::aggregate::{
    ClauseVerdict, clause_verdicts, differs, family_of, groups, ordered_clauses, row_outcomes,
};
use super::arcs::arc_matrix;
use super::assets::page;
use super::run_page::{finding_html, legend};
use super::runs::{RunLabel, label_of, run_header_cell, runs_table};
use super::{Page, abbrev, anchor, badge, class_of, esc, run_file, severity, short};
use crate::clauses::catalog;
use crate::outcome::Outcome;
use crate::report::record::Run;

pub(super) fn runs_matrix(
    runs: &[(String, Run)],
    labels: &[RunLabel],
    verdicts: &[BTreeMap<String, ClauseVerdict>],
    clauses: &[String],
) -> String {
    let mut s = String::from(
        "<div class=\"toolbar\"><label><input type=\"checkbox\" id=\"only-differs\"> only clauses whose verdict differs between the runs that observed them</label></div>\n<div class=\"wide\"><table class=\"mx\">\n<thead><tr><th>Clause</th><th>Level</th>",
    );
    for (i, ((name, _), l)) in runs.iter().zip(labels).enumerate() {
        s.push_str(&run_header_cell(i, name, l));
    }
    s.push_str("</tr></thead>\n");
    for (group, clauses) in groups(clauses, verdicts) {
        s.push_str(&group_head(group, clauses.len(), runs.len() + 2));
        for k in clauses {
            let cells: Vec<Option<&ClauseVerdict>> = verdicts.iter().map(|v| v.get(k)).collect();
            let differs = differs(&cells);
            let level = catalog().get(k).map_or("?", |c| c.level.as_str());
            let title = catalog().get(k).map(|c| c.title.clone()).unwrap_or_default();
            s.push_str(&format!(
            "<tr class=\"{}\" data-clause=\"{}\"{}><th class=\"clause-id\" title=\"{}\"><a href=\"#{}\"><code>{}</code></a></th><td>{}</td>",
            if differs { "differs" } else { "same" },
            esc(k),
            filter_attrs(k, &cells),
            esc(&title),
            esc(&anchor("clause", k)),
            esc(k),
            esc(level)
        ));
            for (i, c) in cells.iter().enumerate() {
                match c {
                Some(v) => s.push_str(&format!(
                    "<td class=\"mx {}\" data-outcome=\"{}\" title=\"{} in R{}: {} ({} checks)\"><a href=\"#{}\">{}</a></td>",
                    class_of(v.outcome),
                    v.outcome.as_str(),
                    esc(k),
                    i + 1,
                    v.outcome.as_str(),
                    v.checks.len(),
                    esc(&anchor("clause", k)),
                    abbrev(v.outcome)
                )),
                None => s.push_str(&format!(
                    "<td class=\"mx o-none\" data-outcome=\"\" title=\"{} in R{}: not run (no check of this run observes it)\">&mdash;</td>",
                    esc(k),
                    i + 1
                )),
            }
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n");
    }
    s.push_str("</table></div>\n");
    s
}

/// The attributes the filters read: the clause's level (from the catalog), its family and
/// the outcomes of its row.
fn filter_attrs(k: &str, cells: &[Option<&ClauseVerdict>]) -> String {
    let level = catalog().get(k).map_or("?", |c| c.level.as_str());
    let outcomes: Vec<&str> = row_outcomes(cells).into_iter().collect();
    format!(
        " data-level=\"{}\" data-family=\"{}\" data-outcomes=\" {} \"",
        esc(level),
        esc(family_of(k)),
        outcomes.join(" ")
    )
}

/// Filters by level, outcome and family over the rows of both clause tables (JS in
/// [`super::assets`]).
fn filter_bar(clauses: &[String], verdicts: &[BTreeMap<String, ClauseVerdict>]) -> String {
    let levels: BTreeSet<&str> =
        clauses.iter().map(|k| catalog().get(k).map_or("?", |c| c.level.as_str())).collect();
    let families: BTreeSet<&str> = clauses.iter().map(|k| family_of(k)).collect();
    let mut outcomes: Vec<&str> = Outcome::ALL
        .into_iter()
        .filter(|o| verdicts.iter().any(|v| v.values().any(|c| c.outcome == *o)))
        .map(|o| o.as_str())
        .collect();
    outcomes.push("NOT-RUN");
    let select = |id: &str, what: &str, values: &[&str]| {
        let mut s = format!("<label>{what} <select id=\"{id}\"><option value=\"\">all</option>");
        for v in values {
            s.push_str(&format!("<option value=\"{0}\">{0}</option>", esc(v)));
        }
        s.push_str("</select></label> ");
        s
    };
    format!(
        "<div class=\"toolbar filters\" id=\"filters\">Filter clauses: {}{}{}<small id=\"filter-count\"></small></div>\n",
        select("filter-level", "level", &levels.into_iter().collect::<Vec<_>>()),
        select("filter-outcome", "outcome", &outcomes),
        select("filter-family", "family", &families.into_iter().collect::<Vec<_>>())
    )
}

pub(super) fn group_head(unobservable: bool, n: usize, cols: usize) -> String {
    if unobservable {
        format!(
            "<tbody class=\"unobservable\">\n<tr class=\"group\"><th class=\"group\" colspan=\"{cols}\">{n} clauses no run could observe (every check UNSUPPORTED: the devices lack the feature)</th></tr>\n"
        )
    } else {
        "<tbody>\n".to_string()
    }
}

/// The verdict cell of one run in the clause table: the outcome, and on click the findings
/// (expected vs actual) and the checks that observed the clause.
pub(super) fn verdict_cell(i: usize, run: &Run, v: Option<&ClauseVerdict>) -> String {
    let Some(v) = v else {
        return "<td class=\"verdict o-none\" data-outcome=\"\">not run</td>".to_string();
    };
    let target = run_file(i);
    let mut s = format!(
        "<td class=\"verdict {}\" data-outcome=\"{}\"><details><summary>{} <small>{} check{}</small></summary>\n",
        class_of(v.outcome),
        v.outcome.as_str(),
        badge(v.outcome),
        v.checks.len(),
        if v.checks.len() == 1 { "" } else { "s" }
    );
    for (ci, fi) in &v.findings {
        if let Some(c) = run.checks.get(*ci) {
            s.push_str(&finding_html(c, *fi, Some(&target)));
        }
    }
    // Checks that observed the clause: the ones that did not pass first, then a few others.
    let mut obs: Vec<(usize, Outcome)> = v.checks.clone();
    obs.sort_by_key(|(ci, o)| (std::cmp::Reverse(severity(*o)), *ci));
    const SHOWN: usize = 12;
    s.push_str("<div class=\"observers\">Observed by: ");
    for (ci, o) in obs.iter().take(SHOWN) {
        if let Some(c) = run.checks.get(*ci) {
            s.push_str(&format!(
                "<a class=\"chip {}\" href=\"{}#{}\" title=\"{}: {}\">{}</a> ",
                class_of(*o),
                esc(&target),
                esc(&anchor("check", &c.id)),
                esc(&c.id),
                o.as_str(),
                esc(&c.id)
            ));
        }
    }
    if obs.len() > SHOWN {
        s.push_str(&format!("<small>and {} more</small>", obs.len() - SHOWN));
    }
    s.push_str("</div></details></td>");
    s
}

pub(super) fn clause_table(
    runs: &[(String, Run)],
    labels: &[RunLabel],
    verdicts: &[BTreeMap<String, ClauseVerdict>],
    clauses: &[String],
) -> String {
    let mut s = String::from(
        "<div class=\"wide\"><table class=\"clauses\">\n<thead><tr><th>Clause</th><th>Level</th><th>Statement</th>",
    );
    for (i, ((name, _), l)) in runs.iter().zip(labels).enumerate() {
        s.push_str(&run_header_cell(i, name, l));
    }
    s.push_str("</tr></thead>\n");
    for (group, clauses) in groups(clauses, verdicts) {
        s.push_str(&group_head(group, clauses.len(), runs.len() + 3));
        for k in clauses {
            let cl = catalog().get(k);
            let cells: Vec<Option<&ClauseVerdict>> = verdicts.iter().map(|v| v.get(k)).collect();
            s.push_str(&format!(
            "<tr class=\"clause\" id=\"{}\" data-clause=\"{}\"{}><th><code>{}</code></th><td>{}</td><td><b>{}</b>: {}<br><small>{}</small></td>",
            esc(&anchor("clause", k)),
            esc(k),
            filter_attrs(k, &cells),
            esc(k),
            esc(cl.map_or("?", |c| c.level.as_str())),
            esc(cl.map_or("(not in this tool's catalog)", |c| c.title.as_str())),
            esc(cl.map_or("", |c| c.statement.as_str())),
            esc(&cl.map(|c| c.sources()).unwrap_or_default())
        ));
            for (i, ((_, run), v)) in runs.iter().zip(&cells).enumerate() {
                s.push_str(&verdict_cell(i, run, *v));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n");
    }
    s.push_str("</table></div>\n");
    s
}

pub(super) fn index_page(runs: &[(String, Run)]) -> Page {
    let labels: Vec<RunLabel> = runs.iter().map(|(_, r)| label_of(r)).collect();
    let verdicts: Vec<BTreeMap<String, ClauseVerdict>> =
        runs.iter().map(|(_, r)| clause_verdicts(r)).collect();
    let ids: BTreeSet<String> = verdicts.iter().flat_map(|v| v.keys().cloned()).collect();
    let clauses = ordered_clauses(&ids);
    let version = runs.first().map(|(_, r)| r.header.version.clone()).unwrap_or_default();
    let mut b = format!(
        "<h1>vfio-mig-conform report</h1>\n<p class=\"muted\">{} run record{}, rebuilt by <code>vfio-mig-conform report --html</code> (records written by version {}). Every cell links to the check behind it.</p>\n",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        esc(&version)
    );
    b.push_str(&legend());
    b.push_str("<h2 id=\"runs\">Runs</h2>\n");
    b.push_str(&runs_table(runs, &labels));
    if runs.len() > 1 {
        b.push_str("<p class=\"diff-link\"><a href=\"diff.html\">Check-by-check diff of two runs</a> <small>(like <code>vfio-mig-conform report A B --diff</code>)</small></p>\n");
    }
    b.push_str("<h2 id=\"arcs\">FSM arc matrices</h2>\n<p class=\"muted\">Rows: the state the device is in; columns: the state SET requests; each cell is the check <code>fsm.arc.&lt;cur&gt;.&lt;new&gt;</code>. Hover for the primitive path the oracle expects.</p>\n<div class=\"arcgrid\">\n");
    for (i, ((name, run), l)) in runs.iter().zip(&labels).enumerate() {
        b.push_str(&format!(
            "<figure id=\"arcs-{}\"><figcaption><a href=\"{}\">R{}</a> {} &middot; {} &middot; {} <small>{}</small></figcaption>\n",
            i + 1,
            run_file(i),
            i + 1,
            esc(&l.device),
            esc(&l.flags),
            esc(&l.kernel),
            esc(short(name))
        ));
        b.push_str(&arc_matrix(run, &run_file(i)));
        b.push_str("</figure>\n");
    }
    b.push_str("</div>\n");
    if runs.iter().any(|(_, r)| !r.fuzz.is_empty()) {
        b.push_str("<h2 id=\"fuzz\">Fuzz coverage</h2>\n<table class=\"fuzzsum\"><tr><th>Run</th><th>Device</th><th>Seed</th><th>Operations</th><th>Arcs covered</th><th>Error paths</th><th>Findings</th></tr>\n");
        for (i, (_, run)) in runs.iter().enumerate() {
            for (k, f) in run.fuzz.iter().enumerate() {
                b.push_str(&format!(
                    "<tr><td><a href=\"{}#{}\">R{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{}</td><td>{}</td></tr>\n",
                    run_file(i),
                    anchor("fuzz", &(k + 1).to_string()),
                    i + 1,
                    esc(&f.device),
                    f.seed,
                    f.ops,
                    f.arcs_covered.len(),
                    f.arcs_possible,
                    f.error_paths.len(),
                    f.findings.len()
                ));
            }
        }
        b.push_str("</table>\n");
        b.push_str(&super::coverage::index_section(runs));
    }
    if runs.len() > 1 {
        b.push_str("<h2 id=\"matrix\">Runs &times; clauses</h2>\n<p class=\"muted\">Each cell is the worst verdict of the run's checks on the clause (a check that broke another clause counts as PASS here). Highlighted clause ids differ between the runs that observed them; &mdash; = not run (no check of the run observes the clause: a partial run is not a difference).</p>\n");
        b.push_str(&filter_bar(&clauses, &verdicts));
        b.push_str(&runs_matrix(runs, &labels, &verdicts, &clauses));
    }
    b.push_str(&format!(
        "<h2 id=\"clauses\">Clauses ({} observed)</h2>\n<p class=\"muted\">Click a row for expected vs actual and the checks behind each verdict.</p>\n",
        clauses.len()
    ));
    if runs.len() == 1 {
        b.push_str(&filter_bar(&clauses, &verdicts));
    }
    b.push_str(&clause_table(runs, &labels, &verdicts, &clauses));
    let unobserved: Vec<&str> =
        catalog().all().iter().filter(|c| !ids.contains(&c.id)).map(|c| c.id.as_str()).collect();
    if !unobserved.is_empty() {
        b.push_str(&format!(
            "<details class=\"unobserved\"><summary>{} catalog clauses no check of these runs observed</summary><p>{}</p></details>\n",
            unobserved.len(),
            unobserved.iter().map(|c| format!("<code>{}</code>", esc(c))).collect::<Vec<_>>().join(" ")
        ));
    }
    Page { file: "index.html".to_string(), html: page("vfio-mig-conform report", &b) }
}
