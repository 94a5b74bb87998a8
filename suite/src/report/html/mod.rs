//! The HTML report: a static, self-contained site rebuilt from run records (no network, no
//! external assets; inline CSS and JS only, and a Content-Security-Policy that forbids
//! anything else). The writer only formats: every verdict comes from the record, every
//! expected path from the FSM oracle.
//!
//! Pages:
//! - `index.html`: the legend, the runs (device x kernel x profile), with several runs the
//!   runs x clauses matrix, the FSM arc matrix of every run, the fuzz coverage (with the kernel
//!   coverage of `fuzz --coverage kcov` sessions in one plot), and the clause
//!   table (clause, level, statement, one verdict per run with expected vs actual on click).
//! - `run-N.html`: one run: its devices, totals, arc matrix, fuzz sessions and every check
//!   (failure blocks with Expected/Actual/Reproduce, the step trace), each at `#check-ID`.

mod aggregate;
mod arcs;
mod assets;
mod coverage;
mod diff;
mod index;
mod run_page;
mod runs;
#[cfg(test)]
mod tests;

pub use aggregate::{ClauseVerdict, clause_outcome, clause_verdicts};
pub use arcs::{arc_matrix, arc_of, expected_path};

use super::record::Run;
use crate::outcome::Outcome;

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

/// How bad an outcome is, for "worst of" ([`Outcome::severity`]).
pub fn severity(o: Outcome) -> u8 {
    o.severity()
}

fn badge(o: Outcome) -> String {
    format!("<span class=\"badge {}\">{}</span>", class_of(o), o.as_str())
}

/// `2026-11-21 02:32:09 UTC` from seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::units::utc_civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

/// The record's file name, for places where the whole path is too long.
fn short(name: &str) -> &str {
    name.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(name)
}

fn run_file(i: usize) -> String {
    format!("run-{}.html", i + 1)
}

fn clause_link(id: &str) -> String {
    format!("<a href=\"index.html#{}\"><code>{}</code></a>", esc(&anchor("clause", id)), esc(id))
}

/// Renders the report of these runs (name, record): `index.html` first, then one page per
/// run, then (with two runs or more) `diff.html`. A run's results are its checks and its fuzz
/// findings as the record holds them ([`Run::results`]), so a clause the fuzzer found violated
/// has that verdict.
pub fn render(runs: &[(String, Run)]) -> Vec<Page> {
    let runs: Vec<(String, Run)> =
        runs.iter().map(|(name, run)| (name.clone(), Run { checks: run.results(), ..run.clone() })).collect();
    let mut pages = vec![index::index_page(&runs)];
    for (i, (name, run)) in runs.iter().enumerate() {
        pages.push(run_page::run_page(i, name, run));
    }
    if runs.len() > 1 {
        pages.push(diff::diff_page(&runs));
    }
    pages
}
