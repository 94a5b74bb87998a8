//! The operation vocabulary: everything the suite can do to a device, as one closed enum.
//!
//! The same type is a YAML sequence step (serde, `- set_state: STOP_COPY`), a fuzz input
//! (`Arbitrary`) and a reproducer, so a fuzz finding prints as a replayable YAML sequence.
//! Operations are deliberately able to be malformed: raw state values, any argsz and flags,
//! stale or wrong-direction data fds.

mod args;
pub mod limits;
pub mod render;

pub use args::*;

use arbitrary::Arbitrary;
use serde::{Deserialize, Serialize};

use crate::state::StateArg;

/// One operation on a device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    // ---- v2 migration features ----
    /// SET `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`; a returned data fd becomes `current`.
    SetState(StateArg),
    /// GET `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`.
    GetState,
    /// GET `VFIO_DEVICE_FEATURE_MIGRATION` (the flags).
    GetFlags,
    /// GET `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`.
    DataSize,
    /// A raw `VFIO_DEVICE_FEATURE` call with any flags and argsz.
    Feature(FeatureArgs),
    /// DMA logging.
    DmaLogStart(DmaStartArgs),
    DmaLogStop,
    DmaLogReport(DmaReportArgs),
    // ---- data fds ----
    Read(ReadArgs),
    Write(WriteArgs),
    PrecopyInfo(PrecopyArgs),
    /// A read, write or PRECOPY_INFO with a buffer that is not (entirely) mapped.
    BadBuffer(BadBufferArgs),
    /// A SET from this thread while another thread reads the data fd.
    RaceSetRead(RaceArgs),
    /// A SET from this thread while another thread resets the device.
    RaceReset(RaceResetArgs),
    /// poll() for POLLIN (saving) or POLLOUT (resuming) with a timeout in ms.
    Poll {
        #[serde(default)]
        fd: FdRef,
        #[serde(default)]
        timeout_ms: u16,
    },
    /// fcntl(F_GETFD/F_GETFL): close-on-exec and access mode.
    FdFlags {
        #[serde(default)]
        fd: FdRef,
    },
    CloseFd {
        #[serde(default)]
        fd: FdRef,
    },
    // ---- device ----
    /// `VFIO_DEVICE_RESET`.
    Reset,
    /// Close the device fd (data fds stay open in the suite).
    CloseDevice,
    /// Open the device again after `close_device`.
    Reopen,
    ConfigRead(ConfigArgs),
    ConfigWrite(ConfigArgs),
    RegionRead(RegionArgs),
    RegionWrite(RegionArgs),
    SetIrqs(IrqArgs),
    /// Remember every interrupt counter under a name (for `irqs_since`).
    IrqMark(String),
    /// Let time pass (sim: logical ticks; kernel: sleep).
    Wait {
        ms: u16,
    },
    /// Read the debugfs state file (6.8+), an independent observer of the FSM state.
    DebugfsState,
    // ---- v1 region ----
    V1Read(V1FieldArgs),
    V1Write(V1FieldArgs),
    /// Read-modify-write of device_state as QEMU does: `(old & ~7) | value`.
    V1SetState(u32),
    V1Save(V1SaveArgs),
    V1Resume(V1ResumeArgs),
}

impl Op {
    /// The YAML key of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Op::SetState(_) => "set_state",
            Op::GetState => "get_state",
            Op::GetFlags => "get_flags",
            Op::DataSize => "data_size",
            Op::Feature(_) => "feature",
            Op::DmaLogStart(_) => "dma_log_start",
            Op::DmaLogStop => "dma_log_stop",
            Op::DmaLogReport(_) => "dma_log_report",
            Op::Read(_) => "read",
            Op::Write(_) => "write",
            Op::PrecopyInfo(_) => "precopy_info",
            Op::BadBuffer(_) => "bad_buffer",
            Op::RaceSetRead(_) => "race_set_read",
            Op::RaceReset(_) => "race_reset",
            Op::Poll { .. } => "poll",
            Op::FdFlags { .. } => "fd_flags",
            Op::CloseFd { .. } => "close_fd",
            Op::Reset => "reset",
            Op::CloseDevice => "close_device",
            Op::Reopen => "reopen",
            Op::ConfigRead(_) => "config_read",
            Op::ConfigWrite(_) => "config_write",
            Op::RegionRead(_) => "region_read",
            Op::RegionWrite(_) => "region_write",
            Op::SetIrqs(_) => "set_irqs",
            Op::IrqMark(_) => "irq_mark",
            Op::Wait { .. } => "wait",
            Op::DebugfsState => "debugfs_state",
            Op::V1Read(_) => "v1_read",
            Op::V1Write(_) => "v1_write",
            Op::V1SetState(_) => "v1_set_state",
            Op::V1Save(_) => "v1_save",
            Op::V1Resume(_) => "v1_resume",
        }
    }

    /// Every YAML key, for the loader's "unknown step" message.
    pub const NAMES: &'static [&'static str] = &[
        "set_state",
        "get_state",
        "get_flags",
        "data_size",
        "feature",
        "dma_log_start",
        "dma_log_stop",
        "dma_log_report",
        "read",
        "write",
        "precopy_info",
        "bad_buffer",
        "race_set_read",
        "race_reset",
        "poll",
        "fd_flags",
        "close_fd",
        "reset",
        "close_device",
        "reopen",
        "config_read",
        "config_write",
        "region_read",
        "region_write",
        "set_irqs",
        "irq_mark",
        "wait",
        "debugfs_state",
        "v1_read",
        "v1_write",
        "v1_set_state",
        "v1_save",
        "v1_resume",
    ];

    /// Whether the operation may hurt a real host when fuzzed (MMIO with random values,
    /// large DMA-logging ranges): live fuzzing needs `--allow-disruptive` for these.
    pub fn is_disruptive(&self) -> bool {
        match self {
            Op::RegionWrite(_) | Op::Feature(_) => true,
            Op::DmaLogStart(a) => a.count.unwrap_or(0) > 16 || a.ranges.len() > 16,
            Op::DmaLogReport(a) => a.length > (1 << 30),
            _ => false,
        }
    }

    /// Whether the operation only applies to v1 (region) devices.
    pub fn is_v1(&self) -> bool {
        matches!(self, Op::V1Read(_) | Op::V1Write(_) | Op::V1SetState(_) | Op::V1Save(_) | Op::V1Resume(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MigState;

    #[test]
    fn every_variant_name_is_listed_for_error_messages() {
        let ops = [
            Op::SetState(StateArg::Named(MigState::Stop)),
            Op::GetState,
            Op::Reset,
            Op::V1SetState(1),
            Op::Wait { ms: 1 },
        ];
        for op in ops {
            assert!(Op::NAMES.contains(&op.name()), "{} missing", op.name());
        }
        assert_eq!(Op::NAMES.len(), 33);
    }

    #[test]
    fn ops_round_trip_through_yaml() {
        let ops = vec![
            Op::SetState(StateArg::Named(MigState::StopCopy)),
            Op::SetState(StateArg::Raw(255)),
            Op::GetState,
            Op::Read(ReadArgs { capture: Some(StreamName("s".into())), ..ReadArgs::default() }),
            Op::Write(WriteArgs {
                fd: FdRef::Current,
                data: Source::Stream(StreamName("s".into())),
                mutate: Some(Mutation::FlipBit { offset: 3, bit: 1 }),
                segment: Segmentation::Cycle(vec![1, 7, 4095]),
                offset: None,
                keep_going: false,
                from_thread: false,
            }),
        ];
        let yaml = serde_saphyr::to_string(&ops).unwrap();
        let back: Vec<Op> = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, ops);
    }

    #[test]
    fn sizes_and_counts_beyond_what_the_suite_can_build_are_refused_with_field_and_range() {
        let start =
            |count| Op::DmaLogStart(DmaStartArgs { page_size: 0, ranges: Vec::new(), count: Some(count) });
        let e = start(u32::MAX).check_limits().unwrap_err();
        assert!(e.starts_with("dma_log_start.count: 4294967295 is out of range 0 to 65536 ("), "{e}");
        assert_eq!(start(0).check_limits(), Ok(()), "num_ranges 0 is the kernel's EINVAL test");
        assert_eq!(start(257).check_limits(), Ok(()), "past LOG_MAX_RANGES is the kernel's E2BIG test");
        let report =
            Op::DmaLogReport(DmaReportArgs { iova: 0, length: 1 << 40, page_size: 4096, prefill: 0 });
        let e = report.check_limits().unwrap_err();
        assert!(
            e.starts_with(
                "dma_log_report.length: 1099511627776 at page_size 4096 needs a 33554432-byte bitmap"
            ),
            "{e}"
        );
        let read = |chunk, max| Op::Read(ReadArgs { chunk, max, ..ReadArgs::default() });
        assert!(read(0, None).check_limits().unwrap_err().starts_with("read.chunk: 0 is out of range"));
        assert!(read(u32::MAX, None).check_limits().unwrap_err().contains("out of range 1 to 1048576"));
        assert!(read(7, Some(0)).check_limits().unwrap_err().starts_with("read.max: 0"));
        assert_eq!(read(7, Some(1)).check_limits(), Ok(()));
        let write = |data, segment, mutate| {
            Op::Write(WriteArgs {
                fd: FdRef::Current,
                data,
                mutate,
                segment,
                offset: None,
                keep_going: false,
                from_thread: false,
            })
        };
        let s = || Source::Stream(StreamName("s".into()));
        assert!(
            write(Source::Zeros(u32::MAX), Segmentation::Whole, None)
                .check_limits()
                .unwrap_err()
                .starts_with("write.data.zeros")
        );
        assert!(
            write(s(), Segmentation::Fixed(0), None)
                .check_limits()
                .unwrap_err()
                .starts_with("write.segment.fixed: 0")
        );
        assert!(write(s(), Segmentation::Cycle(vec![]), None).check_limits().unwrap_err().contains("empty"));
        let flip = Some(Mutation::FlipBit { offset: 0, bit: 9 });
        assert!(
            write(s(), Segmentation::Whole, flip)
                .check_limits()
                .unwrap_err()
                .starts_with("write.mutate.bit: 9")
        );
        let frac = Some(Mutation::Fraction { num: 1, den: 0 });
        assert!(
            write(s(), Segmentation::Whole, frac)
                .check_limits()
                .unwrap_err()
                .starts_with("write.mutate.den: 0")
        );
        let feature = Op::Feature(FeatureArgs {
            feature: 1,
            ops: vec![],
            extra_flags: 0,
            argsz: Some(u32::MAX),
            payload: 0,
        });
        assert!(feature.check_limits().unwrap_err().starts_with("feature.argsz: 4294967295"));
        let cfg = Op::ConfigRead(ConfigArgs { offset: 0, width: 0, value: None, save_as: None });
        assert!(cfg.check_limits().unwrap_err().starts_with("config_read.width: 0 is out of range"));
    }
}
