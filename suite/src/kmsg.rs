//! The kernel log (`/dev/kmsg`) as records, and kernel splats found in it.
//!
//! [`Kmsg::open_at_end`] opens `/dev/kmsg` non-blocking and skips what is already logged;
//! [`Kmsg::drain`] returns the records logged since (each `read()` of `/dev/kmsg` returns one
//! record: `prio,seq,usec,flags;text`, see Documentation/ABI/testing/dev-kmsg).
//! [`splats`] groups records into [`Splat`]s by the first line the kernel prints for each kind
//! of report (KASAN, lockdep, WARN, BUG, oops, hung task, soft lockup, ...), with the record
//! lines that follow as its body. The live fuzzer attributes each splat to the operation that
//! caused it; the runner can attach them to a check.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

/// One record of the kernel log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The kernel's sequence number of the record.
    pub seq: u64,
    /// Syslog priority (0 emergency ... 7 debug), facility bits removed.
    pub level: u8,
    /// Microseconds since boot (the kernel's `local_clock()`).
    pub usec: u64,
    /// The message (one line; a continuation record is its own record).
    pub text: String,
}

impl Record {
    /// Parses one `/dev/kmsg` record: `prio,seq,usec,flags[,...];text`, then optional
    /// ` KEY=value` dictionary lines (dropped). `\xNN` escapes are decoded.
    pub fn parse(raw: &str) -> Option<Record> {
        let (head, rest) = raw.split_once(';')?;
        let mut fields = head.split(',');
        let prio: u32 = fields.next()?.trim().parse().ok()?;
        let seq: u64 = fields.next()?.trim().parse().ok()?;
        let usec: u64 = fields.next()?.trim().parse().ok()?;
        let text = rest.split('\n').next().unwrap_or("");
        Some(Record { seq, level: (prio & 7) as u8, usec, text: unescape(text) })
    }
}

fn unescape(s: &str) -> String {
    if !s.contains("\\x") {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1] == b'x'
            && let Some(v) =
                std::str::from_utf8(&b[i + 2..i + 4]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What can go wrong with `/dev/kmsg`.
#[derive(Debug, thiserror::Error)]
pub enum KmsgError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("cannot seek to the end of {path}: {errno}")]
    Seek { path: String, errno: Errno },
    #[error("reading {path} failed: {source}")]
    Read { path: String, source: std::io::Error },
}

/// A non-blocking reader of the kernel log.
#[derive(Debug)]
pub struct Kmsg {
    file: File,
    path: String,
    /// Records the kernel overwrote before they were read (EPIPE).
    pub lost: u64,
    /// The highest sequence number read so far.
    pub last_seq: Option<u64>,
}

/// Largest record `/dev/kmsg` hands out (`CONSOLE_EXT_LOG_MAX` is 8192).
const RECORD_MAX: usize = 8192;

impl Kmsg {
    /// Opens `/dev/kmsg` positioned after the last record logged so far.
    pub fn open_at_end() -> Result<Kmsg, KmsgError> {
        Kmsg::open_path_at_end(Path::new("/dev/kmsg"))
    }

    /// The same for another file with `/dev/kmsg` semantics.
    pub fn open_path_at_end(path: &Path) -> Result<Kmsg, KmsgError> {
        let name = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| KmsgError::Open { path: name.clone(), source })?;
        nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekEnd)
            .map_err(|e| KmsgError::Seek { path: name.clone(), errno: Errno(e as i32) })?;
        Ok(Kmsg { file, path: name, lost: 0, last_seq: None })
    }

    /// The raw descriptor (for a reader in a child process that shares the file position).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.file)
    }

    /// Every record logged since the last call (never blocks).
    pub fn drain(&mut self) -> Result<Vec<Record>, KmsgError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; RECORD_MAX];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(r) = Record::parse(&String::from_utf8_lossy(&buf[..n])) {
                        self.last_seq = Some(r.seq);
                        out.push(r);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EPIPE: records were overwritten before we read them; the next read goes on
                // with the oldest one still there.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => self.lost += 1,
                Err(source) => return Err(KmsgError::Read { path: self.path.clone(), source }),
            }
        }
        Ok(out)
    }
}

/// Reads every record from a raw `/dev/kmsg` descriptor until none is left, returning the
/// highest sequence number read. Used between the steps of a check process on a descriptor it
/// inherited (a shared file position: what it reads, its parent does not read again).
pub fn drain_fd_seq(fd: std::os::fd::RawFd) -> Option<u64> {
    let mut buf = [0u8; RECORD_MAX];
    let mut last = None;
    loop {
        // SAFETY: `buf` is a live stack buffer of `buf.len()` bytes; `read` writes at most that
        // many into it. A closed or wrong descriptor only makes the call fail.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let text = String::from_utf8_lossy(&buf[..n as usize]);
            if let Some(r) = Record::parse(&text) {
                last = Some(r.seq);
            }
            continue;
        }
        let err = std::io::Error::last_os_error().raw_os_error();
        if n < 0 && (err == Some(libc::EINTR) || err == Some(libc::EPIPE)) {
            continue;
        }
        return last;
    }
}

pub use crate::oracle::kmsg::{SplatKind, classify};

/// A kernel report: its first line and the lines that follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splat {
    pub kind: SplatKind,
    /// The first line, as printed.
    pub title: String,
    /// The identity of the report across runs: the kind and the title with addresses, offsets,
    /// CPU numbers, task names and pids removed.
    pub key: String,
    /// Sequence number of the first line.
    pub seq: u64,
    /// The report's lines (first line included; at most [`BODY_LINES`]).
    pub lines: Vec<String>,
}

/// Most lines kept per splat.
pub const BODY_LINES: usize = 120;

impl Splat {
    /// The functions of the report's call trace (and the `RIP:` function), innermost first,
    /// without offsets: `mtty_set_state`, `vfio_ioctl_device_feature_mig_device_state`, ...
    pub fn frames(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut in_trace = false;
        for l in &self.lines {
            let t = l.trim();
            if let Some(rest) = t.strip_prefix("RIP: ") {
                // `RIP: 0010:mtty_set_state+0x305/0x760 [mtty]`
                let sym = rest.split_once(':').map_or(rest, |(_, s)| s);
                if let Some(f) = function_of(sym)
                    && !out.contains(&f)
                {
                    out.push(f);
                }
                continue;
            }
            if t.starts_with("Call Trace:") {
                in_trace = true;
                continue;
            }
            if !in_trace || t.starts_with('<') {
                continue;
            }
            let t = t.strip_prefix("? ").unwrap_or(t);
            match function_of(t) {
                Some(f) => {
                    if !out.contains(&f) {
                        out.push(f);
                    }
                }
                None => in_trace = false,
            }
        }
        out
    }
}

/// `mtty_set_state+0x305/0x760 [mtty]` -> `mtty_set_state`.
fn function_of(s: &str) -> Option<String> {
    let s = s.split_whitespace().next()?;
    let (name, off) = s.split_once('+')?;
    if !off.starts_with("0x")
        || name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.".contains(c))
    {
        return None;
    }
    Some(name.to_string())
}

/// The title without what differs between two sightings of the same report.
pub fn normalize(kind: SplatKind, title: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for w in title.split_whitespace() {
        let w = w.trim_end_matches([',', '.', '!']);
        let w = w.split_once("+0x").map_or(w, |(f, _)| f);
        if w.starts_with("0x") || w.starts_with("ffff") || w.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Some((head, tail)) = w.split_once(':')
            && tail.chars().all(|c| c.is_ascii_digit())
            && !tail.is_empty()
            && kind == SplatKind::HungTask
        {
            // `comm:123` of a task.
            words.push(head.to_string());
            continue;
        }
        if w.starts_with("CPU#") || w.starts_with("CPU:") {
            continue;
        }
        if let Some((comm, pid)) = w.rsplit_once('/')
            && !comm.is_empty()
            && pid.chars().all(|c| c.is_ascii_digit())
            && !pid.is_empty()
        {
            continue;
        }
        words.push(w.to_string());
    }
    format!("{}: {}", kind.name(), words.join(" "))
}

/// Groups records into splats: each begins at a line [`classify`] recognises and takes the
/// lines after it up to the next splat or [`BODY_LINES`].
pub fn splats(records: &[Record]) -> Vec<Splat> {
    let mut out: Vec<Splat> = Vec::new();
    let mut open = false;
    for r in records {
        if let Some(kind) = classify(&r.text) {
            // A lockdep or KASAN report prints a `WARNING: ...`/`BUG: ...` header line once;
            // a WARN inside an oops is its own report.
            out.push(Splat {
                kind,
                title: r.text.trim().to_string(),
                key: normalize(kind, r.text.trim()),
                seq: r.seq,
                lines: vec![r.text.clone()],
            });
            open = true;
            continue;
        }
        if open && let Some(s) = out.last_mut() {
            if s.lines.len() < BODY_LINES {
                s.lines.push(r.text.clone());
            }
            if r.text.contains("---[ end trace")
                || r.text.starts_with("=================") && s.lines.len() > 2
            {
                open = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<Record> {
        text.lines()
            .enumerate()
            .map(|(i, l)| Record {
                seq: 100 + i as u64,
                level: 4,
                usec: 1_000 + i as u64,
                text: l.to_string(),
            })
            .collect()
    }

    /// mtty's close-in-RESUMING NULL dereference as Debian's 6.12.117 printed it (the head of the
    /// report; docs/fuzzing.md).
    const NULL_DEREF_6_12: &str = "\
BUG: kernel NULL pointer dereference, address: 0000000000000008
#PF: supervisor write access in kernel mode
#PF: error_code(0x0002) - not-present page
PGD 0 P4D 0
Oops: Oops: 0002 [#1] PREEMPT SMP NOPTI
CPU: 1 UID: 0 PID: 412 Comm: vfio-mig-confor Tainted: G           OE      6.12.117+deb13-amd64 #1  Debian 6.12.117-1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.3-debian-1.16.3-2 04/01/2014
RIP: 0010:mutex_lock+0x1c/0x30
Code: 90 90 90 90 90 90 90 90 90 90 90 90 f3 0f 1e fa 0f 1f 44 00 00 53 48 89 fb e8 62 de ff ff 31 c0 65 48 8b 14 25 c0 d3 03 00 <f0> 48 0f b1 13 75 02 5b c3 48 89 df 5b eb c7 90 90 90 90 90 90 90
RSP: 0018:ffffb3a5c06a3c70 EFLAGS: 00010246
Call Trace:
 <TASK>
 ? __die+0x23/0x70
 ? page_fault_oops+0x173/0x5b0
 ? exc_page_fault+0x7e/0x180
 ? asm_exc_page_fault+0x26/0x30
 ? mutex_lock+0x1c/0x30
 mtty_set_state+0x305/0x760 [mtty]
 vfio_ioctl_device_feature_mig_device_state+0xa1/0x170 [vfio]
 __x64_sys_ioctl+0x94/0xd0
 do_syscall_64+0x82/0x190
 </TASK>
---[ end trace 0000000000000000 ]---";

    /// A lockdep report in the format of kernel/locking/lockdep.c (print_circular_bug_header).
    const LOCKDEP: &str = "\
======================================================
WARNING: possible circular locking dependency detected
7.2.13 #1 Not tainted
------------------------------------------------------
vfio-mig-confor/377 is trying to acquire lock:
ffff888009a0c6e8 (&mdev_state->state_mutex){+.+.}-{4:4}, at: mtty_save_read+0x97/0x2d0

but task is already holding lock:
ffff888009a0c558 (&migf->lock){+.+.}-{4:4}, at: mtty_save_read+0x5b/0x2d0

which lock already depends on the new lock.";

    /// A KASAN report in the format of mm/kasan/report.c.
    const KASAN: &str = "\
==================================================================
BUG: KASAN: slab-use-after-free in mtty_resume_write+0x1d2/0x3a0
Write of size 8 at addr ffff88800a1b2c40 by task vfio-mig-confor/390

CPU: 0 UID: 0 PID: 390 Comm: vfio-mig-confor Not tainted 7.2.13 #1 PREEMPT(voluntary)
Call Trace:
 <TASK>
 dump_stack_lvl+0x5d/0x80
 print_report+0xce/0x630
 kasan_report+0xb8/0xf0
 mtty_resume_write+0x1d2/0x3a0
 vfs_write+0x1f1/0xb80
 ksys_write+0xf5/0x1c0
 do_syscall_64+0xc1/0x360
 </TASK>
==================================================================";

    /// The WARN line of 7.2 (kernel/panic.c __warn) and of 6.12.
    const WARN_7_2: &str = "\
------------[ cut here ]------------
WARNING: drivers/vfio/vfio_main.c:1402 at vfio_device_fops_release+0x1e5/0x260, CPU#1: vfio-mig-confor/402
Modules linked in:
CPU: 1 UID: 0 PID: 402 Comm: vfio-mig-confor Not tainted 7.2.13 #1 PREEMPT(voluntary)
RIP: 0010:vfio_device_fops_release+0x1e5/0x260
Call Trace:
 <TASK>
 __fput+0x2f4/0xb20
 task_work_run+0x14b/0x240
 </TASK>
---[ end trace 0000000000000000 ]---";
    const WARN_6_12: &str = "WARNING: CPU: 0 PID: 1234 at drivers/vfio/vfio_main.c:1390 vfio_device_fops_release+0x1e5/0x260 [vfio]";

    /// kernel/hung_task.c, with the task that holds the mutex named (DETECT_HUNG_TASK_BLOCKER).
    const HUNG: &str = "\
INFO: task vfio-mig-confor:455 blocked for more than 20 seconds.
      Not tainted 7.2.13 #1
\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.
task:vfio-mig-confor state:D stack:0     pid:455   tgid:455   ppid:300    task_flags:0x400100 flags:0x00004000
INFO: task vfio-mig-confor:455 is blocked on a mutex likely owned by task vfio-mig-confor:431.";

    #[test]
    fn kernel_reports_are_classified_by_their_first_line() {
        assert_eq!(
            classify("BUG: kernel NULL pointer dereference, address: 0000000000000008"),
            Some(SplatKind::NullDeref)
        );
        assert_eq!(
            classify("WARNING: possible circular locking dependency detected"),
            Some(SplatKind::Lockdep)
        );
        assert_eq!(classify("BUG: KASAN: slab-use-after-free in f+0x1/0x2"), Some(SplatKind::Kasan));
        assert_eq!(classify(WARN_6_12), Some(SplatKind::Warn));
        assert_eq!(classify(WARN_7_2.lines().nth(1).unwrap()), Some(SplatKind::Warn));
        assert_eq!(classify(HUNG.lines().next().unwrap()), Some(SplatKind::HungTask));
        assert_eq!(
            classify("watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [vfio-mig-confor:390]"),
            Some(SplatKind::SoftLockup)
        );
        assert_eq!(
            classify("BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580"),
            Some(SplatKind::OtherBug)
        );
        assert_eq!(classify("kernel BUG at mm/slub.c:435!"), Some(SplatKind::Bug));
        assert_eq!(
            classify(
                "Oops: general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] SMP KASAN"
            ),
            Some(SplatKind::GeneralProtection)
        );
        // Ordinary lines, including the fault-injection notice and a WARNING that is not a report.
        assert_eq!(classify("FAULT_INJECTION: forcing a failure."), None);
        assert_eq!(classify("vfio_pci: add [8086:10d3[ffffffff:ffffffff]] class 0x000000/00000000"), None);
        assert_eq!(
            classify("INFO: task vfio-mig-confor:455 is blocked on a mutex likely owned by task x:1."),
            None
        );
    }

    #[test]
    fn the_null_dereference_is_one_splat_with_its_call_trace() {
        let s = splats(&records(NULL_DEREF_6_12));
        assert_eq!(s.len(), 1, "{s:#?}");
        assert_eq!(s[0].kind, SplatKind::NullDeref);
        assert_eq!(s[0].seq, 100);
        assert_eq!(s[0].key, "NULL-DEREF: BUG: kernel NULL pointer dereference address:");
        let frames = s[0].frames();
        assert_eq!(frames[0], "mutex_lock");
        assert!(frames.contains(&"mtty_set_state".to_string()), "{frames:?}");
        assert!(frames.contains(&"vfio_ioctl_device_feature_mig_device_state".to_string()));
        assert!(s[0].lines.last().unwrap().contains("end trace"));
    }

    #[test]
    fn the_same_report_from_two_runs_has_one_key() {
        let a = normalize(SplatKind::Warn, WARN_7_2.lines().nth(1).unwrap());
        let b = normalize(
            SplatKind::Warn,
            "WARNING: drivers/vfio/vfio_main.c:1402 at vfio_device_fops_release+0x1e5/0x260, CPU#0: other/77",
        );
        assert_eq!(a, b);
        assert_eq!(a, "WARN: WARNING: drivers/vfio/vfio_main.c:1402 at vfio_device_fops_release");
        let h1 = normalize(SplatKind::HungTask, HUNG.lines().next().unwrap());
        let h2 = normalize(
            SplatKind::HungTask,
            "INFO: task vfio-mig-confor:999 blocked for more than 120 seconds.",
        );
        assert_eq!(h1, h2);
        let k = splats(&records(KASAN));
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].key, "KASAN: BUG: KASAN: slab-use-after-free in mtty_resume_write");
        assert_eq!(k[0].frames()[3], "mtty_resume_write");
    }

    #[test]
    fn several_reports_in_one_drain_are_separate_splats() {
        let text = format!("{LOCKDEP}\nordinary line\n{WARN_7_2}\n{HUNG}");
        let s = splats(&records(&text));
        let kinds: Vec<SplatKind> = s.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![SplatKind::Lockdep, SplatKind::Warn, SplatKind::HungTask]);
        assert!(s[0].lines.iter().any(|l| l.contains("mtty_save_read")));
        assert_eq!(s[1].frames(), vec!["vfio_device_fops_release", "__fput", "task_work_run"]);
    }

    #[test]
    fn dev_kmsg_records_parse_with_escapes_and_dictionary_lines() {
        let r =
            Record::parse("4,1234,5678901,-;WARNING: x\\x0ay\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:04.0\n")
                .unwrap();
        assert_eq!((r.seq, r.level, r.usec), (1234, 4, 5678901));
        assert_eq!(r.text, "WARNING: x\ny");
        assert_eq!(Record::parse("14,7,8,c,more;hello").unwrap().level, 6);
        assert_eq!(Record::parse("garbage"), None);
    }

    #[test]
    fn a_file_with_kmsg_semantics_reads_nothing_before_the_open() {
        // A regular file: lseek(SEEK_END) then nothing to read; what is appended is read.
        let dir = std::env::temp_dir().join(format!("vmc-kmsg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("kmsg");
        std::fs::write(&p, "6,1,2,-;old\n").unwrap();
        let mut k = Kmsg::open_path_at_end(&p).unwrap();
        assert!(k.drain().unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"3,2,3,-;BUG: KASAN: wild-memory-access in f+0x1/0x2\n").unwrap();
        let recs = k.drain().unwrap();
        // A regular file returns everything in one read: one record parsed.
        assert_eq!(recs.len(), 1);
        assert_eq!(classify(&recs[0].text), Some(SplatKind::Kasan));
        let _ = Kmsg::open_path_at_end(&dir.join("missing")).expect_err("no such file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
