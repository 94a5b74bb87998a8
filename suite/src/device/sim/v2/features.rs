//! `VFIO_DEVICE_FEATURE` as the vfio core dispatches it and a driver answers it.

use super::{SimV2, get_u32, put};
use crate::device::DevResult;
use crate::device::sim::defects::Defect;
use crate::device::sim::stream::Saver;
use crate::errno::Errno;
use crate::state::MigState;
use crate::uapi;

impl SimV2 {
    pub(super) fn feature_impl(&mut self, argsz: u32, flags: u32, payload: &mut [u8]) -> DevResult<()> {
        if self.cfg.api == crate::device::MigrationApi::None {
            // A device without mig_ops: the core answers ENOTTY for every migration feature.
            return Err(Errno::ENOTTY);
        }
        let minsz = 8u32;
        if argsz < minsz {
            return Err(Errno::EINVAL);
        }
        if flags & !(uapi::FEATURE_MASK | uapi::FEATURE_GET | uapi::FEATURE_SET | uapi::FEATURE_PROBE) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & uapi::FEATURE_PROBE == 0
            && flags & uapi::FEATURE_SET != 0
            && flags & uapi::FEATURE_GET != 0
        {
            return Err(Errno::EINVAL);
        }
        let avail = (argsz - minsz) as usize;
        let index = flags & uapi::FEATURE_MASK;
        match index {
            uapi::FEATURE_MIGRATION => {
                let supported = if self.has(Defect::FeatureSetOnMigrationAccepted) {
                    uapi::FEATURE_GET | uapi::FEATURE_SET
                } else {
                    uapi::FEATURE_GET
                };
                if !uapi::check_feature(flags, avail, supported, 8)? {
                    return Ok(());
                }
                let mut f = self.flags().0;
                if self.has(Defect::NoStopCopyFlag) {
                    f &= !1;
                }
                if self.has(Defect::UnknownFlagAdvertised) {
                    f |= 8;
                }
                if flags & uapi::FEATURE_SET != 0 {
                    return Ok(());
                }
                put(payload, 0, &f.to_le_bytes())
            }
            uapi::FEATURE_MIG_DEVICE_STATE => {
                if !uapi::check_feature(flags, avail, uapi::FEATURE_GET | uapi::FEATURE_SET, 8)? {
                    return Ok(());
                }
                let requested = get_u32(payload, 0)?;
                if flags & uapi::FEATURE_GET != 0 {
                    let mut s = self.held.reported.unwrap_or(self.state).raw();
                    if self.has(Defect::GetUnknownState) && self.state == MigState::Stop {
                        s = 9;
                    }
                    let fd: i32 = if self.has(Defect::GetReturnsDataFd) { 3 } else { -1 };
                    put(payload, 0, &s.to_le_bytes())?;
                    return put(payload, 4, &fd.to_le_bytes());
                }
                let result = self.set_state(requested);
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
            uapi::FEATURE_MIG_DATA_SIZE => {
                if !uapi::check_feature(flags, avail, uapi::FEATURE_GET, 8)? {
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
            uapi::FEATURE_DMA_LOGGING_START | uapi::FEATURE_DMA_LOGGING_REPORT => {
                if !self.cfg.dma_logging {
                    return Err(Errno::ENOTTY);
                }
                let (ops, min) = if index == uapi::FEATURE_DMA_LOGGING_START {
                    (uapi::FEATURE_SET, 24)
                } else {
                    (uapi::FEATURE_GET, 32)
                };
                if !uapi::check_feature(flags, avail, ops, min)? {
                    return Ok(());
                }
                // The payload carries user pointers; the raw path cannot follow them.
                Err(Errno::EFAULT)
            }
            uapi::FEATURE_DMA_LOGGING_STOP => {
                if !self.cfg.dma_logging {
                    return Err(Errno::ENOTTY);
                }
                if !uapi::check_feature(flags, avail, uapi::FEATURE_SET, 0)? {
                    return Ok(());
                }
                if !self.has(Defect::DmaStopLeavesLogging) {
                    self.logging = false;
                    self.hw.dma_log = None;
                }
                Ok(())
            }
            _ => Err(Errno::ENOTTY),
        }
    }
}
