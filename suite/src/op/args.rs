//! The arguments of the operations: data-fd references, read/write/mutation/segmentation
//! arguments, races, features, DMA logging, regions, config space, interrupts and the v1
//! register fields.

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

/// `race_reset`: a call from this thread (by default a SET to `state`) while a second thread
/// issues `VFIO_DEVICE_RESET` (a guest's function reset arriving while the VMM changes or
/// reads the migration state). The resets run back to back from `delay_us` before the call
/// until it returns (at most [`RACE_RESETS_MAX`](crate::device::RACE_RESETS_MAX)), so one
/// of them can find the driver inside it: a driver that defers a reset its state lock blocks
/// (mtty, mlx5, hisi_acc, ...) then runs that deferred path in the lock's holder. The uAPI
/// says a reset returns the device to RUNNING but not how it orders with a concurrent call,
/// so the step is not judged; the oracle forgets the state and the data fds. A kernel report
/// in it is a finding.
///
/// A GET or PRECOPY_INFO holds the state lock for a few microseconds: `calls` makes it that
/// many times back to back while the resets run, so that a reset can arrive inside one of them
/// (a SET is made once: a repeated SET after a reset would start a new migration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Arbitrary)]
#[serde(deny_unknown_fields)]
pub struct RaceResetArgs {
    /// The call the resets race.
    #[serde(default)]
    pub during: RaceCall,
    /// The target state of `during: set_state`.
    #[serde(default = "running")]
    pub state: StateArg,
    /// The data fd of `during: precopy_info`.
    #[serde(default)]
    pub fd: FdRef,
    #[serde(default)]
    pub delay_us: u16,
    /// How many times `during: get_state` or `precopy_info` is made while the resets run
    /// (1 to [`RACE_CALLS_MAX`](crate::device::RACE_CALLS_MAX); `set_state` takes only 1).
    #[serde(default = "one_call", skip_serializing_if = "is_one_call")]
    pub calls: u8,
}

fn one_call() -> u8 {
    1
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_one_call(n: &u8) -> bool {
    *n == 1
}

fn running() -> StateArg {
    StateArg::Named(crate::state::MigState::Running)
}

impl RaceCall {
    /// How many times one `race_reset` may make this call: a SET once (repeated after a
    /// reset, it would start a new migration), a GET or PRECOPY_INFO up to
    /// [`RACE_CALLS_MAX`](crate::device::RACE_CALLS_MAX).
    pub fn max_calls(self) -> u8 {
        match self {
            RaceCall::SetState => 1,
            RaceCall::GetState | RaceCall::PrecopyInfo => crate::device::RACE_CALLS_MAX,
        }
    }
}

/// The call a [`RaceResetArgs`] races with resets: each holds the driver's state lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case")]
pub enum RaceCall {
    /// SET MIG_DEVICE_STATE.
    #[default]
    SetState,
    /// GET MIG_DEVICE_STATE.
    GetState,
    /// `VFIO_MIG_GET_PRECOPY_INFO` on the data fd.
    PrecopyInfo,
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
