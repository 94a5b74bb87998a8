//! DMA dirty-page logging: the core's argument checks and the driver's log.

use super::SimV2;
use crate::device::DevResult;
use crate::device::sim::defects::Defect;
use crate::errno::Errno;

impl SimV2 {
    pub(super) fn dma_log_start_impl(&mut self, page_size: u64, ranges: &[(u64, u64)]) -> DevResult<u64> {
        if !self.cfg.dma_logging {
            return Err(Errno::ENOTTY);
        }
        crate::oracle::dma::check_dma_ranges(page_size, ranges)?;
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
        crate::oracle::dma::check_dma_report(iova, length, page_size)?;
        if self.cfg.report_stub {
            // A kernel without IOMMUFD: iova_bitmap_for_each() is a stub.
            return Err(Errno::EOPNOTSUPP);
        }
        let bits = length.div_ceil(page_size);
        if (bitmap.len() as u64) < bits.div_ceil(64) {
            return Err(Errno::EFAULT);
        }
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
