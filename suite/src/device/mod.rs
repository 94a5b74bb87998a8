//! The device abstraction: one interface for everything the suite does to a device.
//!
//! A [`Device`] executes requests and reports what happened (return value or raw errno); it
//! never judges. Requests are raw enough to be malformed on purpose: any argsz and flags on
//! `VFIO_DEVICE_FEATURE`, any state value, reads and writes on stale or wrong-direction data
//! fds. Backends: [`sim`] (reference devices with injectable defects) and [`kernel`] (the ioctl
//! layer over `/dev/vfio`).

pub mod kernel;
pub mod sim;

use serde::{Deserialize, Serialize};

use crate::errno::Errno;
use crate::op::{Access, IrqAction, IrqData};

/// Interrupt counts per (IRQ index, vector).
pub type IrqCounts = Vec<((u32, u32), u64)>;

/// Result of one device request: the raw errno on failure.
pub type DevResult<T> = Result<T, Errno>;

/// Which backend a device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sim,
    Kernel,
}

/// Which migration uAPI a device speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationApi {
    /// `VFIO_DEVICE_FEATURE_MIGRATION` (5.18+).
    V2,
    /// The migration region (type 3, subtype 1; 5.8-5.17).
    V1,
    /// Neither.
    None,
}

impl std::fmt::Display for MigrationApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MigrationApi::V2 => "v2",
            MigrationApi::V1 => "v1",
            MigrationApi::None => "no migration",
        })
    }
}

/// What the suite knows about the device it talks to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The string the user gave (`sim:v2?...`, `/dev/vfio/3`).
    pub spec: String,
    pub backend: Backend,
    /// The kernel driver (`vfio-mtty` / `mtty`) or the sim kind.
    pub driver: Option<String>,
    /// mdev type, PCI id or sim type name.
    pub model: Option<String>,
    /// `uname -r` for kernel devices, the suite version for sims.
    pub kernel: Option<String>,
    /// The VFIO device name (PCI address, mdev UUID).
    pub name: Option<String>,
    /// The IOMMU back end a kernel device was opened through (`vfio_type1v2_iommu`,
    /// `iommufd`, ...: `device::kernel::IommuBackend`); None for simulated devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu: Option<String>,
}

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DevInfoRaw {
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

/// `VFIO_DEVICE_GET_REGION_INFO` with its capabilities decoded.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegionInfo {
    pub index: u32,
    pub flags: u32,
    pub size: u64,
    pub offset: u64,
    /// `VFIO_REGION_INFO_CAP_TYPE` (type, subtype).
    pub cap_type: Option<(u32, u32)>,
    /// `VFIO_REGION_INFO_CAP_SPARSE_MMAP` areas (offset, size).
    pub sparse: Vec<(u64, u64)>,
}

impl RegionInfo {
    pub const FLAG_READ: u32 = 1;
    pub const FLAG_WRITE: u32 = 2;
    pub const FLAG_MMAP: u32 = 4;
    pub const FLAG_CAPS: u32 = 8;
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IrqInfo {
    pub index: u32,
    pub flags: u32,
    pub count: u32,
}

/// `fcntl()` facts about a data fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdFlags {
    pub cloexec: bool,
    /// `O_RDONLY` = 0, `O_WRONLY` = 1, `O_RDWR` = 2.
    pub access_mode: u32,
}

/// What [`Device::race_set_read`] saw: the SET's result (the returned data fd, -1 for none)
/// and the second thread's reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaceResult {
    pub set: DevResult<i32>,
    pub read_bytes: u64,
    pub read_error: Option<crate::errno::Errno>,
}

/// What [`Device::race_reset`] saw: the first raced call's result (SET: the returned data fd,
/// -1 for none; GET: the state; PRECOPY_INFO: 0), how many calls were made and how many of
/// them failed, how many resets the second thread issued and the first reset that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaceResetResult {
    pub call: DevResult<i32>,
    pub calls: u32,
    pub calls_failed: u32,
    pub resets: u32,
    pub reset_error: Option<crate::errno::Errno>,
}

/// The most resets a racing thread issues while one SET runs.
pub const RACE_RESETS_MAX: u32 = 64;

/// The most GET or PRECOPY_INFO calls one `race_reset` makes while the resets run.
pub const RACE_CALLS_MAX: u8 = 64;

/// The most a racing reader reads (a device that never ends its stream must not hang it).
pub const RACE_READ_MAX: u64 = 64 << 20;

/// `VFIO_MIG_GET_PRECOPY_INFO` request code.
pub const VFIO_MIG_GET_PRECOPY_INFO: u64 = 0x3b75 + 4; // _IO(';', 100 + 21)
/// `VFIO_DEVICE_FEATURE` request code.
pub const VFIO_DEVICE_FEATURE: u64 = 0x3b75; // _IO(';', 100 + 17)

/// Every operation the suite performs on a device.
///
/// Data fds are the raw numbers the device returned from SET MIG_DEVICE_STATE; a backend
/// only ever touches fds it handed out itself (an unknown number gives EBADF, never a
/// syscall on someone else's fd).
pub trait Device: Send {
    fn info(&self) -> &DeviceInfo;

    /// `VFIO_DEVICE_FEATURE` with caller-chosen `argsz` and `flags`; `payload` is the data after
    /// the 8-byte header, in and out. The kernel backend adopts a data fd returned by SET
    /// MIG_DEVICE_STATE.
    fn feature(&mut self, argsz: u32, flags: u32, payload: &mut [u8]) -> DevResult<()>;

    /// `DMA_LOGGING_START` with these ranges; returns the page size the device chose.
    fn dma_log_start(&mut self, page_size: u64, ranges: &[(u64, u64)]) -> DevResult<u64>;

    /// `DMA_LOGGING_REPORT` into `bitmap` (one bit per `page_size` from `iova`).
    fn dma_log_report(&mut self, iova: u64, length: u64, page_size: u64, bitmap: &mut [u64])
    -> DevResult<()>;

    /// `VFIO_DEVICE_RESET`.
    fn reset(&mut self) -> DevResult<()>;

    fn data_read(&mut self, fd: i32, buf: &mut [u8]) -> DevResult<usize>;
    fn data_pread(&mut self, fd: i32, buf: &mut [u8], offset: u64) -> DevResult<usize>;
    fn data_write(&mut self, fd: i32, buf: &[u8]) -> DevResult<usize>;
    fn data_pwrite(&mut self, fd: i32, buf: &[u8], offset: u64) -> DevResult<usize>;
    /// `poll()` for POLLIN|POLLOUT; returns `revents`.
    fn data_poll(&mut self, fd: i32, timeout_ms: i32) -> DevResult<i16>;
    /// An ioctl on a data fd with a buffer argument (PRECOPY_INFO); returns the ioctl value.
    fn data_ioctl(&mut self, fd: i32, cmd: u64, arg: &mut [u8]) -> DevResult<i32>;
    fn data_fd_flags(&mut self, fd: i32) -> DevResult<FdFlags>;
    fn data_close(&mut self, fd: i32) -> DevResult<()>;
    /// `call` on data fd `fd` with a `len`-byte user buffer of which only the first `valid`
    /// bytes are mapped. Devices without user memory (the simulators) answer as the kernel
    /// does for a buffer it cannot use at all: EFAULT.
    fn data_bad_buffer(
        &mut self,
        fd: i32,
        call: crate::op::BadCall,
        len: usize,
        valid: usize,
    ) -> DevResult<usize> {
        let _ = (fd, call, len, valid);
        Err(crate::errno::Errno::EFAULT)
    }

    /// SET MIG_DEVICE_STATE to `state` from this thread while a second thread reads data fd
    /// `fd` in `chunk`-byte reads (until end of stream, an error or [`RACE_READ_MAX`] bytes);
    /// the SET is issued `delay_us` after the reader started. Backends without threads of
    /// their own (the simulators) read first, then SET: one of the interleavings.
    fn race_set_read(&mut self, fd: i32, state: u32, delay_us: u32, chunk: usize) -> DevResult<RaceResult> {
        let _ = delay_us;
        let mut buf = vec![0u8; chunk.max(1)];
        let mut read = (0u64, None);
        while read.0 < RACE_READ_MAX {
            match self.data_read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => read.0 += n as u64,
                Err(e) => {
                    read.1 = Some(e);
                    break;
                }
            }
        }
        let mut payload = [0u8; 8];
        payload[..4].copy_from_slice(&state.to_le_bytes());
        payload[4..].copy_from_slice(&(-1i32).to_le_bytes());
        let set = self
            .feature(16, crate::uapi::FEATURE_SET | crate::uapi::FEATURE_MIG_DEVICE_STATE, &mut payload)
            .map(|()| i32::from_le_bytes([payload[4], payload[5], payload[6], payload[7]]));
        Ok(RaceResult { set, read_bytes: read.0, read_error: read.1 })
    }

    /// `call` from this thread (SET to `state`, GET, or PRECOPY_INFO on data fd `fd`), made
    /// `calls` times back to back (a SET once), while a second thread issues
    /// `VFIO_DEVICE_RESET` back to back, from before the first call (which follows the first
    /// reset by `delay_us`) until the last returned (at most [`RACE_RESETS_MAX`] resets).
    /// Backends without threads of their own (the simulators) make the calls, then reset: one
    /// of the interleavings.
    fn race_reset(
        &mut self,
        call: crate::op::RaceCall,
        state: u32,
        fd: i32,
        delay_us: u32,
        calls: u32,
    ) -> DevResult<RaceResetResult> {
        let _ = delay_us;
        let (first, calls, calls_failed) = race_calls(self, call, state, fd, calls);
        let reset_error = self.reset().err();
        Ok(RaceResetResult { call: first, calls, calls_failed, resets: 1, reset_error })
    }

    /// Makes the `nth` fault-injection point (slab or page allocation, ...) the kernel passes
    /// in this thread fail (`/proc/thread-self/fail-nth`); 0 disarms. Backends without a
    /// kernel below them answer EOPNOTSUPP.
    fn inject_fault(&mut self, nth: u32) -> DevResult<()> {
        let _ = nth;
        Err(crate::errno::Errno::EOPNOTSUPP)
    }

    /// Whether the fault armed by [`Device::inject_fault`] was injected; disarms it.
    fn fault_injected(&mut self) -> DevResult<bool> {
        Err(crate::errno::Errno::EOPNOTSUPP)
    }

    /// Closes the device fd (the driver's close_device runs); data fds stay open.
    fn close(&mut self) -> DevResult<()>;
    /// Opens the device again.
    fn reopen(&mut self) -> DevResult<()>;

    fn device_info(&mut self) -> DevResult<DevInfoRaw>;
    fn region_info(&mut self, index: u32) -> DevResult<RegionInfo>;
    fn region_read(&mut self, index: u32, offset: u64, buf: &mut [u8], via: Access) -> DevResult<usize>;
    fn region_write(&mut self, index: u32, offset: u64, buf: &[u8], via: Access) -> DevResult<usize>;
    fn irq_info(&mut self, index: u32) -> DevResult<IrqInfo>;
    /// `VFIO_DEVICE_SET_IRQS`; with `IrqData::Eventfd` the backend creates and counts eventfds.
    fn set_irqs(
        &mut self,
        index: u32,
        action: IrqAction,
        start: u32,
        count: u32,
        data: IrqData,
    ) -> DevResult<()>;
    /// Interrupts counted so far per (index, vector) on backend-owned eventfds.
    fn irq_counts(&mut self) -> IrqCounts;

    /// Lets time pass.
    fn wait(&mut self, ms: u64);

    /// The debugfs migration state (6.8+), if the backend has an independent observer.
    fn debugfs_state(&mut self) -> Option<DevResult<String>>;

    /// The debugfs migration features file (6.18+: one line per migration flag and
    /// `dirty-tracking`), if the backend has one.
    fn debugfs_features(&mut self) -> Option<DevResult<String>> {
        None
    }

    /// Closes every data fd the suite holds and returns the device to RUNNING (reset), as a
    /// trial's cleanup. Errors are returned so the runner can report a wedged device.
    fn restore(&mut self) -> DevResult<()>;
}

/// The calls of a [`Device::race_reset`]: `call` made `calls` times (at least once, at most
/// [`RaceCall::max_calls`](crate::op::RaceCall::max_calls)). Returns the first call's result, the calls made and how
/// many of them failed.
pub fn race_calls<D: Device + ?Sized>(
    dev: &mut D,
    call: crate::op::RaceCall,
    state: u32,
    fd: i32,
    calls: u32,
) -> (DevResult<i32>, u32, u32) {
    let n = calls.clamp(1, u32::from(call.max_calls()));
    let first = race_call(dev, call, state, fd);
    let mut failed = u32::from(first.is_err());
    for _ in 1..n {
        failed += u32::from(race_call(dev, call, state, fd).is_err());
    }
    (first, n, failed)
}

/// The call of a [`Device::race_reset`] (see there), on any backend.
pub fn race_call<D: Device + ?Sized>(
    dev: &mut D,
    call: crate::op::RaceCall,
    state: u32,
    fd: i32,
) -> DevResult<i32> {
    use crate::op::RaceCall;
    let mut payload = [0u8; 8];
    match call {
        RaceCall::SetState => {
            payload[..4].copy_from_slice(&state.to_le_bytes());
            payload[4..].copy_from_slice(&(-1i32).to_le_bytes());
            dev.feature(16, crate::uapi::FEATURE_SET | crate::uapi::FEATURE_MIG_DEVICE_STATE, &mut payload)
                .map(|()| i32::from_le_bytes([payload[4], payload[5], payload[6], payload[7]]))
        }
        RaceCall::GetState => dev
            .feature(16, crate::uapi::FEATURE_GET | crate::uapi::FEATURE_MIG_DEVICE_STATE, &mut payload)
            .map(|()| i32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]])),
        RaceCall::PrecopyInfo => {
            let mut buf = [0u8; 24];
            buf[..4].copy_from_slice(&crate::uapi::PRECOPY_INFO_SIZE.to_le_bytes());
            dev.data_ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut buf).map(|_| 0)
        }
    }
}
