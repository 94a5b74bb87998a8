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

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Instant;

use super::event::{Dir, Event, FNV_START, Feature, Kind, OpenPath, Ret, Transfer, fnv1a, hex};
use super::payload::{MAX_ITEMS, decode_feature, decode_irq_set, req, u32_at, u64_at};
use super::ptrace::{Call, Handler, Mem, Want};

/// Largest `VFIO_DEVICE_FEATURE` argsz read from the tracee.
const MAX_FEATURE: usize = 4096;

/// What an fd of a traced process is.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

/// What an entry left for its exit. `Dup` is any copy of a device or data fd: onto a number
/// the call names (`dup2`, `dup3`), or onto the one it returns (`onto: None`: `dup`,
/// `fcntl(F_DUPFD*)`).
#[derive(Debug)]
pub enum Pending {
    GetDeviceFd { group_fd: i32, name: String },
    Bind { fd: i32 },
    Ioctl { fd: i32, request: u32, arg: u64, entry: Vec<u8> },
    Transfer { fd: i32, write: bool, call: &'static str, segs: Vec<(u64, u64)>, offset: Option<u64> },
    Close { fd: i32, was: Fd },
    Dup { old: i32, onto: Option<i32> },
    Poll { addr: u64, nfds: usize, watched: Vec<(usize, i32)>, timeout_ms: i64 },
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
        if self.procs.entry(pid).or_default().fds.insert(fd, what).is_none() {
            self.new_fds.push((pid, fd));
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

    fn ioctl_entry(&mut self, pid: i32, call: Call, mem: Mem) -> Want<Pending> {
        let fd = call.args[0] as i32;
        let request = call.args[1] as u32;
        let arg = call.args[2];
        match (request, self.fd(pid, fd)) {
            (req::GROUP_GET_DEVICE_FD, _) => {
                Want::Exit(Pending::GetDeviceFd { group_fd: fd, name: mem.read_cstr(arg, 256) })
            }
            (req::DEVICE_BIND_IOMMUFD, None) => Want::Exit(Pending::Bind { fd }),
            (_, Some(Fd::Device(_) | Fd::Data { .. })) => {
                let entry = match request {
                    req::DEVICE_FEATURE => {
                        let argsz = mem.read_u32(arg).unwrap_or(0) as usize;
                        mem.read(arg, argsz.clamp(8, MAX_FEATURE))
                    }
                    req::DEVICE_SET_IRQS => {
                        let argsz = mem.read_u32(arg).unwrap_or(0) as usize;
                        mem.read(arg, argsz.clamp(20, 20 + 8 * MAX_ITEMS))
                    }
                    req::DEVICE_GET_REGION_INFO | req::DEVICE_GET_IRQ_INFO | req::MIG_GET_PRECOPY_INFO => {
                        mem.read(arg, 16)
                    }
                    _ => Vec::new(),
                };
                Want::Exit(Pending::Ioctl { fd, request, arg, entry })
            }
            _ => Want::Nothing,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ioctl_exit(
        &mut self,
        pid: i32,
        tid: i32,
        fd: i32,
        request: u32,
        arg: u64,
        entry: &[u8],
        ret: Ret,
        mem: Mem,
    ) {
        let (dev, data_dir) = match self.fd(pid, fd) {
            Some(Fd::Device(d)) => (*d, None),
            Some(Fd::Data { dev, dir, .. }) => (*dev, Some(*dir)),
            None => return,
        };
        let label = self.label_of(dev);
        if data_dir.is_some() {
            if request == req::MIG_GET_PRECOPY_INFO {
                let out = mem.read(arg, 24);
                let ok = ret.is_ok();
                self.push(
                    pid,
                    tid,
                    Kind::PrecopyInfo {
                        dev: label,
                        fd,
                        ret,
                        argsz: u32_at(entry, 0).unwrap_or(0),
                        initial_bytes: u64_at(&out, 8).filter(|_| ok),
                        dirty_bytes: u64_at(&out, 16).filter(|_| ok),
                    },
                );
            } else {
                self.push(pid, tid, Kind::OtherIoctl { dev: label, fd, request: u64::from(request), ret });
            }
            return;
        }
        let ok = ret.is_ok();
        match request {
            req::DEVICE_GET_INFO => {
                let out = mem.read(arg, 16);
                self.push(
                    pid,
                    tid,
                    Kind::DeviceInfo {
                        dev: label,
                        ret,
                        flags: u32_at(&out, 4).unwrap_or(0),
                        num_regions: u32_at(&out, 8).unwrap_or(0),
                        num_irqs: u32_at(&out, 12).unwrap_or(0),
                    },
                );
            }
            req::DEVICE_GET_REGION_INFO => {
                let out = mem.read(arg, 32);
                let index = u32_at(entry, 8).unwrap_or(u32::MAX);
                let size = u64_at(&out, 16).unwrap_or(0);
                let offset = u64_at(&out, 24).unwrap_or(0);
                if ok && let Some(d) = self.devices.get_mut(dev) {
                    d.regions.insert(index, (offset, size));
                }
                self.push(
                    pid,
                    tid,
                    Kind::RegionInfo {
                        dev: label,
                        ret,
                        index,
                        flags: u32_at(&out, 4).unwrap_or(0),
                        size,
                        offset,
                    },
                );
            }
            req::DEVICE_GET_IRQ_INFO => {
                let out = mem.read(arg, 16);
                self.push(
                    pid,
                    tid,
                    Kind::IrqInfo {
                        dev: label,
                        ret,
                        index: u32_at(entry, 8).unwrap_or(u32::MAX),
                        flags: u32_at(&out, 4).unwrap_or(0),
                        count: u32_at(&out, 12).unwrap_or(0),
                    },
                );
            }
            req::DEVICE_SET_IRQS => {
                if let Some(irqs) = decode_irq_set(entry) {
                    self.push(pid, tid, Kind::SetIrqs { dev: label, ret, irqs });
                }
            }
            req::DEVICE_RESET => self.push(pid, tid, Kind::Reset { dev: label, ret }),
            req::DEVICE_FEATURE => {
                let argsz = u32_at(entry, 0).unwrap_or(0);
                let flags = u32_at(entry, 4).unwrap_or(0);
                let out = if ok { mem.read(arg, entry.len()) } else { entry.to_vec() };
                let feature = decode_feature(flags, entry, &out, ok, mem);
                let new_fd = match &feature {
                    Feature::SetState { state, data_fd } if ok && *data_fd >= 0 => Some((
                        *data_fd,
                        if *state == vmc::state::MigState::Resuming.raw() { Dir::Resume } else { Dir::Save },
                    )),
                    _ => None,
                };
                self.push(pid, tid, Kind::Feature { dev: label.clone(), ret, flags, argsz, feature });
                if let Some((nfd, dir)) = new_fd {
                    let file = self.positions.len();
                    self.positions.push(0);
                    self.set_fd(pid, nfd, Fd::Data { dev, dir, file });
                    self.push(pid, tid, Kind::DataFd { dev: label, fd: nfd, dir });
                }
            }
            _ => self.push(pid, tid, Kind::OtherIoctl { dev: label, fd, request: u64::from(request), ret }),
        }
    }

    /// The (address, length) segments of a read/write family call.
    #[allow(clippy::type_complexity)]
    fn segments(nr: i64, call: Call, mem: Mem) -> Option<(&'static str, bool, Vec<(u64, u64)>, Option<u64>)> {
        let a = call.args;
        let iov = |addr: u64, cnt: u64| -> Vec<(u64, u64)> {
            let cnt = (cnt as usize).min(MAX_ITEMS);
            let raw = mem.read(addr, cnt * 16);
            raw.chunks_exact(16).map(|c| (u64_at(c, 0).unwrap_or(0), u64_at(c, 8).unwrap_or(0))).collect()
        };
        let pos = |p: u64| (p as i64 >= 0).then_some(p);
        Some(match nr {
            libc::SYS_read => ("read", false, vec![(a[1], a[2])], None),
            libc::SYS_write => ("write", true, vec![(a[1], a[2])], None),
            libc::SYS_pread64 => ("pread64", false, vec![(a[1], a[2])], Some(a[3])),
            libc::SYS_pwrite64 => ("pwrite64", true, vec![(a[1], a[2])], Some(a[3])),
            libc::SYS_readv => ("readv", false, iov(a[1], a[2]), None),
            libc::SYS_writev => ("writev", true, iov(a[1], a[2]), None),
            libc::SYS_preadv => ("preadv", false, iov(a[1], a[2]), Some(a[3])),
            libc::SYS_pwritev => ("pwritev", true, iov(a[1], a[2]), Some(a[3])),
            libc::SYS_preadv2 => ("preadv2", false, iov(a[1], a[2]), pos(a[3])),
            libc::SYS_pwritev2 => ("pwritev2", true, iov(a[1], a[2]), pos(a[3])),
            _ => return None,
        })
    }

    fn transfer_exit(&mut self, pid: i32, tid: i32, p: Pending, ret: Ret, mem: Mem) {
        let Pending::Transfer { fd, write, call, segs, offset } = p else { return };
        let count: u64 = segs.iter().map(|s| s.1).sum();
        let moved = match ret {
            Ret::Ok(n) => n.max(0) as u64,
            Ret::Err(_) => 0,
        };
        // A failed write keeps the bytes it tried to write (what the destination was given).
        let wanted = if write && !ret.is_ok() { count.min(1 << 20) } else { moved };
        let mut bytes = Vec::with_capacity(wanted.min(1 << 20) as usize);
        let mut left = wanted;
        for (addr, len) in &segs {
            if left == 0 {
                break;
            }
            let take = left.min(*len);
            bytes.extend(mem.read(*addr, take as usize));
            left -= take;
        }
        match self.fd(pid, fd).cloned() {
            Some(Fd::Data { dev, file, .. }) => {
                let label = self.label_of(dev);
                let pos = self.positions.get_mut(file).map_or(0, |p| std::mem::replace(p, *p + moved));
                let hash = format!("{:016x}", fnv1a(FNV_START, &bytes));
                let (kept, hexs) = self.keep(bytes);
                let t = Transfer { dev: label, fd, call, count, ret, pos, hex: hexs, hash, bytes: kept };
                self.push(pid, tid, if write { Kind::Write(t) } else { Kind::Read(t) });
            }
            Some(Fd::Device(dev)) => {
                let Some(off) = offset else { return };
                let (region, roff) = self.region_of(dev, off);
                let value = (matches!(count, 1 | 2 | 4 | 8) && moved == count && bytes.len() as u64 == count)
                    .then(|| {
                        let mut v = [0u8; 8];
                        v[..bytes.len()].copy_from_slice(&bytes);
                        u64::from_le_bytes(v)
                    });
                let label = self.label_of(dev);
                self.push(
                    pid,
                    tid,
                    Kind::Region { dev: label, write, region, offset: roff, count, ret, value },
                );
            }
            None => {}
        }
    }

    /// Closes every tracked fd of `pid` (exec, exit), reporting device fds.
    fn drop_fds(&mut self, pid: i32, tid: i32) {
        let Some(p) = self.procs.remove(&pid) else { return };
        let mut fds: Vec<(i32, Fd)> = p.fds.into_iter().collect();
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
        self.drop_fds(pid, pid);
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
                    let path = std::fs::read_link(format!("/proc/{pid}/fd/{group_fd}"))
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
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
                    let path = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
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
            Pending::Close { fd, was } => match was {
                Fd::Device(d) => {
                    let dev = self.label_of(d);
                    self.push(pid, tid, Kind::CloseDevice { dev, fd, explicit: true });
                }
                Fd::Data { dev, .. } => {
                    let dev = self.label_of(dev);
                    self.push(pid, tid, Kind::CloseData { dev, fd, ret });
                }
            },
            Pending::Dup { old, onto } => {
                let new = onto.unwrap_or_else(|| i32::try_from(raw).unwrap_or(-1));
                if ret.is_ok() && new >= 0 && new != old {
                    let copy = self.fd(pid, old).cloned();
                    if let Some(was) = self.procs.get_mut(&pid).and_then(|p| p.fds.remove(&new)) {
                        match was {
                            Fd::Device(d) => {
                                let dev = self.label_of(d);
                                self.push(pid, tid, Kind::CloseDevice { dev, fd: new, explicit: true });
                            }
                            Fd::Data { dev, .. } => {
                                let dev = self.label_of(dev);
                                self.push(pid, tid, Kind::CloseData { dev, fd: new, ret: Ret::Ok(0) });
                            }
                        }
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
        // Device and data fds are O_CLOEXEC (the vfio core opens them so).
        self.drop_fds(pid, pid);
        let (exe, argv) = Self::program_of(pid);
        self.push(pid, pid, Kind::Exec { exe, argv });
    }
}

/// The device behind a VFIO cdev node (`/dev/vfio/devices/vfio0` -> its sysfs device name).
fn cdev_device_name(path: &str) -> Option<String> {
    let node = path.rsplit('/').next()?;
    let dev = std::fs::read_link(format!("/sys/class/vfio-dev/{node}/device")).ok()?;
    dev.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::super::event::IrqSet;
    use super::*;
    use vmc::uapi;

    fn mem() -> Mem {
        Mem { tid: std::process::id() as i32 }
    }

    #[test]
    fn labels_run_a_to_z_then_repeat_with_a_number() {
        assert_eq!(label(0), "A");
        assert_eq!(label(3), "D");
        assert_eq!(label(25), "Z");
        assert_eq!(label(26), "A1");
    }

    #[test]
    fn a_set_of_mig_device_state_decodes_state_and_returned_fd() {
        let flags = uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE;
        let mut entry = Vec::new();
        entry.extend(16u32.to_le_bytes());
        entry.extend(flags.to_le_bytes());
        entry.extend(6u32.to_le_bytes());
        entry.extend((-1i32).to_le_bytes());
        let mut out = entry.clone();
        out[12..16].copy_from_slice(&27i32.to_le_bytes());
        assert_eq!(
            decode_feature(flags, &entry, &out, true, mem()),
            Feature::SetState { state: 6, data_fd: 27 }
        );
        // A failed SET returns no fd, whatever the buffer holds.
        assert_eq!(
            decode_feature(flags, &entry, &out, false, mem()),
            Feature::SetState { state: 6, data_fd: -1 }
        );
    }

    #[test]
    fn gets_and_probes_decode_their_payloads() {
        let get = |idx: u32, payload: &[u8]| {
            let flags = uapi::FEATURE_GET | idx;
            let mut b = Vec::new();
            b.extend((8 + payload.len() as u32).to_le_bytes());
            b.extend(flags.to_le_bytes());
            b.extend(payload);
            decode_feature(flags, &b, &b, true, mem())
        };
        assert_eq!(get(uapi::FEATURE_MIGRATION, &7u64.to_le_bytes()), Feature::Migration { flags: Some(7) });
        assert_eq!(
            get(uapi::FEATURE_MIG_DATA_SIZE, &96u64.to_le_bytes()),
            Feature::DataSize { stop_copy_length: Some(96) }
        );
        assert_eq!(
            get(uapi::FEATURE_MIG_DEVICE_STATE, &[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Feature::GetState { state: Some(3) }
        );
        let probe = uapi::FEATURE_PROBE | uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START;
        assert_eq!(decode_feature(probe, &[], &[], true, mem()), Feature::Other { index: 6 });
    }

    #[test]
    fn dma_logging_start_reads_its_ranges_from_the_tracee() {
        // The "tracee" is this process: the ranges array lives in our memory.
        let ranges: [u64; 4] = [0, 0x10_0000, 0x100_0000, 0x2000];
        let flags = uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START;
        let mut b = Vec::new();
        b.extend(32u32.to_le_bytes());
        b.extend(flags.to_le_bytes());
        b.extend(4096u64.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend((ranges.as_ptr() as u64).to_le_bytes());
        let f = decode_feature(flags, &b, &b, true, mem());
        assert_eq!(
            f,
            Feature::DmaLogStart {
                page_size: 4096,
                ranges: vec![(0, 0x10_0000), (0x100_0000, 0x2000)],
                page_size_out: Some(4096)
            }
        );
    }

    #[test]
    fn irq_sets_decode_eventfds_bools_and_none() {
        let mut b = Vec::new();
        for v in [28u32, IrqSet::DATA_EVENTFD | IrqSet::ACTION_TRIGGER, 1, 0, 2] {
            b.extend(v.to_le_bytes());
        }
        b.extend(12i32.to_le_bytes());
        b.extend((-1i32).to_le_bytes());
        let s = decode_irq_set(&b).unwrap();
        assert_eq!((s.index, s.start, s.count), (1, 0, 2));
        assert_eq!(s.data, vec![12, -1]);
        let mut b = Vec::new();
        for v in [20u32, IrqSet::DATA_NONE | IrqSet::ACTION_TRIGGER, 0, 0, 0] {
            b.extend(v.to_le_bytes());
        }
        assert!(decode_irq_set(&b).unwrap().data.is_empty());
        assert!(decode_irq_set(&b[..12]).is_none());
    }

    /// Feeds the decoder synthetic calls whose pointers point into this process.
    struct Fake {
        d: Decoder,
        pid: i32,
    }

    impl Fake {
        fn call(&mut self, nr: i64, args: [u64; 6], ret: i64) {
            let call = Call { nr, args };
            if let Want::Exit(p) = self.d.entry(self.pid, self.pid, call, mem()) {
                self.d.exit(self.pid, self.pid, p, ret, mem());
            }
        }
    }

    fn set_state_buf(state: u32, fd: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(16u32.to_le_bytes());
        b.extend((uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE).to_le_bytes());
        b.extend(state.to_le_bytes());
        b.extend(fd.to_le_bytes());
        b
    }

    #[test]
    fn device_and_data_fds_are_tracked_per_process_and_forgotten_when_closed() {
        let pid = std::process::id() as i32;
        let mut f = Fake { d: Decoder::new(1 << 20, None), pid };
        let name = c"c0000000-0000-4000-8000-000000000000";
        // A read on fd 20 before it is a device fd is not decoded.
        let mut buf = [0u8; 8];
        f.call(libc::SYS_read, [20, buf.as_mut_ptr() as u64, 8, 0, 0, 0], 8);
        assert!(f.d.events.is_empty());
        f.call(libc::SYS_ioctl, [5, u64::from(req::GROUP_GET_DEVICE_FD), name.as_ptr() as u64, 0, 0, 0], 20);
        assert!(matches!(&f.d.events[0].kind, Kind::DeviceOpen { dev, fd: 20, .. } if dev == "A"));
        // SET PRE_COPY returns data fd 27 (the exit sees the kernel's answer in memory).
        let mut b = set_state_buf(6, 27);
        f.call(libc::SYS_ioctl, [20, u64::from(req::DEVICE_FEATURE), b.as_mut_ptr() as u64, 0, 0, 0], 0);
        assert!(matches!(
            &f.d.events[1].kind,
            Kind::Feature { feature: Feature::SetState { state: 6, data_fd: 27 }, .. }
        ));
        assert!(matches!(&f.d.events[2].kind, Kind::DataFd { fd: 27, dir: Dir::Save, .. }));
        // A read of 24 bytes from the data fd, then one that finds ENOMSG.
        let data: Vec<u8> = (0..24).collect();
        f.call(libc::SYS_read, [27, data.as_ptr() as u64, 96, 0, 0, 0], 24);
        f.call(libc::SYS_read, [27, data.as_ptr() as u64, 96, 0, 0, 0], -i64::from(libc::ENOMSG));
        let Kind::Read(t) = &f.d.events[3].kind else { panic!("{:?}", f.d.events[3]) };
        assert_eq!((t.count, t.ret, t.pos), (96, Ret::Ok(24), 0));
        assert_eq!(t.bytes.as_deref(), Some(&data[..]));
        let Kind::Read(t) = &f.d.events[4].kind else { panic!() };
        assert_eq!((t.ret, t.pos), (Ret::Err(libc::ENOMSG), 24));
        // A config-space pread (region 7 at 7 << 40) of 2 bytes.
        let cmd = [0x07u8, 0x01];
        f.call(libc::SYS_pread64, [20, cmd.as_ptr() as u64, 2, (7 << 40) + 4, 0, 0], 2);
        assert!(matches!(
            f.d.events[5].kind,
            Kind::Region { write: false, region: 7, offset: 4, count: 2, value: Some(0x0107), .. }
        ));
        // Closing the data fd ends it: a later read on 27 is not decoded.
        f.call(libc::SYS_close, [27, 0, 0, 0, 0, 0], 0);
        assert!(matches!(f.d.events[6].kind, Kind::CloseData { fd: 27, .. }));
        f.call(libc::SYS_read, [27, data.as_ptr() as u64, 96, 0, 0, 0], 4);
        assert_eq!(f.d.events.len(), 7);
        // Another process has its own fd table.
        let other = Fake { d: Decoder::new(0, None), pid: pid + 1 };
        assert!(other.d.fd(pid + 1, 20).is_none());
        // Fork copies the table; exit reports the device fd as closed.
        f.d.fork(pid, 4242);
        assert!(matches!(f.d.fd(4242, 20), Some(Fd::Device(0))));
        f.d.exit_process(4242, 0);
        let n = f.d.events.len();
        assert!(matches!(&f.d.events[n - 2].kind, Kind::CloseDevice { explicit: false, .. }));
        assert!(matches!(&f.d.events[n - 1].kind, Kind::Exit { status: 0 }));
    }

    #[test]
    fn a_data_fd_copied_by_dup_or_fcntl_is_followed_and_other_fcntls_are_not_decoded() {
        // Arrange: device A on fd 20 with data fd 27 (SET PRE_COPY).
        let pid = std::process::id() as i32;
        let mut f = Fake { d: Decoder::new(1 << 20, None), pid };
        let name = c"c0000000-0000-4000-8000-000000000000";
        f.call(libc::SYS_ioctl, [5, u64::from(req::GROUP_GET_DEVICE_FD), name.as_ptr() as u64, 0, 0, 0], 20);
        let mut b = set_state_buf(6, 27);
        f.call(libc::SYS_ioctl, [20, u64::from(req::DEVICE_FEATURE), b.as_mut_ptr() as u64, 0, 0, 0], 0);
        f.d.take_new_fds();
        // Act: dup(27) -> 30, fcntl(27, F_DUPFD_CLOEXEC, 40) -> 41, fcntl(27, F_GETFL), then
        // the original closed and reads on both copies.
        f.call(libc::SYS_dup, [27, 0, 0, 0, 0, 0], 30);
        f.call(libc::SYS_fcntl, [27, libc::F_DUPFD_CLOEXEC as u64, 40, 0, 0, 0], 41);
        f.call(libc::SYS_fcntl, [27, libc::F_GETFL as u64, 0, 0, 0, 0], 2);
        f.call(libc::SYS_fcntl, [33, libc::F_DUPFD as u64, 0, 0, 0, 0], 34);
        let fresh = f.d.take_new_fds();
        f.call(libc::SYS_close, [27, 0, 0, 0, 0, 0], 0);
        let data = [0u8; 24];
        f.call(libc::SYS_read, [30, data.as_ptr() as u64, 24, 0, 0, 0], 24);
        f.call(libc::SYS_read, [41, data.as_ptr() as u64, 24, 0, 0, 0], -i64::from(libc::ENOMSG));
        // Assert: both copies are data fds of A that the tracer filters; fd 34 (a copy of an
        // fd that is not ours) is not; the reads on the copies are recorded, in stream order.
        assert_eq!(fresh, vec![(pid, 30), (pid, 41)]);
        assert!(matches!(f.d.fd(pid, 30), Some(Fd::Data { .. })));
        assert!(f.d.fd(pid, 34).is_none());
        let reads: Vec<_> =
            f.d.events
                .iter()
                .filter_map(|e| match &e.kind {
                    Kind::Read(t) => Some((t.ret, t.pos)),
                    _ => None,
                })
                .collect();
        assert_eq!(reads, vec![(Ret::Ok(24), 0), (Ret::Err(libc::ENOMSG), 24)]);
    }

    #[test]
    fn region_info_replaces_the_offset_shift_guess() {
        let mut d = Decoder::new(0, None);
        let i = d.device("x", "/dev/vfio/1", 1);
        assert_eq!(d.region_of(i, (2 << 40) + 3), (2, 3));
        d.devices[i].regions.insert(5, (0x1000, 0x100));
        assert_eq!(d.region_of(i, 0x1010), (5, 0x10));
    }
}
