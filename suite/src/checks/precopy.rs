//! Generated family: the pre-copy rules (PRECOPY_INFO, temporary end of stream).

use super::build::{check, cmp, errno, read_once, set, v2};
use crate::check::{Check, CmpOp, ExpectKind, Step};
use crate::clauses::id::*;
use crate::errno::Errno;
use crate::op::{FdRef, Op, PrecopyArgs, ReadArgs};
use crate::state::MigState;

fn info() -> Step {
    Step::new(Op::PrecopyInfo(PrecopyArgs::default())).oracle()
}

fn info_argsz(argsz: u32) -> Step {
    Step::new(Op::PrecopyInfo(PrecopyArgs { argsz: Some(argsz), ..Default::default() })).oracle()
}

/// `precopy.*`.
pub fn checks() -> Vec<Check> {
    use MigState::*;
    vec![
        check(
            "precopy.info.first_query",
            "the first PRECOPY_INFO in PRE_COPY succeeds with initial_bytes > 0 and dirty_bytes 0",
            v2(5),
            vec![
                set(PreCopy),
                info()
                    .expect(ExpectKind::Ok, &[V2_PRECOPY_001])
                    .expect(ExpectKind::InitialBytes(cmp(CmpOp::Gt, 0)), &[V2_PRECOPY_003])
                    .expect(ExpectKind::DirtyBytes(cmp(CmpOp::Eq, 0)), &[V2_PRECOPY_005]),
            ],
            &[V2_PRECOPY_001, V2_PRECOPY_003, V2_PRECOPY_005],
        ),
        check(
            "precopy.info.initial_bytes_falls",
            "initial_bytes never grows while the initial data is read",
            v2(5),
            vec![
                set(PreCopy),
                info(),
                read_once(FdRef::Current, 8),
                info(),
                read_once(FdRef::Current, 8),
                info(),
                read_once(FdRef::Current, 4096),
                info(),
            ],
            &[V2_PRECOPY_003],
        ),
        check(
            "precopy.info.in_pre_copy_p2p",
            "PRECOPY_INFO works in PRE_COPY_P2P",
            v2(7),
            vec![set(PreCopyP2p), info().expect(ExpectKind::Ok, &[V2_PRECOPY_001])],
            &[V2_PRECOPY_001],
        ),
        check(
            "precopy.info.outside_pre_copy",
            "PRECOPY_INFO fails with EINVAL once the session moved on to STOP_COPY",
            v2(5),
            vec![set(PreCopy), set(StopCopy), info().expect(errno(&[Errno::EINVAL]), &[V2_PRECOPY_002])],
            &[V2_PRECOPY_002],
        ),
        check(
            "precopy.info.short_argsz",
            "PRECOPY_INFO with argsz below the structure fails with EINVAL",
            v2(5),
            vec![set(PreCopy), info_argsz(8).expect(errno(&[Errno::EINVAL]), &[V2_PRECOPY_009])],
            &[V2_PRECOPY_009],
        ),
        check(
            "precopy.read.temporary_end_enomsg",
            "at a temporary end of the PRE_COPY stream read() fails with ENOMSG, not 0",
            v2(5),
            vec![
                set(PreCopy),
                Step::new(Op::Read(ReadArgs { max: Some(64 << 20), ..Default::default() }))
                    .oracle()
                    .expect(ExpectKind::Eof(false), &[V2_PRECOPY_007]),
            ],
            &[V2_PRECOPY_007],
        ),
        check(
            "precopy.read.temporary_end_then_stop_copy",
            "after a temporary end in PRE_COPY the stream continues in STOP_COPY to a permanent end",
            v2(5),
            vec![
                set(PreCopy),
                Step::new(Op::Read(ReadArgs { max: Some(64 << 20), ..Default::default() })),
                set(StopCopy),
                super::build::drain().expect(ExpectKind::Eof(true), &[V2_SAVE_006]),
            ],
            &[V2_SAVE_006, V2_SAVE_001],
        ),
    ]
}
