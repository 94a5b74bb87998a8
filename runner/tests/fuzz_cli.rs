//! `vfio-mig-conform fuzz` and `fuzz-to-yaml` on the simulators: exit codes, the record,
//! shrunk reproducers that replay, known findings from a profile, interruption.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{bin, finish_within, record_lines, run, text, tmp};

const DEFECTIVE: &str =
    "sim:v2?flags=stop_copy,p2p,pre_copy&dma=on&size=96&defect=stop_copy_to_pre_copy_accepted";

#[test]
fn fuzz_to_yaml_prints_a_sequence_that_replays_the_same_failure() {
    let d = tmp("to-yaml");
    let input = d.join("crash");
    std::fs::write(
        &input,
        format!(
            "#vmc-fuzz-yaml\n#device: {DEFECTIVE}\n- set_state: STOP\n- read: {{fd: previous}}\n- set_state: STOP_COPY\n- read: {{chunk: 7, once: true}}\n- set_state: PRE_COPY\n- get_state\n"
        ),
    )
    .expect("write input");
    let out = run(&["fuzz-to-yaml", input.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert!(yaml.contains("citation: fuzz finding") && yaml.contains("expect: oracle"), "{yaml}");
    assert!(yaml.contains("V2-STATE-007"), "the header names the clause:\n{yaml}");
    assert!(!yaml.contains("previous"), "a step on an fd that does not exist is dropped:\n{yaml}");
    assert!(!yaml.contains("get_state"), "steps after the finding are dropped:\n{yaml}");
    let seq = d.join("repro.yaml");
    std::fs::write(&seq, &yaml).expect("write reproducer");
    let out = run(&[DEFECTIVE, "--sequence", seq.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("V2-STATE-007 [MUST]"), "{}", text(&out.stdout));
    // The same sequence is clean on the reference simulator.
    let reference = DEFECTIVE.split("&defect").next().expect("spec");
    let out = run(&[reference, "--sequence", seq.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn fuzz_to_yaml_decodes_raw_bytes_and_names_bad_input() {
    let d = tmp("to-yaml-raw");
    let input = d.join("fsm_v2").join("crash-1");
    std::fs::create_dir_all(input.parent().expect("dir")).expect("dir");
    let bytes: Vec<u8> = (0..400u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&input, bytes).expect("write");
    let out = run(&["fuzz-to-yaml", input.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seq = d.join("repro.yaml");
    std::fs::write(&seq, out.stdout).expect("write");
    let yaml = std::fs::read_to_string(&seq).expect("read");
    let spec = yaml
        .lines()
        .find_map(|l| l.strip_prefix("# replay: vfio-mig-conform '"))
        .and_then(|r| r.split('\'').next())
        .expect("replay line")
        .to_string();
    let out = run(&[&spec, "--max-stream", "1m", "--sequence", seq.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{yaml}\n{}", text(&out.stdout));
    let out = run(&["fuzz-to-yaml", "--target", "nope", input.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["fuzz-to-yaml", d.join("missing").to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn live_fuzzing_finds_a_defect_shrinks_it_and_exits_1() {
    let d = tmp("live-defect");
    let json = d.join("run.jsonl");
    let out = run(&[
        "fuzz",
        DEFECTIVE,
        "--duration",
        "60s",
        "--seed",
        "1",
        "--stop-on-finding",
        "--json",
        json.to_str().expect("path"),
        "--out",
        d.join("findings").to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    let lines = record_lines(&json);
    assert_eq!(lines.first().map(|l| l["type"].clone()), Some("run".into()));
    assert_eq!(lines.last().map(|l| l["type"].clone()), Some("end".into()));
    assert_eq!(lines.last().map(|l| l["exit_code"].clone()), Some(1.into()));
    let fuzz = lines.iter().find(|l| l["type"] == "fuzz").expect("fuzz line");
    let f = &fuzz["findings"][0];
    assert_eq!(f["clauses"], serde_json::json!(["V2-STATE-007"]), "{fuzz}");
    let file = PathBuf::from(f["reproducer_file"].as_str().expect("reproducer file"));
    let seq = std::fs::read_to_string(&file).expect("reproducer");
    assert!(seq.lines().filter(|l| l.starts_with("- ")).count() <= 4, "not shrunk:\n{seq}");
    let out = run(&[DEFECTIVE, "--sequence", file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "{seq}\n{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("V2-STATE-007"));
}

#[test]
fn the_reference_simulator_shows_nothing_and_every_pair_gets_covered() {
    let out =
        run(&["fuzz", "sim:v2", "--duration", "60s", "--seed", "3", "--until-covered", "--out", "/dev/null"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("pairs: 49 of 49 covered"), "{stdout}");
    assert!(stdout.contains("findings: 0"), "{stdout}");
}

#[test]
fn fault_sweeps_asked_for_where_there_is_no_coverage_say_that_they_do_not_run() {
    // Arrange: a simulator has no KCOV and cannot inject faults.
    // Act
    let out = run(&[
        "fuzz",
        "sim:v2",
        "--duration",
        "1s",
        "--seed",
        "3",
        "--coverage",
        "kcov",
        "--fault-sweep",
        "--out",
        "/dev/null",
    ]);
    // Assert: the session runs without feedback, says so, and shows no sweeps.
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("without coverage feedback (and without --fault-sweep)"), "{stderr}");
    assert!(!stdout.contains("fault sweeps"), "{stdout}");
}

#[test]
fn findings_a_profile_declares_are_known_and_do_not_fail() {
    let d = tmp("known");
    let profile = d.join("p.yaml");
    std::fs::write(
        &profile,
        "name: p\ndescription: d\nmatch: {drivers: [none]}\nverified: no\ndeviations:\n  - checks: [fsm.arc.stop_copy.pre_copy]\n    clauses: [V2-STATE-007]\n    reason: accepts STOP_COPY -> PRE_COPY\n",
    )
    .expect("write profile");
    let out = run(&[
        "fuzz",
        DEFECTIVE,
        "--duration",
        "3s",
        "--seed",
        "1",
        "--profile",
        profile.to_str().expect("path"),
        "--out",
        d.join("f").to_str().expect("path"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("[known] V2-STATE-007"), "{stdout}");
}

#[test]
fn bad_arguments_and_devices_give_the_documented_exit_codes() {
    let out = run(&["fuzz", "sim:v2", "--ops", "set_state,bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("bogus"));
    let out = run(&["fuzz", "sim:v2", "--ops", "feature"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--allow-disruptive"));
    let out = run(&["fuzz", "sim:v2", "--duration", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["fuzz", "sim:v2", "--duration", "0s"]);
    assert_eq!(out.status.code(), Some(2), "a session of no time would run nothing and pass");
    assert!(text(&out.stderr).contains("--duration `0s` is not a time above 0"), "{}", text(&out.stderr));
    // A duration that ends before the first walk fuzzes nothing: not a green run.
    let out = run(&["fuzz", "sim:v2", "--duration", "0.0001ms"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no walk ran within --duration 0.0001ms"), "{}", text(&out.stderr));
    let out = run(&["fuzz", "sim:v2", "--profile", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["fuzz", "sim:plain", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(4));
    let out = run(&["fuzz", "/dev/null", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(3));
    let out = run(&["fuzz", "sim:v1", "--ops", "set_state", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2), "v2 operations on a v1 device");
}

#[test]
fn sigint_ends_the_session_with_exit_5_and_a_complete_record() {
    let d = tmp("sigint");
    let json = d.join("run.jsonl");
    let child = bin()
        .args(["fuzz", "sim:v2", "--duration", "120s", "--out"])
        .arg(d.join("f"))
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the record header: the session is running.
    for _ in 0..200 {
        if std::fs::read_to_string(&json).is_ok_and(|t| t.contains("\"type\":\"run\"")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let lines = record_lines(&json);
    let end = lines.last().expect("footer");
    assert_eq!(end["type"], "end");
    assert_eq!(end["interrupted"], "interrupted by SIGINT");
    assert!(lines.iter().any(|l| l["type"] == "fuzz"));
}

#[test]
fn duration_bounds_the_session_even_when_an_operation_hangs() {
    // Arrange: every SET to STOP_COPY hangs; the watchdog (60 s) would fire long after the
    // session's 2 s
    let d = tmp("duration-hang");
    let json = d.join("f.jsonl");
    let started = std::time::Instant::now();
    let child = bin()
        .args(["fuzz", "sim:v2?defect=hang_on_set", "--duration", "2s", "--timeout", "60", "--seed", "5"])
        .args(["--json", json.to_str().expect("p"), "--out", d.join("findings").to_str().expect("p")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Act
    let out = finish_within(child, 40, "fuzz --duration 2s on a hanging device");
    // Assert
    let secs = started.elapsed().as_secs_f64();
    assert!(secs < 8.0, "--duration 2s took {secs:.1} s");
    assert_eq!(out.status.code(), Some(0), "a cut walk is no finding: {}", text(&out.stderr));
    let lines = record_lines(&json);
    assert_eq!(lines.last().map(|l| l["type"].clone()), Some("end".into()));
}

#[test]
fn reproducers_name_the_device_and_the_bounds_and_replay_in_well_under_the_watchdog() {
    // Arrange: a stale saving fd that stays readable is an endless stream
    let d = tmp("repro-bounds");
    let dir = d.join("findings");
    let device = "sim:v2?defect=stale_saving_fd_readable";
    // Act
    let out = run(&["fuzz", device, "--duration", "4s", "--seed", "42", "--out", dir.to_str().expect("p")]);
    // Assert
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("vfio-mig-conform DEVICE"), "the replay command names the device:\n{stdout}");
    let files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("findings").map(|e| e.expect("entry").path()).collect();
    assert!(!files.is_empty());
    for file in files {
        let seq = std::fs::read_to_string(&file).expect("reproducer");
        let want =
            format!("# replay: vfio-mig-conform '{device}' --max-stream 256m --sequence {}", file.display());
        assert_eq!(seq.lines().next(), Some(want.as_str()), "{seq}");
        assert!(stdout.contains(&want["# ".len()..]), "the summary prints the same command:\n{stdout}");
        // Replaying it with the bounds of the session finishes at once and fails the same way.
        let started = std::time::Instant::now();
        let child = bin()
            .args([device, "--max-stream", "256m", "--sequence", file.to_str().expect("p"), "-q"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let replay = finish_within(child, 60, &format!("replaying {}", file.display()));
        // It fails the same way: the clause of the finding is reported again, with the exit
        // code of its level (a MUST is exit 1; a SHOULD or QEMU-level clause is NON-STRICT).
        let clause = seq
            .lines()
            .find_map(|l| l.strip_prefix("# live fuzzing finding: "))
            .and_then(|c| c.split(',').next())
            .expect("the reproducer names its clause")
            .trim()
            .to_string();
        let mandatory = vmc::clauses::catalog().get(&clause).expect("a catalog clause").level.is_mandatory();
        assert_eq!(
            replay.status.code(),
            Some(if mandatory { 1 } else { 0 }),
            "{seq}\n{}",
            text(&replay.stdout)
        );
        assert!(!text(&replay.stdout).contains("TIMEOUT"), "{seq}\n{}", text(&replay.stdout));
        assert!(started.elapsed().as_secs() < 5, "{} took {:?}", file.display(), started.elapsed());
    }
}
