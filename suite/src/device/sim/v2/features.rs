//! `VFIO_DEVICE_FEATURE` as the vfio core dispatches it and a driver answers it: the core's
//! `vfio_ioctl_device_feature()` (6.12 drivers/vfio/vfio_main.c l.1210-1266) and its
//! per-feature handlers, with `vfio_check_feature()` (include/linux/vfio.h l.249-263), written
//! here from the kernel source. Only the uAPI's numbers (feature indices, flag bits) come from
//! `crate::uapi`; none of its argument checks are used.

use super::{SimV2, get_u32, put};
use crate::device::DevResult;
use crate::device::sim::defects::Defect;
use crate::device::sim::stream::Saver;
use crate::errno::Errno;
use crate::state::MigState;
use crate::uapi::{
    FEATURE_DMA_LOGGING_REPORT, FEATURE_DMA_LOGGING_START, FEATURE_DMA_LOGGING_STOP, FEATURE_GET,
    FEATURE_MASK, FEATURE_MIG_DATA_SIZE, FEATURE_MIG_DEVICE_STATE, FEATURE_MIG_PRECOPY_INFO_V2,
    FEATURE_MIGRATION, FEATURE_PROBE, FEATURE_SET,
};

/// `offsetofend(struct vfio_device_feature, flags)`: argsz and flags, the header before `data`.
const FEATURE_MINSZ: u32 = 8;
/// `sizeof(struct vfio_device_feature_migration)`: `__aligned_u64 flags`.
const MIGRATION_SIZE: usize = 8;
/// `sizeof(struct vfio_device_feature_mig_state)`: `__u32 device_state; __s32 data_fd`.
const MIG_STATE_SIZE: usize = 8;
/// `sizeof(struct vfio_device_feature_mig_data_size)`: `__aligned_u64 stop_copy_length`.
const MIG_DATA_SIZE_SIZE: usize = 8;
/// `sizeof(struct vfio_device_feature_dma_logging_control)`: page_size, num_ranges,
/// __reserved, ranges.
const LOGGING_CONTROL_SIZE: usize = 24;
/// `sizeof(struct vfio_device_feature_dma_logging_report)`: iova, length, page_size, bitmap.
const LOGGING_REPORT_SIZE: usize = 32;

/// `vfio_check_feature()` (6.12 include/linux/vfio.h l.249-263): `Ok(true)` when the driver
/// should execute the GET or SET, `Ok(false)` for a PROBE that succeeds.
fn vfio_check_feature(flags: u32, argsz: usize, supported_ops: u32, minsz: usize) -> DevResult<bool> {
    // if ((flags & (GET | SET)) & ~supported_ops) return -EINVAL;
    if flags & (FEATURE_GET | FEATURE_SET) & !supported_ops != 0 {
        return Err(Errno::EINVAL);
    }
    // if (flags & PROBE) return 0;
    if flags & FEATURE_PROBE != 0 {
        return Ok(false);
    }
    // Without PROBE one of GET or SET must be requested.
    if flags & (FEATURE_GET | FEATURE_SET) == 0 {
        return Err(Errno::EINVAL);
    }
    if argsz < minsz {
        return Err(Errno::EINVAL);
    }
    Ok(true)
}

impl SimV2 {
    pub(super) fn feature_impl(&mut self, argsz: u32, flags: u32, payload: &mut [u8]) -> DevResult<()> {
        if self.cfg.api == crate::device::MigrationApi::None {
            // A device without mig_ops: the core answers ENOTTY for every migration feature.
            return Err(Errno::ENOTTY);
        }
        // vfio_ioctl_device_feature(), l.1216-1231.
        let minsz = FEATURE_MINSZ;
        if argsz < minsz {
            return Err(Errno::EINVAL);
        }
        // Check unknown flags.
        if flags & !(FEATURE_MASK | FEATURE_SET | FEATURE_GET | FEATURE_PROBE) != 0 {
            return Err(Errno::EINVAL);
        }
        // GET & SET are mutually exclusive except with PROBE.
        if flags & FEATURE_PROBE == 0 && flags & FEATURE_SET != 0 && flags & FEATURE_GET != 0 {
            return Err(Errno::EINVAL);
        }
        // Each handler gets `feature.argsz - minsz`.
        let avail = (argsz - minsz) as usize;
        let index = flags & FEATURE_MASK;
        match index {
            // vfio_ioctl_device_feature_migration(), l.971-990.
            FEATURE_MIGRATION => {
                let supported = if self.has(Defect::FeatureSetOnMigrationAccepted) {
                    FEATURE_GET | FEATURE_SET
                } else {
                    FEATURE_GET
                };
                if !vfio_check_feature(flags, avail, supported, MIGRATION_SIZE)? {
                    return Ok(());
                }
                let mut f = self.flags().0;
                if self.has(Defect::NoStopCopyFlag) {
                    f &= !1;
                }
                if self.has(Defect::UnknownFlagAdvertised) {
                    f |= 8;
                }
                if flags & FEATURE_SET != 0 {
                    return Ok(());
                }
                put(payload, 0, &f.to_le_bytes())
            }
            // vfio_ioctl_device_feature_mig_device_state(), l.894-941.
            FEATURE_MIG_DEVICE_STATE => {
                if !vfio_check_feature(flags, avail, FEATURE_SET | FEATURE_GET, MIG_STATE_SIZE)? {
                    return Ok(());
                }
                let requested = get_u32(payload, 0)?;
                if flags & FEATURE_GET != 0 {
                    let mut s = self.held.reported.unwrap_or(self.state).raw();
                    if self.has(Defect::GetUnknownState) && self.state == MigState::Stop {
                        s = 9;
                    }
                    let fd: i32 = if self.has(Defect::GetReturnsDataFd) { 3 } else { -1 };
                    put(payload, 0, &s.to_le_bytes())?;
                    return put(payload, 4, &fd.to_le_bytes());
                }
                let before = self.state;
                let result = self.set_state(requested);
                if result.is_ok() && self.state != before {
                    self.before_last_set = before;
                }
                if self.has(Defect::GetReportsTargetAfterFailedSet) {
                    self.held.reported = if result.is_err() { MigState::from_raw(requested) } else { None };
                }
                let mut fd = match &result {
                    Ok(Some(fd)) => *fd,
                    _ => -1,
                };
                if self.has(Defect::InvalidDataFd) && requested == MigState::StopCopy.raw() && result.is_ok()
                {
                    fd = 987_654;
                }
                put(payload, 0, &requested.to_le_bytes())?;
                put(payload, 4, &fd.to_le_bytes())?;
                result.map(|_| ())
            }
            // vfio_ioctl_device_feature_migration_precopy_info_v2() (7.2 vfio_main.c l.985-998),
            // only on a simulated 7.1+ kernel.
            FEATURE_MIG_PRECOPY_INFO_V2 if self.cfg.has_precopy_info_v2() => {
                if !self.flags().has_pre_copy() {
                    return Err(Errno::EINVAL);
                }
                let supported =
                    if self.has(Defect::Piv2GetAccepted) { FEATURE_GET | FEATURE_SET } else { FEATURE_SET };
                if !vfio_check_feature(flags, avail, supported, 0)? {
                    return Ok(());
                }
                if flags & FEATURE_SET != 0 {
                    self.precopy_v2 = true;
                }
                Ok(())
            }
            // vfio_ioctl_device_feature_migration_data_size(), l.943-969.
            FEATURE_MIG_DATA_SIZE => {
                if self.has(Defect::DataSizeEnotty) {
                    return Err(Errno::ENOTTY);
                }
                if !vfio_check_feature(flags, avail, FEATURE_GET, MIG_DATA_SIZE_SIZE)? {
                    return Ok(());
                }
                if self.has(Defect::DataSizeFailsInResuming) && self.state == MigState::Resuming {
                    return Err(Errno::EINVAL);
                }
                let size = if self.has(Defect::StreamExceedsDataSize) {
                    16
                } else if self.has(Defect::DataSizeReportsZero) {
                    0
                } else {
                    Saver::full_size(&self.identity())
                };
                put(payload, 0, &size.to_le_bytes())
            }
            // vfio_ioctl_device_feature_logging_start() l.1054-1136 and _report() l.1166-1208,
            // up to their copy_from_user().
            FEATURE_DMA_LOGGING_START | FEATURE_DMA_LOGGING_REPORT => {
                if !self.cfg.dma_logging {
                    return Err(Errno::ENOTTY);
                }
                let (ops, min) = if index == FEATURE_DMA_LOGGING_START {
                    (FEATURE_SET, LOGGING_CONTROL_SIZE)
                } else {
                    (FEATURE_GET, LOGGING_REPORT_SIZE)
                };
                if !vfio_check_feature(flags, avail, ops, min)? {
                    return Ok(());
                }
                // The payload carries user pointers; the raw path cannot follow them.
                Err(Errno::EFAULT)
            }
            // vfio_ioctl_device_feature_logging_stop(), l.1139-1154.
            FEATURE_DMA_LOGGING_STOP => {
                if !self.cfg.dma_logging {
                    return Err(Errno::ENOTTY);
                }
                if !vfio_check_feature(flags, avail, FEATURE_SET, 0)? {
                    return Ok(());
                }
                if !self.has(Defect::DmaStopLeavesLogging) {
                    self.logging = false;
                    self.hw.dma_log = None;
                }
                Ok(())
            }
            // No device_feature op for other features in this driver.
            _ => Err(Errno::ENOTTY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_needs_no_payload_but_get_needs_minsz() {
        assert_eq!(vfio_check_feature(FEATURE_PROBE | FEATURE_GET, 0, FEATURE_GET, 8), Ok(false));
        assert_eq!(vfio_check_feature(FEATURE_GET, 4, FEATURE_GET, 8), Err(Errno::EINVAL));
        assert_eq!(vfio_check_feature(FEATURE_SET, 8, FEATURE_GET, 8), Err(Errno::EINVAL));
        assert_eq!(vfio_check_feature(0, 8, FEATURE_GET, 8), Err(Errno::EINVAL));
        assert_eq!(vfio_check_feature(FEATURE_GET, 8, FEATURE_GET, 8), Ok(true));
    }
}
