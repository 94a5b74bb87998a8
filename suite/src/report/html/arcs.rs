//! The FSM arc matrix of a run and the coverage matrix of a fuzzing session; the expected
//! paths come from the FSM oracle.

use std::collections::{BTreeMap, BTreeSet};

use super::{abbrev, anchor, badge, class_of, esc};
use crate::device::MigrationApi;
use crate::oracle::fsm::{SetPrediction, predict_set};
use crate::report::record::{CheckResult, FuzzSummary, Run};
use crate::state::{MigFlags, MigState};

pub(super) fn state_of_ident(ident: &str) -> Option<MigState> {
    MigState::ALL.into_iter().find(|s| s.ident() == ident)
}

/// `fsm.arc.<cur>.<new>` -> (cur, new) when both are named states.
pub fn arc_of(id: &str) -> Option<(MigState, MigState)> {
    let rest = id.strip_prefix("fsm.arc.")?;
    let (cur, new) = rest.split_once('.')?;
    Some((state_of_ident(cur)?, state_of_ident(new)?))
}

/// What the oracle expects for SET(new) from cur on a device with these flags, in words.
pub fn expected_path(flags: MigFlags, cur: MigState, new: MigState) -> String {
    if cur != MigState::Error && !cur.supported_by(flags) {
        return format!("{cur} is not a state of this device (flags {flags})");
    }
    let p = predict_set(flags, cur, new.raw());
    let mut s = p.render(cur);
    if p.returns_data_fd() {
        s.push_str(", returns a data fd");
    }
    s
}

/// The short hint shown in an arc cell.
pub(super) fn path_hint(flags: MigFlags, cur: MigState, new: MigState) -> String {
    if cur == MigState::Error || !cur.supported_by(flags) {
        return "n/a".to_string();
    }
    match predict_set(flags, cur, new.raw()) {
        SetPrediction::Noop => "no-op".to_string(),
        SetPrediction::Refuse(_) => "EINVAL".to_string(),
        SetPrediction::Walk(arcs) if arcs.len() == 1 => "1 arc".to_string(),
        SetPrediction::Walk(arcs) => format!("{} arcs", arcs.len()),
    }
}

/// The FSM arc matrix of a run's first device: 8 x 8 cells (cur x new), coloured by the
/// outcome of `fsm.arc.<cur>.<new>`, linking to the check on `target` (a page file, or ""
/// for the current page), the oracle's expected path in the tooltip.
pub fn arc_matrix(run: &Run, target: &str) -> String {
    let Some(dev) = run.header.devices.first() else {
        return "<p class=\"muted\">The record names no device.</p>\n".to_string();
    };
    if dev.facts.api != MigrationApi::V2 {
        return format!(
            "<p class=\"muted\">Device {} ({}) does not speak the v2 FSM uAPI: no arc matrix.</p>\n",
            esc(&dev.label),
            esc(&dev.info.spec)
        );
    }
    let flags = dev.facts.flags;
    let by_id: BTreeMap<&str, &CheckResult> = run.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut s = format!(
        "<table class=\"arcs\" data-device=\"{}\" data-flags=\"{}\">\n<tr><th class=\"corner\">cur \\ new</th>",
        esc(&dev.label),
        flags.0
    );
    for new in MigState::ALL {
        s.push_str(&format!("<th>{}</th>", esc(new.name()).replace('_', "_<wbr>")));
    }
    s.push_str("</tr>\n");
    for cur in MigState::ALL {
        s.push_str(&format!("<tr><th>{}</th>", esc(cur.name())));
        for new in MigState::ALL {
            let id = format!("fsm.arc.{}.{}", cur.ident(), new.ident());
            let expect = expected_path(flags, cur, new);
            let hint = path_hint(flags, cur, new);
            let shape = match (
                cur == MigState::Error || !cur.supported_by(flags),
                predict_set(flags, cur, new.raw()),
            ) {
                (true, _) => "",
                (false, SetPrediction::Refuse(_)) => " refuse",
                (false, SetPrediction::Noop) => " noop",
                (false, SetPrediction::Walk(_)) => "",
            };
            match by_id.get(id.as_str()) {
                Some(c) => {
                    let title = format!("{}: {}\n{}\noracle: {expect}", c.id, c.outcome, c.title);
                    s.push_str(&format!(
                        "<td class=\"arc {}{shape}\" data-cur=\"{}\" data-new=\"{}\" data-outcome=\"{}\" title=\"{}\"><a href=\"{}#{}\"><span class=\"ab\">{}</span><span class=\"hint\">{}</span></a></td>",
                        class_of(c.outcome),
                        cur.name(),
                        new.name(),
                        c.outcome.as_str(),
                        esc(&title),
                        esc(target),
                        esc(&anchor("check", &c.id)),
                        abbrev(c.outcome),
                        esc(&hint)
                    ));
                }
                None => {
                    let why = if cur == MigState::Error {
                        "no check (ERROR is not a starting state)"
                    } else {
                        "no check in this run"
                    };
                    let title = format!("{cur} -> {new}: {why}\noracle: {expect}");
                    s.push_str(&format!(
                        "<td class=\"arc o-none{shape}\" data-cur=\"{}\" data-new=\"{}\" data-outcome=\"\" title=\"{}\"><span class=\"cell\"><span class=\"ab\">&mdash;</span><span class=\"hint\">{}</span></span></td>",
                        cur.name(),
                        new.name(),
                        esc(&title),
                        esc(&hint)
                    ));
                }
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    // Out-of-range targets (raw values) are checks too; list them under the matrix.
    let raw: Vec<&CheckResult> =
        run.checks.iter().filter(|c| c.id.starts_with("fsm.arc.") && arc_of(&c.id).is_none()).collect();
    if !raw.is_empty() {
        s.push_str("<p class=\"raw-targets\"><small>Targets that are not uAPI states:</small> ");
        for c in raw {
            s.push_str(&format!(
                "<a href=\"{}#{}\" title=\"{}\">{} <code>{}</code></a> ",
                esc(target),
                esc(&anchor("check", &c.id)),
                esc(&c.title),
                badge(c.outcome),
                esc(c.id.trim_start_matches("fsm.arc."))
            ));
        }
        s.push_str("</p>\n");
    }
    s
}

pub(super) fn arc_pair(text: &str) -> Option<(MigState, MigState)> {
    let (a, b) = text.split_once("->")?;
    let find = |n: &str| MigState::ALL.into_iter().find(|s| s.name() == n.trim());
    Some((find(a)?, find(b)?))
}

/// One fuzzing session: coverage of (cur, new) SETs, error paths, findings.
pub(super) fn fuzz_section(f: &FuzzSummary, id: &str) -> String {
    let covered: BTreeSet<(MigState, MigState)> = f.arcs_covered.iter().filter_map(|a| arc_pair(a)).collect();
    let pct =
        if f.arcs_possible == 0 { 0.0 } else { 100.0 * f.arcs_covered.len() as f64 / f.arcs_possible as f64 };
    let mut s = format!(
        "<section class=\"fuzz\" id=\"{}\">\n<h3>Fuzzing device {}: seed {}, {:.1} s, {} operations ({:.0}/s)</h3>\n",
        esc(id),
        esc(&f.device),
        f.seed,
        f.duration_ms as f64 / 1000.0,
        f.ops,
        f.ops_per_sec
    );
    s.push_str(&format!(
        "<p>Arcs covered: <b class=\"arcs-covered\">{}</b> of <b class=\"arcs-possible\">{}</b> possible <span class=\"bar\"><span style=\"width:{:.0}%\"></span></span> {pct:.0}%</p>\n",
        f.arcs_covered.len(),
        f.arcs_possible,
        pct.min(100.0)
    ));
    s.push_str("<table class=\"cov\">\n<tr><th class=\"corner\">cur \\ new</th>");
    for new in MigState::ALL {
        s.push_str(&format!("<th>{}</th>", esc(new.name()).replace('_', "_<wbr>")));
    }
    s.push_str("</tr>\n");
    for cur in MigState::ALL {
        s.push_str(&format!("<tr><th>{}</th>", esc(cur.name())));
        for new in MigState::ALL {
            if covered.contains(&(cur, new)) {
                s.push_str(&format!("<td class=\"arc hit\" title=\"{cur}->{new}: exercised\">hit</td>"));
            } else {
                s.push_str(&format!("<td class=\"arc\" title=\"{cur}->{new}: not exercised\"></td>"));
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    let other: Vec<&String> = f.arcs_covered.iter().filter(|a| arc_pair(a).is_none()).collect();
    if !other.is_empty() {
        let list: Vec<String> = other.iter().map(|a| format!("<code>{}</code>", esc(a))).collect();
        s.push_str(&format!("<p><small>Also covered:</small> {}</p>\n", list.join(" ")));
    }
    let mut paths = f.error_paths.clone();
    paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    s.push_str(&format!("<h4>Error paths hit: <span class=\"error-paths\">{}</span></h4>\n", paths.len()));
    if !paths.is_empty() {
        s.push_str("<table class=\"errpaths\"><tr><th>operation:errno</th><th>count</th></tr>\n");
        for (p, n) in &paths {
            s.push_str(&format!("<tr><td><code>{}</code></td><td>{n}</td></tr>\n", esc(p)));
        }
        s.push_str("</table>\n");
    }
    s.push_str(&format!("<h4>Findings: {}</h4>\n", f.findings.len()));
    for (i, fd) in f.findings.iter().enumerate() {
        let known = fd
            .known
            .as_deref()
            .map(|k| format!(" <span class=\"badge o-xfail\">known</span> <small>{}</small>", esc(k)))
            .unwrap_or_default();
        s.push_str(&format!(
            "<div class=\"finding\"><b>{}. {}</b>{known} <small>after {:.1} s</small>\n<table class=\"ea\"><tr><th>Expected</th><td class=\"exp\">{}</td></tr><tr><th>Actual</th><td class=\"act\">{}</td></tr></table>\n",
            i + 1,
            esc(&fd.clauses.join(", ")),
            fd.after_secs,
            esc(&fd.expected),
            esc(&fd.actual)
        ));
        if let Some(file) = &fd.reproducer_file {
            s.push_str(&format!(
                "<p>Reproduce: <code>vfio-mig-conform DEVICE --sequence {}</code></p>\n",
                esc(file)
            ));
        }
        s.push_str(&format!(
            "<details><summary>Minimal sequence</summary><pre>{}</pre></details></div>\n",
            esc(&fd.reproducer)
        ));
    }
    if let Some(c) = &f.coverage {
        s.push_str(&super::coverage::session_html(id, c));
    }
    s.push_str("</section>\n");
    s
}
