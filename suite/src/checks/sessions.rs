//! Generated families: data sessions end when the FSM leaves a transfer state; the saving
//! group shares one session; data fd conventions (stream files, direction, close-on-exec).

use super::arcs::reach;
use super::build::{capture, capture_more, check, drain, errno, get, read_once, set, v2, write};
use crate::check::{Check, ExpectKind, Step};
use crate::clauses::id::*;
use crate::errno::Errno;
use crate::op::{FdRef, Op, ReadArgs, Segmentation, Source, WriteArgs};
use crate::state::MigState;

fn old_read() -> Step {
    read_once(FdRef::Current, 4096)
}

/// `session.end.*` and `session.saving_group.*`.
pub fn session_checks() -> Vec<Check> {
    use MigState::*;
    let mut out = vec![
        check(
            "session.end.stop_copy_to_stop",
            "STOP_COPY -> STOP ends the saving session: the old fd gives end of stream or an error",
            v2(1),
            vec![set(StopCopy), drain(), set(Stop), old_read()],
            &[V2_ARC_STOP_004],
        ),
        check(
            "session.end.stop_copy_mid_stream",
            "leaving STOP_COPY before the end of the stream still ends the session",
            v2(1),
            vec![set(StopCopy), read_once(FdRef::Current, 8), set(Running), old_read()],
            &[V2_ARC_STOP_004],
        ),
        check(
            "session.end.stop_copy_to_resuming",
            "STOP_COPY -> RESUMING ends the saving session and opens a new one",
            v2(1),
            vec![
                set(StopCopy),
                read_once(FdRef::Current, 8),
                set(Resuming),
                read_once(FdRef::Previous, 4096),
            ],
            &[V2_ARC_STOP_004, V2_STATE_005],
        ),
        check(
            "session.end.resuming_to_running",
            "after RESUMING -> RUNNING the old resume fd refuses data (no post-copy)",
            v2(1),
            {
                let mut s = reach(Resuming);
                s.push(set(Running));
                s.push(
                    Step::new(Op::Write(WriteArgs {
                        fd: FdRef::Current,
                        data: Source::Stream(crate::op::StreamName("arc".into())),
                        mutate: None,
                        segment: Segmentation::Whole,
                        offset: None,
                        keep_going: false,
                        from_thread: false,
                    }))
                    .oracle(),
                );
                s
            },
            &[DEBATE_POSTCOPY_002, DEBATE_POSTCOPY_003, V2_ARC_STOP_004],
        ),
        check(
            "session.end.pre_copy_to_running",
            "PRE_COPY -> RUNNING ends the saving session",
            v2(5),
            vec![set(PreCopy), read_once(FdRef::Current, 8), set(Running), old_read()],
            &[V2_ARC_RUN_002],
        ),
        check(
            "session.end.pre_copy_p2p_to_running_p2p",
            "PRE_COPY_P2P -> RUNNING_P2P ends the saving session",
            v2(7),
            vec![set(PreCopyP2p), read_once(FdRef::Current, 8), set(RunningP2p), old_read()],
            &[V2_ARC_P2P_001],
        ),
        check(
            "session.end.close_device",
            "closing the device fd ends the data session",
            v2(1),
            vec![
                set(StopCopy),
                Step::new(Op::CloseDevice).expect(ExpectKind::Ok, &[V2_FD_002]),
                old_read(),
                Step::new(Op::Reopen).setup(),
            ],
            &[V2_FD_002],
        ),
    ];
    // The saving group shares one session: the stream read across PRE_COPY, PRE_COPY_P2P and
    // STOP_COPY restores.
    for (id, flags, path) in [
        ("session.saving_group.pre_copy_stop_copy", 5, vec![StopCopy]),
        ("session.saving_group.pre_copy_p2p_stop_copy", 7, vec![PreCopyP2p, StopCopy]),
        ("session.saving_group.p2p_round_trip", 7, vec![PreCopyP2p, PreCopy, PreCopyP2p, StopCopy]),
    ] {
        let mut steps = vec![
            set(PreCopy),
            Step::new(Op::Read(ReadArgs {
                capture: Some(crate::op::StreamName("s".into())),
                once: true,
                chunk: 16,
                ..Default::default()
            })),
        ];
        for st in path {
            steps.push(set(st).expect(ExpectKind::DataFd(false), &[V2_SAVE_001, V2_STATE_005]));
        }
        steps.push(capture_more("s"));
        steps.push(Step::new(Op::Reset).setup());
        steps.push(set(Resuming));
        steps.push(write("s", None, Segmentation::Whole).expect(ExpectKind::Ok, &[V2_SAVE_001]));
        steps.push(set(Running));
        out.push(check(
            id,
            "the saving group shares one session: the stream read across its states restores",
            v2(flags),
            steps,
            &[V2_SAVE_001, V2_SAVE_005, V2_ARC_RES_001],
        ));
    }
    out
}

/// `fd.*`: data fds are close-on-exec stream files with one direction.
pub fn fd_checks() -> Vec<Check> {
    use MigState::*;
    let flags = |fd| Step::new(Op::FdFlags { fd });
    vec![
        check(
            "fd.saving.conventions",
            "the saving fd is O_RDONLY, close-on-exec, and a stream (no offsets)",
            v2(1),
            vec![
                set(StopCopy),
                flags(FdRef::Current)
                    .expect(ExpectKind::Cloexec(true), &[V2_STATE_005])
                    .expect(ExpectKind::AccessMode(0), &[V2_FD_003]),
                Step::new(Op::Read(ReadArgs { offset: Some(0), chunk: 16, ..Default::default() }))
                    .expect(errno(&[Errno::ESPIPE]), &[V2_FD_003]),
                Step::new(Op::Write(WriteArgs {
                    fd: FdRef::Current,
                    data: Source::Zeros(4),
                    mutate: None,
                    segment: Default::default(),
                    offset: None,
                    keep_going: false,
                    from_thread: false,
                }))
                .oracle()
                .expect(ExpectKind::Fails, &[V2_FD_003]),
            ],
            &[V2_FD_003, V2_STATE_005],
        ),
        check(
            "fd.resuming.conventions",
            "the resume fd is O_WRONLY, close-on-exec, and a stream (no offsets)",
            v2(1),
            vec![
                set(Resuming),
                flags(FdRef::Current)
                    .expect(ExpectKind::Cloexec(true), &[V2_STATE_005])
                    .expect(ExpectKind::AccessMode(1), &[V2_FD_003]),
                Step::new(Op::Read(ReadArgs { once: true, chunk: 16, ..Default::default() }))
                    .oracle()
                    .expect(ExpectKind::Bytes(super::build::cmp(crate::check::CmpOp::Eq, 0)), &[V2_FD_003]),
                Step::new(Op::Write(WriteArgs {
                    fd: FdRef::Current,
                    data: Source::Zeros(4),
                    mutate: None,
                    segment: Default::default(),
                    offset: Some(0),
                    keep_going: false,
                    from_thread: false,
                }))
                .expect(errno(&[Errno::ESPIPE]), &[V2_FD_003]),
            ],
            &[V2_FD_003, V2_STATE_005],
        ),
        check(
            "fd.stop_copy.eof_is_permanent",
            "in STOP_COPY end of stream is permanent: read keeps returning 0 and poll says readable",
            v2(1),
            vec![
                set(StopCopy),
                drain().expect(ExpectKind::Eof(true), &[V2_SAVE_006]),
                read_once(FdRef::Current, 4096)
                    .expect(
                        ExpectKind::Bytes(super::build::cmp(crate::check::CmpOp::Eq, 0)),
                        &[V2_PRECOPY_008],
                    )
                    .expect(ExpectKind::Eof(true), &[V2_PRECOPY_008]),
                read_once(FdRef::Current, 4096).expect(ExpectKind::Eof(true), &[V2_PRECOPY_008]),
                Step::new(Op::Poll { fd: FdRef::Current, timeout_ms: 100 })
                    .expect(ExpectKind::Readable(true), &[V2_PRECOPY_008]),
            ],
            &[V2_PRECOPY_008, V2_SAVE_006],
        ),
        check(
            "fd.get.data_fd_minus_one",
            "GET returns data_fd -1 even while a session is open",
            v2(1),
            vec![set(StopCopy), get(), capture("s"), get()],
            &[V2_STATE_001],
        ),
    ]
}
