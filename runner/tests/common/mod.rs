//! Helpers shared by the command-line tests: the binary, its output, scratch directories and
//! run records. Each test crate uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vfio-mig-conform"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run vfio-mig-conform")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh scratch directory for one test (`name` unique within the test crate).
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmc-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Waits (up to 30 s) until the file at `path` has at least `lines` lines.
pub fn wait_for(path: &Path, lines: usize) {
    for _ in 0..600 {
        if std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0) >= lines {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never reached {lines} lines", path.display());
}

/// Every line of a run record, parsed.
pub fn record_lines(path: &Path) -> Vec<serde_json::Value> {
    let record = std::fs::read_to_string(path).expect("record");
    record.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect()
}

/// Waits for `child` at most `secs` seconds; on timeout it is killed and the test fails
/// (a hang must fail the test, never hang it).
pub fn finish_within(mut child: std::process::Child, secs: u64, what: &str) -> Output {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    // Not wait_with_output: a grandchild (a stuck check process) may hold the pipes open.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let _ = child.wait();
    panic!("{what}: still running after {secs} s (killed)");
}
