//! The kernel log around each check: `/dev/kmsg` opened at its end before the check and read
//! after it (and after the device's restore), so that a report the driver triggers is part of
//! the check's verdict (V2-KERNEL-001, judged by `vmc::oracle::kmsg`).

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use vmc::engine::{CheckEnd, CheckRun, Finding};
use vmc::oracle::kmsg::{Record, reports, violation};

/// The kernel log device.
pub const KMSG: &str = "/dev/kmsg";

/// A window on the kernel log, from where it was opened.
pub struct Window {
    file: File,
    /// Records the kernel overwrote before they were read (EPIPE).
    lost: bool,
}

impl Window {
    /// Opens the log at its current end (CAP_SYSLOG or kernel.dmesg_restrict=0 needed).
    pub fn open() -> std::io::Result<Window> {
        let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(KMSG)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Window { file, lost: false })
    }

    /// Every record logged since the window was opened (or last drained).
    pub fn drain(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(r) = Record::parse(&String::from_utf8_lossy(&buf[..n])) {
                        out.push(r);
                    }
                }
                // The ring buffer wrapped past our position: carry on from the oldest record.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => self.lost = true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock of the log's timestamps.
pub fn now_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000) + (t.tv_nsec() as u64) / 1000)
        .unwrap_or(0)
}

/// When each step of the check started: (0-based step, the step as YAML, monotonic µs).
pub type StepTimes = Vec<(usize, String, u64)>;

/// Judges the window's records into the check's findings: each report is a finding of the step
/// that was running when the kernel logged it. A check process killed by the report (an Oops in
/// its ioctl) is then a FAIL with the kernel's words, not an ERROR.
pub fn judge(run: &mut CheckRun, window: &mut Window, steps: &StepTimes, device: &str) {
    let records = window.drain();
    if window.lost {
        run.notes.push("kernel log: records were overwritten before they could be read".to_string());
    }
    judge_records(run, &records, steps, device);
}

/// [`judge`] on records already read.
pub fn judge_records(run: &mut CheckRun, records: &[Record], steps: &StepTimes, device: &str) {
    let found = reports(records);
    if found.is_empty() {
        return;
    }
    for f in &found {
        let (step, op) = steps
            .iter()
            .rev()
            .find(|(_, _, at)| *at <= f.usec)
            .or(steps.last())
            .map(|(i, op, _)| (*i, op.clone()))
            .or_else(|| run.trace.last().map(|t| (t.step, t.op.clone())))
            .unwrap_or((0, "(before the first step)".to_string()));
        run.findings.push(Finding {
            violation: violation(f),
            step,
            op,
            device: device.to_string(),
            loc: None,
            setup: false,
        });
    }
    if let CheckEnd::HarnessError(e) = &run.end {
        run.notes.push(format!("{e} (after the kernel report)"));
        run.end = CheckEnd::Completed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(usec: u64, text: &str) -> Record {
        Record { level: 1, seq: usec, usec, text: text.to_string() }
    }

    #[test]
    fn a_report_is_a_finding_of_the_step_running_when_it_was_logged_and_replaces_the_error() {
        let mut run = CheckRun {
            end: CheckEnd::HarnessError("the check process was killed by SIGKILL".into()),
            ..Default::default()
        };
        let steps: StepTimes =
            vec![(0, "set_state: RESUMING".into(), 100), (4, "set_state: STOP".into(), 500)];
        let recs = [
            rec(50, "mtty: unrelated"),
            rec(600, "BUG: kernel NULL pointer dereference, address: 8"),
            rec(601, "---[ end trace 0 ]---"),
        ];
        judge_records(&mut run, &recs, &steps, "A");
        assert_eq!(run.findings.len(), 1);
        let f = &run.findings[0];
        assert_eq!((f.step, f.op.as_str(), f.device.as_str()), (4, "set_state: STOP", "A"));
        assert!(f.violation.actual.contains("NULL pointer dereference"));
        assert_eq!(run.end, CheckEnd::Completed, "the report explains the dead check process");
        assert!(run.notes.iter().any(|n| n.contains("killed by SIGKILL")));
    }

    #[test]
    fn a_clean_window_changes_nothing_and_a_timeout_stays_a_timeout() {
        let mut run = CheckRun { end: CheckEnd::HarnessError("e".into()), ..Default::default() };
        judge_records(&mut run, &[rec(1, "vfio: fine")], &Vec::new(), "A");
        assert!(run.findings.is_empty());
        assert_eq!(run.end.error(), Some("e"));
        let mut run =
            CheckRun { end: CheckEnd::Timeout("step 5 did not return".into()), ..Default::default() };
        judge_records(
            &mut run,
            &[rec(1, "INFO: task x:1 blocked for more than 20 seconds.")],
            &Vec::new(),
            "A",
        );
        assert_eq!(run.findings.len(), 1);
        assert_eq!(run.end.timeout(), Some("step 5 did not return"));
    }
}
