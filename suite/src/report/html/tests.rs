//! Unit tests of the HTML report.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::outcome::Outcome;
use crate::state::{MigFlags, MigState};

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
    let mut run = Run::read(&path).expect("read record");
    let _ = std::fs::remove_dir_all(&dir);
    // The record the runner writes carries each check's per-clause outcomes.
    run.checks = run.checks.into_iter().map(|c| c.with_clause_outcomes(false)).collect();
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
    let cell =
        m.split("<td ").find(|c| c.contains("data-cur=\"STOP_COPY\" data-new=\"PRE_COPY\"")).expect("cell");
    assert!(cell.starts_with("class=\"arc o-fail refuse\""), "{cell}");
    assert!(cell.contains("oracle: EINVAL (STOP_COPY -&gt; PRE_COPY* is forbidden)"), "{cell}");
    assert!(cell.contains("href=\"run-1.html#check-fsm.arc.stop_copy.pre_copy\""), "{cell}");
    let cell =
        m.split("<td ").find(|c| c.contains("data-cur=\"RUNNING\" data-new=\"STOP_COPY\"")).expect("cell");
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
    let mut recorded = fail.clone();
    recorded.clause_outcomes.insert("V2-STATE-007".to_string(), Outcome::NonStrict);
    assert_eq!(
        clause_outcome(&recorded, "V2-STATE-007"),
        Outcome::NonStrict,
        "the record's word, not re-derived"
    );
    recorded.clause_outcomes.clear();
    assert_eq!(
        clause_outcome(&recorded, "V2-STATE-007"),
        Outcome::Fail,
        "an old record: the check's outcome"
    );
}

#[test]
fn every_link_resolves_to_a_page_and_an_anchor_and_nothing_is_external() {
    let a = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
    let b = run(3, &[]);
    let pages = render(&[("a.jsonl".to_string(), a), ("b.jsonl".to_string(), b)]);
    let files: Vec<&str> = pages.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(files, ["index.html", "run-1.html", "run-2.html", "diff.html"]);
    let anchors: BTreeMap<&str, BTreeSet<String>> =
        pages.iter().map(|p| (p.file.as_str(), ids_and_links(&p.html).0)).collect();
    let mut checked = 0;
    for p in &pages {
        assert!(!p.html.contains("src="), "{}: no external resources", p.file);
        for link in ids_and_links(&p.html).1 {
            assert!(!link.contains("://"), "{}: external link {link}", p.file);
            let (file, frag) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let file = if file.is_empty() { p.file.as_str() } else { file };
            let ids = anchors.get(file).unwrap_or_else(|| panic!("{}: link to missing page {link}", p.file));
            assert!(frag.is_empty() || ids.contains(frag), "{}: link to missing anchor {link}", p.file);
            checked += 1;
        }
    }
    assert!(checked > 64 * 2, "only {checked} links checked");
    assert!(pages[0].html.contains("href=\"diff.html\""), "the index links the diff page");
}

#[test]
fn several_runs_get_a_runs_by_clauses_matrix_with_one_column_per_run() {
    let a = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
    let b = run(7, &[]);
    let pages = render(&[("a.jsonl".to_string(), a.clone()), ("b.jsonl".to_string(), b)]);
    let index = &pages[0].html;
    let mx =
        index.split("<table class=\"mx\">").nth(1).expect("matrix").split("</table>").next().unwrap_or("");
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
    assert!(pages[1].html.contains("<b class=\"arcs-covered\">2</b> of <b class=\"arcs-possible\">42</b>"));
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

/// The part of `html` between `start` and the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    html.split(start).nth(1).unwrap_or_else(|| panic!("no {start}")).split(end).next().unwrap_or("")
}

/// The row of `table` (`mx` or `clauses`) for `clause`.
fn clause_row<'a>(html: &'a str, table: &str, clause: &str) -> &'a str {
    between(html, &format!("<table class=\"{table}\">"), "</table>")
        .split("<tr ")
        .find(|r| r.contains(&format!("data-clause=\"{clause}\"")))
        .unwrap_or_else(|| panic!("no row {clause} in {table}"))
}

fn with_spec(mut r: Run, spec: &str) -> Run {
    r.header.devices[0].info.spec = spec.to_string();
    r
}

#[test]
fn runs_are_named_by_their_device_spec_with_the_defect_so_two_sim_runs_differ() {
    let a = with_spec(run(7, &[]), "sim:v2");
    let b = with_spec(run(7, &[]), "sim:v2?defect=hang_on_set");
    let pages = render(&[("a.jsonl".to_string(), a), ("b.jsonl".to_string(), b)]);
    let index = &pages[0].html;
    let runs = between(index, "<table class=\"runs\">", "</table>");
    assert!(runs.contains("<code>sim:v2?defect=hang_on_set</code>"), "{runs}");
    let heads: Vec<&str> =
        between(index, "<table class=\"mx\">", "</thead>").split("<th class=\"run\"").skip(1).collect();
    assert_eq!(heads.len(), 2);
    assert!(heads[0].contains("<code class=\"spec\">sim:v2</code>"), "{}", heads[0]);
    assert!(heads[1].contains("<code class=\"spec\">sim:v2?defect=hang_on_set</code>"), "{}", heads[1]);
    assert!(
        between(&pages[3].html, "<ul class=\"diff-runs\">", "</ul>").contains("sim:v2?defect=hang_on_set")
    );
}

#[test]
fn an_unfinished_or_interrupted_run_carries_a_warning_everywhere_it_is_named() {
    let end = |interrupted: Option<&str>| {
        Some(crate::report::record::RunFooter {
            totals: Default::default(),
            exit_code: if interrupted.is_some() { 130 } else { 0 },
            duration_ms: 5,
            interrupted: interrupted.map(str::to_string),
        })
    };
    let mut done = run(7, &[]);
    done.footer = end(None);
    let mut killed = run(7, &[]);
    killed.footer = None;
    let mut interrupted = run(7, &[]);
    interrupted.footer = end(Some("interrupted by SIGINT"));
    let pages = render(&[
        ("done.jsonl".to_string(), done),
        ("killed.jsonl".to_string(), killed),
        ("int.jsonl".to_string(), interrupted),
    ]);
    let runs = between(&pages[0].html, "<table class=\"runs\">", "</table>");
    let rows: Vec<&str> = runs.split("<tr data-run=").skip(1).collect();
    assert_eq!(rows.len(), 3);
    assert!(!rows[0].contains("unfinished"), "{}", rows[0]);
    for (row, why) in [(rows[1], "no end line"), (rows[2], "interrupted by SIGINT")] {
        assert!(row.contains("class=\"unfinished\""), "{row}");
        assert!(row.contains("not finished: partial verdicts"), "{row}");
        assert!(row.contains(why), "{row}");
    }
    let heads: Vec<&str> = between(&pages[0].html, "<table class=\"mx\">", "</thead>")
        .split("<th class=\"run\"")
        .skip(1)
        .collect();
    assert!(
        !heads[0].contains("not finished")
            && heads[1].contains("not finished")
            && heads[2].contains("not finished")
    );
    assert!(!pages[1].html.contains("<p class=\"warning unfinished\">"));
    assert!(pages[2].html.contains("<p class=\"warning unfinished\">"));
    assert!(pages[3].html.contains("<p class=\"warning unfinished\">"));
}

#[test]
fn a_fuzz_finding_makes_its_clause_fail_instead_of_pass_or_not_observed() {
    let mut r = run(7, &[]);
    r.fuzz[0].findings.push(crate::report::record::FuzzFinding {
        clauses: vec!["V2-STATE-007".to_string()],
        expected: "EINVAL".to_string(),
        actual: "accepted".to_string(),
        reproducer: "id: fuzz.live.v2_state_007\nsteps:\n- set_state: PRE_COPY\n".to_string(),
        reproducer_file: None,
        replay: None,
        known: None,
        level: None,
        after_secs: 0.5,
    });
    let pages = render(&[("a.jsonl".to_string(), r)]);
    let row = clause_row(&pages[0].html, "clauses", "V2-STATE-007");
    assert!(row.contains("<td class=\"verdict o-fail\" data-outcome=\"FAIL\">"), "{row}");
    assert!(row.contains("href=\"run-1.html#check-fuzz.live.v2_state_007\""), "{row}");
    assert!(
        pages[1].html.contains("id=\"check-fuzz.live.v2_state_007\""),
        "the run page shows the finding as a check"
    );
    let other = clause_row(&pages[0].html, "clauses", "V2-MIG-003");
    assert!(other.contains("data-outcome=\"PASS\""), "{other}");
}

#[test]
fn a_partial_run_leaves_clauses_it_did_not_run_as_not_run_not_as_differences() {
    let full = run(7, &[]);
    let mut partial = run(7, &[]);
    partial.checks.retain(|c| c.id.starts_with("fsm.arc.running."));
    for c in &mut partial.checks {
        c.clauses = vec!["V2-MIG-003".to_string()];
        c.clause_outcomes.retain(|k, _| k == "V2-MIG-003");
    }
    let pages = render(&[("full.jsonl".to_string(), full), ("partial.jsonl".to_string(), partial)]);
    let row = clause_row(&pages[0].html, "mx", "V2-STATE-007");
    assert!(row.starts_with("class=\"same\""), "{row}");
    assert!(row.contains("not run"), "{row}");
    assert!(clause_row(&pages[0].html, "mx", "V2-MIG-003").starts_with("class=\"same\""));
    assert!(clause_row(&pages[0].html, "clauses", "V2-STATE-007").contains(">not run</td>"));
    assert!(!between(&pages[0].html, "<table class=\"mx\">", "</table>").contains("class=\"differs\""));
}

#[test]
fn clause_rows_carry_level_family_and_outcomes_for_the_filters() {
    let a = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
    let pages = render(&[("a.jsonl".to_string(), a.clone()), ("b.jsonl".to_string(), a)]);
    let index = &pages[0].html;
    for id in ["filter-level", "filter-outcome", "filter-family"] {
        assert!(index.contains(&format!("<select id=\"{id}\">")), "{id}");
    }
    assert!(index.contains("<option value=\"V2-STATE\">V2-STATE</option>"));
    assert!(index.contains("<option value=\"FAIL\">FAIL</option>"));
    assert!(index.contains("<option value=\"MUST\">MUST</option>"));
    let level = crate::clauses::catalog().get("V2-STATE-007").expect("clause").level.as_str();
    for table in ["mx", "clauses"] {
        let row = clause_row(index, table, "V2-STATE-007");
        assert!(row.contains(&format!("data-level=\"{level}\"")), "{row}");
        assert!(row.contains("data-family=\"V2-STATE\""), "{row}");
        assert!(row.contains("data-outcomes=\" FAIL \""), "{row}");
    }
    assert_eq!(super::aggregate::family_of("V2-ARC-RES-001"), "V2-ARC-RES");
    assert_eq!(super::aggregate::family_of("ODD"), "ODD");
}

#[test]
fn the_diff_page_lists_each_check_with_its_raw_verdict_per_run_and_marks_the_differences() {
    let a = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Fail, &[("V2-STATE-007", "MUST")])]);
    // The same violation declared by a profile: XFAIL, raw FAIL, not a difference.
    let mut b = run(7, &[("fsm.arc.stop_copy.pre_copy", Outcome::Xfail, &[("V2-STATE-007", "MUST")])]);
    let mut c = run(7, &[("fsm.arc.stop.running", Outcome::Fail, &[("V2-STATE-002", "MUST")])]);
    b.checks.retain(|c| c.id != "fsm.arc.running.raw_8");
    c.checks.truncate(c.checks.len());
    let pages = render(&[("a.jsonl".to_string(), a), ("b.jsonl".to_string(), b), ("c.jsonl".to_string(), c)]);
    let diff = &pages.last().expect("pages").html;
    assert_eq!(pages.last().expect("pages").file, "diff.html");
    let row = |id: &str| {
        between(diff, "<tbody>", "</tbody>")
            .split("<tr ")
            .find(|r| r.contains(&format!("data-check=\"{id}\"")))
            .unwrap_or_else(|| panic!("no row {id}"))
            .to_string()
    };
    let same = row("fsm.arc.stop_copy.pre_copy");
    assert!(same.contains("class=\"same\""), "{same}");
    assert_eq!(same.matches("data-raw=\"FAIL\"").count(), 2, "{same}");
    assert!(same.contains("title=\"recorded: XFAIL\""), "{same}");
    let missing = row("fsm.arc.running.raw_8");
    assert!(missing.contains("class=\"differs\"") && missing.contains("not in run"), "{missing}");
    assert!(row("fsm.arc.stop.running").contains("class=\"same\""), "R1 vs R2 agree there");
    assert!(
        diff.contains("<b id=\"diff-summary\">56 checks compared, 1 differ (R1 vs R2)</b>"),
        "{}",
        between(diff, "<div class=\"toolbar\"", "</div>")
    );
    assert!(diff.contains("<select id=\"diff-a\">") && diff.contains("<select id=\"diff-b\">"));
    assert_eq!(render(&[("a.jsonl".to_string(), run(7, &[]))]).len(), 2, "one run: no diff page");
}
