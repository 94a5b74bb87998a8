//! Events -> a YAML sequence in the project's fixture format (docs/sequences.md), replayable
//! with `vfio-mig-conform DEV --peer DEV2 ... --sequence FILE`.
//!
//! - Migration operations (SET/GET state, MIGRATION, MIG_DATA_SIZE, DMA logging, data-fd
//!   reads and writes, PRECOPY_INFO, poll, reset) are judged by the oracle (`expect: oracle`);
//!   device operations QEMU issues besides (config space, BARs, SET_IRQS) are replayed
//!   without expectations, as the hand-written QEMU fixtures do.
//! - Each read() on a saving fd is one `read: {once: true}` step, except that consecutive
//!   reads of one fd ending at end of stream (nothing else recorded in between) are one
//!   read-until-end-of-stream step: replayed on a device with a longer stream it still drains
//!   it.
//! - A write on a resuming fd is matched against the bytes read from the saving fds: when it
//!   is exactly what some consecutive read steps returned, those steps capture a stream and
//!   the write replays it (`data: {stream: ...}`), so the replay moves the replaying device's
//!   own stream; a stream with one bit flipped or cut short becomes a `mutate:`; anything
//!   else is written as literal bytes.
//! - The exact syscalls (sizes, return values, errno, pid, thread) are in each step's `note`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use vmc::op::{
    ConfigArgs, DmaReportArgs, DmaStartArgs, FdRef, FeatureArgs, FeatureOp, IrqAction, IrqArgs, IrqData,
    IrqIndex, Mutation, Op, PrecopyArgs, ReadArgs, RegionArgs, RegionRef, Segmentation, Source, StreamName,
    WriteArgs,
};
use vmc::provenance::Provenance;
use vmc::state::{MigState, StateArg};
use vmc::uapi;

use super::event::{Dir, Event, Feature, IrqSet, Kind, Ret, Transfer};

/// Which device operations besides migration go into the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceOps {
    /// Every config-space and BAR access and SET_IRQS (the boot's config reads included).
    #[default]
    All,
    /// Writes and SET_IRQS; reads are summarised in comments.
    Writes,
    /// Migration operations and reset only.
    None,
}

/// What the sequence is.
#[derive(Clone, Debug)]
pub struct Header {
    pub id: String,
    pub title: String,
    pub models: String,
    pub provenance: Provenance,
}

/// One line of the step list.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
enum Item {
    Comment(String),
    Step(Step),
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    dev: String,
    name_fd: Option<String>,
    oracle: bool,
    note: String,
    /// For reads: the stream and byte range they cover; for writes: what they wrote.
    read: Option<ReadSpan>,
    write: Option<WriteSpan>,
}

#[derive(Clone, Debug)]
struct ReadSpan {
    /// Stream key: (pid, fd, creation seq of the fd).
    stream: (i32, i32, u64),
    start: u64,
    end: u64,
}

#[derive(Clone, Debug)]
struct WriteSpan {
    bytes: Option<Vec<u8>>,
    sizes: Vec<u32>,
}

/// State of one data fd while steps are built.
#[derive(Clone, Debug)]
struct DataFd {
    name: String,
    /// Key of its stream.
    key: (i32, i32, u64),
}

fn state_arg(raw: u32) -> StateArg {
    MigState::from_raw(raw).map_or(StateArg::Raw(raw), StateArg::Named)
}

fn state_name(raw: u32) -> String {
    MigState::from_raw(raw).map_or_else(|| raw.to_string(), |s| s.name().to_string())
}

/// Builds the YAML text of a sequence from the recorded events.
pub fn render(events: &[Event], header: &Header, device_ops: DeviceOps) -> String {
    // Processes that never opened a device (the scenario's shell, grep, sleep) add nothing:
    // without them, consecutive calls of a VMM are consecutive events.
    let vmm: BTreeSet<i32> =
        events.iter().filter(|e| matches!(e.kind, Kind::DeviceOpen { .. })).map(|e| e.pid).collect();
    let events: Vec<Event> = events
        .iter()
        .filter(|e| {
            !matches!(e.kind, Kind::Fork { .. } | Kind::DataFd { .. })
                && (vmm.contains(&e.pid) || !matches!(e.kind, Kind::Exec { .. } | Kind::Exit { .. }))
        })
        .cloned()
        .collect();
    let mut b = Builder::default();
    b.build(&events, device_ops);
    b.assign_captures();
    b.text(header)
}

#[derive(Default)]
struct Builder {
    items: Vec<Item>,
    /// (pid, fd) -> the data fd.
    fds: HashMap<(i32, i32), DataFd>,
    /// Per device: how many fds of each direction were named.
    names: HashMap<(String, Dir), usize>,
    /// Stream key -> (device, fd name, all bytes read in order (None once a transfer was not kept)).
    #[allow(clippy::type_complexity)]
    streams: BTreeMap<(i32, i32, u64), (String, String, Option<Vec<u8>>)>,
    /// Devices closed and opened again later (close_device/reopen pairs).
    closed: BTreeSet<String>,
    labels: Vec<String>,
    uses: Uses,
    /// The state each device was last moved to (by a SET that succeeded).
    state: HashMap<String, u32>,
}

/// What the steps need from the device (for `requires`).
#[derive(Default, Debug)]
struct Uses {
    pre_copy: bool,
    p2p: bool,
    dma: bool,
    precopy_v2: bool,
    cross_device: bool,
}

fn who(e: &Event) -> String {
    format!("pid {} {}", e.pid, if e.thread.is_empty() { format!("tid {}", e.tid) } else { e.thread.clone() })
}

impl Builder {
    fn step(&mut self, op: Op, dev: &str, oracle: bool, note: String) -> &mut Step {
        if !self.labels.iter().any(|l| l == dev) {
            self.labels.push(dev.to_string());
        }
        self.items.push(Item::Step(Step {
            op,
            dev: dev.to_string(),
            name_fd: None,
            oracle,
            note,
            read: None,
            write: None,
        }));
        match self.items.last_mut() {
            Some(Item::Step(s)) => s,
            _ => unreachable!("a step was just pushed"),
        }
    }

    fn comment(&mut self, c: String) {
        self.items.push(Item::Comment(c));
    }

    fn fd_name(&self, pid: i32, fd: i32) -> Option<String> {
        self.fds.get(&(pid, fd)).map(|d| d.name.clone())
    }

    fn build(&mut self, events: &[Event], device_ops: DeviceOps) {
        // Processes that opened a device (their exec and exit are worth a comment).
        let vmm_pids: BTreeSet<i32> =
            events.iter().filter(|e| matches!(e.kind, Kind::DeviceOpen { .. })).map(|e| e.pid).collect();
        // Devices opened again after a close: their closes become close_device steps.
        let mut opened: BTreeSet<&str> = BTreeSet::new();
        let mut reopened: BTreeSet<String> = BTreeSet::new();
        let mut closed_before: BTreeSet<&str> = BTreeSet::new();
        for e in events {
            match &e.kind {
                Kind::DeviceOpen { dev, .. } => {
                    if closed_before.contains(dev.as_str()) {
                        reopened.insert(dev.clone());
                    }
                    opened.insert(dev);
                }
                Kind::CloseDevice { dev, .. } => {
                    closed_before.insert(dev);
                }
                _ => {}
            }
        }
        let mut info: Option<(String, BTreeMap<&'static str, usize>)> = None;
        let mut skipped_reads: Option<(String, usize)> = None;
        let mut i = 0;
        while i < events.len() {
            let e = &events[i];
            // Flush summaries when something else comes.
            // Events that add nothing to the sequence do not end a summary.
            let silent = matches!(e.kind, Kind::DataFd { .. } | Kind::Fork { .. })
                || (matches!(e.kind, Kind::Exec { .. } | Kind::Exit { .. }) && !vmm_pids.contains(&e.pid));
            let is_info = silent
                || matches!(e.kind, Kind::DeviceInfo { .. } | Kind::RegionInfo { .. } | Kind::IrqInfo { .. });
            if !is_info && let Some((dev, m)) = info.take() {
                let list: Vec<String> = m
                    .iter()
                    .map(|(k, n)| if *n == 1 { k.to_string() } else { format!("{k} x{n}") })
                    .collect();
                self.comment(format!("{dev}: {} (not replayed)", list.join(", ")));
            }
            let is_skipped_read =
                device_ops != DeviceOps::All && matches!(e.kind, Kind::Region { write: false, .. });
            if !is_skipped_read && let Some((dev, n)) = skipped_reads.take() {
                self.comment(format!("{dev}: {n} config/BAR read(s) left out (--device-ops)"));
            }
            match &e.kind {
                Kind::Exec { exe, argv } if vmm_pids.contains(&e.pid) => {
                    self.comment(format!(
                        "pid {} runs {exe} {}",
                        e.pid,
                        argv.iter().skip(1).cloned().collect::<Vec<_>>().join(" ")
                    ));
                }
                Kind::Exit { status } if vmm_pids.contains(&e.pid) => {
                    self.comment(format!("pid {} exits with status {status}", e.pid));
                }
                Kind::Exec { .. } | Kind::Exit { .. } | Kind::Fork { .. } => {}
                Kind::DeviceOpen { dev, name, path, fd, .. } => {
                    if reopened.contains(dev) && self.closed.contains(dev) {
                        self.closed.remove(dev);
                        self.step(
                            Op::Reopen,
                            dev,
                            false,
                            format!("recorded ({}): {name} opened again via {path} as fd {fd}", who(e)),
                        );
                    } else {
                        self.comment(format!("{dev} = {name}, opened by {} via {path} as fd {fd}", who(e)));
                        if !self.labels.contains(dev) {
                            self.labels.push(dev.clone());
                        }
                    }
                }
                Kind::CloseDevice { dev, fd, explicit } => {
                    let how = if *explicit { "closes" } else { "exits with" };
                    // Only a device opened again later needs the close replayed.
                    let later = events[i + 1..]
                        .iter()
                        .any(|x| matches!(&x.kind, Kind::DeviceOpen { dev: d, .. } if d == dev));
                    if later && reopened.contains(dev) {
                        self.closed.insert(dev.clone());
                        self.step(
                            Op::CloseDevice,
                            dev,
                            false,
                            format!("recorded: pid {} {how} device fd {fd}", e.pid),
                        );
                    } else {
                        self.comment(format!("pid {} {how} {dev}'s device fd {fd}", e.pid));
                    }
                }
                Kind::DeviceInfo { dev, .. } | Kind::RegionInfo { dev, .. } | Kind::IrqInfo { dev, .. } => {
                    let what = match e.kind {
                        Kind::DeviceInfo { .. } => "GET_INFO",
                        Kind::RegionInfo { .. } => "GET_REGION_INFO",
                        _ => "GET_IRQ_INFO",
                    };
                    match &mut info {
                        Some((d, m)) if d == dev => *m.entry(what).or_default() += 1,
                        _ => {
                            if let Some((d, m)) = info.take() {
                                let list: Vec<String> = m.iter().map(|(k, n)| format!("{k} x{n}")).collect();
                                self.comment(format!("{d}: {} (not replayed)", list.join(", ")));
                            }
                            info = Some((dev.clone(), BTreeMap::from([(what, 1)])));
                        }
                    }
                }
                Kind::Feature { dev, ret, flags, argsz, feature } => {
                    self.feature(e, dev, *ret, *flags, *argsz, feature);
                }
                Kind::DataFd { .. } => {}
                Kind::PrecopyInfo { dev, fd, ret, argsz, initial_bytes, dirty_bytes } => {
                    let Some(name) = self.fd_name(e.pid, *fd) else {
                        i += 1;
                        continue;
                    };
                    let note = match ret {
                        Ret::Ok(_) => format!(
                            "recorded ({}): initial_bytes {}, dirty_bytes {}",
                            who(e),
                            initial_bytes.unwrap_or(0),
                            dirty_bytes.unwrap_or(0)
                        ),
                        r => format!("recorded ({}): {}", who(e), r.describe()),
                    };
                    let argsz = (*argsz != uapi::PRECOPY_INFO_SIZE).then_some(*argsz);
                    self.step(
                        Op::PrecopyInfo(PrecopyArgs { fd: FdRef::from(name.as_str()), argsz, flags: 0 }),
                        dev,
                        true,
                        note,
                    );
                }
                Kind::Read(_) => {
                    i = self.reads(events, i);
                    continue;
                }
                Kind::Write(_) => {
                    i = self.writes(events, i);
                    continue;
                }
                Kind::Poll { dev, fd, events: ev, revents, timeout_ms, ret } => {
                    let Some(name) = self.fd_name(e.pid, *fd) else {
                        i += 1;
                        continue;
                    };
                    let t = (*timeout_ms).clamp(0, i64::from(u16::MAX)) as u16;
                    let note = format!(
                        "recorded ({}): events {ev:#x}, revents {}, {}",
                        who(e),
                        revents.map_or("-".to_string(), |r| format!("{r:#x}")),
                        ret.describe()
                    );
                    self.step(Op::Poll { fd: FdRef::from(name.as_str()), timeout_ms: t }, dev, true, note);
                }
                Kind::CloseData { dev, fd, ret } => {
                    let Some(d) = self.fds.remove(&(e.pid, *fd)) else {
                        i += 1;
                        continue;
                    };
                    self.step(
                        Op::CloseFd { fd: FdRef::from(d.name.as_str()) },
                        dev,
                        false,
                        format!("recorded ({}): {}", who(e), ret.describe()),
                    );
                }
                Kind::Reset { dev, ret } => {
                    self.step(
                        Op::Reset,
                        dev,
                        true,
                        format!("recorded ({}): VFIO_DEVICE_RESET {}", who(e), ret.describe()),
                    );
                }
                Kind::SetIrqs { dev, ret, irqs } => self.set_irqs(e, dev, *ret, irqs, device_ops),
                Kind::Region { dev, write, region, offset, count, ret, value } => {
                    if !write && device_ops != DeviceOps::All {
                        match &mut skipped_reads {
                            Some((d, n)) if d == dev => *n += 1,
                            _ => {
                                if let Some((d, n)) = skipped_reads.take() {
                                    self.comment(format!(
                                        "{d}: {n} config/BAR read(s) left out (--device-ops)"
                                    ));
                                }
                                skipped_reads = Some((dev.clone(), 1));
                            }
                        }
                    } else if *write && device_ops == DeviceOps::None {
                    } else {
                        self.region(e, dev, *write, *region, *offset, *count, *ret, *value);
                    }
                }
                Kind::OtherIoctl { dev, fd, request, ret } => {
                    self.comment(format!(
                        "{dev}: ioctl {request:#x} on fd {fd} {} (not replayed)",
                        ret.describe()
                    ));
                }
            }
            i += 1;
        }
        if let Some((dev, m)) = info.take() {
            let list: Vec<String> = m.iter().map(|(k, n)| format!("{k} x{n}")).collect();
            self.comment(format!("{dev}: {} (not replayed)", list.join(", ")));
        }
        if let Some((dev, n)) = skipped_reads.take() {
            self.comment(format!("{dev}: {n} config/BAR read(s) left out (--device-ops)"));
        }
    }

    fn feature(&mut self, e: &Event, dev: &str, ret: Ret, flags: u32, argsz: u32, f: &Feature) {
        let w = who(e);
        match f {
            Feature::SetState { state, data_fd } => {
                let s = state_name(*state);
                match MigState::from_raw(*state) {
                    Some(MigState::PreCopy) => self.uses.pre_copy = true,
                    Some(MigState::PreCopyP2p) => {
                        self.uses.pre_copy = true;
                        self.uses.p2p = true;
                    }
                    Some(MigState::RunningP2p) => self.uses.p2p = true,
                    _ => {}
                }
                let note = if *data_fd >= 0 {
                    format!("recorded ({w}): SET {s} returned data fd {data_fd}")
                } else {
                    format!("recorded ({w}): SET {s} {}", ret.describe())
                };
                if ret.is_ok() {
                    self.state.insert(dev.to_string(), *state);
                }
                let name = (*data_fd >= 0).then(|| {
                    let dir = if *state == MigState::Resuming.raw() { Dir::Resume } else { Dir::Save };
                    let n = self.names.entry((dev.to_string(), dir)).or_default();
                    *n += 1;
                    let base = if dir == Dir::Resume { "load" } else { "save" };
                    let name = if *n == 1 { base.to_string() } else { format!("{base}{n}") };
                    self.fds.insert(
                        (e.pid, *data_fd),
                        DataFd { name: name.clone(), key: (e.pid, *data_fd, e.seq) },
                    );
                    self.streams
                        .insert((e.pid, *data_fd, e.seq), (dev.to_string(), name.clone(), Some(Vec::new())));
                    name
                });
                let st = self.step(Op::SetState(state_arg(*state)), dev, true, note);
                st.name_fd = name;
            }
            Feature::GetState { state } => {
                let note = match state {
                    Some(s) => format!("recorded ({w}): GET returned {}", state_name(*s)),
                    None => format!("recorded ({w}): GET {}", ret.describe()),
                };
                self.step(Op::GetState, dev, true, note);
            }
            Feature::Migration { flags } => {
                let note = match flags {
                    Some(f) => format!("recorded ({w}): migration flags {f:#x}"),
                    None => format!("recorded ({w}): {}", ret.describe()),
                };
                self.step(Op::GetFlags, dev, true, note);
            }
            Feature::DataSize { stop_copy_length } => {
                let note = match stop_copy_length {
                    Some(n) => format!("recorded ({w}): stop_copy_length {n}"),
                    None => format!("recorded ({w}): {}", ret.describe()),
                };
                self.step(Op::DataSize, dev, true, note);
            }
            Feature::DmaLogStart { page_size, ranges, page_size_out } => {
                self.uses.dma = true;
                let note = format!(
                    "recorded ({w}): {} ranges, page size {page_size} -> {}; {}",
                    ranges.len(),
                    page_size_out.map_or("-".to_string(), |p| p.to_string()),
                    ret.describe()
                );
                let op = Op::DmaLogStart(DmaStartArgs {
                    page_size: *page_size,
                    ranges: ranges.clone(),
                    count: None,
                });
                self.step(op, dev, true, note);
            }
            Feature::DmaLogStop => {
                self.uses.dma = true;
                self.step(Op::DmaLogStop, dev, true, format!("recorded ({w}): {}", ret.describe()));
            }
            Feature::DmaLogReport { iova, length, page_size } => {
                self.uses.dma = true;
                let op = Op::DmaLogReport(DmaReportArgs {
                    iova: *iova,
                    length: *length,
                    page_size: *page_size,
                    prefill: 0,
                });
                self.step(op, dev, true, format!("recorded ({w}): {}", ret.describe()));
            }
            Feature::PrecopyInfoV2 { .. } | Feature::Other { .. } => {
                if matches!(f, Feature::PrecopyInfoV2 { .. }) {
                    self.uses.precopy_v2 = true;
                }
                let mut ops = Vec::new();
                for (bit, op) in [
                    (uapi::FEATURE_GET, FeatureOp::Get),
                    (uapi::FEATURE_SET, FeatureOp::Set),
                    (uapi::FEATURE_PROBE, FeatureOp::Probe),
                ] {
                    if flags & bit != 0 {
                        ops.push(op);
                    }
                }
                let known = uapi::FEATURE_MASK | uapi::FEATURE_GET | uapi::FEATURE_SET | uapi::FEATURE_PROBE;
                let op = Op::Feature(FeatureArgs {
                    feature: (flags & uapi::FEATURE_MASK) as u16,
                    ops,
                    extra_flags: flags & !known,
                    argsz: Some(argsz),
                    payload: argsz.saturating_sub(uapi::FEATURE_HEADER).min(u32::from(u16::MAX)) as u16,
                });
                self.step(op, dev, true, format!("recorded ({w}): {}", ret.describe()));
            }
        }
    }

    /// Reads from index `i` on: returns the index after the events consumed.
    fn reads(&mut self, events: &[Event], i: usize) -> usize {
        let e = &events[i];
        let Kind::Read(t) = &e.kind else { return i + 1 };
        let Some(d) = self.fds.get(&(e.pid, t.fd)).cloned() else { return i + 1 };
        // The run of consecutive reads of this fd.
        let mut j = i;
        while j < events.len()
            && matches!(&events[j].kind, Kind::Read(x) if x.fd == t.fd && events[j].pid == e.pid)
        {
            j += 1;
        }
        let run: Vec<&Transfer> = events[i..j]
            .iter()
            .filter_map(|x| if let Kind::Read(t) = &x.kind { Some(t) } else { None })
            .collect();
        let eof_at = run.iter().position(|t| t.ret == Ret::Ok(0));
        let chunk = |count: u64| count.clamp(1, u64::from(u32::MAX)) as u32;
        let default_chunk = ReadArgs::default().chunk;
        let describe = |ts: &[&Transfer]| -> String {
            ts.iter()
                .map(|t| match t.ret {
                    Ret::Ok(n) => format!("{}({}) = {n}", t.call, t.count),
                    r => format!("{}({}) {}", t.call, t.count, r.describe()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut k = 0;
        let mut groups: Vec<(usize, usize, bool)> = Vec::new();
        // Only in STOP_COPY is a read() of 0 the end of the stream (in PRE_COPY it is a
        // temporary end, and QEMU reads once per iteration).
        let stop_copy = self.state.get(&t.dev) == Some(&MigState::StopCopy.raw());
        if let Some(eof) = eof_at.filter(|n| *n >= 1 && stop_copy) {
            // Reads up to and including the one that returned 0: one drain step.
            groups.push((0, eof + 1, true));
            k = eof + 1;
        }
        while k < run.len() {
            groups.push((k, k + 1, false));
            k += 1;
        }
        for (a, z, drain) in groups {
            let ts = &run[a..z];
            let moved: u64 =
                ts.iter().map(|t| if let Ret::Ok(n) = t.ret { n.max(0) as u64 } else { 0 }).sum();
            let c = chunk(ts[0].count);
            let args = ReadArgs {
                fd: FdRef::from(d.name.as_str()),
                chunk: if c == default_chunk { default_chunk } else { c },
                once: !drain,
                ..ReadArgs::default()
            };
            let note = format!("recorded ({}): {}", who(&events[i + a]), describe(ts));
            let dev = ts[0].dev.clone();
            let start = ts[0].pos;
            let st = self.step(Op::Read(args), &dev, true, note);
            st.read = Some(ReadSpan { stream: d.key, start, end: start + moved });
            if let Some((_, _, bytes)) = self.streams.get_mut(&d.key) {
                let kept_all = ts.iter().all(|t| t.bytes.is_some() || !t.ret.is_ok() || t.ret == Ret::Ok(0));
                match (bytes.as_mut(), kept_all) {
                    (Some(b), true) => {
                        for t in ts {
                            if let Some(x) = &t.bytes {
                                b.extend_from_slice(x);
                            }
                        }
                    }
                    _ => *bytes = None,
                }
            }
        }
        j
    }

    /// Writes from index `i` on (consecutive writes of one fd are one step).
    fn writes(&mut self, events: &[Event], i: usize) -> usize {
        let e = &events[i];
        let Kind::Write(t) = &e.kind else { return i + 1 };
        let Some(d) = self.fds.get(&(e.pid, t.fd)).cloned() else { return i + 1 };
        let mut j = i;
        while j < events.len()
            && matches!(&events[j].kind, Kind::Write(x) if x.fd == t.fd && events[j].pid == e.pid && x.ret.is_ok())
        {
            j += 1;
        }
        // A failed write ends the step (it is part of it: the replay stops at the error too).
        if j < events.len()
            && matches!(&events[j].kind, Kind::Write(x) if x.fd == t.fd && events[j].pid == e.pid)
        {
            j += 1;
        }
        let run: Vec<&Transfer> = events[i..j]
            .iter()
            .filter_map(|x| if let Kind::Write(t) = &x.kind { Some(t) } else { None })
            .collect();
        let mut bytes = Some(Vec::new());
        let mut sizes = Vec::new();
        for t in &run {
            let n = match t.ret {
                Ret::Ok(n) => n.max(0) as u64,
                Ret::Err(_) => t.count,
            };
            sizes.push(n.min(u64::from(u32::MAX)) as u32);
            match (&mut bytes, &t.bytes) {
                (Some(b), Some(x)) => b.extend_from_slice(x),
                _ => bytes = None,
            }
        }
        let note = format!(
            "recorded ({}): {}",
            who(e),
            run.iter()
                .map(|t| match t.ret {
                    Ret::Ok(n) => format!("{}({}) = {n}", t.call, t.count),
                    r => format!("{}({}) {}", t.call, t.count, r.describe()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let dev = t.dev.clone();
        let args = WriteArgs {
            fd: FdRef::from(d.name.as_str()),
            data: Source::Zeros(0),
            mutate: None,
            segment: Segmentation::default(),
            offset: None,
            keep_going: false,
            from_thread: false,
        };
        let st = self.step(Op::Write(args), &dev, true, note);
        st.write = Some(WriteSpan { bytes, sizes });
        j
    }

    fn set_irqs(&mut self, e: &Event, dev: &str, ret: Ret, s: &IrqSet, device_ops: DeviceOps) {
        if device_ops == DeviceOps::None {
            return;
        }
        let index = match s.index {
            0 => IrqIndex::Intx,
            1 => IrqIndex::Msi,
            2 => IrqIndex::Msix,
            3 => IrqIndex::Err,
            4 => IrqIndex::Req,
            n => {
                self.comment(format!(
                    "{dev}: SET_IRQS on index {n} {} (no such index in the op vocabulary)",
                    ret.describe()
                ));
                return;
            }
        };
        let action = if s.flags & IrqSet::ACTION_TRIGGER != 0 {
            IrqAction::Trigger
        } else if s.flags & IrqSet::ACTION_UNMASK != 0 {
            IrqAction::Unmask
        } else if s.flags & IrqSet::ACTION_MASK != 0 {
            IrqAction::Mask
        } else {
            self.comment(format!(
                "{dev}: SET_IRQS with flags {:#x} {} (no ACTION_* flag: not replayable)",
                s.flags,
                ret.describe()
            ));
            return;
        };
        let data = if s.flags & IrqSet::DATA_NONE != 0 {
            IrqData::None
        } else if s.flags & IrqSet::DATA_BOOL != 0 {
            IrqData::Bool(s.data.first().is_some_and(|v| *v != 0))
        } else if s.flags & IrqSet::DATA_EVENTFD != 0 {
            if s.count > 0 && s.data.iter().all(|fd| *fd < 0) {
                self.comment(format!(
                    "{dev}: SET_IRQS {index:?} start {} count {} with eventfd -1 (unassign) {} (not replayable: the op arms eventfds)",
                    s.start,
                    s.count,
                    ret.describe()
                ));
                return;
            }
            IrqData::Eventfd
        } else {
            self.comment(format!(
                "{dev}: SET_IRQS with flags {:#x} {} (no DATA_* flag: not replayable)",
                s.flags,
                ret.describe()
            ));
            return;
        };
        let note =
            format!("recorded ({}): flags {:#x} data {:?}; {}", who(e), s.flags, s.data, ret.describe());
        self.step(
            Op::SetIrqs(IrqArgs { index, action, start: s.start, count: s.count, data }),
            dev,
            false,
            note,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn region(
        &mut self,
        e: &Event,
        dev: &str,
        write: bool,
        region: u32,
        offset: u64,
        count: u64,
        ret: Ret,
        value: Option<u64>,
    ) {
        let what = if write { "pwrite" } else { "pread" };
        let Some(v) = value.filter(|_| matches!(count, 1 | 2 | 4 | 8)) else {
            self.comment(format!(
                "{dev}: {what} of {count} bytes at region {region} offset {offset:#x} {} (only 1/2/4/8-byte accesses are replayed)",
                ret.describe()
            ));
            return;
        };
        let note = format!("recorded ({}): {what} = {v:#x}, {}", who(e), ret.describe());
        let width = count as u8;
        let op = if region == uapi::PCI_CONFIG_REGION_INDEX && offset <= u64::from(u16::MAX) && count <= 4 {
            let a =
                ConfigArgs { offset: offset as u16, width, value: write.then_some(v as u32), save_as: None };
            if write { Op::ConfigWrite(a) } else { Op::ConfigRead(a) }
        } else {
            let r = match region {
                0 => RegionRef::Bar0,
                1 => RegionRef::Bar1,
                2 => RegionRef::Bar2,
                n => RegionRef::Index(n),
            };
            let a = RegionArgs {
                region: r,
                offset,
                width,
                value: write.then_some(v),
                via: vmc::op::Access::Rw,
                save_as: None,
            };
            if write { Op::RegionWrite(a) } else { Op::RegionRead(a) }
        };
        self.step(op, dev, false, note);
    }

    /// Matches writes to read steps and names the captures.
    ///
    /// QEMU forwards every byte it reads from a saving fd, in order, and each destination
    /// write carries what some source reads returned. So the read steps of a stream are cut
    /// into consecutive groups, each ending where a destination write's bytes end, and each
    /// group is one capture that the write replays. Empty reads (PRE_COPY iterations that
    /// found nothing) join the next group: on a device that has data there, the replay still
    /// forwards all of it, and the destination gets the whole stream.
    fn assign_captures(&mut self) {
        // Read steps per stream, in order: (item index, start, end).
        #[allow(clippy::type_complexity)]
        let mut reads: BTreeMap<(i32, i32, u64), Vec<(usize, u64, u64)>> = BTreeMap::new();
        for (ix, it) in self.items.iter().enumerate() {
            if let Item::Step(Step { read: Some(r), .. }) = it {
                reads.entry(r.stream).or_default().push((ix, r.start, r.end));
            }
        }
        // Per stream: how many of its read steps are already grouped, and the byte offset
        // they reach.
        let mut done: BTreeMap<(i32, i32, u64), (usize, u64)> = BTreeMap::new();
        // Capture of each read step: (name, append).
        let mut capture: HashMap<usize, (String, bool)> = HashMap::new();
        let mut named = 0usize;
        let n_items = self.items.len();
        for wi in 0..n_items {
            let Item::Step(Step { write: Some(w), dev, .. }) = &self.items[wi] else { continue };
            let wdev = dev.clone();
            let Some(wb) = w.bytes.clone() else { continue };
            let sizes = w.sizes.clone();
            let mut found: Option<(String, Option<Mutation>, String)> = None;
            if !wb.is_empty() {
                for (key, steps) in &reads {
                    let Some((sdev, _, Some(all))) = self.streams.get(key) else { continue };
                    let (first, from) = done.get(key).copied().unwrap_or((0, 0));
                    // Read steps before the write, not yet grouped.
                    let avail: Vec<&(usize, u64, u64)> =
                        steps[first..].iter().take_while(|x| x.0 < wi).collect();
                    let from_u = from as usize;
                    if from_u >= all.len() || avail.is_empty() {
                        continue;
                    }
                    let rest = &all[from_u..];
                    // The group ends at the first step whose end matches the write's length.
                    let mut m: Option<(usize, Option<Mutation>)> = None;
                    for (k, st) in avail.iter().enumerate() {
                        if st.1 == st.2 {
                            continue;
                        }
                        let len = (st.2 - from) as usize;
                        if len > rest.len() {
                            break;
                        }
                        let src = &rest[..len];
                        if src == wb.as_slice() {
                            m = Some((k, None));
                            break;
                        }
                        if src.len() == wb.len() {
                            if let Some((o, b)) = one_bit(src, &wb) {
                                m = Some((k, Some(Mutation::FlipBit { offset: o as u64, bit: b })));
                            }
                            break;
                        }
                    }
                    // A write that is a proper prefix of everything left is a cut stream.
                    if m.is_none() && wb.len() < rest.len() && rest.starts_with(&wb) {
                        let last = avail.iter().rposition(|x| x.1 != x.2).unwrap_or(avail.len() - 1);
                        if avail[last].2 as usize == all.len() {
                            m = Some((last, Some(Mutation::Truncate(wb.len() as u64))));
                        }
                    }
                    let Some((k, mutation)) = m else { continue };
                    named += 1;
                    let name = format!("{}{named}", sdev.to_lowercase());
                    for (j, st) in avail[..=k].iter().enumerate() {
                        capture.insert(st.0, (name.clone(), j > 0));
                    }
                    done.insert(*key, (first + k + 1, avail[k].2));
                    found = Some((name, mutation, sdev.clone()));
                    break;
                }
            }
            let Item::Step(st) = &mut self.items[wi] else { continue };
            let Op::Write(args) = &mut st.op else { continue };
            if sizes.len() > 1 {
                let head = &sizes[..sizes.len() - 1];
                args.segment = if head.iter().all(|s| *s == sizes[0]) && sizes[sizes.len() - 1] <= sizes[0] {
                    Segmentation::Fixed(sizes[0].max(1))
                } else {
                    Segmentation::Cycle(sizes.iter().map(|s| (*s).max(1)).collect())
                };
            }
            match found {
                Some((name, m, sdev)) => {
                    args.data = Source::Stream(StreamName(name));
                    args.mutate = m;
                    if sdev != wdev {
                        self.uses.cross_device = true;
                    }
                }
                None if wb.is_empty() => args.data = Source::Zeros(0),
                None => {
                    args.data = Source::Hex(super::event::hex(&wb));
                    st.note.push_str("; the bytes match no recorded read: written as literal bytes");
                }
            }
        }
        for (ix, (name, append)) in capture {
            if let Item::Step(Step { op: Op::Read(a), .. }) = &mut self.items[ix] {
                a.capture = Some(StreamName(name));
                a.append = append;
            }
        }
    }

    fn text(&self, h: &Header) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Recorded by `vfio-mig-conform record`: what a real VMM did to its VFIO devices, replayable with"
        );
        let _ = writeln!(
            out,
            "# vfio-mig-conform DEV{} --sequence THIS_FILE",
            self.labels.iter().skip(1).map(|_| " --peer DEVn").collect::<String>()
        );
        let _ = writeln!(
            out,
            "# (devices in label order: {}). Exact syscalls and results are in each step's note.",
            self.labels.join(", ")
        );
        let _ = writeln!(out, "id: {}", h.id);
        let _ = writeln!(out, "title: {}", quote(&h.title));
        let _ = writeln!(out, "models: {}", quote(&h.models));
        let _ = writeln!(
            out,
            "citation: {}",
            quote(&format!(
                "recorded with vfio-mig-conform record ({}, {}, kernel {}); see provenance",
                h.provenance.vmm.first().map_or("VMM", |v| v.version.as_str()),
                h.provenance.date,
                h.provenance.kernel.split_whitespace().next().unwrap_or("")
            ))
        );
        let mut flags = Vec::new();
        if self.uses.p2p {
            flags.push("p2p");
        }
        if self.uses.pre_copy {
            flags.push("pre_copy");
        }
        let mut req = vec!["api: v2".to_string()];
        if self.labels.len() > 1 {
            req.push(format!("devices: [{}]", self.labels.join(", ")));
        }
        if !flags.is_empty() {
            req.push(format!("flags: [{}]", flags.join(", ")));
        }
        let mut features = Vec::new();
        if self.uses.dma {
            features.push("dma-logging");
        }
        if self.uses.precopy_v2 {
            features.push("precopy-info-v2");
        }
        if !features.is_empty() {
            req.push(format!("features: [{}]", features.join(", ")));
        }
        if self.uses.cross_device {
            req.push("same_type: true".to_string());
        }
        let _ = writeln!(out, "requires: {{{}}}", req.join(", "));
        out.push_str("provenance:\n");
        let prov = serde_saphyr::to_string(&h.provenance).unwrap_or_default();
        for l in prov.lines() {
            let _ = writeln!(out, "  {l}");
        }
        out.push_str("steps:\n");
        let first = self.labels.first().cloned().unwrap_or_default();
        for it in &self.items {
            match it {
                Item::Comment(c) => {
                    for l in c.lines() {
                        let _ = writeln!(out, "  # {l}");
                    }
                }
                Item::Step(s) => {
                    let mut op = vmc::engine::render_op(&s.op);
                    if !op.contains(':') {
                        op.push(':');
                    }
                    let _ = writeln!(out, "  - {op}");
                    if s.dev != first {
                        let _ = writeln!(out, "    device: {}", s.dev);
                    }
                    if let Some(n) = &s.name_fd {
                        let _ = writeln!(out, "    as: {n}");
                    }
                    if s.oracle {
                        let _ = writeln!(out, "    expect: oracle");
                    }
                    let _ = writeln!(out, "    note: {}", quote(&s.note));
                }
            }
        }
        out
    }
}

/// The single bit by which `a` and `b` (same length) differ, if exactly one.
fn one_bit(a: &[u8], b: &[u8]) -> Option<(usize, u8)> {
    let mut found = None;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = x ^ y;
        if d == 0 {
            continue;
        }
        if found.is_some() || d.count_ones() != 1 {
            return None;
        }
        found = Some((i, d.trailing_zeros() as u8));
    }
    found
}

/// A YAML double-quoted scalar.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::event::{FNV_START, OpenPath, fnv1a};

    struct Rec {
        events: Vec<Event>,
    }

    impl Rec {
        fn new() -> Rec {
            Rec { events: Vec::new() }
        }

        fn push(&mut self, pid: i32, kind: Kind) {
            let seq = self.events.len() as u64;
            self.events.push(Event { seq, t_us: seq, pid, tid: pid, thread: "qemu".into(), kind });
        }

        fn open(&mut self, pid: i32, dev: &str, fd: i32) {
            self.push(
                pid,
                Kind::DeviceOpen {
                    dev: dev.into(),
                    name: format!("dev-{dev}"),
                    path: "/dev/vfio/0".into(),
                    via: OpenPath::Group,
                    fd,
                },
            );
        }

        fn set(&mut self, pid: i32, dev: &str, state: MigState, data_fd: i32) {
            let feature = Feature::SetState { state: state.raw(), data_fd };
            self.push(
                pid,
                Kind::Feature {
                    dev: dev.into(),
                    ret: Ret::Ok(0),
                    flags: uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE,
                    argsz: 16,
                    feature,
                },
            );
        }

        #[allow(clippy::too_many_arguments)]
        fn xfer(&mut self, pid: i32, dev: &str, fd: i32, write: bool, pos: u64, bytes: &[u8], ret: Ret) {
            let t = Transfer {
                dev: dev.into(),
                fd,
                call: if write { "write" } else { "read" },
                count: 96,
                ret,
                pos,
                hex: None,
                hash: format!("{:016x}", fnv1a(FNV_START, bytes)),
                bytes: Some(bytes.to_vec()),
            };
            self.push(pid, if write { Kind::Write(t) } else { Kind::Read(t) });
        }

        fn yaml(&self) -> String {
            let h = Header {
                id: "rec.test.seq".into(),
                title: "t".into(),
                models: "m".into(),
                provenance: Provenance::default(),
            };
            let text = render(&self.events, &h, DeviceOps::All);
            // Every rendering must load as a fixture.
            if let Err(e) = vmc::sequence::load_str("t.yaml", text.as_bytes()) {
                panic!("{e}\n{text}");
            }
            text
        }
    }

    fn stream() -> Vec<u8> {
        (0u8..96).collect()
    }

    /// A source (pid 1, device A) saving with pre-copy and a destination (pid 2, device B).
    fn migration(dst_writes: &[(&[u8], Ret)]) -> Rec {
        let s = stream();
        let mut r = Rec::new();
        r.open(1, "A", 10);
        r.open(2, "B", 11);
        r.set(1, "A", MigState::PreCopy, 20);
        r.set(2, "B", MigState::Resuming, 21);
        r.xfer(1, "A", 20, false, 0, &s[..24], Ret::Ok(24));
        r.xfer(1, "A", 20, false, 24, &[], Ret::Ok(0));
        r.set(1, "A", MigState::StopCopy, -1);
        r.xfer(1, "A", 20, false, 24, &s[24..], Ret::Ok(72));
        r.xfer(1, "A", 20, false, 96, &[], Ret::Ok(0));
        for (b, ret) in dst_writes {
            r.xfer(2, "B", 21, true, 0, b, *ret);
        }
        r
    }

    #[test]
    fn a_destination_writing_what_the_source_read_replays_the_captures() {
        let s = stream();
        let y = migration(&[(&s[..24], Ret::Ok(24)), (&s[24..], Ret::Ok(72))]).yaml();
        // PRE_COPY: one step per read (an empty read is no end of stream there); STOP_COPY:
        // the reads up to end of stream are one drain step.
        assert!(y.contains("read: {capture: a1, chunk: 96, fd: save, once: true}"), "{y}");
        assert!(y.contains("read: {append: true, capture: a1, chunk: 96, fd: save, once: true}"), "{y}");
        assert!(y.contains("read: {append: true, capture: a1, chunk: 96, fd: save}"), "{y}");
        assert_eq!(y.matches("capture: a1").count(), 3, "{y}");
        // The destination's two consecutive writes are one step replaying that capture, cut
        // as QEMU cut it.
        assert!(y.contains("write: {data: {stream: a1}, fd: load, segment: {cycle: [24, 72]}}"), "{y}");
        assert!(
            y.contains("requires: {api: v2, devices: [A, B], flags: [pre_copy], same_type: true}"),
            "{y}"
        );
        // Separate writes (something in between) replay separate captures.
        let mut r = migration(&[(&s[..24], Ret::Ok(24))]);
        r.set(1, "A", MigState::Stop, -1);
        r.xfer(2, "B", 21, true, 24, &s[24..], Ret::Ok(72));
        let y = r.yaml();
        assert!(y.contains("write: {data: {stream: a1}, fd: load}"), "{y}");
        assert!(y.contains("write: {data: {stream: a2}, fd: load}"), "{y}");
        // The empty PRE_COPY read joins the next group: a device with data there forwards it.
        assert!(y.contains("read: {capture: a2, chunk: 96, fd: save, once: true}"), "{y}");
        assert!(y.contains("read: {append: true, capture: a2, chunk: 96, fd: save}"), "{y}");
    }

    #[test]
    fn a_cut_stream_becomes_a_truncation_and_a_flipped_bit_a_flip() {
        let s = stream();
        let y = migration(&[(&s[..24], Ret::Ok(24))]).yaml();
        assert!(y.contains("write: {data: {stream: a1}, fd: load}"), "{y}");
        let mut r = Rec::new();
        r.open(1, "A", 10);
        r.set(1, "A", MigState::StopCopy, 20);
        r.xfer(1, "A", 20, false, 0, &s, Ret::Ok(96));
        r.xfer(1, "A", 20, false, 96, &[], Ret::Ok(0));
        r.open(2, "B", 11);
        r.set(2, "B", MigState::Resuming, 21);
        r.xfer(2, "B", 21, true, 0, &s[..34], Ret::Ok(34));
        let y = r.yaml();
        assert!(y.contains("mutate: {truncate: 34}"), "{y}");
        let mut flipped = s.clone();
        flipped[40] ^= 0x04;
        let n = r.events.len();
        r.events.truncate(n - 1);
        r.xfer(2, "B", 21, true, 0, &flipped, Ret::Ok(96));
        let y = r.yaml();
        assert!(y.contains("flip_bit: {bit: 2, offset: 40}"), "{y}");
        // Bytes that are no part of any saved stream are literal.
        r.events.truncate(n - 1);
        r.xfer(2, "B", 21, true, 0, &[0xde, 0xad], Ret::Err(libc::EFAULT));
        let y = r.yaml();
        assert!(y.contains("data: {hex: dead}"), "{y}");
        assert!(y.contains("failed with EFAULT"), "{y}");
    }
}
