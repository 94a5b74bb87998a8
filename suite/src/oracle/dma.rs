//! DMA logging as the core defines it (drivers/vfio/vfio_main.c,
//! `vfio_ioctl_device_feature_logging_start()` and `_report()`): which requests the core itself
//! refuses, before the driver is called, and when REPORT cannot be observed at all.

use crate::errno::Errno;
use crate::uapi::LOG_MAX_RANGES;

/// Why report-based checks cannot observe anything on a kernel whose iova_bitmap is a stub.
pub const REPORT_STUB: &str = "DMA_LOGGING_REPORT fails with EOPNOTSUPP for every driver on this kernel: its \
    iova_bitmap is a stub (no CONFIG_IOMMUFD_DRIVER), so the driver's read_and_clear is never called";

/// The errno the core answers a DMA_LOGGING_START with these ranges, if it refuses them.
pub fn core_start_refusal(page_size: u64, ranges: &[(u64, u64)]) -> Option<Errno> {
    check_dma_ranges(page_size, ranges).err()
}

/// The errno the core answers a DMA_LOGGING_REPORT with, if it refuses it.
pub fn core_report_refusal(iova: u64, length: u64, page_size: u64) -> Option<Errno> {
    check_dma_report(iova, length, page_size).err()
}

/// Whether a REPORT's answer says nothing about the driver: EOPNOTSUPP on a kernel whose
/// iova_bitmap is a stub (`report_stub`, known from the kernel's configuration) is the
/// kernel's, for every driver. The check is then UNSUPPORTED with [`REPORT_STUB`].
pub fn report_unobservable(errno: Option<Errno>, report_stub: bool) -> Option<&'static str> {
    (report_stub && errno == Some(Errno::EOPNOTSUPP)).then_some(REPORT_STUB)
}

fn aligned(x: u64, a: u64) -> bool {
    x & a.wrapping_sub(1) == 0
}

/// The core's DMA_LOGGING_START range checks (count, alignment, overflow, overlap).
pub fn check_dma_ranges(page_size: u64, ranges: &[(u64, u64)]) -> Result<(), Errno> {
    if ranges.is_empty() {
        return Err(Errno::EINVAL);
    }
    if ranges.len() > LOG_MAX_RANGES {
        return Err(Errno::E2BIG);
    }
    let mut seen: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(iova, len) in ranges {
        if !aligned(iova, page_size) || !aligned(len, page_size) {
            return Err(Errno::EINVAL);
        }
        let Some(_end) = iova.checked_add(len) else {
            return Err(Errno::EOVERFLOW);
        };
        let last = iova.wrapping_add(len).wrapping_sub(1);
        if seen.iter().any(|&(s, l)| iova <= l && s <= last) {
            return Err(Errno::EINVAL);
        }
        seen.push((iova, last));
    }
    Ok(())
}

/// The core's DMA_LOGGING_REPORT checks (page size, overflow).
pub fn check_dma_report(iova: u64, length: u64, page_size: u64) -> Result<(), Errno> {
    if page_size < 4096 || !page_size.is_power_of_two() {
        return Err(Errno::EINVAL);
    }
    if iova.checked_add(length).is_none() {
        return Err(Errno::EOVERFLOW);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_ranges_follow_the_core_rules() {
        assert_eq!(check_dma_ranges(4096, &[]), Err(Errno::EINVAL));
        assert_eq!(check_dma_ranges(4096, &[(1, 4096)]), Err(Errno::EINVAL));
        assert_eq!(check_dma_ranges(4096, &[(0, 8192), (4096, 4096)]), Err(Errno::EINVAL));
        assert_eq!(check_dma_ranges(4096, &[(u64::MAX - 4095, 8192)]), Err(Errno::EOVERFLOW));
        assert_eq!(check_dma_ranges(4096, &vec![(0, 0); 257]), Err(Errno::E2BIG));
        assert_eq!(check_dma_ranges(4096, &[(0, 4096), (8192, 4096)]), Ok(()));
    }

    #[test]
    fn report_eopnotsupp_is_unobservable_only_on_a_stub_kernel() {
        assert_eq!(report_unobservable(Some(Errno::EOPNOTSUPP), true), Some(REPORT_STUB));
        assert_eq!(report_unobservable(Some(Errno::EOPNOTSUPP), false), None);
        assert_eq!(report_unobservable(None, true), None);
    }
}
