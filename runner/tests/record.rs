//! `vfio-mig-conform record`: the command's contract on the host (no VFIO here: exit codes,
//! process following, signals), and its fidelity against QEMU's own trace events with a real
//! QEMU 10.0.2 and mtty in the vm/ guest (ignored on the host; run by .ci/vm-qemu.sh).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, text, tmp};

#[test]
fn a_command_that_opens_no_vfio_device_records_nothing_and_exits_125() {
    let d = tmp("nodev");
    let out_yaml = d.join("x.yaml");
    let events = d.join("x.jsonl");
    let out = bin()
        .args(["record", "-o"])
        .arg(&out_yaml)
        .arg("--events")
        .arg(&events)
        .args(["--", "sh", "-c", "ls / >/dev/null; ls / >/dev/null & wait; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("opened no VFIO device (exit status 3)"), "{}", text(&out.stderr));
    assert!(!out_yaml.exists(), "no half-written recording is left behind");
    // Every process was followed: the shell, its two children and their exits, as events.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&events).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let execs = lines
        .iter()
        .filter(|e| e["kind"] == "exec" && e["exe"].as_str().unwrap_or("").ends_with("/ls"))
        .count();
    assert_eq!(execs, 2, "{lines:#?}");
    let forks = lines.iter().filter(|e| e["kind"] == "fork").count();
    assert!(forks >= 2, "{lines:#?}");
    assert!(lines.iter().any(|e| e["kind"] == "exit" && e["status"] == 3), "{lines:#?}");
}

#[test]
fn a_vmm_that_cannot_run_exits_127_and_bad_options_exit_2() {
    let out = bin().args(["record", "--", "/no/such/vmm"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("/no/such/vmm: the command cannot be run: ENOENT"),
        "{}",
        text(&out.stderr)
    );
    let out = bin().args(["record", "--id", "Not An Id", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--id `Not An Id`"));
    let out = bin().args(["record", "-o", "/no/such/dir/x.yaml", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["record"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "the VMM is required");
}

/// The helper role of the next test (this test binary, run again under the recorder): 100
/// reads of /dev/zero around a VFIO ioctl on it (VFIO_GET_API_VERSION: ENOTTY).
fn reads_around_a_vfio_ioctl() {
    use std::io::Read;
    let mut f = std::fs::File::open("/dev/zero").unwrap();
    let mut b = [0u8; 8];
    for _ in 0..50 {
        f.read_exact(&mut b).unwrap();
    }
    // SAFETY: an ioctl without argument on an fd we own; only its result is looked at.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), 0x3b64) };
    assert_eq!(r, -1, "VFIO_GET_API_VERSION on /dev/zero fails");
    for _ in 0..50 {
        f.read_exact(&mut b).unwrap();
    }
}

/// `record [EXTRA] -- env VMC_RECORD_HELPER=1 THIS_TEST`; returns (tracer stops, fd filters).
fn record_helper(extra: &[&str]) -> (u64, u64) {
    let me = std::env::current_exe().unwrap();
    let out = bin()
        .arg("record")
        .args(extra)
        .args(["--", "env", "VMC_RECORD_HELPER=1"])
        .arg(&me)
        .args(["--exact", "a_process_without_device_or_data_fds_stops_only_on_its_vfio_ioctls", "-q"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    let n = |after: &str| -> u64 {
        let i = err.find(after).unwrap_or_else(|| panic!("no `{after}` in: {err}"));
        err[..i].split(|c: char| !c.is_ascii_digit()).rfind(|w| !w.is_empty()).unwrap().parse().unwrap()
    };
    (n(" tracer stops"), n(" fd filter(s) added"))
}

#[test]
fn a_process_without_device_or_data_fds_stops_only_on_its_vfio_ioctls() {
    if std::env::var_os("VMC_RECORD_HELPER").is_some() {
        reads_around_a_vfio_ioctl();
        return;
    }
    // Act: the helper under the recorder, and with every fd's I/O stopped on.
    let (stops, filters) = record_helper(&[]);
    let (all_stops, all_filters) = record_helper(&["--stop-on-all-io"]);
    // Assert: one stop (the ioctl), none of the 100 reads or the harness's writes; with
    // --stop-on-all-io every read stops. No fd filters either way (no device or data fd).
    assert_eq!((stops, filters), (1, 0));
    assert!(all_stops >= 101, "{all_stops} stops with --stop-on-all-io");
    assert_eq!(all_filters, 0);
}

#[test]
fn sigterm_to_the_recorder_ends_every_traced_process() {
    let d = tmp("term");
    let pidfile = d.join("pid");
    let mut child = bin()
        .args(["record", "--", "sh", "-c"])
        .arg(format!("echo $$ > {}; sleep 600 & sleep 600; wait", pidfile.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::fs::read_to_string(&pidfile).is_ok_and(|s| !s.trim().is_empty()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sh: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // SAFETY: sending SIGTERM to the recorder we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    // The recorder itself survived the signal to report (nothing recorded: 125), and the
    // shell it traced is gone.
    assert_eq!(status.code(), Some(125));
    // SAFETY: signal 0 only probes whether the process exists.
    assert_ne!(unsafe { libc::kill(sh, 0) }, 0, "the traced shell {sh} still runs");
}

// ---------------------------------------------------------------------------------------
// Fidelity: QEMU's trace events against the recording.

/// What QEMU's `-trace vfio_migration* -trace vfio_save* -trace vfio_load*` reports, per device.
#[derive(Debug, Default, PartialEq)]
struct QemuTrace {
    /// `vfio_migration_set_device_state (NAME) state S`: every state QEMU moved the device to.
    states: BTreeMap<String, Vec<String>>,
    /// `vfio_save_block (NAME) data_size N`: every non-empty read of the saving fd.
    saved: BTreeMap<String, Vec<u64>>,
    /// `vfio_load_state_device_data (NAME) size N`: every device-data section written.
    loaded: BTreeMap<String, Vec<u64>>,
}

/// Parses QEMU's log-backend trace lines (`vfio_save_block  (UUID) data_size 24`, maybe with a
/// `pid@time:` prefix).
fn parse_trace(text: &str) -> QemuTrace {
    let mut t = QemuTrace::default();
    for line in text.lines() {
        let Some(start) = line.find("vfio_") else { continue };
        let l = &line[start..];
        let mut words = l.split_whitespace();
        let Some(event) = words.next() else { continue };
        let Some(name) = words.next().and_then(|w| w.strip_prefix('(')).and_then(|w| w.strip_suffix(')'))
        else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        let value = |key: &str| rest.iter().position(|w| *w == key).and_then(|i| rest.get(i + 1)).copied();
        match event {
            "vfio_migration_set_device_state" => {
                if let Some(s) = value("state") {
                    t.states.entry(name.to_string()).or_default().push(s.to_string());
                }
            }
            "vfio_save_block" => {
                if let Some(n) = value("data_size").and_then(|v| v.parse().ok()) {
                    t.saved.entry(name.to_string()).or_default().push(n);
                }
            }
            "vfio_load_state_device_data" => {
                if let Some(n) = value("size").and_then(|v| v.parse().ok()) {
                    t.loaded.entry(name.to_string()).or_default().push(n);
                }
            }
            _ => {}
        }
    }
    t
}

const STATES: [&str; 8] =
    ["ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"];

/// The same, from the recorder's events (`--events`): successful SETs, non-empty reads, and
/// writes coalesced into the section sizes QEMU traced (a section may take several write()s).
fn from_events(events: &[serde_json::Value], loaded_sizes: &BTreeMap<String, Vec<u64>>) -> QemuTrace {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut t = QemuTrace::default();
    let mut written: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        let dev = e["dev"].as_str().unwrap_or("").to_string();
        match e["kind"].as_str() {
            Some("device_open") => {
                names.insert(dev, e["name"].as_str().unwrap_or("").to_string());
            }
            Some("feature") if e["feature"] == "set_state" && e["ret"]["ok"].is_number() => {
                let s = e["state"].as_u64().unwrap_or(99) as usize;
                let name = names.get(&dev).cloned().unwrap_or_default();
                t.states.entry(name).or_default().push(STATES.get(s).unwrap_or(&"?").to_string());
            }
            Some("read") => {
                if let Some(n) = e["ret"]["ok"].as_u64().filter(|n| *n > 0) {
                    let name = names.get(&dev).cloned().unwrap_or_default();
                    t.saved.entry(name).or_default().push(n);
                }
            }
            Some("write") => {
                // A failed write still carried a section QEMU traced (its size is what it asked).
                let n = e["ret"]["ok"]
                    .as_u64()
                    .or_else(|| e["count"].as_u64().filter(|_| e["ret"]["err"].is_number()));
                if let Some(n) = n.filter(|n| *n > 0) {
                    let name = names.get(&dev).cloned().unwrap_or_default();
                    written.entry(name).or_default().push(n);
                }
            }
            _ => {}
        }
    }
    for (name, writes) in written {
        let want = loaded_sizes.get(&name).cloned().unwrap_or_default();
        let mut sections = Vec::new();
        let mut acc = 0;
        let mut i = 0;
        for w in writes {
            acc += w;
            if want.get(i) == Some(&acc) {
                sections.push(acc);
                acc = 0;
                i += 1;
            }
        }
        if acc > 0 {
            sections.push(acc);
        }
        t.loaded.insert(name, sections);
    }
    t
}

/// Every difference between QEMU's account and the recording's.
fn compare(qemu: &QemuTrace, rec: &QemuTrace) -> Vec<String> {
    let mut diffs = Vec::new();
    for (what, q, r) in [("states", &qemu.states, &rec.states)] {
        for (dev, seq) in q {
            if r.get(dev) != Some(seq) {
                diffs.push(format!(
                    "{what} of {dev}: QEMU traced {seq:?}, the recording has {:?}",
                    r.get(dev)
                ));
            }
        }
    }
    for (what, q, r) in
        [("bytes saved", &qemu.saved, &rec.saved), ("bytes loaded", &qemu.loaded, &rec.loaded)]
    {
        for (dev, seq) in q {
            if r.get(dev) != Some(seq) {
                diffs.push(format!(
                    "{what} by {dev}: QEMU traced {seq:?}, the recording has {:?}",
                    r.get(dev)
                ));
            }
        }
        for (dev, seq) in r {
            if !q.contains_key(dev) {
                diffs.push(format!("{what} by {dev}: the recording has {seq:?}, QEMU traced none"));
            }
        }
    }
    if qemu.states.is_empty() {
        diffs.push("QEMU traced no state change at all (was -trace on?)".to_string());
    }
    diffs
}

const TRACE_SRC: &str = "\
vfio_migration_set_state  (dev-a) new state PRE_COPY, recover state RUNNING
vfio_migration_set_device_state  (dev-a) state PRE_COPY
vfio_save_setup  (dev-a) data buffer size 96
vfio_save_block  (dev-a) data_size 24
vfio_save_iterate  (dev-a) precopy initial size 0 precopy dirty size 0
vfio_migration_set_state  (dev-a) new state STOP_COPY, recover state ERROR
vfio_migration_set_device_state  (dev-a) state STOP_COPY
vfio_migration_set_state  (dev-a) new state STOP_COPY, recover state STOP
1234@1700000000.000001:vfio_save_block  (dev-a) data_size 72
vfio_migration_set_device_state  (dev-a) state STOP
";

const TRACE_DST: &str = "\
vfio_migration_set_device_state  (dev-b) state RESUMING
vfio_load_state_device_data  (dev-b) size 24
vfio_load_state_device_data  (dev-b) size 72
vfio_migration_set_device_state  (dev-b) state RUNNING_P2P
vfio_migration_set_device_state  (dev-b) state RUNNING
";

fn canned_events() -> Vec<serde_json::Value> {
    let lines = [
        r#"{"kind":"device_open","dev":"A","name":"dev-a"}"#,
        r#"{"kind":"device_open","dev":"B","name":"dev-b"}"#,
        r#"{"kind":"feature","dev":"A","feature":"set_state","state":6,"ret":{"ok":0}}"#,
        r#"{"kind":"feature","dev":"B","feature":"set_state","state":4,"ret":{"ok":0}}"#,
        r#"{"kind":"read","dev":"A","ret":{"ok":24}}"#,
        r#"{"kind":"read","dev":"A","ret":{"ok":0}}"#,
        r#"{"kind":"write","dev":"B","ret":{"ok":24}}"#,
        r#"{"kind":"feature","dev":"A","feature":"set_state","state":3,"ret":{"ok":0}}"#,
        r#"{"kind":"read","dev":"A","ret":{"ok":72}}"#,
        r#"{"kind":"write","dev":"B","ret":{"ok":40}}"#,
        r#"{"kind":"write","dev":"B","ret":{"ok":32}}"#,
        r#"{"kind":"feature","dev":"A","feature":"set_state","state":1,"ret":{"ok":0}}"#,
        r#"{"kind":"feature","dev":"B","feature":"set_state","state":5,"ret":{"ok":0}}"#,
        r#"{"kind":"feature","dev":"B","feature":"set_state","state":2,"ret":{"ok":0}}"#,
    ];
    lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn qemu_trace_lines_parse_into_states_and_byte_counts() {
    let t = parse_trace(&format!("{TRACE_SRC}{TRACE_DST}"));
    assert_eq!(t.states["dev-a"], ["PRE_COPY", "STOP_COPY", "STOP"]);
    assert_eq!(t.states["dev-b"], ["RESUMING", "RUNNING_P2P", "RUNNING"]);
    assert_eq!(t.saved["dev-a"], [24, 72]);
    assert_eq!(t.loaded["dev-b"], [24, 72]);
}

#[test]
fn a_recording_that_matches_qemu_has_no_difference_and_any_gap_is_named() {
    let q = parse_trace(&format!("{TRACE_SRC}{TRACE_DST}"));
    let ev = canned_events();
    assert_eq!(compare(&q, &from_events(&ev, &q.loaded)), Vec::<String>::new());
    // A SET the recording missed, and a read of the wrong size, are both reported.
    let mut missing = ev.clone();
    missing.remove(7);
    missing[7]["ret"]["ok"] = serde_json::json!(71);
    let d = compare(&q, &from_events(&missing, &q.loaded));
    assert!(d.iter().any(|x| x.starts_with("states of dev-a")), "{d:?}");
    assert!(d.iter().any(|x| x.starts_with("bytes saved by dev-a")), "{d:?}");
    // States out of order are a difference too.
    let mut swapped = ev;
    swapped.swap(12, 13);
    assert!(!compare(&q, &from_events(&swapped, &q.loaded)).is_empty());
    // An empty trace is no evidence.
    assert!(!compare(&QemuTrace::default(), &QemuTrace::default()).is_empty());
}

/// The repository as the guest sees it (/repo), or the source tree.
fn repo() -> PathBuf {
    std::env::var_os("VMC_REPO_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."), PathBuf::from)
}

/// Scenarios whose byte counts QEMU's trace does not give one per read()/write(): with
/// multifd the stop-copy data moves in the save and load threads (traced without sizes), and a
/// truncated stream is traced with the section's declared size while fewer bytes arrive.
const STATES_ONLY: &[&str] = &["multifd", "dest_fails_truncated"];

/// Compares one recorded scenario (`NAME.yaml`, `NAME.jsonl`) with QEMU's trace (`traces`).
fn fidelity(scenario: &str, yaml: &Path, events: &Path, trace: &str) -> String {
    let mut qemu = parse_trace(trace);
    let ev: Vec<serde_json::Value> =
        std::fs::read_to_string(events).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut rec = from_events(&ev, &qemu.loaded);
    if STATES_ONLY.contains(&scenario) {
        for t in [&mut qemu, &mut rec] {
            t.saved.clear();
            t.loaded.clear();
        }
    }
    let diffs = compare(&qemu, &rec);
    assert!(diffs.is_empty(), "{scenario}: the recording departs from QEMU's trace:\n{}", diffs.join("\n"));
    // The YAML sequence holds the same SETs, in the same order, per device.
    let check = vmc::sequence::load_file(yaml).unwrap();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for e in &ev {
        if e["kind"] == "device_open" {
            labels.insert(e["dev"].as_str().unwrap().to_string(), e["name"].as_str().unwrap().to_string());
        }
    }
    let mut yaml_states: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &check.steps {
        if let vmc::op::Op::SetState(a) = &s.op
            && !s.note.as_deref().unwrap_or("").contains(" failed with ")
        {
            let dev = labels[s.device.as_deref().unwrap_or("A")].clone();
            yaml_states.entry(dev).or_default().push(STATES[a.raw() as usize].to_string());
        }
    }
    assert_eq!(yaml_states, qemu.states, "{scenario}: the YAML's SETs differ from QEMU's trace");
    let n: usize = qemu.states.values().map(Vec::len).sum();
    let saved: u64 = qemu.saved.values().flatten().sum();
    let loaded: u64 = qemu.loaded.values().flatten().sum();
    format!("{scenario}: {n} state changes, {saved} bytes saved, {loaded} bytes loaded")
}

#[test]
#[ignore = "needs QEMU 10.0.2 and mtty devices in the vm/ guest; run by .ci/vm-qemu.sh"]
fn a_recording_of_qemu_holds_every_state_change_qemu_traces_in_order_with_its_byte_counts() {
    assert!(
        std::env::var_os("VMC_GUEST").is_some() && Path::new("/usr/bin/qemu-system-x86_64").exists(),
        "not in the vm/ guest with QEMU (vm/run.sh --qemu-in-guest)"
    );
    let vmc = std::env::var("VMC_BIN").unwrap_or_else(|_| "vfio-mig-conform".to_string());
    let scenarios = std::env::var("VMC_FIDELITY_SCENARIOS")
        .unwrap_or_else(|_| "live_precopy p2p_two_devices".to_string());
    // Recordings made with QEMU_TRACE=1 (.ci/vm-qemu-guest.sh: DIR/NAME.{yaml,jsonl,trace}),
    // or made here.
    let given = std::env::var_os("VMC_FIDELITY_DIR").map(PathBuf::from);
    let out_dir = given.clone().unwrap_or_else(|| tmp("fidelity"));
    let mut lines = Vec::new();
    for scenario in scenarios.split_whitespace() {
        let yaml = out_dir.join(format!("{scenario}.yaml"));
        let events = out_dir.join(format!("{scenario}.jsonl"));
        let trace_file = out_dir.join(format!("{scenario}.trace"));
        if given.is_none() {
            let qdir = PathBuf::from(format!("/tmp/fidelity-{scenario}"));
            let _ = std::fs::remove_dir_all(&qdir);
            let out = Command::new(&vmc)
                .args(["record", "-o"])
                .arg(&yaml)
                .arg("--events")
                .arg(&events)
                .args(["--", "sh"])
                .arg(repo().join("vm/qemu/scenario.sh"))
                .arg(scenario)
                .env("QEMU_TRACE", "1")
                .env("QDIR", &qdir)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{scenario}: {}{}", text(&out.stdout), text(&out.stderr));
            // The source's events first (file_save_load uses one device in both QEMUs, one
            // after the other; the trace lines carry no time stamp).
            let mut trace = String::new();
            for q in ["src", "dst"] {
                trace.push_str(&std::fs::read_to_string(qdir.join(format!("{q}.trace"))).unwrap_or_default());
            }
            std::fs::write(&trace_file, trace).unwrap();
        }
        let trace = std::fs::read_to_string(&trace_file).unwrap_or_default();
        lines.push(fidelity(scenario, &yaml, &events, &trace));
    }
    for l in lines {
        eprintln!("fidelity: {l}: every one in the recording, in order");
    }
}
