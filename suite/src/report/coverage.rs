//! Kernel coverage of a fuzzing session, as the run record keeps it: the distinct PCs with the
//! time of their first sighting and, once the PCs are symbolized against the kernel
//! (`fuzz::symbolize`), the driver's functions with their KCOV blocks and lines. The HTML view
//! is `report::html::coverage`.

use serde::{Deserialize, Serialize};

/// What a session's coverage source saw (the `coverage` member of a `fuzz` record line).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoverageRecord {
    /// The source (`kcov`).
    pub source: String,
    /// Walks were drawn from the corpus (false: blind, coverage only measured).
    pub guided: bool,
    /// Which PCs count (`named functions from FILE`, ...).
    pub filter: String,
    /// Link-time address of the kernel's `_text`, the base the PCs are canonical to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_base: Option<String>,
    /// Check runs (walks, corpus replays, shrink candidates).
    pub execs: u64,
    /// Walks that were mutants of corpus entries.
    pub mutants: u64,
    /// Code paths swept with faults, the walks that swept them, and how many of those
    /// injected their fault.
    #[serde(default)]
    pub sweep_paths: u64,
    #[serde(default)]
    pub sweep_runs: u64,
    #[serde(default)]
    pub sweep_faults: u64,
    /// Neighbour runs (variants of new data-file calls), and how many reached a new PC.
    #[serde(default)]
    pub neighbour_runs: u64,
    #[serde(default)]
    pub neighbour_finds: u64,
    /// Corpus entries at the end (before minimizing).
    pub corpus: usize,
    /// Kernel PCs recorded before filtering, summed over runs.
    pub raw_pcs: u64,
    /// Runs whose trace buffer filled up.
    #[serde(default)]
    pub truncated_runs: u64,
    /// Every distinct PC that passed the filter, `0x...`, with the seconds from the session's
    /// start to its first sighting; in that order.
    pub pcs: Vec<(String, f64)>,
    /// Symbolized coverage of the driver, when the PCs were symbolized against its kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverCoverage>,
}

impl CoverageRecord {
    /// The PCs as numbers.
    pub fn pc_values(&self) -> Vec<u64> {
        self.pcs.iter().filter_map(|(p, _)| parse_hex(p)).collect()
    }

    /// Distinct PCs reached by `secs` seconds.
    pub fn pcs_by(&self, secs: f64) -> usize {
        self.pcs.iter().filter(|(_, t)| *t <= secs).count()
    }

    /// (seconds, distinct PCs) at every sighting of a new PC.
    pub fn curve(&self) -> Vec<(f64, usize)> {
        let mut t: Vec<f64> = self.pcs.iter().map(|(_, t)| *t).collect();
        t.sort_by(f64::total_cmp);
        t.iter().enumerate().map(|(i, s)| (*s, i + 1)).collect()
    }
}

/// `0xffffffff81234567` -> the number.
pub fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// The driver's code as the kernel image has it: functions, their KCOV blocks and lines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DriverCoverage {
    /// The source file (`samples/vfio-mdev/mtty.c`).
    pub file: String,
    /// What the blocks were counted in (`vmlinux 7.2.13`).
    pub image: String,
    pub functions: Vec<FunctionCoverage>,
    /// Blocks KCOV cannot observe, left out of every count: tail calls of
    /// `__sanitizer_cov_trace_pc` (`jmp`), for which KCOV records the return address of the
    /// function's caller, never the block's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tail_calls: Vec<TailCall>,
}

/// A block KCOV cannot observe (see [`DriverCoverage::tail_calls`]): where it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TailCall {
    pub function: String,
    pub line: u32,
    #[serde(default)]
    pub text: String,
}

/// One function: its blocks (KCOV call sites) and its lines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCoverage {
    pub name: String,
    /// KCOV blocks (calls of `__sanitizer_cov_trace_pc` attributed to this function, inlined
    /// code included) and how many were reached.
    pub blocks: usize,
    pub covered: usize,
    /// Source lines with at least one block, in order.
    pub lines: Vec<LineCoverage>,
}

/// One source line with blocks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LineCoverage {
    pub line: u32,
    /// Blocks on this line, and how many were reached.
    pub blocks: usize,
    pub covered: usize,
    /// The source text, when the source was at hand.
    #[serde(default)]
    pub text: String,
}

impl DriverCoverage {
    /// (reached, total) blocks over every function.
    pub fn totals(&self) -> (usize, usize) {
        self.functions.iter().fold((0, 0), |(c, b), f| (c + f.covered, b + f.blocks))
    }
}

/// A KCOV record whose PCs were first reached at `times` (tests of the record and its plots).
#[cfg(test)]
pub(crate) fn test_record(guided: bool, times: &[f64]) -> CoverageRecord {
    CoverageRecord {
        source: "kcov".into(),
        guided,
        pcs: times
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("0x{:x}", 0xffff_ffff_8100_0000u64 + i as u64), *t))
            .collect(),
        ..CoverageRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::test_record as record;

    #[test]
    fn the_curve_counts_distinct_pcs_by_first_sighting() {
        let r = record(true, &[0.5, 0.1, 2.0]);
        assert_eq!(r.curve(), vec![(0.1, 1), (0.5, 2), (2.0, 3)]);
        assert_eq!(r.pcs_by(1.0), 2);
        assert_eq!(r.pc_values()[0], 0xffff_ffff_8100_0000);
    }
}
