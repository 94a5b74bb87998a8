//! Turns filtered system calls into [`Event`]s: which fds are VFIO device fds (per process:
//! threads share them, fork copies them, exec closes them) and which are migration data fds,
//! and what each VFIO ioctl, data-fd transfer and region access carried, read from the
//! tracee's memory at entry and exit.
//!
//! Device fds come from `VFIO_GROUP_GET_DEVICE_FD` (the device name is its argument) or from
//! a cdev (`/dev/vfio/devices/vfioN`) bound with `VFIO_DEVICE_BIND_IOMMUFD`; data fds from a
//! SET `MIG_DEVICE_STATE` that returns one. Devices are labelled A, B, ... in the order they
//! are first opened; a device opened again (by another process, or after a close) keeps its
//! label.

//!
//! - [`ioctl`]: the VFIO ioctls (and the data fds a SET returns);
//! - [`transfer`]: the read/write family on data fds (the stream) and device fds (regions).

mod ioctl;
mod transfer;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Instant;

use super::event::{Dir, Event, Kind, OpenPath, Ret, hex};
use super::payload::{MAX_ITEMS, u64_at};
use super::ptrace::{Call, Handler, Mem, Want};

/// Largest `VFIO_DEVICE_FEATURE` argsz read from the tracee.
const MAX_FEATURE: usize = 4096;

/// What an fd of a traced process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fd {
    /// A VFIO device fd (index into `devices`).
    Device(usize),
    /// A migration data fd of a device; `file` indexes [`Decoder::positions`], the stream
    /// position of the open file, which every copy of the fd (`dup*`, `fork`) shares.
    Data { dev: usize, dir: Dir, file: usize },
}

/// A device the recording has seen.
#[derive(Clone, Debug, Default)]
pub struct Device {
    pub label: String,
    /// Device name (mdev UUID, PCI address) or the cdev path.
    pub name: String,
    /// The group or cdev node it was opened through.
    pub path: String,
    /// Region index -> (offset, size) from `VFIO_DEVICE_GET_REGION_INFO`.
    regions: BTreeMap<u32, (u64, u64)>,
    /// Processes that opened it.
    pub pids: Vec<i32>,
}

/// Per-process state.
#[derive(Clone, Debug, Default)]
struct Proc {
    fds: HashMap<i32, Fd>,
    /// What `/proc/PID/fd/N` named when fd N became a device or data fd: an fd that still
    /// names it after an exec survived the exec.
    links: HashMap<i32, String>,
}

/// What an entry left for its exit. `Dup` is any copy of a device or data fd: onto a number
/// the call names (`dup2`, `dup3`), or onto the one it returns (`onto: None`: `dup`,
/// `fcntl(F_DUPFD*)`).
#[derive(Debug)]
pub enum Pending {
    GetDeviceFd {
        group_fd: i32,
        name: String,
    },
    Bind {
        fd: i32,
    },
    Ioctl {
        fd: i32,
        request: u32,
        arg: u64,
        entry: Vec<u8>,
    },
    Transfer {
        fd: i32,
        write: bool,
        call: &'static str,
        segs: Vec<(u64, u64)>,
        offset: Option<u64>,
    },
    Close {
        fd: i32,
        was: Fd,
    },
    Dup {
        old: i32,
        onto: Option<i32>,
    },
    /// `close_range` over these tracked fds (without `CLOSE_RANGE_CLOEXEC`).
    CloseRange {
        fds: Vec<i32>,
    },
    Poll {
        addr: u64,
        nfds: usize,
        watched: Vec<(usize, i32)>,
        timeout_ms: i64,
    },
}

/// The decoder (a [`Handler`] for the tracer).
pub struct Decoder {
    start: Instant,
    pub events: Vec<Event>,
    pub devices: Vec<Device>,
    procs: HashMap<i32, Proc>,
    /// Bytes of data-fd transfers kept so far, and the bound.
    kept: u64,
    keep_limit: u64,
    /// Where events are also streamed as JSON lines (`--events`).
    sink: Option<Box<dyn Write>>,
    /// Processes: pid -> (exe, argv), for the provenance.
    pub programs: BTreeMap<i32, (String, Vec<String>)>,
    /// Seccomp stops seen, and how many of them were followed to their exit.
    pub stops: u64,
    pub exits: u64,
    /// Fd filters added (one per device or data fd number per process).
    pub watched: u64,
    /// Fds that could not be given one, and why (their transfers may be missing).
    pub watch_failures: Vec<(i32, i32, String)>,
    /// Device and data fds learnt since the tracer last asked.
    new_fds: Vec<(i32, i32)>,
    /// The stream position of each data file opened so far (see [`Fd::Data`]).
    positions: Vec<u64>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("events", &self.events.len()).field("devices", &self.devices).finish()
    }
}

/// The label of the `i`-th device: A ... Z, then A1, B1, ...
pub fn label(i: usize) -> String {
    let c = char::from(b'A' + (i % 26) as u8);
    if i < 26 { c.to_string() } else { format!("{c}{}", i / 26) }
}

impl Decoder {
    pub fn new(keep_limit: u64, sink: Option<Box<dyn Write>>) -> Decoder {
        Decoder {
            start: Instant::now(),
            events: Vec::new(),
            devices: Vec::new(),
            procs: HashMap::new(),
            kept: 0,
            keep_limit,
            sink,
            programs: BTreeMap::new(),
            stops: 0,
            exits: 0,
            watched: 0,
            watch_failures: Vec::new(),
            new_fds: Vec::new(),
            positions: Vec::new(),
        }
    }

    fn push(&mut self, pid: i32, tid: i32, kind: Kind) {
        let thread = std::fs::read_to_string(format!("/proc/{tid}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let e = Event {
            seq: self.events.len() as u64,
            t_us: self.start.elapsed().as_micros() as u64,
            pid,
            tid,
            thread,
            kind,
        };
        if let Some(w) = &mut self.sink
            && let Ok(line) = serde_json::to_string(&e)
        {
            let _ = writeln!(w, "{line}");
        }
        self.events.push(e);
    }

    fn fd(&self, pid: i32, fd: i32) -> Option<&Fd> {
        self.procs.get(&pid).and_then(|p| p.fds.get(&fd))
    }

    fn set_fd(&mut self, pid: i32, fd: i32, what: Fd) {
        let p = self.procs.entry(pid).or_default();
        p.links.insert(fd, fd_link(pid, fd).unwrap_or_default());
        if p.fds.insert(fd, what).is_none() {
            self.new_fds.push((pid, fd));
        }
    }

    /// Fd `fd` of `pid`, which was `was`, is closed (by `close`, `close_range`, or a `dup2`
    /// onto it): the event that says so.
    fn closed(&mut self, pid: i32, tid: i32, fd: i32, was: Fd, ret: Ret) {
        match was {
            Fd::Device(d) => {
                let dev = self.label_of(d);
                self.push(pid, tid, Kind::CloseDevice { dev, fd, explicit: true });
            }
            Fd::Data { dev, .. } => {
                let dev = self.label_of(dev);
                self.push(pid, tid, Kind::CloseData { dev, fd, ret });
            }
        }
    }

    fn label_of(&self, dev: usize) -> String {
        self.devices.get(dev).map(|d| d.label.clone()).unwrap_or_default()
    }

    /// The device with this name, added (with the next label) if new.
    fn device(&mut self, name: &str, path: &str, pid: i32) -> usize {
        let i = match self.devices.iter().position(|d| d.name == name) {
            Some(i) => i,
            None => {
                let label = label(self.devices.len());
                self.devices.push(Device {
                    label,
                    name: name.to_string(),
                    path: path.to_string(),
                    ..Device::default()
                });
                self.devices.len() - 1
            }
        };
        if !self.devices[i].pids.contains(&pid) {
            self.devices[i].pids.push(pid);
        }
        i
    }

    /// Region index and offset inside it of a device-fd file offset.
    fn region_of(&self, dev: usize, off: u64) -> (u32, u64) {
        if let Some(d) = self.devices.get(dev) {
            for (idx, (start, size)) in &d.regions {
                if off >= *start && off - start < (*size).max(1) {
                    return (*idx, off - start);
                }
            }
        }
        // vfio-pci and mtty (MTTY_VFIO_PCI_OFFSET_SHIFT) put region N at N << 40.
        ((off >> 40) as u32, off & ((1 << 40) - 1))
    }

    fn keep(&mut self, bytes: Vec<u8>) -> (Option<Vec<u8>>, Option<String>) {
        let n = bytes.len() as u64;
        if self.kept + n > self.keep_limit {
            return (None, None);
        }
        self.kept += n;
        let h = (bytes.len() <= 4096).then(|| hex(&bytes));
        (Some(bytes), h)
    }

    /// Closes the tracked fds of `pid` (all at exit; at exec those that did not survive it),
    /// reporting device fds.
    fn drop_fds(&mut self, pid: i32, tid: i32, exec: bool) {
        let Some(mut p) = self.procs.remove(&pid) else { return };
        let mut fds: Vec<(i32, Fd)> = if exec {
            // Exec closes the fds with close-on-exec (the VFIO core gives its device and data
            // fds that flag; a `dup` or `dup2` copy, or a cdev opened without O_CLOEXEC, has
            // not): at the exec stop, the survivors are the fds that still name their file.
            let links = &p.links;
            p.fds
                .extract_if(|fd, _| {
                    links.get(fd).is_none_or(|l| l.is_empty() || fd_link(pid, *fd).as_ref() != Some(l))
                })
                .collect()
        } else {
            std::mem::take(&mut p.fds).into_iter().collect()
        };
        if !p.fds.is_empty() {
            self.procs.insert(pid, p);
        }
        fds.sort_by_key(|(fd, _)| *fd);
        for (fd, what) in fds {
            if let Fd::Device(d) = what {
                let dev = self.label_of(d);
                self.push(pid, tid, Kind::CloseDevice { dev, fd, explicit: false });
            }
        }
    }

    fn program_of(pid: i32) -> (String, Vec<String>) {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        (exe, argv)
    }
}

impl Handler for Decoder {
    type Pending = Pending;

    fn entry(&mut self, pid: i32, _tid: i32, call: Call, mem: Mem) -> Want<Pending> {
        self.stops += 1;
        let w = self.entry_inner(pid, call, mem);
        if matches!(w, Want::Exit(_)) {
            self.exits += 1;
        }
        w
    }

    fn exit(&mut self, pid: i32, tid: i32, p: Pending, raw: i64, mem: Mem) {
        self.exit_inner(pid, tid, p, raw, mem);
    }

    fn fork(&mut self, parent: i32, child: i32) {
        self.fork_inner(parent, child);
    }

    fn exec(&mut self, pid: i32) {
        self.exec_inner(pid);
    }

    fn take_new_fds(&mut self) -> Vec<(i32, i32)> {
        std::mem::take(&mut self.new_fds)
    }

    fn watched(&mut self, pid: i32, fd: i32, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.watched += 1,
            Err(why) => self.watch_failures.push((pid, fd, why)),
        }
    }

    fn exit_process(&mut self, pid: i32, status: i32) {
        self.drop_fds(pid, pid, false);
        self.push(pid, pid, Kind::Exit { status });
    }
}

impl Decoder {
    fn entry_inner(&mut self, pid: i32, call: Call, mem: Mem) -> Want<Pending> {
        let fd = call.args[0] as i32;
        match call.nr {
            libc::SYS_ioctl => self.ioctl_entry(pid, call, mem),
            libc::SYS_close => match self.procs.get_mut(&pid).and_then(|p| p.fds.remove(&fd)) {
                Some(was) => Want::Exit(Pending::Close { fd, was }),
                None => Want::Nothing,
            },
            libc::SYS_dup2 | libc::SYS_dup3 => {
                let new = call.args[1] as i32;
                if self.fd(pid, fd).is_some() || self.fd(pid, new).is_some() {
                    Want::Exit(Pending::Dup { old: fd, onto: Some(new) })
                } else {
                    Want::Nothing
                }
            }
            libc::SYS_dup | libc::SYS_fcntl if self.fd(pid, fd).is_some() => {
                let cmd = call.args[1] as i32;
                if call.nr == libc::SYS_dup || cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC {
                    Want::Exit(Pending::Dup { old: fd, onto: None })
                } else {
                    Want::Nothing
                }
            }
            libc::SYS_close_range => {
                let (first, last, flags) = (call.args[0] as u32, call.args[1] as u32, call.args[2] as u32);
                if flags & libc::CLOSE_RANGE_CLOEXEC != 0 {
                    // Only marks them close-on-exec: the exec tells (see `drop_fds`).
                    return Want::Nothing;
                }
                let Some(p) = self.procs.get(&pid) else { return Want::Nothing };
                let mut fds: Vec<i32> =
                    p.fds.keys().copied().filter(|fd| (first..=last).contains(&(*fd as u32))).collect();
                if fds.is_empty() {
                    return Want::Nothing;
                }
                fds.sort_unstable();
                Want::Exit(Pending::CloseRange { fds })
            }
            libc::SYS_poll | libc::SYS_ppoll => {
                let nfds = (call.args[1] as usize).min(MAX_ITEMS);
                let Some(p) = self.procs.get(&pid) else { return Want::Nothing };
                if !p.fds.values().any(|f| matches!(f, Fd::Data { .. })) {
                    return Want::Nothing;
                }
                let raw = mem.read(call.args[0], nfds * 8);
                let watched: Vec<(usize, i32)> = raw
                    .chunks_exact(8)
                    .enumerate()
                    .filter_map(|(i, c)| {
                        let f = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        matches!(p.fds.get(&f), Some(Fd::Data { .. })).then_some((i, f))
                    })
                    .collect();
                if watched.is_empty() {
                    return Want::Nothing;
                }
                let timeout_ms = if call.nr == libc::SYS_poll {
                    call.args[2] as i32 as i64
                } else if call.args[2] == 0 {
                    -1
                } else {
                    let ts = mem.read(call.args[2], 16);
                    let s = u64_at(&ts, 0).unwrap_or(0) as i64;
                    let ns = u64_at(&ts, 8).unwrap_or(0) as i64;
                    s.saturating_mul(1000).saturating_add(ns / 1_000_000)
                };
                Want::Exit(Pending::Poll { addr: call.args[0], nfds, watched, timeout_ms })
            }
            nr => {
                if self.fd(pid, fd).is_none() {
                    return Want::Nothing;
                }
                match Self::segments(nr, call, mem) {
                    Some((name, write, segs, offset)) => {
                        Want::Exit(Pending::Transfer { fd, write, call: name, segs, offset })
                    }
                    None => Want::Nothing,
                }
            }
        }
    }

    fn exit_inner(&mut self, pid: i32, tid: i32, p: Pending, raw: i64, mem: Mem) {
        let ret = Ret::from_raw(raw);
        match p {
            Pending::GetDeviceFd { group_fd, name } => {
                if let Ret::Ok(fd) = ret {
                    let path = fd_link(pid, group_fd).unwrap_or_default();
                    let d = self.device(&name, &path, pid);
                    self.set_fd(pid, fd as i32, Fd::Device(d));
                    self.programs.entry(pid).or_insert_with(|| Self::program_of(pid));
                    let dev = self.label_of(d);
                    self.push(
                        pid,
                        tid,
                        Kind::DeviceOpen { dev, name, path, via: OpenPath::Group, fd: fd as i32 },
                    );
                }
            }
            Pending::Bind { fd } => {
                if ret.is_ok() {
                    let path = fd_link(pid, fd).unwrap_or_default();
                    let name = cdev_device_name(&path).unwrap_or_else(|| path.clone());
                    let d = self.device(&name, &path, pid);
                    self.set_fd(pid, fd, Fd::Device(d));
                    self.programs.entry(pid).or_insert_with(|| Self::program_of(pid));
                    let dev = self.label_of(d);
                    self.push(pid, tid, Kind::DeviceOpen { dev, name, path, via: OpenPath::Cdev, fd });
                }
            }
            Pending::Ioctl { fd, request, arg, entry } => {
                self.ioctl_exit(pid, tid, fd, request, arg, &entry, ret, mem);
            }
            p @ Pending::Transfer { .. } => self.transfer_exit(pid, tid, p, ret, mem),
            Pending::Close { fd, was } => self.closed(pid, tid, fd, was, ret),
            Pending::CloseRange { fds } => {
                if ret.is_ok() {
                    for fd in fds {
                        if let Some(was) = self.procs.get_mut(&pid).and_then(|p| p.fds.remove(&fd)) {
                            self.closed(pid, tid, fd, was, ret);
                        }
                    }
                }
            }
            Pending::Dup { old, onto } => {
                let new = onto.unwrap_or_else(|| i32::try_from(raw).unwrap_or(-1));
                if ret.is_ok() && new >= 0 && new != old {
                    let copy = self.fd(pid, old).cloned();
                    if let Some(was) = self.procs.get_mut(&pid).and_then(|p| p.fds.remove(&new)) {
                        self.closed(pid, tid, new, was, Ret::Ok(0));
                    }
                    if let Some(c) = copy {
                        self.set_fd(pid, new, c);
                    }
                }
            }
            Pending::Poll { addr, nfds, watched, timeout_ms } => {
                let raw = mem.read(addr, nfds * 8);
                for (i, fd) in watched {
                    let Some(c) = raw.get(i * 8..i * 8 + 8) else { continue };
                    let events = u16::from_le_bytes([c[4], c[5]]);
                    let revents = ret.is_ok().then(|| u16::from_le_bytes([c[6], c[7]]));
                    let dev = match self.fd(pid, fd) {
                        Some(Fd::Data { dev, .. }) => self.label_of(*dev),
                        _ => continue,
                    };
                    self.push(pid, tid, Kind::Poll { dev, fd, events, revents, timeout_ms, ret });
                }
            }
        }
    }

    fn fork_inner(&mut self, parent: i32, child: i32) {
        let fds = self.procs.get(&parent).cloned().unwrap_or_default();
        if !fds.fds.is_empty() {
            self.procs.insert(child, fds);
        }
        self.push(parent, parent, Kind::Fork { child });
    }

    fn exec_inner(&mut self, pid: i32) {
        self.drop_fds(pid, pid, true);
        let (exe, argv) = Self::program_of(pid);
        self.push(pid, pid, Kind::Exec { exe, argv });
    }
}

/// What `/proc/PID/fd/FD` names (a path, `anon_inode:[...]`), if the fd is open.
fn fd_link(pid: i32, fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok().map(|p| p.display().to_string())
}

/// The device behind a VFIO cdev node (`/dev/vfio/devices/vfio0` -> its sysfs device name).
fn cdev_device_name(path: &str) -> Option<String> {
    let node = path.rsplit('/').next()?;
    let dev = std::fs::read_link(format!("/sys/class/vfio-dev/{node}/device")).ok()?;
    dev.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests;
