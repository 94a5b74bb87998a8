//! One run's page: its devices, totals, arc matrix, fuzz sessions and every check.

use std::collections::BTreeSet;

use super::arcs::{arc_matrix, arc_of, expected_path, fuzz_section};
use super::assets::page;
use super::{Page, anchor, badge, class_of, clause_link, esc, meaning, run_file, severity, short, utc};
use crate::device::MigrationApi;
use crate::outcome::Outcome;
use crate::report::record::{CheckResult, Run, Totals};

pub(super) fn legend() -> String {
    let mut s = String::from("<div class=\"legend\" id=\"legend\">\n");
    for o in Outcome::ALL {
        s.push_str(&format!(
            "<div><span class=\"swatch {}\"></span>{} <small>{}</small></div>\n",
            class_of(o),
            badge(o),
            esc(meaning(o))
        ));
    }
    s.push_str(
        "<div><span class=\"swatch o-none\"></span><small>no check (not run, not reachable)</small></div>\n\
<div><small>arc cells: dashed = the oracle expects EINVAL, dotted = no-op; hover for the expected path</small></div>\n</div>\n",
    );
    s
}

pub(super) fn totals_html(t: &Totals) -> String {
    let counts = [
        (Outcome::Pass, t.pass),
        (Outcome::NonStrict, t.non_strict),
        (Outcome::Info, t.info),
        (Outcome::Unsupported, t.unsupported),
        (Outcome::Xfail, t.xfail),
        (Outcome::Xpass, t.xpass),
        (Outcome::Fail, t.fail),
        (Outcome::Timeout, t.timeout),
        (Outcome::Error, t.error),
    ];
    let mut s = String::from("<span class=\"totals\">");
    for (o, n) in counts.iter().filter(|(_, n)| *n > 0) {
        s.push_str(&format!(
            "<span class=\"badge {}\" title=\"{}\">{} {n}</span>",
            class_of(*o),
            o.as_str(),
            o.as_str()
        ));
    }
    s.push_str(&format!("<small>{} checks</small></span>", t.total()));
    s
}

pub(super) fn trace_table(c: &CheckResult) -> String {
    let hits: BTreeSet<(usize, &str)> = c.findings.iter().map(|f| (f.step, f.device.as_str())).collect();
    let mut s = format!(
        "<details class=\"trace\"{}><summary>Step trace ({} steps)</summary>\n<table class=\"trace\"><tr><th>step</th><th>dev</th><th>operation</th><th>result</th><th>&micro;s</th></tr>\n",
        if c.outcome.is_failure() { " open" } else { "" },
        c.trace.len()
    );
    for t in &c.trace {
        let hit = hits.contains(&(t.step, t.device.as_str()));
        let mut result = t.obs.summary();
        for n in &t.obs.notes {
            if !result.contains(n.as_str()) {
                result.push_str("; ");
                result.push_str(n);
            }
        }
        s.push_str(&format!(
            "<tr{}><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
            if hit { " class=\"hit\"" } else { "" },
            t.step,
            esc(&t.device),
            esc(&t.op),
            esc(&result),
            t.micros
        ));
    }
    s.push_str("</table></details>\n");
    s
}

pub(super) fn finding_html(c: &CheckResult, fi: usize, with_check: Option<&str>) -> String {
    let Some(f) = c.findings.get(fi) else { return String::new() };
    let mut s = String::from("<div class=\"finding\">");
    if let Some(target) = with_check {
        s.push_str(&format!(
            "{} <a href=\"{}#{}\"><code>{}</code></a><br>",
            badge(c.outcome),
            esc(target),
            esc(&anchor("check", &c.id)),
            esc(&c.id)
        ));
    }
    if with_check.is_none() {
        let clauses: Vec<String> = f.clauses.iter().map(|k| clause_link(k)).collect();
        s.push_str(&format!(
            "{} [{}] <b>{}</b>: {}<br>",
            clauses.join(", "),
            esc(f.level.as_str()),
            esc(&f.title),
            esc(&f.statement)
        ));
        if !f.source.is_empty() {
            s.push_str(&format!("<small>Source: {}</small><br>", esc(&f.source)));
        }
    } else if f.clauses.len() > 1 {
        let clauses: Vec<String> = f.clauses.iter().map(|k| clause_link(k)).collect();
        s.push_str(&format!("<small>Clauses:</small> {}<br>", clauses.join(", ")));
    }
    let at = f.loc.as_ref().map(|l| format!(" ({l})")).unwrap_or_default();
    s.push_str(&format!(
        "Step {}{}: <code>{}</code> on device {}{}\n",
        f.step,
        if f.setup { " [setup]" } else { "" },
        esc(&f.op),
        esc(&f.device),
        esc(&at)
    ));
    s.push_str(&format!(
        "<table class=\"ea\"><tr><th>Expected</th><td class=\"exp\">{}</td></tr><tr><th>Actual</th><td class=\"act\">{}</td></tr></table></div>\n",
        esc(&f.expected),
        esc(&f.actual)
    ));
    s
}

pub(super) fn check_section(run: &Run, c: &CheckResult) -> String {
    let mut s = format!(
        "<section class=\"check {}\" id=\"{}\" data-outcome=\"{}\">\n<h3>{} <code>{}</code> {} <a class=\"perma\" href=\"#{}\">#</a></h3>\n<dl class=\"meta\">",
        class_of(c.outcome),
        esc(&anchor("check", &c.id)),
        c.outcome.as_str(),
        badge(c.outcome),
        esc(&c.id),
        esc(&c.title),
        esc(&anchor("check", &c.id))
    );
    if let Some(r) = &c.reason {
        s.push_str(&format!("<dt>Why</dt><dd>{}</dd>", esc(r)));
    }
    if let Some(d) = &c.deviation {
        s.push_str(&format!("<dt>Deviation</dt><dd>{}</dd>", esc(d)));
    }
    if let (Some((cur, new)), Some(dev)) = (arc_of(&c.id), run.header.devices.first()) {
        s.push_str(&format!(
            "<dt>Oracle</dt><dd class=\"oracle-path\">SET {new} from {cur} (flags {}): <code>{}</code></dd>",
            dev.facts.flags,
            esc(&expected_path(dev.facts.flags, cur, new))
        ));
    }
    let clauses: Vec<String> = c.clauses.iter().map(|k| clause_link(k)).collect();
    if !clauses.is_empty() {
        s.push_str(&format!("<dt>Clauses</dt><dd>{}</dd>", clauses.join(" ")));
    }
    s.push_str(&format!(
        "<dt>Origin</dt><dd>{}</dd><dt>Duration</dt><dd>{:.3} ms</dd></dl>\n",
        esc(&c.origin),
        c.duration_us as f64 / 1000.0
    ));
    if !c.findings.is_empty() {
        s.push_str("<div class=\"failure\">\n");
        for fi in 0..c.findings.len() {
            s.push_str(&finding_html(c, fi, None));
        }
        s.push_str("</div>\n");
    }
    for n in &c.notes {
        s.push_str(&format!("<p class=\"note\"><small>Note:</small> {}</p>\n", esc(n)));
    }
    s.push_str(&format!("<p class=\"repro\">Reproduce: <code>{}</code></p>\n", esc(&c.reproduce)));
    if !c.trace.is_empty() {
        s.push_str(&trace_table(c));
    }
    s.push_str("</section>\n");
    s
}

pub(super) fn run_info(run: &Run, name: &str) -> String {
    let h = &run.header;
    let mut s = String::from("<table class=\"runinfo\">\n");
    s.push_str(&format!("<tr><th>Record</th><td><code>{}</code></td></tr>\n", esc(name)));
    for d in &h.devices {
        let api = match d.facts.api {
            MigrationApi::V2 => format!("v2, flags {}", d.facts.flags),
            MigrationApi::V1 => "v1 migration region".to_string(),
            MigrationApi::None => "no migration".to_string(),
        };
        let mut extra = Vec::new();
        if d.facts.dma_logging {
            extra.push("DMA logging");
        }
        if d.facts.precopy_info_v2 {
            extra.push("PRECOPY_INFO v2");
        }
        s.push_str(&format!(
            "<tr><th>Device {}</th><td><code>{}</code> driver {}, model {}, {}{}{}</td></tr>\n",
            esc(&d.label),
            esc(&d.info.spec),
            esc(d.info.driver.as_deref().unwrap_or("?")),
            esc(d.info.model.as_deref().unwrap_or("?")),
            esc(&api),
            if extra.is_empty() { String::new() } else { format!(", {}", extra.join(", ")) },
            d.info.kernel.as_deref().map(|k| format!(", kernel {}", esc(k))).unwrap_or_default()
        ));
    }
    s.push_str(&format!("<tr><th>Host kernel</th><td>{}</td></tr>\n", esc(&h.host_kernel)));
    s.push_str(&format!(
        "<tr><th>Profile</th><td>{}{}</td></tr>\n",
        esc(h.profile.as_deref().unwrap_or("none")),
        if h.strict { " (strict)" } else { "" }
    ));
    s.push_str(&format!("<tr><th>Started</th><td>{}</td></tr>\n", utc(h.started)));
    s.push_str(&format!("<tr><th>Command</th><td><code>{}</code></td></tr>\n", esc(&h.command.join(" "))));
    s.push_str(&format!("<tr><th>Tool</th><td>{} {}</td></tr>\n", esc(&h.tool), esc(&h.version)));
    match &run.footer {
        Some(f) => s.push_str(&format!(
            "<tr><th>Finished</th><td>exit code {} after {:.2} s{}</td></tr>\n",
            f.exit_code,
            f.duration_ms as f64 / 1000.0,
            f.interrupted.as_deref().map(|i| format!(" ({})", esc(i))).unwrap_or_default()
        )),
        None => s.push_str(&format!(
            "<tr><th>Finished</th><td class=\"o-error\">no: the record ends after {} checks (crash or kill)</td></tr>\n",
            run.checks.len()
        )),
    }
    s.push_str(&format!(
        "<tr><th>Totals</th><td>{}</td></tr>\n",
        totals_html(&Totals::from_results(&run.checks))
    ));
    s.push_str("</table>\n");
    s
}

pub(super) fn run_page(i: usize, name: &str, run: &Run) -> Page {
    let mut b = format!(
        "<nav class=\"top\"><a href=\"index.html\">&larr; all runs</a></nav>\n<h1>Run {}: {}</h1>\n",
        i + 1,
        esc(short(name))
    );
    if let Some(why) = run.unfinished() {
        b.push_str(&format!(
            "<p class=\"warning unfinished\"><span class=\"badge o-error\">&#9888; not finished</span> {}: its verdicts cover only the {} checks that ran.</p>\n",
            esc(&why),
            run.checks.len()
        ));
    }
    b.push_str(&run_info(run, name));
    b.push_str(&legend());
    b.push_str("<h2 id=\"arcs\">FSM arc matrix</h2>\n");
    b.push_str("<p class=\"muted\">Rows: the state the device is in; columns: the state SET requests. Each cell is the check <code>fsm.arc.&lt;cur&gt;.&lt;new&gt;</code>; hover for the primitive path the oracle expects.</p>\n");
    b.push_str(&arc_matrix(run, ""));
    if !run.fuzz.is_empty() {
        b.push_str("<h2 id=\"fuzz\">Fuzzing</h2>\n");
        for (k, f) in run.fuzz.iter().enumerate() {
            b.push_str(&fuzz_section(f, &format!("fuzz-{}", k + 1)));
        }
    }
    b.push_str(&format!("<h2 id=\"checks-title\">Checks ({})</h2>\n", run.checks.len()));
    b.push_str("<div class=\"toolbar\"><label><input type=\"checkbox\" id=\"hide-pass\"> hide PASS</label></div>\n<div id=\"checks\">\n");
    // Failures first, then the rest in run order.
    let mut order: Vec<&CheckResult> = run.checks.iter().collect();
    order.sort_by_key(|c| {
        std::cmp::Reverse(if c.outcome == Outcome::Pass || c.outcome == Outcome::Unsupported {
            0
        } else {
            severity(c.outcome)
        })
    });
    for c in order {
        b.push_str(&check_section(run, c));
    }
    b.push_str("</div>\n");
    Page { file: run_file(i), html: page(&format!("vfio-mig-conform: run {}: {name}", i + 1), &b) }
}
