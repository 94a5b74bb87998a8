//! The payloads of the VFIO ioctls the recorder decodes, read from the tracee's memory: the
//! request numbers, `struct vfio_irq_set` and the `VFIO_DEVICE_FEATURE` requests and results
//! (`include/uapi/linux/vfio.h`). [`super::decode`] tracks the fds and calls these.

use super::event::{Feature, IrqSet};
use super::ptrace::Mem;
use vmc::uapi;

/// VFIO ioctl requests (`_IO(';', 100 + n)`).
pub mod req {
    pub const GROUP_GET_DEVICE_FD: u32 = 0x3b6a;
    pub const DEVICE_GET_INFO: u32 = 0x3b6b;
    pub const DEVICE_GET_REGION_INFO: u32 = 0x3b6c;
    pub const DEVICE_GET_IRQ_INFO: u32 = 0x3b6d;
    pub const DEVICE_SET_IRQS: u32 = 0x3b6e;
    pub const DEVICE_RESET: u32 = 0x3b6f;
    pub const DEVICE_FEATURE: u32 = 0x3b75;
    pub const DEVICE_BIND_IOMMUFD: u32 = 0x3b76;
    pub const MIG_GET_PRECOPY_INFO: u32 = 0x3b79;
}

/// Most iovecs / pollfds / DMA ranges / IRQ vectors read from the tracee.
pub(super) const MAX_ITEMS: usize = 1024;

pub(super) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes)
}

pub(super) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes)
}

/// Decodes a `struct vfio_irq_set` (header and data).
pub fn decode_irq_set(b: &[u8]) -> Option<IrqSet> {
    let flags = u32_at(b, 4)?;
    let count = u32_at(b, 16)?;
    let n = (count as usize).min(MAX_ITEMS);
    let data = if flags & IrqSet::DATA_BOOL != 0 {
        b.get(20..).unwrap_or(&[]).iter().take(n).map(|x| i64::from(*x)).collect()
    } else if flags & IrqSet::DATA_EVENTFD != 0 {
        b.get(20..)
            .unwrap_or(&[])
            .chunks_exact(4)
            .take(n)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    } else {
        Vec::new()
    };
    Some(IrqSet { flags, index: u32_at(b, 8)?, start: u32_at(b, 12)?, count, data })
}

/// Decodes a `VFIO_DEVICE_FEATURE` request (`entry`, read before the call) and its result
/// (`out`, read after it when it succeeded).
pub fn decode_feature(flags: u32, entry: &[u8], out: &[u8], ok: bool, mem: Mem) -> Feature {
    let index = flags & uapi::FEATURE_MASK;
    if flags & uapi::FEATURE_PROBE != 0 {
        return Feature::Other { index };
    }
    let get = flags & uapi::FEATURE_GET != 0;
    let set = flags & uapi::FEATURE_SET != 0;
    let res = |off: usize| u64_at(out, off).filter(|_| ok);
    match index {
        i if i == uapi::FEATURE_MIG_DEVICE_STATE && set => Feature::SetState {
            state: u32_at(entry, 8).unwrap_or(u32::MAX),
            data_fd: if ok { u32_at(out, 12).map_or(-1, |v| v as i32) } else { -1 },
        },
        i if i == uapi::FEATURE_MIG_DEVICE_STATE && get => {
            Feature::GetState { state: u32_at(out, 8).filter(|_| ok) }
        }
        i if i == uapi::FEATURE_MIGRATION && get => Feature::Migration { flags: res(8) },
        i if i == uapi::FEATURE_MIG_DATA_SIZE && get => Feature::DataSize { stop_copy_length: res(8) },
        i if i == uapi::FEATURE_DMA_LOGGING_START && set => {
            let n = (u32_at(entry, 16).unwrap_or(0) as usize).min(MAX_ITEMS);
            let raw = mem.read(u64_at(entry, 24).unwrap_or(0), n * 16);
            Feature::DmaLogStart {
                page_size: u64_at(entry, 8).unwrap_or(0),
                ranges: raw
                    .chunks_exact(16)
                    .map(|c| (u64_at(c, 0).unwrap_or(0), u64_at(c, 8).unwrap_or(0)))
                    .collect(),
                page_size_out: res(8),
            }
        }
        i if i == uapi::FEATURE_DMA_LOGGING_STOP && set => Feature::DmaLogStop,
        i if i == uapi::FEATURE_DMA_LOGGING_REPORT && get => Feature::DmaLogReport {
            iova: u64_at(entry, 8).unwrap_or(0),
            length: u64_at(entry, 16).unwrap_or(0),
            page_size: u64_at(entry, 24).unwrap_or(0),
        },
        i if i == uapi::FEATURE_MIG_PRECOPY_INFO_V2 && get => {
            Feature::PrecopyInfoV2 { initial_bytes: res(8), dirty_bytes: res(16) }
        }
        _ => Feature::Other { index },
    }
}
