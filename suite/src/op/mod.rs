//! The operation vocabulary: everything the suite can do to a device, as one closed enum.
//!
//! The same type is a YAML sequence step (serde, `- set_state: STOP_COPY`), a fuzz input
//! (`Arbitrary`) and a reproducer, so a fuzz finding prints as a replayable YAML sequence.
//! Operations are deliberately able to be malformed: raw state values, any argsz and flags,
//! stale or wrong-direction data fds.

pub mod render;

use std::fmt;

use arbitrary::{Arbitrary, Unstructured};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::StateArg;

/// A reference to a data fd the engine holds.
///
/// `current` is the fd returned by the most recent SET that returned one, `previous` the one
/// before it; any other name is a label given with the step's `as:` key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum FdRef {
    #[default]
    Current,
    Previous,
    Named(String),
}

impl FdRef {
    pub fn as_str(&self) -> &str {
        match self {
            FdRef::Current => "current",
            FdRef::Previous => "previous",
            FdRef::Named(n) => n,
        }
    }

    pub fn is_current(&self) -> bool {
        *self == FdRef::Current
    }
}

impl From<&str> for FdRef {
    fn from(s: &str) -> Self {
        match s {
            "current" => FdRef::Current,
            "previous" => FdRef::Previous,
            other => FdRef::Named(other.to_string()),
        }
    }
}

impl fmt::Display for FdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FdRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FdRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(FdRef::from(s.as_str()))
    }
}

impl<'a> Arbitrary<'a> for FdRef {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=5)? {
            0..=3 => FdRef::Current,
            4 => FdRef::Previous,
            _ => FdRef::Named("stale".to_string()),
        })
    }
}

/// A name of a captured stream. Fuzz inputs pick from a small fixed set so captures and
/// replays meet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamName(pub String);

impl<'a> Arbitrary<'a> for StreamName {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(StreamName((*u.choose(&["s0", "s1"])?).to_string()))
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a read loop on a data fd runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(default, deny_unknown_fields)]
pub struct ReadArgs {
    pub fd: FdRef,
    /// Stop after this many bytes (none: read until end of stream or an error).
    pub max: Option<u64>,
    /// Size of each read() call.
    pub chunk: u32,
    /// Issue exactly one read() call.
    pub once: bool,
    /// Read at this offset with pread() (data fds are streams: expect ESPIPE).
    pub offset: Option<u64>,
    /// Keep the bytes (streamed and hashed; only the first `--max-stream` bytes) under this
    /// name for later replay.
    pub capture: Option<StreamName>,
    /// Append to an existing capture instead of starting a new one (pre-copy + stop-copy).
    pub append: bool,
}

impl Default for ReadArgs {
    fn default() -> Self {
        ReadArgs {
            fd: FdRef::Current,
            max: None,
            chunk: 1 << 20,
            once: false,
            offset: None,
            capture: None,
            append: false,
        }
    }
}

/// What to write to a resuming data fd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A captured stream.
    Stream(StreamName),
    /// `n` zero bytes.
    Zeros(u32),
    /// Bytes given in hex.
    Hex(String),
}

/// A deliberate change to a captured stream before it is replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mutation {
    /// Keep only the first `n` bytes.
    Truncate(u64),
    /// Drop the last `n` bytes.
    DropTail(u64),
    /// Flip bit `bit` (0-7) of byte `offset` (offset wraps modulo the stream length).
    FlipBit { offset: u64, bit: u8 },
    /// Keep the first `num/den` of the stream (device-independent truncation).
    Fraction { num: u32, den: u32 },
    /// Flip bit `bit` of the byte at `num/den` of the stream.
    FlipAt { num: u32, den: u32, bit: u8 },
    /// The first `at` bytes of this stream followed by the bytes of `other` from `at` on.
    Splice { other: StreamName, at: u64 },
    /// The same with the splice point at `num/den` of this stream.
    SpliceAt { other: StreamName, num: u32, den: u32 },
    /// Write nothing at all.
    Empty,
}

/// `num/den` of `len`, rounded down (a `den` of 0 counts as 1).
pub fn fraction_of(len: u64, num: u32, den: u32) -> u64 {
    len.saturating_mul(u64::from(num)) / u64::from(den.max(1))
}

impl Mutation {
    /// For the mutations that keep a prefix of the stream unchanged (the truncations, and
    /// `Empty` as a prefix of 0 bytes): how many bytes of a `len`-byte stream they keep.
    pub fn kept_prefix(&self, len: u64) -> Option<u64> {
        match self {
            Mutation::Truncate(n) => Some((*n).min(len)),
            Mutation::DropTail(n) => Some(len.saturating_sub(*n)),
            Mutation::Fraction { num, den } => Some(fraction_of(len, *num, *den).min(len)),
            Mutation::Empty => Some(0),
            _ => None,
        }
    }
}

/// How a stream is cut into write() calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Segmentation {
    /// One write() for everything (as large as the stream).
    Whole,
    /// Fixed-size writes.
    Fixed(u32),
    /// Writes cycling through these sizes (primes, page +- 1, ...).
    Cycle(Vec<u32>),
    /// Pseudo-random sizes between 1 and `max` from `seed`.
    Random { seed: u64, max: u32 },
    /// Writes cycling through `sizes` for the first `head` bytes, then large writes (keeps
    /// tiny segmentations affordable on multi-GiB streams).
    Head { sizes: Vec<u32>, head: u64 },
}

impl Default for Segmentation {
    fn default() -> Self {
        Segmentation::Fixed(1 << 20)
    }
}

/// Writing to a data fd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    #[serde(default)]
    pub fd: FdRef,
    pub data: Source,
    #[serde(default)]
    pub mutate: Option<Mutation>,
    #[serde(default)]
    pub segment: Segmentation,
    /// Write at this offset with pwrite() (expect ESPIPE).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Go on writing after a failed write() (the default stops at the first error).
    #[serde(default)]
    pub keep_going: bool,
    /// Issue the writes from another thread (QEMU 10 multifd load thread).
    #[serde(default)]
    pub from_thread: bool,
}

/// Which data-fd call a [`BadBufferArgs`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum BadCall {
    /// read() into the buffer.
    Read,
    /// write() from the buffer.
    Write,
    /// `VFIO_MIG_GET_PRECOPY_INFO` with the buffer as its argument.
    PrecopyInfo,
}

/// A data-fd call with a user buffer the kernel cannot use entirely: `len` bytes at an address
/// where only the first `valid` bytes are mapped (0: none is), the rest an inaccessible page.
/// The kernel must fail with EFAULT or move at most the mapped bytes (a bad pointer is the
/// caller's error, never the driver's crash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct BadBufferArgs {
    #[serde(default)]
    pub fd: FdRef,
    pub call: BadCall,
    pub len: u32,
    #[serde(default)]
    pub valid: u32,
}

/// SET MIG_DEVICE_STATE to `state` while a second thread reads data fd `fd` (QEMU's
/// migration thread reading the stream while the main loop changes the state): the reader
/// starts first, the SET follows after `delay_us` microseconds. The uAPI does not say what the
/// read sees, so the step is not judged; the oracle forgets the device state and its data
/// fds (the next GET tells it again). A kernel report in the step is still a finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct RaceArgs {
    pub state: StateArg,
    #[serde(default)]
    pub fd: FdRef,
    #[serde(default)]
    pub delay_us: u16,
}

/// `race_reset`: a SET to `state` from this thread while a second thread issues
/// `VFIO_DEVICE_RESET` (a guest's function reset arriving while the VMM changes the migration
/// state). The resets start `delay_us` after the SET and repeat until it returns (at most
/// [`RACE_RESETS_MAX`](crate::device::RACE_RESETS_MAX)), so one of them can find the
/// driver inside its state change: a driver that defers a reset its state lock blocks
/// (mtty, mlx5, hisi_acc, ...) then runs that deferred path. The uAPI says a reset returns
/// the device to RUNNING but not how it orders with a concurrent SET, so the step is not
/// judged; the oracle forgets the state and the data fds. A kernel report in it is a finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct RaceResetArgs {
    pub state: StateArg,
    #[serde(default)]
    pub delay_us: u16,
}

/// `VFIO_MIG_GET_PRECOPY_INFO` on a data fd, with any argsz and flags.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, Arbitrary)]
#[serde(default, deny_unknown_fields)]
pub struct PrecopyArgs {
    pub fd: FdRef,
    /// Default: `sizeof(struct vfio_precopy_info)` (24).
    pub argsz: Option<u32>,
    pub flags: u32,
}

/// A raw `VFIO_DEVICE_FEATURE` call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct FeatureArgs {
    /// Feature index (low 16 bits).
    pub feature: u16,
    /// Any of GET, SET, PROBE (names) plus raw extra bits.
    #[serde(default)]
    pub ops: Vec<FeatureOp>,
    #[serde(default)]
    pub extra_flags: u32,
    /// Total argsz (default: header + payload).
    #[serde(default)]
    pub argsz: Option<u32>,
    /// Payload bytes after the header (zero-filled).
    #[serde(default)]
    pub payload: u16,
}

impl FeatureArgs {
    /// The `flags` word: feature index, operation bits and the raw extra bits.
    pub fn flags(&self) -> u32 {
        let mut flags = u32::from(self.feature) | self.extra_flags;
        for op in &self.ops {
            flags |= match op {
                FeatureOp::Get => crate::uapi::FEATURE_GET,
                FeatureOp::Set => crate::uapi::FEATURE_SET,
                FeatureOp::Probe => crate::uapi::FEATURE_PROBE,
            };
        }
        flags
    }

    /// The `argsz` passed: as given, or header plus payload.
    pub fn argsz(&self) -> u32 {
        self.argsz.unwrap_or(crate::uapi::FEATURE_HEADER + u32::from(self.payload))
    }
}

/// GET / SET / PROBE bits of `VFIO_DEVICE_FEATURE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeatureOp {
    Get,
    Set,
    Probe,
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct DmaStartArgs {
    #[serde(default = "default_page")]
    pub page_size: u64,
    /// Explicit (iova, length) ranges.
    #[serde(default)]
    pub ranges: Vec<(u64, u64)>,
    /// Or this many ranges of one page each, two pages apart, from iova 0.
    #[serde(default)]
    pub count: Option<u32>,
}

fn default_page() -> u64 {
    4096
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct DmaReportArgs {
    #[serde(default)]
    pub iova: u64,
    #[serde(default = "default_report_len")]
    pub length: u64,
    #[serde(default = "default_page")]
    pub page_size: u64,
    /// Byte the user bitmap is filled with before the call (V2-LOG-008).
    #[serde(default)]
    pub prefill: u8,
}

fn default_report_len() -> u64 {
    1 << 20
}

/// Which region an access targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum RegionRef {
    Bar0,
    Bar1,
    Bar2,
    Config,
    /// The v1 migration region (type 3, subtype 1).
    Migration,
    /// A raw region index.
    Index(u32),
}

/// How a region is accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// pread()/pwrite() on the device fd.
    #[default]
    Rw,
    /// Through an mmap of a sparse-mmap area.
    Mmap,
}

/// A region read or write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct RegionArgs {
    pub region: RegionRef,
    pub offset: u64,
    /// Access width in bytes (1, 2, 4, 8) for a value access.
    #[serde(default = "default_width")]
    pub width: u8,
    /// Value to write (little endian, `width` bytes).
    #[serde(default)]
    pub value: Option<u64>,
    #[serde(default)]
    pub via: Access,
    /// Keep the value read under this name (for `equals_value`).
    #[serde(default)]
    pub save_as: Option<String>,
}

fn default_width() -> u8 {
    4
}

/// A config-space access (region `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct ConfigArgs {
    pub offset: u16,
    #[serde(default = "default_width")]
    pub width: u8,
    #[serde(default)]
    pub value: Option<u32>,
    #[serde(default)]
    pub save_as: Option<String>,
}

/// IRQ index (VFIO_PCI_*_IRQ_INDEX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum IrqIndex {
    Intx,
    Msi,
    Msix,
    Err,
    Req,
}

impl IrqIndex {
    pub fn raw(self) -> u32 {
        match self {
            IrqIndex::Intx => 0,
            IrqIndex::Msi => 1,
            IrqIndex::Msix => 2,
            IrqIndex::Err => 3,
            IrqIndex::Req => 4,
        }
    }
}

/// `VFIO_DEVICE_SET_IRQS`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct IrqArgs {
    pub index: IrqIndex,
    #[serde(default)]
    pub action: IrqAction,
    #[serde(default)]
    pub start: u32,
    /// Number of vectors (0 with `data: none` disables the index).
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub data: IrqData,
}

fn one() -> u32 {
    1
}

/// `VFIO_IRQ_SET_ACTION_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum IrqAction {
    Mask,
    Unmask,
    #[default]
    Trigger,
}

/// `VFIO_IRQ_SET_DATA_*`: eventfds are created and counted by the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum IrqData {
    None,
    Bool(bool),
    #[default]
    Eventfd,
}

/// A v1 header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum V1Field {
    DeviceState,
    Reserved,
    PendingBytes,
    DataOffset,
    DataSize,
}

impl V1Field {
    pub fn offset_width(self) -> (u64, u8) {
        match self {
            V1Field::DeviceState => (0, 4),
            V1Field::Reserved => (4, 4),
            V1Field::PendingBytes => (8, 8),
            V1Field::DataOffset => (16, 8),
            V1Field::DataSize => (24, 8),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            V1Field::DeviceState => "device_state",
            V1Field::Reserved => "reserved",
            V1Field::PendingBytes => "pending_bytes",
            V1Field::DataOffset => "data_offset",
            V1Field::DataSize => "data_size",
        }
    }
}

/// A v1 header access; `width`/`misalign` make it deliberately malformed (V1-REG-003).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct V1FieldArgs {
    pub field: V1Field,
    #[serde(default)]
    pub value: Option<u64>,
    /// Override the natural width.
    #[serde(default)]
    pub width: Option<u8>,
    /// Add this many bytes to the natural offset.
    #[serde(default)]
    pub misalign: u8,
}

/// The v1 save loop (pending_bytes -> data_offset -> data_size -> data), judged access by
/// access by the v1 protocol oracle.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, Arbitrary)]
#[serde(default, deny_unknown_fields)]
pub struct V1SaveArgs {
    pub capture: Option<StreamName>,
    pub append: bool,
    pub via: Access,
    /// Iteration cap (V1-SAVE-008); default 100000.
    pub max_iterations: Option<u32>,
    /// Only one iteration (a pre-copy step).
    pub once: bool,
    /// Read pending_bytes this many extra times before each iteration (V1-SAVE-001).
    pub extra_pending_reads: u8,
}

/// The v1 resume loop (data_offset -> data -> data_size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct V1ResumeArgs {
    pub data: Source,
    #[serde(default)]
    pub mutate: Option<Mutation>,
    #[serde(default)]
    pub via: Access,
    /// Scribble over the data window after each data_size write (V1-RES-002).
    #[serde(default)]
    pub scribble: bool,
}

/// One operation on a device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    // ---- v2 migration features ----
    /// SET `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`; a returned data fd becomes `current`.
    SetState(StateArg),
    /// GET `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`.
    GetState,
    /// GET `VFIO_DEVICE_FEATURE_MIGRATION` (the flags).
    GetFlags,
    /// GET `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`.
    DataSize,
    /// A raw `VFIO_DEVICE_FEATURE` call with any flags and argsz.
    Feature(FeatureArgs),
    /// DMA logging.
    DmaLogStart(DmaStartArgs),
    DmaLogStop,
    DmaLogReport(DmaReportArgs),
    // ---- data fds ----
    Read(ReadArgs),
    Write(WriteArgs),
    PrecopyInfo(PrecopyArgs),
    /// A read, write or PRECOPY_INFO with a buffer that is not (entirely) mapped.
    BadBuffer(BadBufferArgs),
    /// A SET from this thread while another thread reads the data fd.
    RaceSetRead(RaceArgs),
    /// A SET from this thread while another thread resets the device.
    RaceReset(RaceResetArgs),
    /// poll() for POLLIN (saving) or POLLOUT (resuming) with a timeout in ms.
    Poll {
        #[serde(default)]
        fd: FdRef,
        #[serde(default)]
        timeout_ms: u16,
    },
    /// fcntl(F_GETFD/F_GETFL): close-on-exec and access mode.
    FdFlags {
        #[serde(default)]
        fd: FdRef,
    },
    CloseFd {
        #[serde(default)]
        fd: FdRef,
    },
    // ---- device ----
    /// `VFIO_DEVICE_RESET`.
    Reset,
    /// Close the device fd (data fds stay open in the suite).
    CloseDevice,
    /// Open the device again after `close_device`.
    Reopen,
    ConfigRead(ConfigArgs),
    ConfigWrite(ConfigArgs),
    RegionRead(RegionArgs),
    RegionWrite(RegionArgs),
    SetIrqs(IrqArgs),
    /// Remember every interrupt counter under a name (for `irqs_since`).
    IrqMark(String),
    /// Let time pass (sim: logical ticks; kernel: sleep).
    Wait {
        ms: u16,
    },
    /// Read the debugfs state file (6.8+), an independent observer of the FSM state.
    DebugfsState,
    // ---- v1 region ----
    V1Read(V1FieldArgs),
    V1Write(V1FieldArgs),
    /// Read-modify-write of device_state as QEMU does: `(old & ~7) | value`.
    V1SetState(u32),
    V1Save(V1SaveArgs),
    V1Resume(V1ResumeArgs),
}

impl Op {
    /// The YAML key of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Op::SetState(_) => "set_state",
            Op::GetState => "get_state",
            Op::GetFlags => "get_flags",
            Op::DataSize => "data_size",
            Op::Feature(_) => "feature",
            Op::DmaLogStart(_) => "dma_log_start",
            Op::DmaLogStop => "dma_log_stop",
            Op::DmaLogReport(_) => "dma_log_report",
            Op::Read(_) => "read",
            Op::Write(_) => "write",
            Op::PrecopyInfo(_) => "precopy_info",
            Op::BadBuffer(_) => "bad_buffer",
            Op::RaceSetRead(_) => "race_set_read",
            Op::RaceReset(_) => "race_reset",
            Op::Poll { .. } => "poll",
            Op::FdFlags { .. } => "fd_flags",
            Op::CloseFd { .. } => "close_fd",
            Op::Reset => "reset",
            Op::CloseDevice => "close_device",
            Op::Reopen => "reopen",
            Op::ConfigRead(_) => "config_read",
            Op::ConfigWrite(_) => "config_write",
            Op::RegionRead(_) => "region_read",
            Op::RegionWrite(_) => "region_write",
            Op::SetIrqs(_) => "set_irqs",
            Op::IrqMark(_) => "irq_mark",
            Op::Wait { .. } => "wait",
            Op::DebugfsState => "debugfs_state",
            Op::V1Read(_) => "v1_read",
            Op::V1Write(_) => "v1_write",
            Op::V1SetState(_) => "v1_set_state",
            Op::V1Save(_) => "v1_save",
            Op::V1Resume(_) => "v1_resume",
        }
    }

    /// Every YAML key, for the loader's "unknown step" message.
    pub const NAMES: &'static [&'static str] = &[
        "set_state",
        "get_state",
        "get_flags",
        "data_size",
        "feature",
        "dma_log_start",
        "dma_log_stop",
        "dma_log_report",
        "read",
        "write",
        "precopy_info",
        "bad_buffer",
        "race_set_read",
        "race_reset",
        "poll",
        "fd_flags",
        "close_fd",
        "reset",
        "close_device",
        "reopen",
        "config_read",
        "config_write",
        "region_read",
        "region_write",
        "set_irqs",
        "irq_mark",
        "wait",
        "debugfs_state",
        "v1_read",
        "v1_write",
        "v1_set_state",
        "v1_save",
        "v1_resume",
    ];

    /// Whether the operation may hurt a real host when fuzzed (MMIO with random values,
    /// large DMA-logging ranges): live fuzzing needs `--allow-disruptive` for these.
    pub fn is_disruptive(&self) -> bool {
        match self {
            Op::RegionWrite(_) | Op::Feature(_) => true,
            Op::DmaLogStart(a) => a.count.unwrap_or(0) > 16 || a.ranges.len() > 16,
            Op::DmaLogReport(a) => a.length > (1 << 30),
            _ => false,
        }
    }

    /// Whether the operation only applies to v1 (region) devices.
    pub fn is_v1(&self) -> bool {
        matches!(self, Op::V1Read(_) | Op::V1Write(_) | Op::V1SetState(_) | Op::V1Save(_) | Op::V1Resume(_))
    }
}

/// Bounds on the sizes and counts a sequence may give (checked when it is loaded, so bad input
/// is a located error instead of a 64 GiB allocation or a silent clamp at run time).
///
/// Where the uAPI itself carries any value of its field (a `__u32 argsz`, a `__u64 page_size`
/// hint), any value is accepted: sending it is the test. The bounds are where the suite must
/// build what the value describes (ranges, a bitmap, a buffer) or where it would otherwise
/// change the value silently.
pub mod limits {
    /// Ranges `dma_log_start` may build (`count`, or `ranges` given one by one). The kernel
    /// takes 1 to `LOG_MAX_RANGES` (PAGE_SIZE / 16: 256 with 4 KiB pages, 4096 with 64 KiB;
    /// include/uapi/linux/vfio.h, drivers/vfio/vfio_main.c 6.12 l.1049-1087) and refuses more
    /// with E2BIG before it reads them: 16 x 4096 covers that test on any page size.
    pub const DMA_RANGES: u64 = 16 * 4096;
    /// Largest DMA_LOGGING_REPORT bitmap the suite allocates (bytes).
    pub const DMA_BITMAP: u64 = 16 << 20;
    /// Largest `read` chunk: the engine's read buffer (bytes per read() call).
    pub const READ_CHUNK: u64 = 1 << 20;
    /// Largest single write, `zeros` source and segment size (the engine's `MAX_WRITE`).
    pub const WRITE: u64 = 64 << 20;
    /// Largest `argsz` of a raw `feature` call: the suite passes a buffer of argsz bytes
    /// (the kernel reads only the feature's own structure from it).
    pub const FEATURE_ARGSZ: u64 = 1 << 20;
}

/// `field: value is out of range lo to hi (why)`.
fn out_of_range(field: &str, value: u64, lo: u64, hi: u64, why: &str) -> String {
    format!("{field}: {value} is out of range {lo} to {hi} ({why})")
}

fn in_range(field: &str, value: u64, lo: u64, hi: u64, why: &str) -> Result<(), String> {
    if (lo..=hi).contains(&value) { Ok(()) } else { Err(out_of_range(field, value, lo, hi, why)) }
}

impl Mutation {
    fn check_limits(&self, op: &str) -> Result<(), String> {
        match self {
            Mutation::FlipBit { bit, .. } | Mutation::FlipAt { bit, .. } => {
                in_range(&format!("{op}.mutate.bit"), u64::from(*bit), 0, 7, "a bit of one byte")?;
            }
            _ => {}
        }
        match self {
            Mutation::Fraction { den, .. }
            | Mutation::FlipAt { den, .. }
            | Mutation::SpliceAt { den, .. } => in_range(
                &format!("{op}.mutate.den"),
                u64::from(*den),
                1,
                u64::from(u32::MAX),
                "the denominator of num/den",
            ),
            _ => Ok(()),
        }
    }
}

impl Segmentation {
    fn check_limits(&self) -> Result<(), String> {
        let size = |field: &str, n: u32| {
            in_range(
                field,
                u64::from(n),
                1,
                limits::WRITE,
                "bytes per write() call; 0 would write nothing forever",
            )
        };
        match self {
            Segmentation::Whole => Ok(()),
            Segmentation::Fixed(n) => size("write.segment.fixed", *n),
            Segmentation::Random { max, .. } => size("write.segment.random.max", *max),
            Segmentation::Cycle(v) | Segmentation::Head { sizes: v, .. } => {
                let field = if matches!(self, Segmentation::Cycle(_)) {
                    "write.segment.cycle"
                } else {
                    "write.segment.head.sizes"
                };
                if v.is_empty() {
                    return Err(format!("{field}: the list of sizes is empty (give at least one size)"));
                }
                v.iter().try_for_each(|n| size(field, *n))
            }
        }
    }
}

fn check_source(op: &str, s: &Source) -> Result<(), String> {
    match s {
        Source::Zeros(n) => in_range(
            &format!("{op}.data.zeros"),
            u64::from(*n),
            0,
            limits::WRITE,
            "bytes the suite builds and writes",
        ),
        _ => Ok(()),
    }
}

impl Op {
    /// Checks the sizes and counts of the operation against [`limits`]: the message names
    /// the field (`op.field`) and the range it takes.
    pub fn check_limits(&self) -> Result<(), String> {
        match self {
            Op::DmaLogStart(a) => {
                let why = "the kernel takes 1 to LOG_MAX_RANGES (PAGE_SIZE/16: 256 with 4 KiB pages) \
                           and refuses more with E2BIG";
                if let Some(n) = a.count {
                    in_range("dma_log_start.count", u64::from(n), 0, limits::DMA_RANGES, why)?;
                    if !a.ranges.is_empty() {
                        return Err("dma_log_start: give `count` or `ranges`, not both".to_string());
                    }
                }
                let n = a.ranges.len() as u64;
                if n > limits::DMA_RANGES {
                    return Err(format!(
                        "dma_log_start.ranges: {n} ranges is out of range 0 to {} ({why})",
                        limits::DMA_RANGES
                    ));
                }
                Ok(())
            }
            Op::DmaLogReport(a) if a.page_size > 0 => {
                let bytes = a.length.div_ceil(a.page_size).div_ceil(64).saturating_mul(8);
                if bytes > limits::DMA_BITMAP {
                    let max_len = (limits::DMA_BITMAP * 8).saturating_mul(a.page_size);
                    return Err(format!(
                        "dma_log_report.length: {} at page_size {} needs a {bytes}-byte bitmap; the suite \
                         allocates at most {} bytes (16 MiB): length is out of range 0 to {max_len} at this page size",
                        a.length,
                        a.page_size,
                        limits::DMA_BITMAP
                    ));
                }
                Ok(())
            }
            Op::Read(a) => {
                in_range("read.chunk", u64::from(a.chunk), 1, limits::READ_CHUNK, "bytes per read() call")?;
                match a.max {
                    Some(0) => Err(out_of_range(
                        "read.max",
                        0,
                        1,
                        u64::MAX,
                        "a read of at most 0 bytes reads nothing",
                    )),
                    _ => Ok(()),
                }
            }
            Op::Write(a) => {
                check_source("write", &a.data)?;
                if let Some(m) = &a.mutate {
                    m.check_limits("write")?;
                }
                a.segment.check_limits()
            }
            Op::V1Resume(a) => {
                check_source("v1_resume", &a.data)?;
                match &a.mutate {
                    Some(m) => m.check_limits("v1_resume"),
                    None => Ok(()),
                }
            }
            Op::Feature(a) => match a.argsz {
                Some(n) => in_range(
                    "feature.argsz",
                    u64::from(n),
                    0,
                    limits::FEATURE_ARGSZ,
                    "the suite passes a buffer of argsz bytes; the kernel reads only the feature's structure",
                ),
                None => Ok(()),
            },
            Op::ConfigRead(a) | Op::ConfigWrite(a) => {
                in_range(&format!("{}.width", self.name()), u64::from(a.width), 1, 8, "bytes per access")?;
                if matches!(self, Op::ConfigWrite(_)) && a.value.is_none() {
                    return Err("config_write needs `value`".to_string());
                }
                Ok(())
            }
            Op::RegionRead(a) | Op::RegionWrite(a) => {
                in_range(&format!("{}.width", self.name()), u64::from(a.width), 1, 8, "bytes per access")?;
                if matches!(self, Op::RegionWrite(_)) && a.value.is_none() {
                    return Err("region_write needs `value`".to_string());
                }
                Ok(())
            }
            Op::V1Read(a) | Op::V1Write(a) => {
                if let Some(w) = a.width {
                    in_range(&format!("{}.width", self.name()), u64::from(w), 1, 8, "bytes per access")?;
                }
                if matches!(self, Op::V1Write(_)) && a.value.is_none() {
                    return Err("v1_write needs `value`".to_string());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MigState;

    #[test]
    fn every_variant_name_is_listed_for_error_messages() {
        let ops = [
            Op::SetState(StateArg::Named(MigState::Stop)),
            Op::GetState,
            Op::Reset,
            Op::V1SetState(1),
            Op::Wait { ms: 1 },
        ];
        for op in ops {
            assert!(Op::NAMES.contains(&op.name()), "{} missing", op.name());
        }
        assert_eq!(Op::NAMES.len(), 33);
    }

    #[test]
    fn ops_round_trip_through_yaml() {
        let ops = vec![
            Op::SetState(StateArg::Named(MigState::StopCopy)),
            Op::SetState(StateArg::Raw(255)),
            Op::GetState,
            Op::Read(ReadArgs { capture: Some(StreamName("s".into())), ..ReadArgs::default() }),
            Op::Write(WriteArgs {
                fd: FdRef::Current,
                data: Source::Stream(StreamName("s".into())),
                mutate: Some(Mutation::FlipBit { offset: 3, bit: 1 }),
                segment: Segmentation::Cycle(vec![1, 7, 4095]),
                offset: None,
                keep_going: false,
                from_thread: false,
            }),
        ];
        let yaml = serde_saphyr::to_string(&ops).unwrap();
        let back: Vec<Op> = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, ops);
    }

    #[test]
    fn sizes_and_counts_beyond_what_the_suite_can_build_are_refused_with_field_and_range() {
        let start =
            |count| Op::DmaLogStart(DmaStartArgs { page_size: 0, ranges: Vec::new(), count: Some(count) });
        let e = start(u32::MAX).check_limits().unwrap_err();
        assert!(e.starts_with("dma_log_start.count: 4294967295 is out of range 0 to 65536 ("), "{e}");
        assert_eq!(start(0).check_limits(), Ok(()), "num_ranges 0 is the kernel's EINVAL test");
        assert_eq!(start(257).check_limits(), Ok(()), "past LOG_MAX_RANGES is the kernel's E2BIG test");
        let report =
            Op::DmaLogReport(DmaReportArgs { iova: 0, length: 1 << 40, page_size: 4096, prefill: 0 });
        let e = report.check_limits().unwrap_err();
        assert!(
            e.starts_with(
                "dma_log_report.length: 1099511627776 at page_size 4096 needs a 33554432-byte bitmap"
            ),
            "{e}"
        );
        let read = |chunk, max| Op::Read(ReadArgs { chunk, max, ..ReadArgs::default() });
        assert!(read(0, None).check_limits().unwrap_err().starts_with("read.chunk: 0 is out of range"));
        assert!(read(u32::MAX, None).check_limits().unwrap_err().contains("out of range 1 to 1048576"));
        assert!(read(7, Some(0)).check_limits().unwrap_err().starts_with("read.max: 0"));
        assert_eq!(read(7, Some(1)).check_limits(), Ok(()));
        let write = |data, segment, mutate| {
            Op::Write(WriteArgs {
                fd: FdRef::Current,
                data,
                mutate,
                segment,
                offset: None,
                keep_going: false,
                from_thread: false,
            })
        };
        let s = || Source::Stream(StreamName("s".into()));
        assert!(
            write(Source::Zeros(u32::MAX), Segmentation::Whole, None)
                .check_limits()
                .unwrap_err()
                .starts_with("write.data.zeros")
        );
        assert!(
            write(s(), Segmentation::Fixed(0), None)
                .check_limits()
                .unwrap_err()
                .starts_with("write.segment.fixed: 0")
        );
        assert!(write(s(), Segmentation::Cycle(vec![]), None).check_limits().unwrap_err().contains("empty"));
        let flip = Some(Mutation::FlipBit { offset: 0, bit: 9 });
        assert!(
            write(s(), Segmentation::Whole, flip)
                .check_limits()
                .unwrap_err()
                .starts_with("write.mutate.bit: 9")
        );
        let frac = Some(Mutation::Fraction { num: 1, den: 0 });
        assert!(
            write(s(), Segmentation::Whole, frac)
                .check_limits()
                .unwrap_err()
                .starts_with("write.mutate.den: 0")
        );
        let feature = Op::Feature(FeatureArgs {
            feature: 1,
            ops: vec![],
            extra_flags: 0,
            argsz: Some(u32::MAX),
            payload: 0,
        });
        assert!(feature.check_limits().unwrap_err().starts_with("feature.argsz: 4294967295"));
        let cfg = Op::ConfigRead(ConfigArgs { offset: 0, width: 0, value: None, save_as: None });
        assert!(cfg.check_limits().unwrap_err().starts_with("config_read.width: 0 is out of range"));
    }
}
