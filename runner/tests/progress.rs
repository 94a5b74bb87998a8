//! The progress line: drawn on stderr when it is a terminal and stdout is not, never in logs.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::bin;

#[test]
fn a_terminal_on_stderr_with_stdout_redirected_gets_a_progress_line() {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut child = bin()
        .args(["sim:v2", "fsm.arc.stop.", "--format", "ktap"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("spawn");
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // Reading the master ends with EIO once the child (the last holder of the slave) exits.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let mut stdout = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    let status = child.wait().expect("wait");
    let term = reader.join().expect("reader");
    assert_eq!(status.code(), Some(0), "{stdout}{term}");
    assert!(term.contains("[1/8] fsm.arc.stop.error ... 0 failed"), "{term:?}");
    assert!(term.contains("[8/8] fsm.arc.stop.pre_copy_p2p ... 0 failed"), "{term:?}");
    assert!(term.ends_with("\r\x1b[K"), "the line is erased at the end: {term:?}");
    assert!(!stdout.contains("\x1b[K") && !stdout.contains("failed\r"), "stdout stays clean: {stdout}");
}

#[test]
fn no_progress_line_when_stderr_is_not_a_terminal() {
    let out = bin()
        .args(["sim:v2?defect=stop_copy_to_pre_copy_accepted", "fsm.arc.stop_copy.", "--format", "ktap"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b[") && !stderr.contains("] fsm.arc."),
        "{stderr:?}"
    );
}
