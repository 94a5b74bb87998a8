//! Messages speak the user's language: what was given and what is allowed, never Rust's Debug
//! form, the YAML library's API advice or a wrapper of the test framework.

mod common;

use common::{run, text, tmp};

/// Fragments that only internals produce.
const INTERNALS: [&str; 7] =
    ["Some(", "None", "DuplicateKeyPolicy", "from_str_multiple", "Aliases {", "Error: \"", "Pid("];

fn assert_plain(what: &str, msg: &str) {
    for bad in INTERNALS {
        assert!(!msg.contains(bad), "{what}: `{bad}` in\n{msg}");
    }
}

#[test]
fn an_empty_selection_says_which_filter_and_skip_selected_nothing() {
    let out = run(&["sim:v2", "no.such.check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_plain("filter", &stderr);
    let listed = text(&run(&["sim:v2", "--list"]).stdout).lines().filter(|l| l.ends_with(": test")).count();
    let expected = format!(
        "no checks selected: no check name contains `no.such.check`; `--list` shows the {listed} checks available"
    );
    assert!(listed > 200 && stderr.contains(&expected), "{stderr}");
    let out = run(&["sim:v2", "fsm.arc.stop.stop", "--skip", "fsm.arc.stop"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no check name contains `fsm.arc.stop.stop` and --skip `fsm.arc.stop` left none"),
        "{stderr}"
    );
}

#[test]
fn yaml_errors_carry_no_library_advice_or_debug_output() {
    let d = tmp("yaml-messages");
    let mut laughs = String::from("id: a.b.c\ntitle: t\nsteps:\n  - get_state:\n    expect: &a {ok: true}\n");
    for _ in 0..1001 {
        laughs.push_str("  - get_state:\n    expect: *a\n");
    }
    for (name, body, want) in [
        (
            "dup.yaml",
            "id: a.b.c\ntitle: t\ntitle: u\nsteps: [get_state]\n".to_string(),
            ":3:1: duplicate key `title`: each key may appear once in a map",
        ),
        (
            "multi.yaml",
            "id: a.b.c\ntitle: t\nsteps: [get_state]\n---\nid: a.b.d\n".to_string(),
            ":5:1: a second YAML document (after `---`): a sequence or profile file holds exactly one",
        ),
        ("alias.yaml", laughs, "1001 aliases (*name) is beyond the loader's budget of 1000"),
        (
            "nan.yaml",
            "id: a.b.c\ntitle: t\nsteps:\n  - read: {max: lots}\n".to_string(),
            ":4:17: max: `lots` is not an integer: max takes an integer from 0 to 18446744073709551615",
        ),
        (
            "big.yaml",
            "id: a.b.c\ntitle: t\nsteps:\n  - read:\n      chunk: 99999999999\n".to_string(),
            ":5:14: chunk: `99999999999` is out of range: chunk takes an integer from 0 to 4294967295",
        ),
        (
            "bool.yaml",
            "id: a.b.c\ntitle: t\nsteps:\n  - read: {once: maybe}\n".to_string(),
            "once: `maybe` is not valid: once takes true or false",
        ),
    ] {
        let path = d.join(name);
        std::fs::write(&path, body).expect("write");
        let out = run(&["sim:v2", "--sequence", path.to_str().expect("p")]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: missing `{want}` in {stderr}");
        assert_plain(name, &stderr);
    }
}

#[test]
fn json_events_carry_the_failure_as_plain_text() {
    let out = run(&[
        "sim:v2?defect=stop_copy_to_pre_copy_accepted",
        "--format",
        "json",
        "--exact",
        "fsm.arc.stop_copy.pre_copy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let events: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON event per line")).collect();
    let failed =
        events.iter().find(|e| e["event"] == "failed" && e["type"] == "test").expect("a failed event");
    let stdout = failed["stdout"].as_str().expect("stdout");
    assert!(stdout.starts_with("FAIL\nV2-STATE-007 [MUST]"), "{stdout}");
    assert!(stdout.contains("\nReproduce: vfio-mig-conform "), "{stdout}");
    assert_plain("json", stdout);
    let last = events.last().expect("suite event");
    assert_eq!(
        (last["type"].as_str(), last["event"].as_str(), last["failed"].as_u64()),
        (Some("suite"), Some("failed"), Some(1))
    );
}

#[test]
fn a_negative_number_is_a_bad_value_for_its_option_not_a_hint_to_use_double_dash() {
    for (args, want) in [
        (vec!["sim:v2", "--timeout", "-1"], "-1 s: the watchdog takes 1 to 86400 seconds"),
        (vec!["fuzz", "sim:v2", "--timeout", "-1"], "-1 s: the watchdog takes 1 to 86400 seconds"),
        (vec!["fuzz", "sim:v2", "--max-walk", "-3"], "-3 operations: a walk takes 4 to 10000 operations"),
        (vec!["fuzz", "sim:v2", "--seed", "-1"], "-1: a seed is 0 to 18446744073709551615"),
        (vec!["fuzz", "sim:v2", "--max-walk", "2"], "2 operations: a walk takes 4 to 10000 operations"),
    ] {
        let out = run(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("-- -1") && !stderr.contains("tip:"), "{args:?}: {stderr}");
    }
}

#[test]
fn fuzz_messages_name_the_api_in_words() {
    let d = tmp("fuzz-words");
    let out = run(&["fuzz", "sim:v2", "--duration", "100ms", "--out", d.to_str().expect("p")]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("(v2, flags "), "{stderr}");
    let out = run(&["fuzz", "sim:v2", "--ops", "v1_read", "--duration", "1s"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ops v1_read: not operations of a v2 device"), "{stderr}");
}
