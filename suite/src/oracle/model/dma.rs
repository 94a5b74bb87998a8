//! The DMA-logging judges of the model (START, STOP, REPORT).

use super::*;

impl Model {
    /// Judges DMA_LOGGING_START.
    pub fn judge_dma_start(&mut self, core_err: Option<Errno>, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        if !self.facts.dma_logging {
            if obs.errno.is_none() {
                v.push(Violation::new(
                    [V2_FEAT_004],
                    "ENOTTY without DMA logging".to_string(),
                    obs.summary(),
                ));
            }
            return v;
        }
        if let Some(want) = core_err {
            if obs.errno != Some(want) {
                v.push(Violation::new(
                    [V2_LOG_002],
                    format!("the core rejects these ranges with {want}"),
                    obs.summary(),
                ));
            }
            return v;
        }
        if self.logging {
            if obs.errno.is_none() {
                v.push(Violation::new(
                    [V2_LOG_005],
                    "a second DMA_LOGGING_START before STOP is rejected".to_string(),
                    "succeeded".to_string(),
                ));
            }
        } else if obs.errno.is_none() {
            self.logging = true;
            match obs.value {
                // "On output the device will return the page size it selected": 0 is none.
                Some(0) => v.push(Violation::new(
                    [V2_LOG_004],
                    "START returns the page size the device selected (non-zero)".to_string(),
                    "page_size 0".to_string(),
                )),
                // The uAPI sets no range; only REPORT's own page_size must be a power of two
                // >= 4096 (a core check), and REPORT may use any such size.
                Some(ps) if ps < 4096 || !ps.is_power_of_two() => v.push(Violation::new(
                    [V2_LOG_012],
                    "a page size REPORT takes (a power of 2 >= 4096)".to_string(),
                    format!("page_size {ps}"),
                )),
                _ => {}
            }
        }
        v
    }

    /// Judges DMA_LOGGING_STOP.
    pub fn judge_dma_stop(&mut self, _obs: &Observation) -> Vec<Violation> {
        self.logging = false;
        Vec::new()
    }

    /// Judges DMA_LOGGING_REPORT (`core_err`: what the core's own checks must return).
    pub fn judge_dma_report(&mut self, core_err: Option<Errno>, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        if !self.facts.dma_logging {
            return v;
        }
        if let Some(want) = core_err {
            if obs.errno != Some(want) {
                v.push(Violation::new(
                    [V2_LOG_007],
                    format!("the core rejects this report with {want}"),
                    obs.summary(),
                ));
            }
            return v;
        }
        if obs.errno == Some(Errno::EOPNOTSUPP) {
            // A kernel without IOMMUFD: iova_bitmap_for_each() is a stub that always fails.
            self.report_stub = true;
            return v;
        }
        if !self.logging {
            if obs.errno.is_none() {
                v.push(Violation::new(
                    [V2_LOG_006],
                    "DMA_LOGGING_REPORT fails while logging is off".to_string(),
                    "succeeded".to_string(),
                ));
            }
            return v;
        }
        if let Some((_, lost)) = obs.bitmap
            && lost > 0
        {
            v.push(Violation::new(
                [V2_LOG_008],
                "REPORT only sets bits; pre-set bits stay set".to_string(),
                format!("{lost} pre-set bits cleared"),
            ));
        }
        v
    }
}
