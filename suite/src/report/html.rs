//! The HTML report: a static, self-contained site rebuilt from run records (no network, no
//! external assets; inline CSS and JS only, and a Content-Security-Policy that forbids
//! anything else). The writer only formats: every verdict comes from the record, every
//! expected path from the FSM oracle.
//!
//! Pages:
//! - `index.html`: the legend, the runs (device x kernel x profile), with several runs the
//!   runs x clauses matrix, the FSM arc matrix of every run, the fuzz coverage, and the clause
//!   table (clause, level, statement, one verdict per run with expected vs actual on click).
//! - `run-N.html`: one run: its devices, totals, arc matrix, fuzz sessions and every check
//!   (failure blocks with Expected/Actual/Reproduce, the step trace), each at `#check-ID`.

use std::collections::{BTreeMap, BTreeSet};

use super::record::{CheckResult, FuzzSummary, Run, Totals};
use crate::clauses::{Level, catalog};
use crate::device::MigrationApi;
use crate::oracle::fsm::{SetPrediction, predict_set};
use crate::outcome::Outcome;
use crate::state::{MigFlags, MigState};

/// One file of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// File name relative to the report directory (`index.html`, `run-1.html`).
    pub file: String,
    pub html: String,
}

/// HTML-escapes text for element content and double-quoted attributes. Control characters
/// other than tab and newline become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// An element id (and URL fragment) for `prefix-name`: ASCII letters, digits, `.`, `_` and
/// `-` are kept, every other byte becomes `~xx`, so distinct names give distinct ids.
pub fn anchor(prefix: &str, name: &str) -> String {
    let mut out = format!("{prefix}-");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("~{b:02x}"));
        }
    }
    out
}

/// The CSS class of an outcome (`o-pass`, `o-non-strict`, ...).
pub fn class_of(o: Outcome) -> String {
    format!("o-{}", o.as_str().to_ascii_lowercase())
}

/// Short label for matrix cells.
fn abbrev(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "P",
        Outcome::NonStrict => "NS",
        Outcome::Info => "I",
        Outcome::Unsupported => "U",
        Outcome::Xfail => "XF",
        Outcome::Xpass => "XP",
        Outcome::Fail => "F",
        Outcome::Timeout => "T",
        Outcome::Error => "E",
    }
}

fn meaning(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "conformant",
        Outcome::NonStrict => "a SHOULD is broken (FAIL with --strict)",
        Outcome::Info => "only MAY/INFO observations",
        Outcome::Unsupported => "the device lacks what the check needs",
        Outcome::Xfail => "a known deviation declared by the profile",
        Outcome::Xpass => "a declared deviation did not happen",
        Outcome::Fail => "a MUST is broken",
        Outcome::Timeout => "an operation outlived the watchdog",
        Outcome::Error => "the harness or environment failed, not the driver",
    }
}

/// How bad an outcome is, for "worst of": UNSUPPORTED < PASS < INFO < XFAIL < NON-STRICT <
/// XPASS < FAIL < TIMEOUT < ERROR.
pub fn severity(o: Outcome) -> u8 {
    match o {
        Outcome::Unsupported => 0,
        Outcome::Pass => 1,
        Outcome::Info => 2,
        Outcome::Xfail => 3,
        Outcome::NonStrict => 4,
        Outcome::Xpass => 5,
        Outcome::Fail => 6,
        Outcome::Timeout => 7,
        Outcome::Error => 8,
    }
}

fn worst(a: Outcome, b: Outcome) -> Outcome {
    if severity(b) > severity(a) { b } else { a }
}

/// The verdict of one check on one clause. A check that broke other clauses counts as PASS
/// for this one; TIMEOUT, ERROR, UNSUPPORTED and XPASS concern the whole check.
pub fn clause_outcome(c: &CheckResult, clause: &str) -> Outcome {
    match c.outcome {
        Outcome::Fail | Outcome::NonStrict | Outcome::Info | Outcome::Xfail => {
            let any_mandatory = c.findings.iter().any(|f| f.level.is_mandatory());
            let mut o = Outcome::Pass;
            for f in c.findings.iter().filter(|f| f.clauses.iter().any(|k| k == clause)) {
                let fo = if c.outcome == Outcome::Xfail {
                    Outcome::Xfail
                } else if f.level.is_mandatory() {
                    Outcome::Fail
                } else if f.level == Level::Should {
                    // --strict turns a run's SHOULD findings into FAIL.
                    if c.outcome == Outcome::Fail && !any_mandatory {
                        Outcome::Fail
                    } else {
                        Outcome::NonStrict
                    }
                } else {
                    Outcome::Info
                };
                o = worst(o, fo);
            }
            o
        }
        o => o,
    }
}

/// What one run says about one clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClauseVerdict {
    /// The worst [`clause_outcome`] of the checks observing the clause.
    pub outcome: Outcome,
    /// (check index, its outcome on this clause).
    pub checks: Vec<(usize, Outcome)>,
    /// (check index, finding index) of the findings naming the clause.
    pub findings: Vec<(usize, usize)>,
}

/// Every clause a run observed (listed by a check or named by a finding), with its verdict.
pub fn clause_verdicts(run: &Run) -> BTreeMap<String, ClauseVerdict> {
    let mut out: BTreeMap<String, ClauseVerdict> = BTreeMap::new();
    for (ci, c) in run.checks.iter().enumerate() {
        let mut clauses: BTreeSet<&str> = c.clauses.iter().map(String::as_str).collect();
        for f in &c.findings {
            clauses.extend(f.clauses.iter().map(String::as_str));
        }
        for k in clauses {
            let o = clause_outcome(c, k);
            let v = out.entry(k.to_string()).or_insert(ClauseVerdict {
                outcome: o,
                checks: Vec::new(),
                findings: Vec::new(),
            });
            v.outcome = worst(v.outcome, o);
            v.checks.push((ci, o));
        }
        for (fi, f) in c.findings.iter().enumerate() {
            for k in &f.clauses {
                if let Some(v) = out.get_mut(k) {
                    v.findings.push((ci, fi));
                }
            }
        }
    }
    out
}

/// The clause ids in catalog order, then any the catalog does not know, sorted.
fn ordered_clauses(ids: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> =
        catalog().all().iter().filter(|c| ids.contains(&c.id)).map(|c| c.id.clone()).collect();
    out.extend(ids.iter().filter(|id| catalog().get(id).is_none()).cloned());
    out
}

fn state_of_ident(ident: &str) -> Option<MigState> {
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
fn path_hint(flags: MigFlags, cur: MigState, new: MigState) -> String {
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

fn badge(o: Outcome) -> String {
    format!("<span class=\"badge {}\">{}</span>", class_of(o), o.as_str())
}

/// `2026-11-21 02:32:09 UTC` from seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A run as a column: device, kernel, profile (from the header).
#[derive(Clone, Debug)]
struct RunLabel {
    device: String,
    flags: String,
    kernel: String,
    profile: String,
}

fn label_of(run: &Run) -> RunLabel {
    let h = &run.header;
    let dev = h.devices.first();
    let device = dev
        .map(|d| {
            let name =
                d.info.model.clone().or_else(|| d.info.driver.clone()).unwrap_or_else(|| d.info.spec.clone());
            if h.devices.len() > 1 { format!("{name} (+{} peers)", h.devices.len() - 1) } else { name }
        })
        .unwrap_or_else(|| "no device".to_string());
    let flags = dev
        .map(|d| match d.facts.api {
            MigrationApi::V2 => format!("v2 {}", d.facts.flags),
            MigrationApi::V1 => "v1".to_string(),
            MigrationApi::None => "no migration".to_string(),
        })
        .unwrap_or_default();
    let kernel = match dev {
        Some(d) if d.info.backend == crate::device::Backend::Kernel => {
            d.info.kernel.clone().unwrap_or_else(|| h.host_kernel.clone())
        }
        Some(_) => "simulated".to_string(),
        None => h.host_kernel.clone(),
    };
    let profile = h.profile.as_deref().map_or_else(
        || "no profile".to_string(),
        |p| p.split_once(" (").map_or(p, |(name, _)| name).to_string(),
    );
    RunLabel { device, flags, kernel, profile }
}

/// The record's file name, for places where the whole path is too long.
fn short(name: &str) -> &str {
    name.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(name)
}

fn run_file(i: usize) -> String {
    format!("run-{}.html", i + 1)
}

const CSS: &str = r#"
:root{--fg:#1b1f23;--muted:#5f6b76;--line:#d8dee4;--bg:#fff;--code:#f3f5f7}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;padding:1em 2em 4em;max-width:1500px}
h1{font-size:1.6em;margin:.2em 0 .3em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line);padding-bottom:.2em}h3{font-size:1.05em;margin:.2em 0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--code);padding:.6em .8em;overflow-x:auto;white-space:pre-wrap;word-break:break-word;margin:.4em 0}
a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
.muted,small{color:var(--muted)}
table{border-collapse:collapse}
th,td{border:1px solid var(--line);padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa;font-weight:600}
.badge{display:inline-block;padding:0 .45em;border-radius:3px;font-size:11.5px;font-weight:700;letter-spacing:.02em;white-space:nowrap;line-height:1.6}
.o-pass{background:#c8e6c9;color:#1b5e20}
.o-non-strict{background:#ffe082;color:#6d4c00}
.o-info{background:#bbdefb;color:#0d47a1}
.o-unsupported{background:#e7e9ec;color:#57606a}
.o-xfail{background:#d1c4e9;color:#4527a0}
.o-xpass{background:#ffb74d;color:#5d3200}
.o-fail{background:#e53935;color:#fff}
.o-timeout{background:#ad1457;color:#fff}
.o-error{background:#37474f;color:#fff}
.o-none{background:repeating-linear-gradient(45deg,#fafbfc,#fafbfc 4px,#eef0f3 4px,#eef0f3 8px);color:#8c959f}
.legend{display:flex;flex-wrap:wrap;gap:.4em 1.2em;margin:.5em 0 1em;padding:.6em .8em;border:1px solid var(--line);border-radius:6px}
.legend div{display:flex;gap:.4em;align-items:center}.legend .swatch{display:inline-block;width:2.2em;height:1.3em;border:1px solid var(--line)}
.totals .badge{margin-right:.3em}
table.arcs td.arc{width:58px;min-width:58px;height:40px;text-align:center;vertical-align:middle;padding:0}
table.arcs td.arc a,table.arcs td.arc span.cell{display:block;color:inherit;padding:3px 2px;height:100%}
table.arcs td.arc .ab{display:block;font-weight:700;font-size:13px}
table.arcs td.arc .hint{display:block;font-size:10.5px;opacity:.85}
table.arcs td.refuse{outline:2px dashed rgba(0,0,0,.35);outline-offset:-4px}
table.arcs td.noop{outline:1px dotted rgba(0,0,0,.35);outline-offset:-3px}
table.arcs th,table.cov th{font-size:11px;text-align:center;vertical-align:middle;white-space:nowrap}
table.arcs tr:first-child th,table.cov tr:first-child th{white-space:normal;min-width:58px}
table.arcs th.corner{font-weight:400;color:var(--muted)}
.arcgrid{display:flex;flex-wrap:wrap;gap:1.5em 2.5em}
.arcgrid figure{margin:0;width:min-content}.arcgrid figure p{min-width:30em}.arcgrid figcaption{margin:.2em 0 .4em;font-weight:600}
table.mx th.run{font-size:11px;font-weight:400;min-width:88px;vertical-align:bottom;position:sticky;top:0;z-index:1}
table.mx th.run b{font-size:12px}
table.mx td,table.mx th{padding:1px 6px;font-size:12px}
table.mx td.mx{text-align:center;padding:0;min-width:88px}
table.mx td.mx a{display:block;color:inherit;padding:1px 4px;font-weight:700}
tbody.unobservable th.group,tbody.unobservable-c th.group{background:#fff;font-weight:400;color:var(--muted);padding-top:.8em}
table.mx.only-differs tr.same{display:none}
table.mx tr.differs th.clause-id{background:#fff3cd}
table.clauses td.verdict{min-width:130px}
table.clauses tr.clause{cursor:pointer}
table.clauses tr.clause:hover td{filter:brightness(.97)}
table.clauses td.verdict details>summary{list-style:none;cursor:pointer}
table.clauses td.verdict summary small{color:inherit;opacity:.8}
table.clauses td.verdict details>summary::-webkit-details-marker{display:none}
table.clauses td.verdict details[open]{min-width:380px}
table.clauses td.verdict .finding,.failure .finding{background:#fff;color:var(--fg);border:1px solid var(--line);border-left:4px solid #e53935;border-radius:3px;padding:.35em .6em;margin:.4em 0}
.finding table.ea th{width:6.5em;background:none;border:0;padding:1px 6px 1px 0;color:var(--muted)}
.finding table.ea td{border:0;padding:1px 0}
.finding code{word-break:break-word;white-space:pre-wrap}
table.clauses>tbody>tr>th{white-space:nowrap}
.finding .exp{color:#1b5e20}.finding .act{color:#b71c1c}
a.chip{display:inline-block;padding:0 .35em;margin:1px 0;border-radius:3px;font:11.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:inherit}
td.verdict .observers{font-size:12px;color:var(--fg);background:#fff;padding:.2em .4em;margin-top:.3em}
tr:target>td,tr:target>th,section:target{box-shadow:inset 0 0 0 2px #0b57d0}
section.check{border:1px solid var(--line);border-left-width:6px;border-radius:4px;padding:.5em .8em;margin:.6em 0}
section.check.o-pass,section.check.o-fail,section.check.o-non-strict,section.check.o-info,section.check.o-unsupported,section.check.o-xfail,section.check.o-xpass,section.check.o-timeout,section.check.o-error{background:#fff;color:var(--fg)}
section.check.o-pass{border-left-color:#43a047}section.check.o-fail{border-left-color:#e53935}section.check.o-non-strict{border-left-color:#ffb300}
section.check.o-info{border-left-color:#64b5f6}section.check.o-unsupported{border-left-color:#bdbdbd}section.check.o-xfail{border-left-color:#7e57c2}
section.check.o-xpass{border-left-color:#fb8c00}section.check.o-timeout{border-left-color:#ad1457}section.check.o-error{border-left-color:#37474f}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:1px 1em;margin:.3em 0}dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
table.trace td,table.trace th{font-size:12.5px}table.trace tr.hit td{background:#ffebee}
.hide-pass section.check.o-pass{display:none}
.bar{display:inline-block;width:220px;height:12px;background:#eceff1;border-radius:6px;overflow:hidden;vertical-align:middle}.bar span{display:block;height:100%;background:#43a047}
table.cov td.arc{width:52px;height:30px;text-align:center;vertical-align:middle;font-size:11px}
td.hit{background:#a5d6a7;color:#1b5e20;font-weight:700}
nav.top{font-size:13px;margin-bottom:.5em}
table.runinfo th{white-space:nowrap}
.toolbar{margin:.4em 0;font-size:13px}
"#;

const JS: &str = r#"
(function(){
  function openTarget(){
    var id=decodeURIComponent(location.hash.slice(1)); if(!id) return;
    var el=document.getElementById(id); if(!el) return;
    el.querySelectorAll('details').forEach(function(d){d.open=true;});
  }
  window.addEventListener('hashchange',openTarget); openTarget();
  document.querySelectorAll('tr.clause').forEach(function(tr){
    tr.addEventListener('click',function(e){
      if(e.target.closest('a,summary')) return;
      var ds=tr.querySelectorAll('details'); var open=false;
      ds.forEach(function(d){ if(!d.open) open=true; });
      ds.forEach(function(d){ d.open=open; });
    });
  });
  var only=document.getElementById('only-differs');
  if(only){ only.addEventListener('change',function(){
    document.querySelectorAll('table.mx').forEach(function(t){ t.classList.toggle('only-differs',only.checked); });
  }); }
  var hide=document.getElementById('hide-pass');
  if(hide){ hide.addEventListener('change',function(){
    document.getElementById('checks').classList.toggle('hide-pass',hide.checked);
  }); }
})();
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}{}</style>\n</head>\n<body>\n{body}\n<script>{JS}</script>\n</body>\n</html>\n",
        esc(title),
        super::coverage::CSS
    )
}

fn legend() -> String {
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

fn totals_html(t: &Totals) -> String {
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

fn arc_pair(text: &str) -> Option<(MigState, MigState)> {
    let (a, b) = text.split_once("->")?;
    let find = |n: &str| MigState::ALL.into_iter().find(|s| s.name() == n.trim());
    Some((find(a)?, find(b)?))
}

/// One fuzzing session: coverage of (cur, new) SETs, error paths, findings.
fn fuzz_section(f: &FuzzSummary, id: &str) -> String {
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

fn clause_link(id: &str) -> String {
    format!("<a href=\"index.html#{}\"><code>{}</code></a>", esc(&anchor("clause", id)), esc(id))
}

fn trace_table(c: &CheckResult) -> String {
    let hits: BTreeSet<(usize, &str)> = c.findings.iter().map(|f| (f.step, f.device.as_str())).collect();
    let mut s = format!(
        "<details class=\"trace\"{}><summary>Step trace ({} steps)</summary>\n<table class=\"trace\"><tr><th>step</th><th>dev</th><th>operation</th><th>result</th><th>&micro;s</th></tr>\n",
        if c.outcome.is_failure() { " open" } else { "" },
        c.trace.len()
    );
    for t in &c.trace {
        let hit = hits.contains(&(t.step + 1, t.device.as_str()));
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
            t.step + 1,
            esc(&t.device),
            esc(&t.op),
            esc(&result),
            t.micros
        ));
    }
    s.push_str("</table></details>\n");
    s
}

fn finding_html(c: &CheckResult, fi: usize, with_check: Option<&str>) -> String {
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

fn check_section(run: &Run, c: &CheckResult) -> String {
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

fn run_info(run: &Run, name: &str) -> String {
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

fn run_page(i: usize, name: &str, run: &Run) -> Page {
    let mut b = format!(
        "<nav class=\"top\"><a href=\"index.html\">&larr; all runs</a></nav>\n<h1>Run {}: {}</h1>\n",
        i + 1,
        esc(short(name))
    );
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

fn runs_table(runs: &[(String, Run)], labels: &[RunLabel]) -> String {
    let mut s = String::from(
        "<table class=\"runs\">\n<tr><th>Run</th><th>Device</th><th>Migration</th><th>Kernel</th><th>Profile</th><th>Started</th><th>Totals</th></tr>\n",
    );
    for (i, ((name, run), l)) in runs.iter().zip(labels).enumerate() {
        let unfinished =
            if run.footer.is_none() { " <span class=\"badge o-error\">unfinished</span>" } else { "" };
        s.push_str(&format!(
            "<tr><td><a href=\"{}\">R{}</a> <small title=\"{}\">{}</small>{unfinished}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            run_file(i),
            i + 1,
            esc(name),
            esc(short(name)),
            esc(&l.device),
            esc(&l.flags),
            esc(&l.kernel),
            esc(&l.profile),
            utc(run.header.started),
            totals_html(&Totals::from_results(&run.checks))
        ));
    }
    s.push_str("</table>\n");
    s
}

fn run_header_cell(i: usize, name: &str, l: &RunLabel) -> String {
    format!(
        "<th class=\"run\" data-run=\"{}\" title=\"{}\"><a href=\"{}\"><b>R{}</b></a><br>{}<br>{}<br>{}<br><i>{}</i></th>",
        i + 1,
        esc(name),
        run_file(i),
        i + 1,
        esc(&l.device),
        esc(&l.flags),
        esc(&l.kernel),
        esc(&l.profile)
    )
}

fn runs_matrix(
    runs: &[(String, Run)],
    labels: &[RunLabel],
    verdicts: &[BTreeMap<String, ClauseVerdict>],
    clauses: &[String],
) -> String {
    let mut s = String::from(
        "<div class=\"toolbar\"><label><input type=\"checkbox\" id=\"only-differs\"> only clauses whose verdict differs between runs</label></div>\n<table class=\"mx\">\n<thead><tr><th>Clause</th><th>Level</th>",
    );
    for (i, ((name, _), l)) in runs.iter().zip(labels).enumerate() {
        s.push_str(&run_header_cell(i, name, l));
    }
    s.push_str("</tr></thead>\n");
    for (group, clauses) in groups(clauses, verdicts) {
        s.push_str(&group_head(group, clauses.len(), runs.len() + 2));
        for k in clauses {
            let cells: Vec<Option<&ClauseVerdict>> = verdicts.iter().map(|v| v.get(k)).collect();
            let outcomes: BTreeSet<Option<Outcome>> = cells.iter().map(|c| c.map(|v| v.outcome)).collect();
            let differs = outcomes.len() > 1;
            let level = catalog().get(k).map_or("?", |c| c.level.as_str());
            let title = catalog().get(k).map(|c| c.title.clone()).unwrap_or_default();
            s.push_str(&format!(
            "<tr class=\"{}\" data-clause=\"{}\"><th class=\"clause-id\" title=\"{}\"><a href=\"#{}\"><code>{}</code></a></th><td>{}</td>",
            if differs { "differs" } else { "same" },
            esc(k),
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
                    "<td class=\"mx o-none\" data-outcome=\"\" title=\"{} in R{}: not observed\">&mdash;</td>",
                    esc(k),
                    i + 1
                )),
            }
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n");
    }
    s.push_str("</table>\n");
    s
}

/// The clauses some run could observe, then (a second group) those every run reported
/// UNSUPPORTED for.
fn groups<'a>(
    clauses: &'a [String],
    verdicts: &[BTreeMap<String, ClauseVerdict>],
) -> Vec<(bool, Vec<&'a String>)> {
    let unobservable =
        |k: &String| verdicts.iter().all(|v| v.get(k).is_none_or(|c| c.outcome == Outcome::Unsupported));
    let (late, first): (Vec<&String>, Vec<&String>) = clauses.iter().partition(|k| unobservable(k));
    let mut out = vec![(false, first)];
    if !late.is_empty() {
        out.push((true, late));
    }
    out
}

fn group_head(unobservable: bool, n: usize, cols: usize) -> String {
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
fn verdict_cell(i: usize, run: &Run, v: Option<&ClauseVerdict>) -> String {
    let Some(v) = v else {
        return "<td class=\"verdict o-none\" data-outcome=\"\">not observed</td>".to_string();
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

fn clause_table(
    runs: &[(String, Run)],
    labels: &[RunLabel],
    verdicts: &[BTreeMap<String, ClauseVerdict>],
    clauses: &[String],
) -> String {
    let mut s =
        String::from("<table class=\"clauses\">\n<thead><tr><th>Clause</th><th>Level</th><th>Statement</th>");
    for (i, ((name, _), l)) in runs.iter().zip(labels).enumerate() {
        s.push_str(&run_header_cell(i, name, l));
    }
    s.push_str("</tr></thead>\n");
    for (group, clauses) in groups(clauses, verdicts) {
        s.push_str(&group_head(group, clauses.len(), runs.len() + 3));
        for k in clauses {
            let cl = catalog().get(k);
            s.push_str(&format!(
            "<tr class=\"clause\" id=\"{}\" data-clause=\"{}\"><th><code>{}</code></th><td>{}</td><td><b>{}</b>: {}<br><small>{}</small></td>",
            esc(&anchor("clause", k)),
            esc(k),
            esc(k),
            esc(cl.map_or("?", |c| c.level.as_str())),
            esc(cl.map_or("(not in this tool's catalog)", |c| c.title.as_str())),
            esc(cl.map_or("", |c| c.statement.as_str())),
            esc(&cl.map(|c| c.sources()).unwrap_or_default())
        ));
            for (i, ((_, run), v)) in runs.iter().zip(verdicts).enumerate() {
                s.push_str(&verdict_cell(i, run, v.get(k)));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n");
    }
    s.push_str("</table>\n");
    s
}

fn index_page(runs: &[(String, Run)]) -> Page {
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
        let cov: Vec<(String, &super::coverage::CoverageRecord)> = runs
            .iter()
            .enumerate()
            .flat_map(|(i, (_, r))| {
                r.fuzz
                    .iter()
                    .filter_map(move |f| f.coverage.as_ref().map(|c| (format!("R{} {}", i + 1, f.device), c)))
            })
            .collect();
        b.push_str(&super::coverage::comparison_html(&cov));
    }
    if runs.len() > 1 {
        b.push_str("<h2 id=\"matrix\">Runs &times; clauses</h2>\n<p class=\"muted\">Each cell is the worst verdict of the run's checks on the clause (a check that broke another clause counts as PASS here). Highlighted clause ids differ between runs.</p>\n");
        b.push_str(&runs_matrix(runs, &labels, &verdicts, &clauses));
    }
    b.push_str(&format!(
        "<h2 id=\"clauses\">Clauses ({} observed)</h2>\n<p class=\"muted\">Click a row for expected vs actual and the checks behind each verdict.</p>\n",
        clauses.len()
    ));
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

/// Renders the report of these runs (name, record): `index.html` first, then one page per
/// run.
pub fn render(runs: &[(String, Run)]) -> Vec<Page> {
    let mut pages = vec![index_page(runs)];
    for (i, (name, run)) in runs.iter().enumerate() {
        pages.push(run_page(i, name, run));
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"type":"run","tool":"vfio-mig-conform","version":"0.1.0","started":1795228329,"command":["vfio-mig-conform","sim:v2"],"devices":[{"label":"A","info":{"spec":"sim:v2","backend":"sim","driver":"sim-v2","model":"sim","kernel":"vfio-mig-conform 0.1.0","name":"sim"},"facts":{"api":"v2","flags":FLAGS,"dma_logging":true,"precopy_info_v2":false,"migration_region":null,"initial_state":2,"why_not":null}}],"strict":false,"host_kernel":"6.12.0"}"#;

    fn check(id: &str, outcome: Outcome, findings: &[(&str, &str)]) -> String {
        let findings: Vec<serde_json::Value> = findings
            .iter()
            .map(|(clause, level)| {
                serde_json::json!({"clauses":[clause],"level":level,"title":"t <b>","statement":"s","source":"",
                    "expected":"fails with EINVAL","actual":"succeeded <script>","step":2,"op":"set_state: PRE_COPY","device":"A"})
            })
            .collect();
        serde_json::json!({"type":"check","id":id,"title":format!("title of {id}"),"outcome":outcome,
            "clauses":["V2-MIG-003","V2-STATE-007"],"findings":findings,"duration_us":5,"origin":"generated",
            "reproduce":format!("vfio-mig-conform sim:v2 --exact {id}"),
            "trace":[{"step":0,"device":"A","op":"set_state: STOP_COPY","obs":{"data_fd":5,"state":3},"micros":1},
                     {"step":1,"device":"A","op":"set_state: PRE_COPY","obs":{"data_fd":-1,"state":6},"micros":1}]})
        .to_string()
    }

    /// (check id, outcome, findings as (clause, level)).
    type Special<'a> = (&'a str, Outcome, &'a [(&'a str, &'a str)]);

    /// A run on a device with `flags` where every arc check passes except the given ones.
    fn run(flags: u64, special: &[Special<'_>]) -> Run {
        // One file per call: tests run in parallel.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("vmc-html-{}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("r.jsonl");
        let mut lines = vec![HEADER.replace("FLAGS", &flags.to_string())];
        for cur in MigState::ALL.into_iter().filter(|s| *s != MigState::Error) {
            for new in MigState::ALL {
                let id = format!("fsm.arc.{}.{}", cur.ident(), new.ident());
                match special.iter().find(|s| s.0 == id) {
                    Some((_, o, f)) => lines.push(check(&id, *o, f)),
                    None => lines.push(check(&id, Outcome::Pass, &[])),
                }
            }
        }
        lines.push(check("fsm.arc.running.raw_8", Outcome::Pass, &[]));
        lines.push(r#"{"type":"fuzz","device":"A","seed":7,"duration_ms":1000,"ops":500,"ops_per_sec":500.0,"arcs_covered":["RUNNING->STOP","STOP->RUNNING"],"arcs_possible":42,"error_paths":[["set_state:EINVAL",3]],"findings":[]}"#.to_string());
        std::fs::write(&path, lines.join("\n")).expect("write record");
        let run = Run::read(&path).expect("read record");
        let _ = std::fs::remove_dir_all(&dir);
        run
    }

    fn ids_and_links(html: &str) -> (BTreeSet<String>, Vec<String>) {
        let mut ids = BTreeSet::new();
        let mut links = Vec::new();
        for (key, out) in [(" id=\"", 0), (" href=\"", 1)] {
            let mut rest = html;
            while let Some(i) = rest.find(key) {
                rest = &rest[i + key.len()..];
                let end = rest.find('"').expect("closing quote");
                let v = rest[..end].to_string();
                if out == 0 {
                    ids.insert(v);
                } else {
                    links.push(v);
                }
                rest = &rest[end..];
            }
        }
        (ids, links)
    }

    #[test]
    fn escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{fffd}"
        );
        assert_eq!(anchor("check", "fsm.arc.stop_copy.pre_copy"), "check-fsm.arc.stop_copy.pre_copy");
        assert_eq!(anchor("check", "a b\"<"), "check-a~20b~22~3c");
        assert_ne!(anchor("c", "a~20"), anchor("c", "a "));
    }

    #[test]
    fn record_text_never_becomes_markup() {
        let r = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
        for p in render(&[("<img src=x onerror=alert(1)>.jsonl".to_string(), r)]) {
            assert_eq!(p.html.matches("<script").count(), 1, "{}: only the report's own script", p.file);
            assert!(!p.html.contains("<img"), "{}", p.file);
            assert!(!p.html.contains("t <b>"), "{}", p.file);
            assert!(!p.html.contains("succeeded <script"), "{}", p.file);
            assert!(p.html.contains("succeeded &lt;script&gt;"), "{}", p.file);
        }
    }

    #[test]
    fn the_arc_matrix_has_64_cells_coloured_by_outcome_with_the_oracle_path() {
        let r = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
        let m = arc_matrix(&r, "run-1.html");
        assert_eq!(m.matches("<td class=\"arc ").count(), 64);
        assert_eq!(m.matches("<td class=\"arc o-none").count(), 8, "the ERROR row has no checks");
        assert_eq!(m.matches("<td class=\"arc o-fail").count(), 1);
        let cell = m
            .split("<td ")
            .find(|c| c.contains("data-cur=\"STOP_COPY\" data-new=\"PRE_COPY\""))
            .expect("cell");
        assert!(cell.starts_with("class=\"arc o-fail refuse\""), "{cell}");
        assert!(cell.contains("oracle: EINVAL (STOP_COPY -&gt; PRE_COPY* is forbidden)"), "{cell}");
        assert!(cell.contains("href=\"run-1.html#check-fsm.arc.stop_copy.pre_copy\""), "{cell}");
        let cell = m
            .split("<td ")
            .find(|c| c.contains("data-cur=\"RUNNING\" data-new=\"STOP_COPY\""))
            .expect("cell");
        assert!(
            cell.contains("RUNNING -&gt; RUNNING_P2P -&gt; STOP -&gt; STOP_COPY, returns a data fd"),
            "{cell}"
        );
        assert!(cell.contains("3 arcs"), "{cell}");
        assert!(m.contains("raw_8"), "out-of-range targets are listed");
    }

    #[test]
    fn the_expected_path_follows_the_device_flags() {
        let f = MigFlags(1);
        assert_eq!(
            expected_path(f, MigState::Running, MigState::StopCopy),
            "RUNNING -> STOP -> STOP_COPY, returns a data fd"
        );
        assert!(expected_path(f, MigState::PreCopy, MigState::Stop).contains("not a state of this device"));
        assert!(expected_path(f, MigState::Running, MigState::RunningP2p).starts_with("EINVAL"));
    }

    #[test]
    fn a_clause_is_as_bad_as_the_worst_check_that_broke_it() {
        let r = run(
            7,
            &[
                ("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")]),
                ("fsm.arc.stop.running", Outcome::Xfail, &[("V2-STATE-002", "MUST")]),
                ("fsm.arc.stop.stop", Outcome::Timeout, &[]),
            ],
        );
        let v = clause_verdicts(&r);
        assert_eq!(v["V2-STATE-007"].outcome, Outcome::Timeout, "TIMEOUT concerns every clause of its check");
        assert_eq!(v["V2-STATE-002"].outcome, Outcome::Xfail);
        assert_eq!(v["V2-STATE-002"].findings.len(), 1);
        let fail = r.checks.iter().find(|c| c.id == "fsm.arc.stop_copy.pre_copy").expect("check");
        assert_eq!(clause_outcome(fail, "V2-STATE-007"), Outcome::Fail);
        assert_eq!(clause_outcome(fail, "V2-MIG-003"), Outcome::Pass, "another clause's failure");
        let should = CheckResult { outcome: Outcome::Fail, ..fail.clone() };
        let mut should = should;
        should.findings[0].level = Level::Should;
        assert_eq!(clause_outcome(&should, "V2-STATE-007"), Outcome::Fail, "--strict");
        should.outcome = Outcome::NonStrict;
        assert_eq!(clause_outcome(&should, "V2-STATE-007"), Outcome::NonStrict);
    }

    #[test]
    fn every_link_resolves_to_a_page_and_an_anchor_and_nothing_is_external() {
        let a = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
        let b = run(3, &[]);
        let pages = render(&[("a.jsonl".to_string(), a), ("b.jsonl".to_string(), b)]);
        let files: Vec<&str> = pages.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files, ["index.html", "run-1.html", "run-2.html"]);
        let anchors: BTreeMap<&str, BTreeSet<String>> =
            pages.iter().map(|p| (p.file.as_str(), ids_and_links(&p.html).0)).collect();
        let mut checked = 0;
        for p in &pages {
            assert!(!p.html.contains("src="), "{}: no external resources", p.file);
            for link in ids_and_links(&p.html).1 {
                assert!(!link.contains("://"), "{}: external link {link}", p.file);
                let (file, frag) = link.split_once('#').unwrap_or((link.as_str(), ""));
                let file = if file.is_empty() { p.file.as_str() } else { file };
                let ids =
                    anchors.get(file).unwrap_or_else(|| panic!("{}: link to missing page {link}", p.file));
                assert!(frag.is_empty() || ids.contains(frag), "{}: link to missing anchor {link}", p.file);
                checked += 1;
            }
        }
        assert!(checked > 64 * 2, "only {checked} links checked");
    }

    #[test]
    fn several_runs_get_a_runs_by_clauses_matrix_with_one_column_per_run() {
        let a = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
        let b = run(7, &[]);
        let pages = render(&[("a.jsonl".to_string(), a.clone()), ("b.jsonl".to_string(), b)]);
        let index = &pages[0].html;
        let mx = index
            .split("<table class=\"mx\">")
            .nth(1)
            .expect("matrix")
            .split("</table>")
            .next()
            .unwrap_or("");
        let head = mx.split("</thead>").next().unwrap_or("");
        assert_eq!(head.matches("<th class=\"run\"").count(), 2);
        let row = mx.split("<tr ").find(|r| r.contains("data-clause=\"V2-STATE-007\"")).expect("row");
        assert!(row.starts_with("class=\"differs\""), "{row}");
        let row = mx.split("<tr ").find(|r| r.contains("data-clause=\"V2-MIG-003\"")).expect("row");
        assert!(row.starts_with("class=\"same\""), "{row}");
        let single = render(&[("a.jsonl".to_string(), a)]);
        assert!(!single[0].html.contains("<table class=\"mx\">"), "one run: no runs matrix");
    }

    #[test]
    fn fuzz_coverage_is_shown_when_the_record_has_fuzz_lines() {
        let r = run(7, &[]);
        let pages = render(&[("a.jsonl".to_string(), r)]);
        assert!(pages[0].html.contains("<h2 id=\"fuzz\">Fuzz coverage</h2>"));
        assert!(
            pages[1].html.contains("<b class=\"arcs-covered\">2</b> of <b class=\"arcs-possible\">42</b>")
        );
        assert_eq!(pages[1].html.matches("<td class=\"arc hit\"").count(), 2);
        assert!(pages[1].html.contains("set_state:EINVAL"));
    }

    #[test]
    fn any_flags_and_odd_headers_render_without_panicking() {
        for flags in 0..16 {
            let r = run(flags, &[]);
            assert_eq!(arc_matrix(&r, "").matches("<td class=\"arc ").count(), 64, "flags {flags}");
        }
        let mut r = run(7, &[]);
        r.header.devices.clear();
        r.footer = None;
        let pages = render(&[(String::new(), r)]);
        assert!(pages[0].html.contains("The record names no device."));
        assert!(pages[1].html.contains("no: the record ends after"));
        assert_eq!(render(&[]).len(), 1, "no runs: an index only");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_228_329), "2026-11-21 02:32:09 UTC");
    }

    #[test]
    fn arc_matrix_snapshot() {
        let r = run(1, &[("fsm.arc.running.stop_copy", Outcome::Fail, &[("V2-STATE-005", "MUST")])]);
        insta::assert_snapshot!("arc_matrix_stop_copy_only", arc_matrix(&r, "run-1.html"));
    }
}
