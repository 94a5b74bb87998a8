//! Bounds on the sizes and counts a sequence may give (checked when it is loaded by [`Op::check_limits`], so bad input
//! is a located error instead of a 64 GiB allocation or a silent clamp at run time).
//!
//! Where the uAPI itself carries any value of its field (a `__u32 argsz`, a `__u64 page_size`
//! hint), any value is accepted: sending it is the test. The bounds are where the suite must
//! build what the value describes (ranges, a bitmap, a buffer) or where it would otherwise
//! change the value silently.

use super::*;

/// Ranges `dma_log_start` may build (`count`, or `ranges` given one by one). The kernel
/// takes 1 to `LOG_MAX_RANGES` (PAGE_SIZE / 16: 256 with 4 KiB pages, 4096 with 64 KiB;
/// include/uapi/linux/vfio.h, drivers/vfio/vfio_main.c 6.12 l.1049-1087) and refuses more
/// with E2BIG before it reads them: 16 x 4096 covers that test on any page size.
pub const DMA_RANGES: u64 = 16 * 4096;
/// Largest DMA_LOGGING_REPORT bitmap the suite allocates (bytes).
pub const DMA_BITMAP: u64 = 16 << 20;
/// Largest `read` chunk: the engine's read buffer (bytes per read() call).
pub const READ_CHUNK: u64 = 1 << 20;
/// Largest single write, `zeros` source and segment size (the engine's `MAX_WRITE`).
pub const WRITE: u64 = 64 << 20;
/// Largest `argsz` of a raw `feature` call: the suite passes a buffer of argsz bytes
/// (the kernel reads only the feature's own structure from it).
pub const FEATURE_ARGSZ: u64 = 1 << 20;

/// `field: value is out of range lo to hi (why)`.
fn out_of_range(field: &str, value: u64, lo: u64, hi: u64, why: &str) -> String {
    format!("{field}: {value} is out of range {lo} to {hi} ({why})")
}

fn in_range(field: &str, value: u64, lo: u64, hi: u64, why: &str) -> Result<(), String> {
    if (lo..=hi).contains(&value) { Ok(()) } else { Err(out_of_range(field, value, lo, hi, why)) }
}

impl Mutation {
    fn check_limits(&self, op: &str) -> Result<(), String> {
        match self {
            Mutation::FlipBit { bit, .. } | Mutation::FlipAt { bit, .. } => {
                in_range(&format!("{op}.mutate.bit"), u64::from(*bit), 0, 7, "a bit of one byte")?;
            }
            _ => {}
        }
        match self {
            Mutation::Fraction { den, .. }
            | Mutation::FlipAt { den, .. }
            | Mutation::SpliceAt { den, .. } => in_range(
                &format!("{op}.mutate.den"),
                u64::from(*den),
                1,
                u64::from(u32::MAX),
                "the denominator of num/den",
            ),
            _ => Ok(()),
        }
    }
}

impl Segmentation {
    fn check_limits(&self) -> Result<(), String> {
        let size = |field: &str, n: u32| {
            in_range(
                field,
                u64::from(n),
                1,
                limits::WRITE,
                "bytes per write() call; 0 would write nothing forever",
            )
        };
        match self {
            Segmentation::Whole => Ok(()),
            Segmentation::Fixed(n) => size("write.segment.fixed", *n),
            Segmentation::Random { max, .. } => size("write.segment.random.max", *max),
            Segmentation::Cycle(v) | Segmentation::Head { sizes: v, .. } => {
                let field = if matches!(self, Segmentation::Cycle(_)) {
                    "write.segment.cycle"
                } else {
                    "write.segment.head.sizes"
                };
                if v.is_empty() {
                    return Err(format!("{field}: the list of sizes is empty (give at least one size)"));
                }
                v.iter().try_for_each(|n| size(field, *n))
            }
        }
    }
}

fn check_source(op: &str, s: &Source) -> Result<(), String> {
    match s {
        Source::Zeros(n) => in_range(
            &format!("{op}.data.zeros"),
            u64::from(*n),
            0,
            limits::WRITE,
            "bytes the suite builds and writes",
        ),
        _ => Ok(()),
    }
}

impl Op {
    /// Checks the sizes and counts of the operation against [this module](self): the message names
    /// the field (`op.field`) and the range it takes.
    pub fn check_limits(&self) -> Result<(), String> {
        match self {
            Op::DmaLogStart(a) => {
                let why = "the kernel takes 1 to LOG_MAX_RANGES (PAGE_SIZE/16: 256 with 4 KiB pages) \
                           and refuses more with E2BIG";
                if let Some(n) = a.count {
                    in_range("dma_log_start.count", u64::from(n), 0, limits::DMA_RANGES, why)?;
                    if !a.ranges.is_empty() {
                        return Err("dma_log_start: give `count` or `ranges`, not both".to_string());
                    }
                }
                let n = a.ranges.len() as u64;
                if n > limits::DMA_RANGES {
                    return Err(format!(
                        "dma_log_start.ranges: {n} ranges is out of range 0 to {} ({why})",
                        limits::DMA_RANGES
                    ));
                }
                Ok(())
            }
            Op::DmaLogReport(a) if a.page_size > 0 => {
                let bytes = a.length.div_ceil(a.page_size).div_ceil(64).saturating_mul(8);
                if bytes > limits::DMA_BITMAP {
                    let max_len = (limits::DMA_BITMAP * 8).saturating_mul(a.page_size);
                    return Err(format!(
                        "dma_log_report.length: {} at page_size {} needs a {bytes}-byte bitmap; the suite \
                         allocates at most {} bytes (16 MiB): length is out of range 0 to {max_len} at this page size",
                        a.length,
                        a.page_size,
                        limits::DMA_BITMAP
                    ));
                }
                Ok(())
            }
            Op::Read(a) => {
                in_range("read.chunk", u64::from(a.chunk), 1, limits::READ_CHUNK, "bytes per read() call")?;
                match a.max {
                    Some(0) => Err(out_of_range(
                        "read.max",
                        0,
                        1,
                        u64::MAX,
                        "a read of at most 0 bytes reads nothing",
                    )),
                    _ => Ok(()),
                }
            }
            Op::Write(a) => {
                check_source("write", &a.data)?;
                if let Some(m) = &a.mutate {
                    m.check_limits("write")?;
                }
                a.segment.check_limits()
            }
            Op::V1Resume(a) => {
                check_source("v1_resume", &a.data)?;
                match &a.mutate {
                    Some(m) => m.check_limits("v1_resume"),
                    None => Ok(()),
                }
            }
            Op::Feature(a) => match a.argsz {
                Some(n) => in_range(
                    "feature.argsz",
                    u64::from(n),
                    0,
                    limits::FEATURE_ARGSZ,
                    "the suite passes a buffer of argsz bytes; the kernel reads only the feature's structure",
                ),
                None => Ok(()),
            },
            Op::ConfigRead(a) | Op::ConfigWrite(a) => {
                in_range(&format!("{}.width", self.name()), u64::from(a.width), 1, 8, "bytes per access")?;
                if matches!(self, Op::ConfigWrite(_)) && a.value.is_none() {
                    return Err("config_write needs `value`".to_string());
                }
                Ok(())
            }
            Op::RegionRead(a) | Op::RegionWrite(a) => {
                in_range(&format!("{}.width", self.name()), u64::from(a.width), 1, 8, "bytes per access")?;
                if matches!(self, Op::RegionWrite(_)) && a.value.is_none() {
                    return Err("region_write needs `value`".to_string());
                }
                Ok(())
            }
            Op::RaceReset(a) => {
                if a.during == RaceCall::SetState && a.calls != 1 {
                    return Err(format!(
                        "race_reset.calls: {} with during: set_state; a SET is made once (a repeated SET \
                         after a reset would start a new migration): calls takes 1 here, 1 to {} with \
                         get_state or precopy_info",
                        a.calls,
                        crate::device::RACE_CALLS_MAX
                    ));
                }
                in_range(
                    "race_reset.calls",
                    u64::from(a.calls),
                    1,
                    u64::from(a.during.max_calls()),
                    "calls made back to back while the resets run",
                )
            }
            Op::V1Read(a) | Op::V1Write(a) => {
                if let Some(w) = a.width {
                    in_range(&format!("{}.width", self.name()), u64::from(w), 1, 8, "bytes per access")?;
                }
                if matches!(self, Op::V1Write(_)) && a.value.is_none() {
                    return Err("v1_write needs `value`".to_string());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
