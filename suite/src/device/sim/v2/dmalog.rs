//! DMA dirty-page logging: the core's argument checks, written here from the kernel source
//! (6.12 drivers/vfio/vfio_main.c and drivers/iommu/iommufd/iova_bitmap.c), and the driver's
//! log behind them.

use super::SimV2;
use crate::device::DevResult;
use crate::device::sim::defects::Defect;
use crate::errno::Errno;

/// `sizeof(struct vfio_device_feature_dma_logging_range)`: `__aligned_u64 iova, length`.
const LOGGING_RANGE_SIZE: usize = 16;
/// `LOG_MAX_RANGES` (vfio_main.c l.1050): the ranges must fit into one kernel page.
const LOG_MAX_RANGES: usize = 4096 / LOGGING_RANGE_SIZE;
/// `SZ_4K`, the smallest page size a report may ask for.
const SZ_4K: u64 = 4096;

/// `IS_ALIGNED(x, a)`: `((x) & ((typeof(x))(a) - 1)) == 0`.
fn is_aligned(x: u64, a: u64) -> bool {
    x & a.wrapping_sub(1) == 0
}

/// The checks of `vfio_ioctl_device_feature_logging_start()` (vfio_main.c l.1082-1118) before
/// the driver's `log_start` runs: a count, then per range in order alignment to the
/// requested page size, overflow, and overlap with an earlier range (the interval tree).
fn core_logging_start_checks(page_size: u64, ranges: &[(u64, u64)]) -> DevResult<()> {
    // nnodes = control.num_ranges; if (!nnodes) return -EINVAL;
    if ranges.is_empty() {
        return Err(Errno::EINVAL);
    }
    if ranges.len() > LOG_MAX_RANGES {
        return Err(Errno::E2BIG);
    }
    // Inserted nodes as [start, last], as `interval_tree_insert()` keeps them.
    let mut tree: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(iova, length) in ranges {
        if !is_aligned(iova, page_size) || !is_aligned(length, page_size) {
            return Err(Errno::EINVAL);
        }
        // check_add_overflow(range.iova, range.length, &iova_end) || iova_end > ULONG_MAX
        if iova.checked_add(length).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        // nodes[i].last = range.iova + range.length - 1 (unsigned long arithmetic).
        let (start, last) = (iova, iova.wrapping_add(length).wrapping_sub(1));
        // interval_tree_iter_first(&root, start, last): any node with
        // node.start <= last && start <= node.last.
        if tree.iter().any(|&(s, l)| s <= last && start <= l) {
            return Err(Errno::EINVAL);
        }
        tree.push((start, last));
    }
    Ok(())
}

/// The checks of `vfio_ioctl_device_feature_logging_report()` (vfio_main.c l.1189-1194)
/// before `iova_bitmap_alloc()`.
fn core_logging_report_checks(iova: u64, length: u64, page_size: u64) -> DevResult<()> {
    // if (report.page_size < SZ_4K || !is_power_of_2(report.page_size)) return -EINVAL;
    if page_size < SZ_4K || !page_size.is_power_of_two() {
        return Err(Errno::EINVAL);
    }
    // check_add_overflow(report.iova, report.length, &iova_end) || iova_end > ULONG_MAX
    if iova.checked_add(length).is_none() {
        return Err(Errno::EOVERFLOW);
    }
    Ok(())
}

impl SimV2 {
    pub(super) fn dma_log_start_impl(&mut self, page_size: u64, ranges: &[(u64, u64)]) -> DevResult<u64> {
        if !self.cfg.dma_logging {
            return Err(Errno::ENOTTY);
        }
        core_logging_start_checks(page_size, ranges)?;
        // The driver's log_start from here.
        if self.has(Defect::DmaRangesLimit16) && ranges.len() > 16 {
            return Err(Errno::E2BIG);
        }
        if self.logging && !self.has(Defect::SecondDmaStartAccepted) {
            return Err(Errno::EINVAL);
        }
        let chosen = if page_size >= 4096 && page_size.is_power_of_two() { page_size } else { 4096 };
        self.logging = true;
        self.hw.dma_log = Some(crate::device::sim::hw::DmaLog {
            page_size: chosen,
            ranges: ranges.to_vec(),
            ..Default::default()
        });
        Ok(chosen)
    }

    pub(super) fn dma_log_report_impl(
        &mut self,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &mut [u64],
    ) -> DevResult<()> {
        if !self.cfg.dma_logging {
            return Err(Errno::ENOTTY);
        }
        core_logging_report_checks(iova, length, page_size)?;
        if self.cfg.report_stub {
            // A kernel without CONFIG_IOMMUFD_DRIVER: iova_bitmap_alloc() returns NULL and
            // iova_bitmap_for_each() -EOPNOTSUPP (include/linux/iova_bitmap.h l.27-44).
            return Err(Errno::EOPNOTSUPP);
        }
        let bits = length.div_ceil(page_size);
        // iova_bitmap_get() pins the user's bitmap: a buffer too short for the range is
        // -EFAULT (iova_bitmap.c l.198-201).
        if (bitmap.len() as u64) < bits.div_ceil(64) {
            return Err(Errno::EFAULT);
        }
        // The driver's log_read_and_clear from here.
        if !self.logging {
            return if self.has(Defect::ReportBeforeStartOk) { Ok(()) } else { Err(Errno::EINVAL) };
        }
        if self.has(Defect::ReportPageSizeMustMatch)
            && self.hw.dma_log.as_ref().is_some_and(|l| l.page_size != page_size)
        {
            return Err(Errno::EINVAL);
        }
        if self.has(Defect::ReportClearsPresetBits) {
            bitmap.fill(0);
        }
        let keep = self.has(Defect::ReportDoesNotClear);
        let off_by_one = u64::from(self.has(Defect::ReportBitOffByOne));
        let clear_all = self.has(Defect::ReportClearsWholeLog);
        if let Some(log) = &mut self.hw.dma_log {
            let end = iova.saturating_add(length);
            let mut reported = Vec::new();
            for &d in &log.dirty {
                let dend = d.saturating_add(log.page_size);
                if dend <= iova || d >= end {
                    continue;
                }
                let first = d.max(iova);
                // An empty report range (length 0) covers no page.
                let Some(last) = dend.min(end).checked_sub(1).filter(|l| *l >= first) else { continue };
                for bit in (first - iova) / page_size..=(last - iova) / page_size {
                    let bit = bit + off_by_one;
                    if bit < bits {
                        bitmap[(bit / 64) as usize] |= 1 << (bit % 64);
                    }
                }
                reported.push(d);
            }
            if clear_all && !keep {
                log.dirty.clear();
            } else if !keep {
                for d in reported {
                    log.dirty.remove(&d);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logging_start_checks_follow_vfio_main_c() {
        assert_eq!(core_logging_start_checks(4096, &[]), Err(Errno::EINVAL));
        assert_eq!(core_logging_start_checks(4096, &[(1, 4096)]), Err(Errno::EINVAL));
        assert_eq!(core_logging_start_checks(4096, &[(0, 8192), (4096, 4096)]), Err(Errno::EINVAL));
        assert_eq!(core_logging_start_checks(4096, &[(u64::MAX - 4095, 8192)]), Err(Errno::EOVERFLOW));
        assert_eq!(core_logging_start_checks(4096, &vec![(0, 4096); 257]), Err(Errno::E2BIG));
        assert_eq!(core_logging_start_checks(4096, &[(0, 4096), (8192, 4096)]), Ok(()));
        // Alignment is checked before overlap, range by range.
        assert_eq!(core_logging_start_checks(4096, &[(0, 4096), (0, 4096), (1, 1)]), Err(Errno::EINVAL));
    }

    #[test]
    fn logging_report_checks_follow_vfio_main_c() {
        assert_eq!(core_logging_report_checks(0, 4096, 2048), Err(Errno::EINVAL));
        assert_eq!(core_logging_report_checks(0, 4096, 12288), Err(Errno::EINVAL));
        assert_eq!(core_logging_report_checks(u64::MAX, 2, 4096), Err(Errno::EOVERFLOW));
        assert_eq!(core_logging_report_checks(0, 1 << 20, 1 << 16), Ok(()));
    }
}
