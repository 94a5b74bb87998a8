//! Kernel-side evidence: the kernel log records of a check's window (`/dev/kmsg`) judged for
//! the reports a healthy driver never causes (V2-KERNEL-001): KASAN, KFENCE, lockdep, WARN
//! (both header formats: `WARNING: CPU: ...` to 6.x, `WARNING: file:line at ..., CPU#N` in 7.x),
//! BUG/Oops, UBSAN, soft lockups, RCU stalls, hung tasks and panics. [`classify`] is the one
//! classification of kernel reports: the live fuzzer's splats (crate::kmsg) use it too.
//! Pure: the runner reads the records, this module judges them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Violation;
use crate::clauses::id::*;

pub use crate::kmsg::Record;

/// What kind of report the kernel printed: the one classification of kernel reports, used by a
/// run's `--kernel-log` window (V2-KERNEL-001 per check) and by the live fuzzer (crate::kmsg).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplatKind {
    /// `BUG: KASAN: ...`
    Kasan,
    /// `BUG: KFENCE: ...`
    Kfence,
    /// lockdep: `WARNING: possible circular locking dependency detected` and its siblings.
    Lockdep,
    /// `WARNING: CPU: N PID: M at ...` (to 6.x) or `WARNING: file:line at ..., CPU#N: ...`.
    Warn,
    /// `BUG: kernel NULL pointer dereference, address: ...`
    NullDeref,
    /// `BUG: unable to handle page fault for address: ...`
    PageFault,
    /// `Oops: general protection fault ...`
    GeneralProtection,
    /// `kernel BUG at file:line!`
    Bug,
    /// Any other `BUG: ...` (sleeping in atomic context, bad page state, ...).
    OtherBug,
    /// `UBSAN: ...`
    Ubsan,
    /// `INFO: task comm:pid blocked for more than N seconds.`
    HungTask,
    /// `watchdog: BUG: soft lockup - CPU#N stuck for Ns!`
    SoftLockup,
    /// `rcu: INFO: ... detected stalls`
    RcuStall,
    /// `Kernel panic - not syncing: ...`
    Panic,
}

impl SplatKind {
    /// A short name for finding keys (`KERNEL-KASAN`).
    pub fn name(self) -> &'static str {
        match self {
            SplatKind::Kasan => "KASAN",
            SplatKind::Kfence => "KFENCE",
            SplatKind::Lockdep => "LOCKDEP",
            SplatKind::Warn => "WARN",
            SplatKind::NullDeref => "NULL-DEREF",
            SplatKind::PageFault => "PAGE-FAULT",
            SplatKind::GeneralProtection => "GPF",
            SplatKind::Bug => "BUG",
            SplatKind::OtherBug => "BUG",
            SplatKind::Ubsan => "UBSAN",
            SplatKind::HungTask => "HUNG-TASK",
            SplatKind::SoftLockup => "SOFT-LOCKUP",
            SplatKind::RcuStall => "RCU-STALL",
            SplatKind::Panic => "PANIC",
        }
    }
}

impl fmt::Display for SplatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Classifies the first line of a kernel report; None for ordinary log lines.
pub fn classify(line: &str) -> Option<SplatKind> {
    let l = line.trim_start();
    const LOCKDEP: [&str; 9] = [
        "WARNING: possible circular locking dependency detected",
        "WARNING: possible recursive locking detected",
        "WARNING: inconsistent lock state",
        "WARNING: possible irq lock inversion dependency detected",
        "WARNING: bad unlock balance detected!",
        "WARNING: held lock freed!",
        "WARNING: lock held when returning to user space!",
        "WARNING: suspicious RCU usage",
        "WARNING: Nested lock was not taken",
    ];
    if LOCKDEP.iter().any(|p| l.starts_with(p)) || l.starts_with("WARNING: HARDIRQ-safe -> HARDIRQ-unsafe") {
        return Some(SplatKind::Lockdep);
    }
    if l.starts_with("BUG: KASAN:") {
        return Some(SplatKind::Kasan);
    }
    if l.starts_with("BUG: KFENCE:") {
        return Some(SplatKind::Kfence);
    }
    if l.starts_with("WARNING: CPU: ") || (l.starts_with("WARNING: ") && l.contains(", CPU#")) {
        return Some(SplatKind::Warn);
    }
    if l.starts_with("BUG: kernel NULL pointer dereference") {
        return Some(SplatKind::NullDeref);
    }
    if l.starts_with("BUG: unable to handle page fault")
        || l.starts_with("BUG: unable to handle kernel paging request")
    {
        return Some(SplatKind::PageFault);
    }
    if l.starts_with("watchdog: BUG: soft lockup") || l.starts_with("BUG: soft lockup") {
        return Some(SplatKind::SoftLockup);
    }
    if l.starts_with("Oops: general protection fault") || l.starts_with("general protection fault") {
        return Some(SplatKind::GeneralProtection);
    }
    if l.starts_with("kernel BUG at ") {
        return Some(SplatKind::Bug);
    }
    if l.starts_with("BUG: ") {
        return Some(SplatKind::OtherBug);
    }
    if l.starts_with("UBSAN: ") {
        return Some(SplatKind::Ubsan);
    }
    if l.starts_with("INFO: task ") && l.contains(" blocked") && l.contains("for more than") {
        return Some(SplatKind::HungTask);
    }
    if l.starts_with("rcu: INFO: ") && l.contains("detected stall") {
        return Some(SplatKind::RcuStall);
    }
    if l.starts_with("Kernel panic - not syncing") {
        return Some(SplatKind::Panic);
    }
    None
}

impl SplatKind {
    /// The report's name in a finding ("the kernel logged a ...").
    pub fn describe(self) -> &'static str {
        match self {
            SplatKind::Kasan => "KASAN report",
            SplatKind::Kfence => "KFENCE report",
            SplatKind::Lockdep => "lockdep splat",
            SplatKind::Warn => "WARN",
            SplatKind::NullDeref => "NULL pointer dereference (Oops)",
            SplatKind::PageFault => "page fault (Oops)",
            SplatKind::GeneralProtection => "general protection fault (Oops)",
            SplatKind::Bug | SplatKind::OtherBug => "BUG",
            SplatKind::Ubsan => "UBSAN report",
            SplatKind::HungTask => "hung task",
            SplatKind::SoftLockup => "soft lockup",
            SplatKind::RcuStall => "RCU stall",
            SplatKind::Panic => "kernel panic",
        }
    }
}

/// Longest excerpt kept in a finding.
pub const EXCERPT_LINES: usize = 40;

/// A report found in a window: its kind, the record that opened it and the excerpt (from the
/// opening line to the end of the trace or [`EXCERPT_LINES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub report: SplatKind,
    pub usec: u64,
    pub excerpt: Vec<String>,
}

/// Every report in the records of a window, in log order. Lines of one report (up to its
/// `---[ end trace`) are not counted again (a KASAN report carries a `BUG:` line; an Oops after
/// a KASAN null-ptr-deref is part of it).
pub fn reports(records: &[Record]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let Some(report) = classify(&records[i].text) else {
            i += 1;
            continue;
        };
        // The report ends at its `---[ end trace` line when there is one within reach.
        let trace_end =
            records[i..].iter().take(400).position(|r| r.text.contains("---[ end trace")).map(|k| i + k + 1);
        let end = trace_end.unwrap_or(records.len()).min(i + EXCERPT_LINES);
        let excerpt = records[i..end].iter().map(|r| r.text.clone()).collect();
        out.push(Found { report, usec: records[i].usec, excerpt });
        i = trace_end.unwrap_or(end);
    }
    out
}

/// What V2-KERNEL-001 expects of a check's window of the kernel log.
const NO_REPORT: &str = "no kernel error report (KASAN, KFENCE, lockdep, WARN, BUG/Oops, UBSAN, soft lockup, RCU stall, hung task, panic) while the check runs";

/// The finding for one report.
pub fn violation(found: &Found) -> Violation {
    Violation::new(
        [V2_KERNEL_001],
        NO_REPORT.to_string(),
        format!("the kernel logged a {}:\n{}", found.report.describe(), found.excerpt.join("\n")),
    )
}

/// The finding for a report the live fuzzer attributed to a step (`fuzz --coverage kcov` reads
/// the log itself, per step: `vmc::kmsg`): its first line, `at` (where it came: `during step
/// N ...`) and the functions of its call trace, innermost first.
pub fn splat_violation(splat: &crate::kmsg::Splat, at: &str) -> Violation {
    let frames = splat.frames();
    let trace =
        if frames.is_empty() { String::new() } else { format!("; call trace: {}", frames.join(" < ")) };
    Violation::new([V2_KERNEL_001], NO_REPORT.to_string(), format!("{} {at}{trace}", splat.title))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(lines: &[&str]) -> Vec<Record> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| Record { level: 4, seq: i as u64, usec: 1000 + i as u64, text: l.to_string() })
            .collect()
    }

    #[test]
    fn records_parse_with_their_timestamp_and_escapes() {
        let r = Record::parse(
            "4,1234,5678901,-;BUG: kernel NULL pointer dereference\\x2c address\n SUBSYSTEM=x\n",
        )
        .expect("record");
        assert_eq!((r.level, r.seq, r.usec), (4, 1234, 5_678_901));
        assert_eq!(r.text, "BUG: kernel NULL pointer dereference, address");
        assert_eq!(Record::parse("garbage"), None);
    }

    #[test]
    fn each_report_kind_is_recognised_and_ordinary_lines_are_not() {
        let cases = [
            ("BUG: KASAN: slab-use-after-free in mtty_save_read", Some(SplatKind::Kasan)),
            ("WARNING: possible circular locking dependency detected", Some(SplatKind::Lockdep)),
            ("WARNING: CPU: 0 PID: 77 at drivers/vfio/vfio_main.c:1 x", Some(SplatKind::Warn)),
            // The WARN header of 7.x kernels, as the 7.2 test kernel printed it.
            (
                "WARNING: drivers/vfio/vfio_main.c:1402 at vfio_device_fops_release+0x1e5/0x260, CPU#1: vfio-mig-confor/402",
                Some(SplatKind::Warn),
            ),
            ("BUG: kernel NULL pointer dereference, address: 0000000000000008", Some(SplatKind::NullDeref)),
            (
                "Oops: general protection fault, probably for non-canonical address",
                Some(SplatKind::GeneralProtection),
            ),
            (
                "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [vfio-mig-conf:80]",
                Some(SplatKind::SoftLockup),
            ),
            ("INFO: task vfio-mig-conf:81 blocked for more than 20 seconds.", Some(SplatKind::HungTask)),
            ("UBSAN: shift-out-of-bounds in drivers/vfio/vfio_main.c:9:1", Some(SplatKind::Ubsan)),
            ("PCI: Fatal: No config space access function found; report a bug", None),
            ("mtty: loading out-of-tree module taints kernel.", None),
        ];
        for (line, kind) in cases {
            assert_eq!(classify(line), kind, "{line}");
        }
    }

    #[test]
    fn a_7_2_warn_in_a_check_window_breaks_v2_kernel_001() {
        // Arrange: the WARN the 7.2 test kernel printed when a RESUMING device was closed.
        let r = recs(&[
            "------------[ cut here ]------------",
            "WARNING: drivers/vfio/vfio_main.c:1402 at vfio_device_fops_release+0x1e5/0x260, CPU#1: vfio-mig-confor/402",
            "Modules linked in:",
            "---[ end trace 0000000000000000 ]---",
        ]);
        // Act
        let found = reports(&r);
        // Assert
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].report, SplatKind::Warn);
        let v = violation(&found[0]);
        assert_eq!(v.clauses, vec![V2_KERNEL_001]);
        assert!(v.actual.contains("the kernel logged a WARN"), "{}", v.actual);
    }

    #[test]
    fn one_oops_is_one_finding_with_its_trace_as_excerpt() {
        let r = recs(&[
            "random: crng init done",
            "BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "#PF: supervisor write access in kernel mode",
            "Oops: Oops: 0002 [#1] PREEMPT SMP KASAN",
            "RIP: 0010:mutex_lock+0x1c/0x30",
            "Call Trace:",
            " mtty_set_state+0x305/0x760",
            "---[ end trace 0000000000000000 ]---",
            "after",
        ]);
        let found = reports(&r);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].report, SplatKind::NullDeref);
        assert_eq!(found[0].usec, 1001);
        assert_eq!(found[0].excerpt.len(), 7);
        assert!(found[0].excerpt.last().is_some_and(|l| l.contains("end trace")));
        let v = violation(&found[0]);
        assert_eq!(v.clauses, [V2_KERNEL_001]);
        assert!(
            v.actual.contains("NULL pointer dereference (Oops)") && v.actual.contains("mtty_set_state"),
            "{}",
            v.actual
        );
    }

    #[test]
    fn a_clean_window_has_no_report_and_two_reports_are_two() {
        assert!(reports(&recs(&["vfio: a message", "mtty: done"])).is_empty());
        let r = recs(&[
            "WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1",
            "---[ end trace 1 ]---",
            "INFO: task t:1 blocked for more than 20 seconds.",
        ]);
        let kinds: Vec<SplatKind> = reports(&r).iter().map(|f| f.report).collect();
        assert_eq!(kinds, [SplatKind::Warn, SplatKind::HungTask]);
    }

    #[test]
    fn a_splat_the_fuzzer_attributed_to_a_step_breaks_v2_kernel_001_with_its_trace() {
        let lines = [
            "BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "RIP: 0010:mtty_set_state+0x305/0x760",
            "Call Trace:",
            " vfio_ioctl_device_feature_mig_device_state+0x9e/0x120",
            "---[ end trace 0 ]---",
        ];
        let recs: Vec<crate::kmsg::Record> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| crate::kmsg::Record {
                seq: i as u64,
                level: 1,
                usec: i as u64,
                text: l.to_string(),
            })
            .collect();
        let splat = crate::kmsg::splats(&recs).remove(0);
        let v = splat_violation(&splat, "during step 3 `set_state: STOP`");
        assert_eq!(v.clauses, vec![V2_KERNEL_001]);
        assert!(v.actual.starts_with("BUG: kernel NULL pointer dereference"), "{}", v.actual);
        assert!(v.actual.contains("during step 3"));
        assert!(
            v.actual.ends_with("call trace: mtty_set_state < vfio_ioctl_device_feature_mig_device_state"),
            "{}",
            v.actual
        );
    }
}
