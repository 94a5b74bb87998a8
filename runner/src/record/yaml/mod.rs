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

mod streams;
mod translate;

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
