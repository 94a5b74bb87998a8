//! The command-line contract, tested on the simulated devices: exit codes, failure blocks,
//! located input errors, the watchdog, interruption, and the report formats agreeing with
//! each other.

mod common;

use std::process::{Output, Stdio};

use common::{bin, finish_within, record_lines, run, text, tmp, wait_for};

#[test]
fn the_main_job_on_the_reference_simulator_exits_0() {
    let out = run(&["sim:v2", "--format", "terse"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("fail:0"));
}

#[test]
fn a_violation_exits_1_with_clause_expected_actual_and_reproducer() {
    let out = run(&["sim:v2?defect=stop_copy_to_pre_copy_accepted", "--exact", "fsm.arc.stop_copy.pre_copy"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for want in [
        "V2-STATE-007 [MUST]",
        "Expected: SET PRE_COPY from STOP_COPY fails with EINVAL",
        "Actual: succeeded",
        "Reproduce: vfio-mig-conform",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in\n{stdout}");
    }
}

#[test]
fn a_filter_that_selects_nothing_exits_2() {
    let out = run(&["sim:v2", "no.such.check", "--exact"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no checks selected"));
}

#[test]
fn a_device_without_migration_is_a_skip_with_exit_4() {
    let out = run(&["sim:plain", "--format", "ktap"]);
    assert_eq!(out.status.code(), Some(4));
    let ktap = text(&out.stdout);
    assert!(
        ktap.starts_with(
            "KTAP version 1\n1..1\nok 1 migration_support # SKIP sim:plain: no migration support"
        ),
        "{ktap}"
    );
    assert_eq!(ktap_ok(&ktap), Ok(()), "{ktap}");
}

#[test]
fn a_bad_device_string_is_a_usage_error() {
    let out = run(&["sim:v2?defect=nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown defect `nope`"));
}

#[test]
fn a_malformed_sequence_is_reported_with_file_line_and_column_and_exit_2() {
    let d = tmp("badseq");
    let f = d.join("bad.yaml");
    std::fs::write(&f, "id: a.b.c\ntitle: t\nsteps:\n  - set_state: STOP\n  - set_stat: STOP\n")
        .expect("write");
    let out = run(&["sim:v2", "--sequence", f.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{}:5:5: unknown step `set_stat`", f.display())), "{stderr}");
}

#[test]
fn an_unknown_clause_in_a_profile_is_reported_with_its_position() {
    let d = tmp("badprofile");
    let f = d.join("p.yaml");
    std::fs::write(
        &f,
        "name: p\ndescription: d\nverified: no\ndeviations:\n  - checks: [fsm.*]\n    clauses: [V2-NOPE-001]\n    reason: r\n",
    )
    .expect("write");
    let out = run(&["sim:v2", "--profile", f.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("{}:6:15: unknown clause ID `V2-NOPE-001`", f.display())));
}

#[test]
fn a_hanging_operation_is_a_timeout_naming_the_step_and_the_run_goes_on() {
    let out = run(&["sim:v2?defect=hang_on_set", "fsm.arc.stop.", "--timeout", "1"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("TIMEOUT: step 2 `set_state: STOP_COPY` did not return within 1 s"), "{stdout}");
    assert!(stdout.contains("test fsm.arc.stop.resuming") && stdout.contains("... ok"), "{stdout}");
}

fn ktap_ok(ktap: &str) -> Result<(), String> {
    // The rules kunit_parser.py enforces: version line, plan, numbered results in order,
    // nested blocks with `# Subtest:` whose parent result repeats the name.
    let lines: Vec<&str> = ktap.lines().collect();
    if lines.first() != Some(&"KTAP version 1") {
        return Err("no KTAP version line".into());
    }
    let plan: usize = lines
        .get(1)
        .and_then(|l| l.strip_prefix("1.."))
        .and_then(|n| n.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or("no plan")?;
    let mut top = 0;
    let mut sub_name: Option<String> = None;
    let mut sub_plan = 0;
    let mut sub_n = 0;
    for l in &lines[2..] {
        if let Some(name) = l.strip_prefix("  # Subtest: ") {
            sub_name = Some(name.to_string());
            sub_n = 0;
        } else if let Some(p) = l.strip_prefix("  1..") {
            sub_plan = p.parse().map_err(|_| format!("bad subplan {l}"))?;
        } else if l.starts_with("  ok ") || l.starts_with("  not ok ") {
            sub_n += 1;
            let num: usize = l
                .trim_start()
                .trim_start_matches("not ")
                .trim_start_matches("ok ")
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or(format!("bad line {l}"))?;
            if num != sub_n {
                return Err(format!("expected subtest number {sub_n}, found {num}"));
            }
        } else if l.starts_with("ok ") || l.starts_with("not ok ") {
            top += 1;
            let rest = l.trim_start_matches("not ").trim_start_matches("ok ");
            let (num, name) = rest.split_once(' ').ok_or(format!("bad line {l}"))?;
            if num.parse::<usize>().ok() != Some(top) {
                return Err(format!("expected test number {top}, found {num}"));
            }
            if let Some(s) = sub_name.take() {
                if name != s {
                    return Err(format!("parent result `{name}` does not repeat subtest `{s}`"));
                }
                if sub_n != sub_plan {
                    return Err(format!("subtest {s} planned {sub_plan}, ran {sub_n}"));
                }
            }
        }
    }
    if top != plan {
        return Err(format!("planned {plan}, found {top}"));
    }
    Ok(())
}

#[test]
fn ktap_junit_and_the_record_agree_and_the_record_rebuilds_the_ktap() {
    let d = tmp("formats");
    let (json, ktap, junit) = (d.join("r.jsonl"), d.join("r.ktap"), d.join("r.xml"));
    let out = run(&[
        "sim:v2?defect=eof_at_precopy_temporary_end,stale_saving_fd_readable",
        "--json",
        json.to_str().expect("p"),
        "--ktap",
        ktap.to_str().expect("p"),
        "--junit",
        junit.to_str().expect("p"),
        "--format",
        "ktap",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let live = std::fs::read_to_string(&ktap).expect("ktap file");
    assert_eq!(text(&out.stdout), live, "stdout KTAP and --ktap file differ");
    ktap_ok(&live).unwrap_or_else(|e| panic!("KTAP invalid: {e}\n{live}"));
    assert!(
        live.contains("not ok") && live.contains("  ok 1 write_000 # SKIP needs a v1 device\n"),
        "{live}"
    );
    let rebuilt = run(&["report", json.to_str().expect("p"), "--format", "ktap"]);
    assert_eq!(text(&rebuilt.stdout), live, "report --format ktap does not rebuild the live KTAP");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("<failure message=\"V2-ARC-STOP-004"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), xml.matches("</testcase>").count());
    let record = std::fs::read_to_string(&json).expect("record");
    let last: serde_json::Value = serde_json::from_str(record.lines().last().expect("lines")).expect("json");
    assert_eq!(last["type"], "end");
    assert_eq!(last["exit_code"], 1);
}

/// A run of 1000 sequences (a second or more to load) that starts with SIGINT ignored, as a
/// background job of a non-interactive shell does (`vfio-mig-conform ... & kill -INT $!`: CI's
/// guest script, where a run on a slow guest once ignored the signal and finished with exit 0).
/// Returns the child once its inputs are loading, and the path of its record.
fn run_with_slow_inputs(name: &str) -> (std::process::Child, std::path::PathBuf) {
    use std::os::unix::process::CommandExt;
    let d = tmp(name);
    let fx = d.join("fixtures");
    std::fs::create_dir_all(&fx).expect("fixtures dir");
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/qemu-v2/cancel-precopy.yaml"
    ))
    .expect("a fixture");
    for i in 0..1000 {
        let text = src.replacen("id: qemu.v2.cancel_precopy\n", &format!("id: test.early_sigint.c{i}\n"), 1);
        assert_ne!(text, src, "the fixture's id line moved");
        std::fs::write(fx.join(format!("c{i}.yaml")), text).expect("write a sequence");
    }
    let json = d.join("r.jsonl");
    let mut cmd = bin();
    cmd.args(["sim:v2", "--fixtures", fx.to_str().expect("p"), "--json", json.to_str().expect("p")])
        .args(["--format", "terse"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only calls signal(2), which is async-signal-safe
    // and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert!(
        !json.exists(),
        "the record had begun before the signal: the inputs loaded too fast for this test"
    );
    (child, json)
}

/// Sends SIGINT to `child`, then again `gap_ms` later, and waits at most 10 s for it to end.
fn sigint_twice(child: std::process::Child, gap_ms: u64) -> Output {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    std::thread::sleep(std::time::Duration::from_millis(gap_ms));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    finish_within(child, 10, "after the second SIGINT")
}

#[test]
fn a_sigint_while_the_inputs_load_still_ends_the_run_with_exit_5_and_a_complete_record() {
    // Arrange
    let (child, json) = run_with_slow_inputs("sigint-early");

    // Act: SIGINT before any device is opened or the record begun.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    let out = finish_within(child, 120, "a run interrupted while loading");

    // Assert: interrupted (not a full run that ignored the signal), and the record says so.
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let lines = record_lines(&json);
    assert_eq!(lines[0]["type"], "run");
    assert_eq!(lines.iter().filter(|l| l["type"] == "check").count(), 0, "no check runs after the signal");
    let end = lines.last().expect("footer");
    assert_eq!(end["type"], "end");
    assert_eq!(end["interrupted"], "interrupted by SIGINT");
}

#[test]
fn a_second_sigint_before_any_device_is_opened_exits_5_without_a_device_warning() {
    // Arrange
    let (child, _json) = run_with_slow_inputs("sigint-early-twice");

    // Act
    let out = sigint_twice(child, 50);

    // Assert: nothing was opened, so nothing may be left behind: exit 5, not 6.
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("second signal: exiting at once (no device was opened yet)"), "{err}");
    assert!(!err.contains("non-RUNNING"), "{err}");
}

#[test]
fn sigint_mid_run_exits_5_and_keeps_every_finished_check() {
    let d = tmp("sigint");
    let json = d.join("r.jsonl");
    let child = bin()
        .args(["sim:v2?size=48m", "stream.", "--json", json.to_str().expect("p"), "--format", "terse"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&json, 3);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("interrupted by SIGINT"));
    let lines = record_lines(&json);
    assert_eq!(lines[0]["type"], "run");
    let checks = lines.iter().filter(|l| l["type"] == "check").count();
    assert!(checks >= 2, "{checks} finished checks recorded");
    let end = lines.last().expect("footer");
    assert_eq!(end["type"], "end");
    assert_eq!(end["interrupted"], "interrupted by SIGINT");
    let totals: u64 =
        end["totals"].as_object().expect("totals").values().filter_map(serde_json::Value::as_u64).sum();
    assert_eq!(totals as usize, checks, "the footer's totals count exactly the recorded checks");
}

#[test]
fn a_profile_for_another_driver_is_applied_with_a_warning_naming_both_drivers() {
    let out = run(&["sim:v2", "--profile", "mlx5", "--exact", "fsm.arc.stop.stop_copy"]);

    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains(
            "warning: profile `mlx5` is for driver mlx5_vfio_pci/mlx5-vfio-pci (models any); this device is driver sim-v2, model sim"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn known_deviations_and_unexpected_passes_are_listed_after_the_checks() {
    let out = run(&["sim:v2?defect=eof_at_precopy_temporary_end", "--profile", "mtty", "precopy"]);

    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let xfail = stdout.find("XFAIL (known deviations").expect("an XFAIL section");
    let xpass = stdout.find("XPASS (declared deviations").expect("an XPASS section");
    assert!(xfail < xpass, "{stdout}");
    assert!(
        stdout.contains("  precopy.read.temporary_end_enomsg: V2-PRECOPY-007 [SHOULD] expected"),
        "{stdout}"
    );
    assert!(stdout.contains("  qemu.v2.save_precopy: passed, yet mtty:"), "{stdout}");
}

#[test]
fn report_html_writes_an_index_and_one_page_per_run() {
    let d = tmp("html");
    let (a, b) = (d.join("a.jsonl"), d.join("b.jsonl"));
    let out = run(&[
        "sim:v2?defect=stop_copy_to_pre_copy_accepted",
        "fsm.arc.",
        "-q",
        "--json",
        a.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["sim:v2?flags=stop_copy", "fsm.arc.", "-q", "--json", b.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(0));
    let html = d.join("html");
    let out =
        run(&["report", a.to_str().expect("p"), b.to_str().expect("p"), "--html", html.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1), "a run with a FAIL: exit 1 as the other report formats");
    assert!(text(&out.stdout).contains("2 runs, 4 pages"), "{}", text(&out.stdout));
    let index = std::fs::read_to_string(html.join("index.html")).expect("index.html");
    assert_eq!(index.matches("<td class=\"arc ").count(), 128, "two 8x8 arc matrices");
    assert!(index.contains("data-cur=\"STOP_COPY\" data-new=\"PRE_COPY\" data-outcome=\"FAIL\""));
    assert!(index.contains("<table class=\"mx\">"), "two runs: the runs x clauses matrix");
    let run1 = std::fs::read_to_string(html.join("run-1.html")).expect("run-1.html");
    assert!(run1.contains("id=\"check-fsm.arc.stop_copy.pre_copy\""));
    assert!(html.join("run-2.html").is_file());
    // diff.html counts what `report A B --diff` counts.
    let out = run(&["report", a.to_str().expect("p"), b.to_str().expect("p"), "--diff"]);
    let stdout = text(&out.stdout);
    let summary = stdout.lines().last().and_then(|l| l.split(" (").next()).expect("summary line");
    assert!(summary.ends_with(" differ") && !summary.ends_with(" 0 differ"), "{stdout}");
    let diff = std::fs::read_to_string(html.join("diff.html")).expect("diff.html");
    assert!(diff.contains(&format!("<b id=\"diff-summary\">{summary} (R1 vs R2)</b>")), "CLI: {summary}");
}

#[test]
fn report_html_on_a_corrupt_record_is_a_clear_usage_error() {
    let d = tmp("html-bad");
    let bad = d.join("bad.jsonl");
    std::fs::write(&bad, "{\"type\":\"run\"}\nnot json at all\n{}\n").expect("write");
    let out = run(&["report", bad.to_str().expect("p"), "--html", d.join("out").to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{}:1: not a run record line", bad.display())), "{stderr}");
    assert!(!d.join("out").exists(), "nothing written from a bad record");
    let empty = d.join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    let out = run(&["report", empty.to_str().expect("p"), "--html", d.join("out").to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no run header line"), "{}", text(&out.stderr));
    let out = run(&["report", empty.to_str().expect("p"), "--html", "x", "--diff"]);
    assert_eq!(out.status.code(), Some(2), "--html and --diff do not combine");
}

/// Spawns the tool with its standard output a pipe whose reader is already gone (`| true`).
fn run_with_stdout_closed(args: &[&str]) -> Output {
    let mut child = bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[test]
fn a_run_whose_output_is_closed_stops_like_an_interruption_without_a_panic() {
    // Arrange
    let d = tmp("epipe-run");
    let json = d.join("r.jsonl");
    // Act
    let out = run_with_stdout_closed(&["sim:v2", "--json", json.to_str().expect("p")]);
    // Assert
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("standard output was closed"), "{stderr}");
    let lines = record_lines(&json);
    let end = lines.last().expect("footer");
    assert_eq!(end["type"], "end");
    assert_eq!(end["exit_code"], 5);
    assert_eq!(end["interrupted"], "stopped: standard output was closed (broken pipe)");
}

/// Spawns the tool with its standard error (or both streams, as `2>&1 | head` does) a pipe
/// whose reader is already gone.
fn run_with_stderr_closed(args: &[&str], both: bool) -> Output {
    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    drop(rd);
    let stdout = if both { Stdio::from(wr.try_clone().expect("dup")) } else { Stdio::null() };
    bin().args(args).stdout(stdout).stderr(Stdio::from(wr)).output().expect("run")
}

#[test]
fn a_run_whose_stderr_is_closed_stops_like_an_interruption_and_ends_its_record() {
    // Arrange: --trace writes every step to stderr
    let d = tmp("epipe-stderr");
    let json = d.join("r.jsonl");
    // Act
    let out = run_with_stderr_closed(
        &["sim:v2", "fsm.arc.", "--trace", "--json", json.to_str().expect("p")],
        false,
    );
    // Assert
    assert_eq!(out.status.code(), Some(5), "a closed stderr is an interruption, not a panic (101)");
    let lines = record_lines(&json);
    let end = lines.last().expect("footer");
    assert_eq!(end["type"], "end");
    assert_eq!(end["exit_code"], 5);
    assert_eq!(end["interrupted"], "stopped: standard error was closed (broken pipe)");
    let checks = lines.iter().filter(|l| l["type"] == "check").count();
    assert!(checks < 64, "the run stopped at the closed stderr, {checks} checks ran");
}

#[test]
fn a_run_piped_with_both_streams_into_a_closed_pipe_exits_5_and_ends_its_record() {
    // Arrange: `vfio-mig-conform sim:v2 2>&1 | head -3` once head has exited
    let d = tmp("epipe-both");
    let json = d.join("r.jsonl");
    // Act
    let out = run_with_stderr_closed(&["sim:v2", "--json", json.to_str().expect("p")], true);
    // Assert
    assert_eq!(out.status.code(), Some(5), "no panic printing to the closed stderr (exit 101)");
    let lines = record_lines(&json);
    let end = lines.last().expect("footer");
    assert_eq!(end["type"], "end");
    assert_eq!(end["exit_code"], 5);
    assert_eq!(end["interrupted"], "stopped: standard output was closed (broken pipe)");
}

#[test]
fn a_fuzz_session_whose_stderr_is_closed_stops_with_exit_5_and_ends_its_record() {
    // Arrange
    let d = tmp("epipe-fuzz-stderr");
    let json = d.join("f.jsonl");
    let findings = d.join("findings");
    // Act
    let started = std::time::Instant::now();
    let out = run_with_stderr_closed(
        &[
            "fuzz",
            "sim:v2",
            "--duration",
            "20s",
            "--json",
            json.to_str().expect("p"),
            "--out",
            findings.to_str().expect("p"),
        ],
        false,
    );
    // Assert
    assert_eq!(out.status.code(), Some(5), "a closed stderr stops the session, no panic (101)");
    assert!(started.elapsed().as_secs() < 15, "the session stopped at once");
    let lines = record_lines(&json);
    let end = lines.last().expect("footer");
    assert_eq!(end["type"], "end");
    assert_eq!(end["interrupted"], "stopped: standard error was closed (broken pipe)");
}

#[test]
fn a_fuzz_session_whose_output_is_closed_still_ends_its_record() {
    // Arrange
    let d = tmp("epipe-fuzz");
    let json = d.join("f.jsonl");
    // Act
    let out =
        run_with_stdout_closed(&["fuzz", "sim:v2", "--duration", "1s", "--json", json.to_str().expect("p")]);
    // Assert
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = record_lines(&json);
    assert!(lines.iter().any(|l| l["type"] == "fuzz"), "the fuzz summary is in the record");
    assert_eq!(lines.last().expect("footer")["type"], "end");
}

#[test]
fn out_of_range_options_are_usage_errors_before_any_check_runs() {
    for (args, want) in [
        (vec!["sim:v2", "--timeout", "0"], "the watchdog takes 1 to 86400 seconds"),
        (vec!["sim:v2", "--timeout", "18446744073709551615"], "the watchdog takes 1 to 86400 seconds"),
        (vec!["fuzz", "sim:v2", "--timeout", "0"], "the watchdog takes 1 to 86400 seconds"),
        (vec!["sim:v2", "--max-stream", "0"], "--max-stream `0` is not a size above 0"),
        (vec!["sim:v2", "--junit", "/nonexistent-dir/x.xml"], "cannot write /nonexistent-dir/x.xml"),
    ] {
        // Act
        let out = run(&args);
        // Assert
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: missing `{want}` in {stderr}");
        assert!(!text(&out.stdout).contains("running"), "{args:?} ran checks");
    }
}

#[test]
fn a_reproducer_carries_the_options_that_changed_the_verdict() {
    // Arrange: a stream bound of 16 bytes makes every saving check fail
    let args = ["sim:v2", "--max-stream", "16", "--timeout", "7", "--exact", "stream.replay.whole"];
    // Act
    let out = run(&args);
    // Assert
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "Reproduce: vfio-mig-conform sim:v2 --max-stream 16 --timeout 7 --exact stream.replay.whole"
        ),
        "{stdout}"
    );
}

#[test]
fn a_record_torn_inside_a_utf8_character_still_reads_back_and_garbage_is_located() {
    // Arrange: a finished record, then a last line cut in the middle of "≥" (a crash mid-write)
    let d = tmp("torn-utf8");
    let json = d.join("r.jsonl");
    let out = run(&["sim:v2", "--exact", "fsm.arc.stop.running", "--json", json.to_str().expect("p"), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut bytes = std::fs::read(&json).expect("record");
    let whole = bytes.clone();
    bytes.extend_from_slice(b"{\"type\":\"check\",\"id\":\"x \xe2\x89");
    std::fs::write(&json, &bytes).expect("write");
    // Act
    let torn = run(&["report", json.to_str().expect("p"), "--format", "ktap"]);
    // Assert
    assert_eq!(torn.status.code(), Some(0), "{}", text(&torn.stderr));
    assert!(text(&torn.stdout).contains("ok 1 fsm"), "{}", text(&torn.stdout));

    // Arrange: invalid UTF-8 on line 2 of 3 is corruption, not a tear
    let header_end = whole.iter().position(|b| *b == b'\n').expect("a header line") + 1;
    let mut bad = whole[..header_end].to_vec();
    bad.extend_from_slice(b"\xff\xfe\n");
    bad.extend_from_slice(&whole[header_end..]);
    std::fs::write(&json, &bad).expect("write");
    // Act
    let out = run(&["report", json.to_str().expect("p"), "--format", "ktap"]);
    // Assert
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("{}:2: not UTF-8 text", json.display())),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn report_html_into_a_file_says_it_needs_a_directory() {
    let d = tmp("html-file");
    let json = d.join("r.jsonl");
    let out = run(&["sim:v2", "--exact", "fsm.arc.stop.running", "--json", json.to_str().expect("p"), "-q"]);
    assert_eq!(out.status.code(), Some(0));
    let file = d.join("plain-file");
    std::fs::write(&file, "x").expect("write");
    let out = run(&["report", json.to_str().expect("p"), "--html", file.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("exists and is not a directory"), "{}", text(&out.stderr));
}

#[test]
fn a_second_sigint_ends_a_run_stuck_in_a_device_call_at_once() {
    // Arrange: --no-fork has no watchdog; the fourth check hangs in SET STOP_COPY
    let d = tmp("second-sigint");
    let json = d.join("r.jsonl");
    let child = bin()
        .args(["sim:v2?defect=hang_on_set", "--no-fork", "--json", json.to_str().expect("p")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&json, 4);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Act
    let out = sigint_twice(child, 300);
    // Assert
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("Ctrl-C again to exit at once"), "{stderr}");
    assert!(stderr.contains("it may be left in a non-RUNNING state"), "{stderr}");
}

#[test]
fn a_second_sigterm_ends_a_run_stuck_in_a_device_call_at_once() {
    let d = tmp("second-sigterm");
    let json = d.join("r.jsonl");
    let child = bin()
        .args(["sim:v2?defect=hang_on_set", "--no-fork", "--json", json.to_str().expect("p")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&json, 4);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let out = finish_within(child, 10, "after the second SIGTERM");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
}

#[test]
fn a_read_of_a_stream_that_never_ends_is_cut_by_the_watchdog() {
    // Arrange: a stale saving fd that stays readable, read 24 bytes at a time to the end
    // (4 GiB at the default --max-stream: minutes)
    let d = tmp("endless-read");
    let seq = d.join("endless.yaml");
    std::fs::write(
        &seq,
        "id: fuzz.live.endless\ntitle: t\nrequires: {api: v2, flags: [stop_copy, p2p, pre_copy]}\nsteps:\n  \
         - set_state: PRE_COPY_P2P\n  - set_state: RUNNING_P2P\n  - set_state: PRE_COPY\n  \
         - read: {chunk: 24, fd: previous}\n    expect: oracle\n",
    )
    .expect("write");
    let child = bin()
        .args([
            "sim:v2?defect=stale_saving_fd_readable",
            "--timeout",
            "1",
            "--sequence",
            seq.to_str().expect("p"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Act
    let out = finish_within(child, 30, "an endless read under --timeout 1");
    // Assert
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("TIMEOUT: step 4 `read: {chunk: 24, fd: previous}` did not return within 1 s"),
        "{stdout}"
    );
}

/// The pids whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| {
                // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
                st.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

#[test]
fn a_runner_killed_with_sigkill_leaves_no_check_process_stuck_on_the_device() {
    // Arrange: the fourth check hangs in its child process (watchdog 60 s)
    let d = tmp("sigkill-orphan");
    let json = d.join("r.jsonl");
    let mut child = bin()
        .args(["sim:v2?defect=hang_on_set", "--timeout", "60", "--json", json.to_str().expect("p")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(&json, 4);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stuck = children_of(child.id());
    assert_eq!(stuck.len(), 1, "one check process: {stuck:?}");
    // Act
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // Assert
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !std::path::Path::new(&format!("/proc/{}", stuck[0])).exists()
    });
    if !gone {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(stuck[0]), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(gone, "the check process {} outlived the runner", stuck[0]);
}

#[test]
fn with_strict_profile_an_xpass_fails_in_the_exit_code_ktap_junit_pretty_and_report() {
    // Arrange: mtty declares a deviation the reference simulator does not have (two XPASS)
    let d = tmp("strict-profile");
    let (json, ktap, junit) = (d.join("r.jsonl"), d.join("r.ktap"), d.join("r.xml"));
    let args = ["sim:v2", "--profile", "mtty", "precopy", "--strict-profile"];
    // Act
    let out = run(&[&args[..], &["--format", "ktap", "--ktap", ktap.to_str().expect("p")]].concat());
    let pretty = run(&args);
    let out_files = run(&[
        &args[..],
        &["-q", "--json", json.to_str().expect("p"), "--junit", junit.to_str().expect("p")],
    ]
    .concat());
    // Assert
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out_files.status.code(), Some(1));
    let live = text(&out.stdout);
    ktap_ok(&live).unwrap_or_else(|e| panic!("KTAP invalid: {e}\n{live}"));
    assert!(live.contains("  not ok 4 save_precopy\nnot ok 5 qemu.v2\n"), "{live}");
    assert!(live.contains("# save_precopy: XPASS fails the run under --strict-profile"), "{live}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("tests=\"13\" failures=\"2\""), "{xml}");
    assert!(xml.contains("<failure message=\"XPASS fails under --strict-profile"), "{xml}");
    let stdout = text(&pretty.stdout);
    assert_eq!(pretty.status.code(), Some(1));
    assert!(stdout.contains("test result: FAILED. 10 passed; 2 failed; 1 ignored"), "{stdout}");
    let rebuilt = run(&["report", json.to_str().expect("p"), "--format", "ktap"]);
    assert_eq!(rebuilt.status.code(), Some(1));
    assert_eq!(text(&rebuilt.stdout), std::fs::read_to_string(&ktap).expect("ktap"));
    let junit_again = run(&["report", json.to_str().expect("p"), "--format", "junit"]);
    assert!(text(&junit_again.stdout).contains("failures=\"2\""));
    let report = run(&["report", json.to_str().expect("p")]);
    assert_eq!(report.status.code(), Some(1));
    assert!(text(&report.stdout).contains("XPASS        qemu.v2.save_precopy (fails: --strict-profile)"));
}

#[test]
fn report_on_a_fuzz_record_shows_the_session_and_its_findings_and_exits_1_for_new_ones() {
    // Arrange
    let d = tmp("report-fuzz");
    let json = d.join("f.jsonl");
    let defective = "sim:v2?defect=stop_copy_to_pre_copy_accepted";
    let out = run(&[
        "fuzz",
        defective,
        "--duration",
        "2s",
        "--seed",
        "1",
        "--stop-on-finding",
        "--json",
        json.to_str().expect("p"),
        "--out",
        d.join("findings").to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // Act
    let pretty = run(&["report", json.to_str().expect("p")]);
    let ktap = run(&["report", json.to_str().expect("p"), "--format", "ktap"]);
    let junit = run(&["report", json.to_str().expect("p"), "--format", "junit"]);
    // Assert
    let stdout = text(&pretty.stdout);
    assert_eq!(pretty.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(": 0 checks, 1 fuzz finding: pass:0 fail:1"), "{stdout}");
    assert!(stdout.contains(&format!("  fuzz session on {defective} (seed 1): ")), "{stdout}");
    assert!(stdout.contains("1 finding (0 known, 1 new)"), "{stdout}");
    assert!(stdout.contains("V2-STATE-007 [MUST]"), "{stdout}");
    assert!(
        stdout.contains(&format!("Reproduce: vfio-mig-conform '{defective}' --max-stream 256m --sequence")),
        "{stdout}"
    );
    assert_eq!(ktap.status.code(), Some(1));
    let k = text(&ktap.stdout);
    ktap_ok(&k).unwrap_or_else(|e| panic!("KTAP invalid: {e}\n{k}"));
    assert!(k.contains("not ok 1 fuzz.live"), "{k}");
    assert_eq!(junit.status.code(), Some(1));
    assert!(text(&junit.stdout).contains("failures=\"1\""), "{}", text(&junit.stdout));
}

#[test]
fn report_on_an_interrupted_run_says_so_and_exits_5() {
    // Arrange: a record cut after its header and two checks, and one ended by SIGINT
    let d = tmp("report-interrupted");
    let json = d.join("r.jsonl");
    let out = run(&["sim:v2", "fsm.arc.stop.", "-q", "--json", json.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(0));
    let whole = std::fs::read_to_string(&json).expect("record");
    let cut = d.join("cut.jsonl");
    std::fs::write(&cut, whole.lines().take(3).map(|l| format!("{l}\n")).collect::<String>()).expect("write");
    let mut end: serde_json::Value = serde_json::from_str(whole.lines().last().expect("end")).expect("json");
    end["interrupted"] = "interrupted by SIGINT".into();
    end["exit_code"] = 5.into();
    let sigint = d.join("sigint.jsonl");
    let mut lines: Vec<String> = whole.lines().map(str::to_string).collect();
    *lines.last_mut().expect("end") = end.to_string();
    std::fs::write(&sigint, lines.join("\n") + "\n").expect("write");
    // Act
    let cut_out = run(&["report", cut.to_str().expect("p")]);
    let sigint_out = run(&["report", sigint.to_str().expect("p")]);
    let ktap = run(&["report", sigint.to_str().expect("p"), "--format", "ktap"]);
    // Assert
    assert_eq!(cut_out.status.code(), Some(5));
    assert!(
        text(&cut_out.stdout).contains("  INTERRUPTED: the run did not finish (the record has no end line: killed or crashed); 2 checks were recorded before it stopped"),
        "{}",
        text(&cut_out.stdout)
    );
    assert_eq!(sigint_out.status.code(), Some(5));
    assert!(
        text(&sigint_out.stdout).contains("  INTERRUPTED: interrupted by SIGINT;"),
        "{}",
        text(&sigint_out.stdout)
    );
    assert_eq!(ktap.status.code(), Some(5));
    assert!(text(&ktap.stdout).contains("# interrupted by SIGINT: "), "{}", text(&ktap.stdout));
}

#[test]
fn the_record_numbers_trace_steps_as_its_findings_and_the_failure_block_do() {
    let d = tmp("steps");
    let json = d.join("r.jsonl");
    let out = run(&[
        "sim:v2?defect=stop_copy_to_pre_copy_accepted",
        "--exact",
        "fsm.arc.stop_copy.pre_copy",
        "--trace",
        "--json",
        json.to_str().expect("p"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("  Step 2: set_state: PRE_COPY on device A"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("[A] step 2 set_state: PRE_COPY:"), "{}", text(&out.stderr));
    let lines = record_lines(&json);
    let check = lines.iter().find(|l| l["type"] == "check").expect("check line");
    let finding = &check["findings"][0];
    assert_eq!(finding["step"], 2);
    let traced: Vec<(u64, &str)> = check["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .map(|t| (t["step"].as_u64().expect("step"), t["op"].as_str().expect("op")))
        .collect();
    assert_eq!(traced, [(1, "set_state: STOP_COPY"), (2, "set_state: PRE_COPY")]);
    assert_eq!(lines[0]["record_version"], 2);
}

/// Every row (up to the summary line) has a cell starting under each header word, after at
/// least two spaces.
fn assert_columns(out: &str, header: &[&str]) {
    let mut lines = out.lines();
    let head = lines.next().expect("header line");
    let mut starts = Vec::new();
    for h in header {
        starts.push(head.find(h).unwrap_or_else(|| panic!("no column `{h}` in `{head}`")));
    }
    assert_eq!(starts[0], 0, "{head}");
    let rows: Vec<&str> = lines.take_while(|l| l.starts_with(|c: char| c.is_ascii_uppercase())).collect();
    assert!(rows.len() > 100, "{out}");
    for row in rows {
        for &at in &starts[1..] {
            let before = row.get(..at).unwrap_or_else(|| panic!("row too short: `{row}`"));
            assert!(
                before.ends_with("  ") && !row[at..].starts_with(' '),
                "`{row}` has no cell at column {at}"
            );
        }
    }
}

#[test]
fn clauses_prints_labelled_aligned_columns_and_counts_in_words() {
    let out = run(&["clauses"]);
    assert_eq!(out.status.code(), Some(0));
    let list = text(&out.stdout);
    assert_columns(&list, &["CLAUSE", "LEVEL", "FEATURE", "STATEMENT"]);
    let n = list.lines().count() - 2;
    assert_eq!(list.lines().last(), Some(format!("{n} clauses").as_str()), "{list}");

    let out = run(&["clauses", "--coverage"]);
    assert_eq!(out.status.code(), Some(0));
    let coverage = text(&out.stdout);
    assert_columns(&coverage, &["CLAUSE", "LEVEL", "CHECKS", "FOR EXAMPLE"]);
    assert!(coverage.lines().any(|l| l.split_whitespace().nth(2) == Some("1")), "{coverage}");
    assert!(!coverage.contains(" 1 checks"), "{coverage}");
}

#[test]
fn a_run_of_one_check_says_1_check() {
    let out = run(&["sim:v2", "--exact", "fsm.arc.running.stop"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("vfio-mig-conform: 1 check in "), "{stdout}");
}
