//! Generated family: device DMA logging (START/STOP/REPORT rules).

use super::build::{check, cmp, drain, errno, set, v2f};
use crate::check::{Check, CmpOp, ExpectKind, Step};
use crate::clauses::Feature;
use crate::clauses::id::*;
use crate::errno::Errno;
use crate::op::{DmaReportArgs, DmaStartArgs, Op};
use crate::state::MigState;

const WINDOW: u64 = 1 << 20;

fn start(ranges: Vec<(u64, u64)>) -> Step {
    Step::new(Op::DmaLogStart(DmaStartArgs { page_size: 4096, ranges, count: None })).oracle()
}

fn start_count(count: u32) -> Step {
    Step::new(Op::DmaLogStart(DmaStartArgs { page_size: 4096, ranges: Vec::new(), count: Some(count) }))
        .oracle()
}

fn stop() -> Step {
    Step::new(Op::DmaLogStop).oracle()
}

fn report(prefill: u8, page_size: u64) -> Step {
    Step::new(Op::DmaLogReport(DmaReportArgs { iova: 0, length: WINDOW, page_size, prefill })).oracle()
}

fn dma() -> crate::check::Requires {
    v2f(1, &[Feature::DmaLogging])
}

/// `dmalog.*`.
pub fn checks() -> Vec<Check> {
    let mut out = vec![
        check(
            "dmalog.start.then_stop",
            "DMA_LOGGING_START then STOP succeed",
            dma(),
            vec![
                start_count(1).expect(ExpectKind::Ok, &[V2_LOG_003]),
                stop().expect(ExpectKind::Ok, &[V2_LOG_003]),
            ],
            &[V2_LOG_003, V2_LOG_004, V2_LOG_012],
        ),
        check(
            "dmalog.start.max_ranges",
            "START accepts as many ranges as fit in one kernel page (256)",
            dma(),
            vec![start_count(256).expect(ExpectKind::Ok, &[V2_LOG_003]), stop()],
            &[V2_LOG_003],
        ),
        check(
            "dmalog.start.twice",
            "a second START while logging is on is rejected",
            dma(),
            vec![start_count(1), start_count(1).expect(ExpectKind::Fails, &[V2_LOG_005]), stop()],
            &[V2_LOG_005],
        ),
        check(
            "dmalog.report.before_start",
            "REPORT fails while logging is off",
            dma(),
            vec![report(0, 4096).expect(ExpectKind::Fails, &[V2_LOG_006])],
            &[V2_LOG_006],
        ),
        check(
            "dmalog.report.keeps_preset_bits",
            "REPORT only sets bits: a bitmap pre-filled with ones stays all ones",
            dma(),
            vec![
                start(vec![(0, WINDOW)]),
                Step::new(Op::Wait { ms: 20 }),
                report(0xff, 4096).expect(ExpectKind::PresetKept(true), &[V2_LOG_008]),
                stop(),
            ],
            &[V2_LOG_008],
        ),
        check(
            "dmalog.report.clears_the_log",
            "REPORT reads and clears: with the device stopped a second REPORT sets no bit",
            dma(),
            vec![
                start(vec![(0, WINDOW)]),
                Step::new(Op::Wait { ms: 20 }),
                set(MigState::Stop),
                report(0, 4096),
                report(0, 4096).expect(ExpectKind::BitsSet(cmp(CmpOp::Eq, 0)), &[V2_LOG_009]),
                stop(),
            ],
            &[V2_LOG_009, V2_ARC_STOP_001],
        ),
        check(
            "dmalog.dma.quiet_in_stop",
            "a stopped device does no DMA: nothing new is logged while it is in STOP",
            dma(),
            vec![
                start(vec![(0, WINDOW)]),
                set(MigState::Stop),
                report(0, 4096),
                Step::new(Op::Wait { ms: 50 }),
                report(0, 4096).expect(ExpectKind::BitsSet(cmp(CmpOp::Eq, 0)), &[V2_ARC_STOP_001]),
                stop(),
            ],
            &[V2_ARC_STOP_001],
        ),
        check(
            "dmalog.fsm.survives_transitions",
            "logging keeps working across STOP_COPY -> STOP -> RUNNING (it is not tied to the FSM)",
            dma(),
            vec![
                start(vec![(0, WINDOW)]),
                set(MigState::StopCopy),
                drain(),
                set(MigState::Stop),
                set(MigState::Running),
                report(0, 4096).expect(ExpectKind::Ok, &[V2_LOG_001]),
                stop(),
            ],
            &[V2_LOG_001],
        ),
    ];
    for (name, what, page) in [
        ("page_size_1k", "a 1 KiB page size", 1024u64),
        ("page_size_not_pow2", "a page size that is not a power of 2", 12288),
    ] {
        out.push(check(
            &format!("dmalog.report.{name}"),
            &format!("REPORT with {what} fails with EINVAL (core check)"),
            dma(),
            vec![start_count(1), report(0, page).expect(errno(&[Errno::EINVAL]), &[V2_LOG_007]), stop()],
            &[V2_LOG_007],
        ));
    }
    for (name, what, ranges, want) in [
        ("no_ranges", "no ranges", Vec::new(), Errno::EINVAL),
        ("unaligned", "an unaligned range", vec![(1, 4096)], Errno::EINVAL),
        ("overlapping", "overlapping ranges", vec![(0, 8192), (4096, 4096)], Errno::EINVAL),
        ("overflowing", "a range that overflows", vec![(u64::MAX - 4095, 8192)], Errno::EOVERFLOW),
    ] {
        out.push(check(
            &format!("dmalog.start.rejects_{name}"),
            &format!("START with {what} fails with {want} (core check)"),
            dma(),
            vec![start(ranges).expect(errno(&[want]), &[V2_LOG_002])],
            &[V2_LOG_002],
        ));
    }
    out.push(check(
        "dmalog.start.rejects_too_many_ranges",
        "START with 257 ranges fails with E2BIG (core check)",
        dma(),
        vec![start_count(257).expect(errno(&[Errno::E2BIG]), &[V2_LOG_002])],
        &[V2_LOG_002],
    ));
    out
}
