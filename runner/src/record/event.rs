//! What the recorder saw: one [`Event`] per decoded system call on a VFIO device fd or a
//! migration data fd, plus the process events (exec, fork, exit) that give them context.
//! Events are written as JSON lines with `--events` and turned into a YAML sequence by
//! [`super::yaml`].

use serde::Serialize;

/// One decoded observation, in the order the tracer saw the calls complete.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Position in the recording (0, 1, ...).
    pub seq: u64,
    /// Microseconds since the recording started.
    pub t_us: u64,
    /// Process (thread group) id.
    pub pid: i32,
    /// Thread id.
    pub tid: i32,
    /// The thread's name (`/proc/TID/comm`), e.g. `live_migration`.
    pub thread: String,
    #[serde(flatten)]
    pub kind: Kind,
}

/// Success or the errno of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    /// The call's non-negative return value.
    Ok(i64),
    /// The call failed with this errno.
    Err(i32),
}

impl Ret {
    pub fn from_raw(rax: i64) -> Ret {
        if (-4095..0).contains(&rax) { Ret::Err(-rax as i32) } else { Ret::Ok(rax) }
    }

    pub fn is_ok(self) -> bool {
        matches!(self, Ret::Ok(_))
    }

    /// The errno name (`ENOMSG`) or the value.
    pub fn describe(self) -> String {
        match self {
            Ret::Ok(v) => format!("returned {v}"),
            Ret::Err(e) => format!("failed with {}", vmc::errno::Errno(e).name()),
        }
    }
}

/// How a device fd was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenPath {
    /// `VFIO_GROUP_GET_DEVICE_FD` on a group fd.
    Group,
    /// `open("/dev/vfio/devices/vfioN")` + `VFIO_DEVICE_BIND_IOMMUFD`.
    Cdev,
}

/// Which way a data fd moves the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Returned by a SET that enters a saving state (PRE_COPY*, STOP_COPY): the VMM reads it.
    Save,
    /// Returned by a SET that enters RESUMING: the VMM writes it.
    Resume,
}

/// A data-fd transfer: one read()/write() family call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transfer {
    /// Device label.
    pub dev: String,
    pub fd: i32,
    /// The system call (read, readv, pread64, write, writev, ...).
    pub call: &'static str,
    /// Bytes asked for.
    pub count: u64,
    pub ret: Ret,
    /// Byte position of this transfer in the fd's stream.
    pub pos: u64,
    /// The bytes moved (for a failed write: the bytes it tried to write), as hex when no more
    /// than `--keep-bytes` were kept so far and this transfer is at most 4 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// FNV-1a 64 of the bytes moved.
    pub hash: String,
    #[serde(skip)]
    pub bytes: Option<Vec<u8>>,
}

/// The decoded part of one `VFIO_DEVICE_FEATURE` call.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "feature", rename_all = "snake_case")]
pub enum Feature {
    /// SET `MIG_DEVICE_STATE`.
    SetState {
        state: u32,
        /// The `data_fd` returned (-1 when none).
        data_fd: i32,
    },
    /// GET `MIG_DEVICE_STATE`.
    GetState {
        state: Option<u32>,
    },
    /// GET `MIGRATION`.
    Migration {
        flags: Option<u64>,
    },
    /// GET `MIG_DATA_SIZE`.
    DataSize {
        stop_copy_length: Option<u64>,
    },
    /// `DMA_LOGGING_START` (the page size the driver chose comes back in `page_size_out`).
    DmaLogStart {
        page_size: u64,
        ranges: Vec<(u64, u64)>,
        page_size_out: Option<u64>,
    },
    DmaLogStop,
    DmaLogReport {
        iova: u64,
        length: u64,
        page_size: u64,
    },
    /// `MIG_PRECOPY_INFOv2` (values returned).
    PrecopyInfoV2 {
        initial_bytes: Option<u64>,
        dirty_bytes: Option<u64>,
    },
    /// Anything else (or a PROBE): only the header is decoded.
    Other {
        index: u32,
    },
}

/// A `VFIO_DEVICE_SET_IRQS` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrqSet {
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
    /// `DATA_BOOL` values or `DATA_EVENTFD` fds (-1 unassigns a vector).
    pub data: Vec<i64>,
}

impl IrqSet {
    pub const DATA_NONE: u32 = 1;
    pub const DATA_BOOL: u32 = 2;
    pub const DATA_EVENTFD: u32 = 4;
    pub const ACTION_MASK: u32 = 8;
    pub const ACTION_UNMASK: u32 = 16;
    pub const ACTION_TRIGGER: u32 = 32;
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// A process ran a program (the first process, or after execve).
    Exec { exe: String, argv: Vec<String> },
    /// A new process (fork, vfork, clone without CLONE_THREAD).
    Fork { child: i32 },
    /// A process ended (exit status, or 128 + signal).
    Exit { status: i32 },
    /// A VFIO device fd was obtained (devices are labelled A, B, ... in this order).
    DeviceOpen { dev: String, name: String, path: String, via: OpenPath, fd: i32 },
    /// `VFIO_DEVICE_GET_INFO`.
    DeviceInfo { dev: String, ret: Ret, flags: u32, num_regions: u32, num_irqs: u32 },
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    RegionInfo { dev: String, ret: Ret, index: u32, flags: u32, size: u64, offset: u64 },
    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    IrqInfo { dev: String, ret: Ret, index: u32, flags: u32, count: u32 },
    /// `VFIO_DEVICE_SET_IRQS`.
    SetIrqs { dev: String, ret: Ret, irqs: IrqSet },
    /// `VFIO_DEVICE_RESET`.
    Reset { dev: String, ret: Ret },
    /// `VFIO_DEVICE_FEATURE`.
    Feature {
        dev: String,
        ret: Ret,
        /// The request's flags (feature index, GET/SET/PROBE).
        flags: u32,
        argsz: u32,
        #[serde(flatten)]
        feature: Feature,
    },
    /// `VFIO_MIG_GET_PRECOPY_INFO` on a data fd.
    PrecopyInfo {
        dev: String,
        fd: i32,
        ret: Ret,
        argsz: u32,
        initial_bytes: Option<u64>,
        dirty_bytes: Option<u64>,
    },
    /// A data fd was created by a SET (also reported in the [`Kind::Feature`] event).
    DataFd { dev: String, fd: i32, dir: Dir },
    /// A read() family call on a saving data fd.
    Read(Transfer),
    /// A write() family call on a resuming data fd.
    Write(Transfer),
    /// poll()/ppoll() including a data fd.
    Poll { dev: String, fd: i32, events: u16, revents: Option<u16>, timeout_ms: i64, ret: Ret },
    /// close() of a data fd.
    CloseData { dev: String, fd: i32, ret: Ret },
    /// pread()/pwrite() on the device fd: a region access.
    Region {
        dev: String,
        write: bool,
        region: u32,
        offset: u64,
        count: u64,
        ret: Ret,
        /// The little-endian value for accesses of 1, 2, 4 or 8 bytes that moved them all.
        value: Option<u64>,
    },
    /// close() of a device fd (or its process ended with it open).
    CloseDevice { dev: String, fd: i32, explicit: bool },
    /// A VFIO ioctl on a device or data fd the recorder does not decode.
    OtherIoctl { dev: String, fd: i32, request: u64, ret: Ret },
}

/// FNV-1a 64, continued from `h` (start with [`FNV_START`]).
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_return_values_split_into_values_and_errnos() {
        assert_eq!(Ret::from_raw(24), Ret::Ok(24));
        assert_eq!(Ret::from_raw(0), Ret::Ok(0));
        assert_eq!(Ret::from_raw(-42), Ret::Err(42));
        assert_eq!(Ret::from_raw(-4096), Ret::Ok(-4096));
        assert_eq!(Ret::Err(libc::ENOMSG).describe(), "failed with ENOMSG");
    }

    #[test]
    fn events_serialize_flat_with_their_kind() {
        let e = Event {
            seq: 3,
            t_us: 10,
            pid: 7,
            tid: 8,
            thread: "live_migration".into(),
            kind: Kind::Feature {
                dev: "A".into(),
                ret: Ret::Ok(0),
                flags: 0x2_0002,
                argsz: 16,
                feature: Feature::SetState { state: 6, data_fd: 25 },
            },
        };
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["kind"], "feature");
        assert_eq!(j["feature"], "set_state");
        assert_eq!(j["data_fd"], 25);
        assert_eq!(j["ret"]["ok"], 0);
        assert_eq!(j["thread"], "live_migration");
    }
}
