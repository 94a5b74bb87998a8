//! Bad input never panics, never hangs and never touches a device: every malformed sequence or
//! profile is an error naming file:line:col with exit 2, reported before any device is opened
//! (a device that cannot even be opened still yields exit 2, not 3); bad device paths give a
//! clear message and exit 3.

mod common;

use std::path::Path;

use common::{bin, finish_within, record_lines, run, text, tmp as dir, wait_for};

fn write(d: &Path, name: &str, bytes: &[u8]) -> String {
    let p = d.join(name);
    std::fs::write(&p, bytes).expect("write");
    p.display().to_string()
}

/// (file name, contents, the line:col and message fragment the error must carry)
fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    let head = "id: a.b.c\ntitle: t\n";
    // Nested expectation lists (the one recursive type of the schema), each level 8 aliases
    // of the previous one: 8^12 nodes if expanded.
    let mut laughs = format!(
        "{head}steps:\n  - get_state:\n    expect: &e0 [oracle, oracle, oracle, oracle, oracle, oracle, oracle, oracle]\n"
    );
    for i in 1..12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "  - get_state:\n    expect: &e{i} [*e{p}, *e{p}, *e{p}, *e{p}, *e{p}, *e{p}, *e{p}, *e{p}]\n"
        ));
    }
    vec![
        (
            "syntax.yaml",
            format!("{head}steps:\n  - set_state: STOP\n    expect: {{ok: true\n").into_bytes(),
            ":5:13:",
            "unclosed bracket",
        ),
        (
            "wrong-type.yaml",
            format!("{head}steps:\n  - read: {{max: lots}}\n").into_bytes(),
            ":4:17:",
            "max: `lots` is not an integer: max takes an integer from 0 to 18446744073709551615",
        ),
        (
            "unknown-step.yaml",
            format!("{head}steps:\n  - set_stat: STOP\n").into_bytes(),
            ":4:5:",
            "unknown step `set_stat`",
        ),
        (
            "unknown-field.yaml",
            format!("{head}steps:\n  - read: {{maximum: 3}}\n").into_bytes(),
            ":4:",
            "unknown field `maximum`",
        ),
        (
            "unknown-state.yaml",
            format!("{head}steps:\n  - set_state: HALTED\n").into_bytes(),
            ":4:",
            "unknown state `HALTED`",
        ),
        (
            "unknown-clause.yaml",
            format!("{head}steps:\n  - reset:\n    expect: {{ok: true}}\n    clauses: [V2-NOPE-001]\n")
                .into_bytes(),
            ":6:",
            "unknown clause ID `V2-NOPE-001`",
        ),
        (
            "unknown-label.yaml",
            format!("{head}requires: {{devices: [A, B]}}\nsteps:\n  - reset:\n    device: C\n").into_bytes(),
            ":6:",
            "unknown device label `C`",
        ),
        ("laughs.yaml", laughs.into_bytes(), ":", "budget"),
        (
            "deep.yaml",
            format!("{head}steps: {}{}\n", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            ":3:",
            "recursion limit",
        ),
        ("big.yaml", vec![b'#'; 10 << 20], ":1:1:", "limited to"),
        (
            "utf8.yaml",
            b"id: a.b.c\ntitle: caf\xe9\nsteps: [get_state]\n".to_vec(),
            ":2:11:",
            "not valid UTF-8",
        ),
        ("empty.yaml", Vec::new(), ":1:1:", "empty"),
        (
            "dma-count.yaml",
            format!("{head}steps:\n  - dma_log_start: {{page_size: 0, count: 4294967295}}\n").into_bytes(),
            ":4:20:",
            "dma_log_start.count: 4294967295 is out of range 0 to 65536",
        ),
        (
            "read-chunk.yaml",
            format!("{head}steps:\n  - read:\n      chunk: 0\n").into_bytes(),
            ":5:",
            "read.chunk: 0 is out of range 1 to 1048576",
        ),
        (
            "report-bitmap.yaml",
            format!("{head}steps:\n  - dma_log_report: {{length: 0x10000000000}}\n").into_bytes(),
            ":4:",
            "dma_log_report.length: 1099511627776 at page_size 4096 needs a 33554432-byte bitmap",
        ),
        (
            "zeros.yaml",
            format!("{head}steps:\n  - write: {{data: {{zeros: 4294967295}}}}\n").into_bytes(),
            ":4:",
            "write.data.zeros: 4294967295 is out of range 0 to 67108864",
        ),
    ]
}

#[test]
fn every_malformed_sequence_is_a_located_error_with_exit_2_before_any_device_is_opened() {
    let d = dir("seq");
    for (name, bytes, at, what) in malformed() {
        let path = write(&d, name, &bytes);
        // The device does not exist: the input error must still win (nothing is opened first).
        let out = run(&["/dev/vfio/424242", "--sequence", &path]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{path}{at}")) && stderr.contains(what), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn a_malformed_profile_is_a_located_error_with_exit_2() {
    let d = dir("profile");
    let cases: Vec<(&str, &[u8], &str)> = vec![
        (
            "unknown-key.yaml",
            b"name: p\ndescription: d\nverified: x\nstrictness: high\n",
            "unknown field `strictness`",
        ),
        ("no-verified.yaml", b"name: p\ndescription: d\n", "verified"),
        ("bad-family.yaml", b"name: p\ndescription: d\nverified: x\nfamilies: [v3-core]\n", "v3-core"),
        ("utf8.yaml", b"name: p\xff\n", "UTF-8"),
    ];
    for (name, bytes, what) in cases {
        let path = write(&d, name, bytes);
        let out = run(&["/dev/vfio/424242", "--profile", &path]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(&path) && stderr.contains(what), "{name}: {stderr}");
    }
}

#[test]
fn paths_that_are_not_vfio_devices_are_refused_with_exit_3_and_say_what_they_are() {
    let d = dir("paths");
    let file = write(&d, "regular", b"x");
    let link = d.join("link-to-null");
    std::os::unix::fs::symlink("/dev/null", &link).expect("symlink");
    let cases = [
        ("/no/such/device".to_string(), "no such file"),
        (file, "regular file"),
        (d.display().to_string(), "directory"),
        ("/dev/null".to_string(), "not a VFIO group"),
        (link.display().to_string(), "symlink to /dev/null"),
    ];
    for (path, what) in cases {
        let out = run(&[&path]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{path}: {stderr}");
        assert!(stderr.contains(what), "{path}: {stderr}");
    }
}

#[test]
fn a_fixture_directory_with_one_bad_file_reports_it_and_runs_nothing() {
    let d = dir("fixtures");
    write(&d, "good.yaml", b"id: a.b.good\ntitle: t\nsteps: [get_state]\n");
    let bad = write(&d, "bad.yaml", b"id: a.b.bad\ntitle: t\nsteps:\n  - teleport: now\n");
    let out = run(&["sim:v2", "--fixtures", &d.display().to_string()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{bad}:4:5: unknown step `teleport`")), "{stderr}");
    assert!(text(&out.stdout).is_empty(), "checks ran despite the bad fixture");
}

#[test]
fn sigterm_mid_run_is_handled_like_sigint() {
    let d = dir("sigterm");
    let json = d.join("r.jsonl");
    let child = bin()
        .args(["sim:v2?size=48m", "stream.", "--json", &json.display().to_string(), "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&json, 2);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let lines = record_lines(&json);
    assert_eq!(lines.last().expect("line")["interrupted"], "interrupted by SIGTERM");
}

#[test]
fn fifos_given_as_inputs_are_refused_by_type_before_anything_is_opened() {
    // Arrange: FIFOs without a writer: opening one for reading blocks forever
    let d = dir("fifos");
    let fifo = d.join("seq.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let fixtures = d.join("fixtures");
    std::fs::create_dir_all(&fixtures).expect("dir");
    let in_dir = fixtures.join("x.yaml");
    nix::unistd::mkfifo(&in_dir, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let fifo_s = fifo.display().to_string();
    let fixtures_s = fixtures.display().to_string();
    for (args, named) in [
        (vec!["sim:v2", "--sequence", &fifo_s], &fifo),
        (vec!["sim:v2", "--profile", &fifo_s], &fifo),
        (vec!["sim:v2", "--fixtures", &fixtures_s], &in_dir),
    ] {
        // Act
        let child = bin()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = finish_within(child, 20, &format!("{args:?}"));
        // Assert
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:1:1: a FIFO (named pipe), not a regular file", named.display())),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_symlink_loop_in_a_fixture_directory_is_not_followed() {
    // Arrange: a link to the directory itself, twice (2^depth paths if followed)
    let d = dir("symloop");
    std::fs::write(d.join("good.yaml"), b"id: a.b.good\ntitle: t\nsteps: [get_state]\n").expect("write");
    std::os::unix::fs::symlink(&d, d.join("loop1")).expect("symlink");
    std::os::unix::fs::symlink(&d, d.join("loop2")).expect("symlink");
    // Act
    let child = bin()
        .args(["sim:v2", "--fixtures", &d.display().to_string(), "--list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = finish_within(child, 20, "--fixtures with a symlink loop");
    // Assert
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("a.b.good").count(), 1, "{}", text(&out.stdout));
}

#[test]
fn options_and_inputs_that_would_be_ignored_are_refused() {
    let d = dir("ignored-inputs");
    let empty = write(&d, "empty.bin", b"");
    for (args, want) in [
        (vec!["sim:v2", "--color", "purple"], "possible values: auto, always, never"),
        (vec!["report", "a.jsonl", "b.jsonl", "--filter", "fsm."], "--diff"),
        (
            vec!["fuzz-to-yaml", empty.as_str()],
            "decodes to a fsm_v2 case without operations: there is nothing to replay",
        ),
    ] {
        // Act
        let out = run(&args);
        // Assert
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(text(&out.stdout).is_empty(), "{args:?} printed {}", text(&out.stdout));
    }
}

#[test]
fn a_profile_naming_a_check_that_does_not_exist_is_refused_with_its_position() {
    // Arrange: a typo, a glob that matches nothing, and good names
    let d = dir("profile-names");
    let p = write(
        &d,
        "p.yaml",
        b"name: p\ndescription: d\nverified: no\ndeviations:\n  - checks: [fsm.arc.stop.stop_copy, fsm.arc.stop.stpo]\n    reason: r\n  - checks: [\"qemu.v2.*\", \"qemu.v9.*\"]\n    reason: s\n",
    );
    // Act
    let out = run(&["sim:v2", "--profile", &p]);
    let fuzz = run(&["fuzz", "sim:v2", "--profile", &p, "--duration", "1s"]);
    // Assert
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{p}:5:38: `fsm.arc.stop.stpo` matches no check")), "{stderr}");
    assert!(stderr.contains(&format!("{p}:7:27: `qemu.v9.*` matches no check")), "{stderr}");
    assert!(!stderr.contains("stop_copy`"), "{stderr}");
    assert_eq!(fuzz.status.code(), Some(2), "{}", text(&fuzz.stderr));
    // A sequence's own check may be named by the profile run with it.
    let seq = write(&d, "s.yaml", b"id: my.own.check\ntitle: t\nsteps: [get_state]\n");
    let mine = write(
        &d,
        "mine.yaml",
        b"name: m\ndescription: d\nverified: no\ndeviations:\n  - checks: [my.own.check]\n    reason: r\n",
    );
    let out = run(&["sim:v2", "--profile", &mine, "--sequence", &seq]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn every_built_in_profile_names_only_existing_checks() {
    for name in ["mtty", "mlx5", "hisi_acc", "pds", "qat", "virtio", "generic-v1", "generic-v2", "qemu"] {
        let out = run(&["sim:v2", "--profile", name, "--list"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
    }
}

#[test]
fn clause_coverage_as_markdown_is_a_table() {
    let out = run(&["clauses", "--coverage", "--format", "md"]);
    assert_eq!(out.status.code(), Some(0));
    let md = text(&out.stdout);
    assert!(md.starts_with("| clause | level | checks | for example |\n|---|---|---|---|\n| V1-"), "{md}");
    let rows = md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| clause ")).count();
    let last = md.lines().last().expect("summary");
    assert!(last.contains(&format!("of {rows} clauses observed by at least one check, ")), "{last}");
    assert!(last.ends_with(" not observed yet"), "{last}");
    assert!(md.contains("| V2-P2P-001 | MUST | 0 | no check can observe it: "), "{md}");
}
