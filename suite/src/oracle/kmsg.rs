//! Kernel-side evidence: the kernel log records of a check's window (`/dev/kmsg`) judged for
//! the reports a healthy driver never causes (V2-KERNEL-001): KASAN, lockdep, WARN, BUG/Oops,
//! soft lockups and hung tasks. Pure: the runner reads the records, this module judges them.

use super::Violation;
use crate::clauses::id::*;

/// One `/dev/kmsg` record: `<level>,<seq>,<usec>,<flags>[,...];<message>` followed by
/// dictionary lines that start with a space (Documentation/ABI/testing/dev-kmsg).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub level: u8,
    pub seq: u64,
    /// CLOCK_MONOTONIC microseconds when the kernel logged it.
    pub usec: u64,
    pub text: String,
}

impl Record {
    /// Parses one record as `read()` returns it; None for anything else.
    pub fn parse(raw: &str) -> Option<Record> {
        let (prefix, rest) = raw.split_once(';')?;
        let mut fields = prefix.split(',');
        let prio: u32 = fields.next()?.parse().ok()?;
        let seq = fields.next()?.parse().ok()?;
        let usec = fields.next()?.parse().ok()?;
        // The message is the first line; dictionary lines (" KEY=value") follow.
        let text = rest.lines().next().unwrap_or("").to_string();
        Some(Record { level: (prio & 7) as u8, seq, usec, text: unescape(&text) })
    }
}

/// `\x0a`-style escapes of /dev/kmsg back to characters (only printable ASCII is kept).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 4).and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            Some(_) => out.push(' '),
            None => out.push_str("\\x"),
        }
        rest = rest.get(i + if hex.is_some() { 4 } else { 2 }..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// What kind of report a line opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    Kasan,
    Lockdep,
    Warn,
    Bug,
    SoftLockup,
    HungTask,
}

impl Report {
    pub fn name(self) -> &'static str {
        match self {
            Report::Kasan => "KASAN report",
            Report::Lockdep => "lockdep splat",
            Report::Warn => "WARN",
            Report::Bug => "BUG/Oops",
            Report::SoftLockup => "soft lockup",
            Report::HungTask => "hung task",
        }
    }

    /// The report a log line starts, if any (the first line of each report format the kernel
    /// prints: mm/kasan/report.c, kernel/locking/lockdep.c, kernel/panic.c, arch/x86/mm/fault.c,
    /// kernel/watchdog.c, kernel/hung_task.c).
    pub fn opened_by(line: &str) -> Option<Report> {
        let l = line.trim_start();
        if l.starts_with("BUG: KASAN:")
            || l.contains("KASAN: null-ptr-deref")
            || l.contains("KASAN: maybe wild")
        {
            Some(Report::Kasan)
        } else if l.contains("BUG: soft lockup") {
            Some(Report::SoftLockup)
        } else if l.starts_with("INFO: task ") && l.contains("blocked for more than") {
            Some(Report::HungTask)
        } else if l.starts_with("WARNING: possible circular locking dependency")
            || l.starts_with("WARNING: possible recursive locking")
            || l.starts_with("WARNING: inconsistent lock state")
            || l.starts_with("WARNING: bad unlock balance")
            || l.starts_with("WARNING: lock held when returning to user space")
            || l.starts_with("WARNING: held lock freed")
            || l.starts_with("WARNING: suspicious RCU usage")
            || l.starts_with("BUG: sleeping function called from invalid context")
            || l.starts_with("BUG: scheduling while atomic")
            || l.starts_with("INFO: possible irq lock inversion")
        {
            Some(Report::Lockdep)
        } else if l.starts_with("WARNING: CPU:") || l.starts_with("WARNING: at ") {
            Some(Report::Warn)
        } else if l.starts_with("BUG: ")
            || l.starts_with("kernel BUG at")
            || l.starts_with("Oops: ")
            || l.starts_with("general protection fault")
        {
            Some(Report::Bug)
        } else {
            None
        }
    }
}

/// Longest excerpt kept in a finding.
pub const EXCERPT_LINES: usize = 40;

/// A report found in a window: its kind, the record that opened it and the excerpt (from the
/// opening line to the end of the trace or [`EXCERPT_LINES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub report: Report,
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
        let Some(report) = Report::opened_by(&records[i].text) else {
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
const NO_REPORT: &str =
    "no kernel error report (KASAN, lockdep, WARN, BUG/Oops, soft lockup, hung task) while the check runs";

/// The finding for one report.
pub fn violation(found: &Found) -> Violation {
    Violation::new(
        [V2_KERNEL_001],
        NO_REPORT.to_string(),
        format!("the kernel logged a {}:\n{}", found.report.name(), found.excerpt.join("\n")),
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
        assert_eq!(
            Report::opened_by("BUG: KASAN: slab-use-after-free in mtty_save_read"),
            Some(Report::Kasan)
        );
        assert_eq!(
            Report::opened_by("KASAN: null-ptr-deref in range [0x0000000000000008-0x000000000000000f]"),
            Some(Report::Kasan)
        );
        assert_eq!(
            Report::opened_by("WARNING: possible circular locking dependency detected"),
            Some(Report::Lockdep)
        );
        assert_eq!(
            Report::opened_by("WARNING: CPU: 0 PID: 77 at drivers/vfio/vfio_main.c:1 x"),
            Some(Report::Warn)
        );
        assert_eq!(
            Report::opened_by("BUG: kernel NULL pointer dereference, address: 0000000000000008"),
            Some(Report::Bug)
        );
        assert_eq!(
            Report::opened_by("Oops: general protection fault, probably for non-canonical address"),
            Some(Report::Bug)
        );
        assert_eq!(
            Report::opened_by("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [vfio-mig-conf:80]"),
            Some(Report::SoftLockup)
        );
        assert_eq!(
            Report::opened_by("INFO: task vfio-mig-conf:81 blocked for more than 20 seconds."),
            Some(Report::HungTask)
        );
        assert_eq!(
            Report::opened_by("PCI: Fatal: No config space access function found; report a bug"),
            None
        );
        assert_eq!(Report::opened_by("mtty: loading out-of-tree module taints kernel."), None);
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
        assert_eq!(found[0].report, Report::Bug);
        assert_eq!(found[0].usec, 1001);
        assert_eq!(found[0].excerpt.len(), 7);
        assert!(found[0].excerpt.last().is_some_and(|l| l.contains("end trace")));
        let v = violation(&found[0]);
        assert_eq!(v.clauses, [V2_KERNEL_001]);
        assert!(v.actual.contains("BUG/Oops") && v.actual.contains("mtty_set_state"), "{}", v.actual);
    }

    #[test]
    fn a_clean_window_has_no_report_and_two_reports_are_two() {
        assert!(reports(&recs(&["vfio: a message", "mtty: done"])).is_empty());
        let r = recs(&[
            "WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1",
            "---[ end trace 1 ]---",
            "INFO: task t:1 blocked for more than 20 seconds.",
        ]);
        let kinds: Vec<Report> = reports(&r).iter().map(|f| f.report).collect();
        assert_eq!(kinds, [Report::Warn, Report::HungTask]);
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
