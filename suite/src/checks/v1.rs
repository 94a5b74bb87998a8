//! Generated families for v1 (migration region) devices: device_state encodings, the required
//! flows, header field rules, the save and resume loops, reset.

use super::build::{check, v1};
use crate::check::{Check, Cmp, CmpOp, ExpectKind, Step};
use crate::clauses::ClauseId;
use crate::clauses::id::*;
use crate::op::{
    Access, Op, RegionArgs, RegionRef, Source, StreamName, V1Field, V1FieldArgs, V1ResumeArgs, V1SaveArgs,
};
use crate::oracle::v1 as o;

fn set(v: u32) -> Step {
    Step::new(Op::V1SetState(v)).oracle()
}

fn read(field: V1Field) -> Step {
    Step::new(Op::V1Read(V1FieldArgs { field, value: None, width: None, misalign: 0 }))
}

fn state_is(v: u64, clauses: &[ClauseId]) -> Step {
    read(V1Field::DeviceState).expect(ExpectKind::ValueMasked { mask: 7, value: v }, clauses)
}

fn save(capture: &str, via: Access, append: bool, once: bool) -> Step {
    Step::new(Op::V1Save(V1SaveArgs {
        capture: Some(StreamName(capture.into())),
        append,
        via,
        max_iterations: None,
        once,
        extra_pending_reads: 0,
    }))
    .oracle()
}

fn resume(name: &str, via: Access, scribble: bool) -> Step {
    Step::new(Op::V1Resume(V1ResumeArgs {
        data: Source::Stream(StreamName(name.into())),
        mutate: None,
        via,
        scribble,
    }))
    .oracle()
}

/// A full stop-and-copy save into `name`, then back to RUNNING by reset.
fn saved(name: &str, via: Access) -> Vec<Step> {
    vec![set(o::SAVING).setup(), save(name, via, false, false).setup(), Step::new(Op::Reset).setup()]
}

/// The restore half: RESUMING, the data, RUNNING.
fn restored(name: &str, via: Access, scribble: bool) -> Vec<Step> {
    vec![
        set(o::RESUMING).expect(ExpectKind::Ok, &[V1_FLOW_007]),
        resume(name, via, scribble).expect(ExpectKind::Ok, &[V1_RES_002]),
        // A stream saved in _SAVING that does not restore: nothing was gathered (V1-STATE-007).
        set(o::RUNNING).expect(ExpectKind::Ok, &[V1_FLOW_007, V1_RES_003, V1_STATE_007]),
        state_is(1, &[V1_FLOW_007]),
    ]
}

/// What the oracle can report on one judged write of `v` from running ([`o::judge_write`]).
fn write_clauses(v: u32) -> Vec<ClauseId> {
    let mut out = vec![
        V1_STATE_002,
        V1_STATE_003,
        V1_STATE_009,
        V1_STATE_010,
        V1_STRICT_001,
        V1_STRICT_003,
        V1_FLOW_002,
        V1_FLOW_003,
        V1_FLOW_005,
        V1_FLOW_007,
    ];
    if v & (o::RESUMING | o::RUNNING) == o::RESUMING | o::RUNNING {
        out.push(V1_STRICT_007);
    }
    out
}

/// `v1.*`.
pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    for v in 0..8u32 {
        out.push(check(
            &format!("v1.state.write_{v:03b}"),
            &format!("writing device_state {} from running", o::name(v)),
            v1(),
            vec![set(v)],
            &write_clauses(v),
        ));
    }
    out.push(check(
        "v1.state.default_running",
        "device_state reads 001b (running) on a fresh device",
        v1(),
        vec![state_is(1, &[V1_FLOW_001, V1_REG_002])],
        &[V1_FLOW_001, V1_REG_002],
    ));
    out.push(check(
        "v1.header.reserved",
        "the reserved field reads 0 and ignores writes",
        v1(),
        vec![
            read(V1Field::Reserved)
                .expect(ExpectKind::Value(Cmp { op: CmpOp::Eq, value: 0 }), &[V1_FIELD_001]),
            Step::new(Op::V1Write(V1FieldArgs {
                field: V1Field::Reserved,
                value: Some(0xffff_ffff),
                width: None,
                misalign: 0,
            })),
            read(V1Field::Reserved)
                .expect(ExpectKind::Value(Cmp { op: CmpOp::Eq, value: 0 }), &[V1_FIELD_001]),
        ],
        &[V1_FIELD_001],
    ));
    for (name, field, clause) in [
        ("pending_bytes", V1Field::PendingBytes, V1_FIELD_002),
        ("data_offset", V1Field::DataOffset, V1_FIELD_003),
    ] {
        let (off, _) = field.offset_width();
        out.push(check(
            &format!("v1.header.{name}_read_only"),
            &format!("{name} is read-only: a write leaves it unchanged"),
            v1(),
            vec![
                set(o::SAVING).setup(),
                Step::new(Op::RegionRead(RegionArgs {
                    region: RegionRef::Migration,
                    offset: off,
                    width: 8,
                    value: None,
                    via: Access::Rw,
                    save_as: Some("before".into()),
                })),
                Step::new(Op::V1Write(V1FieldArgs { field, value: Some(0x1000), width: None, misalign: 0 })),
                Step::new(Op::RegionRead(RegionArgs {
                    region: RegionRef::Migration,
                    offset: off,
                    width: 8,
                    value: None,
                    via: Access::Rw,
                    save_as: None,
                }))
                .expect(ExpectKind::EqualsSaved("before".into()), &[clause]),
            ],
            &[clause],
        ));
    }
    for (name, width, misalign) in [("one_byte", 1u8, 0u8), ("two_bytes", 2, 0), ("misaligned", 4, 1)] {
        out.push(check(
            &format!("v1.header.access_{name}"),
            &format!("a {name} access to device_state is refused"),
            v1(),
            vec![
                Step::new(Op::V1Read(V1FieldArgs {
                    field: V1Field::DeviceState,
                    value: None,
                    width: Some(width),
                    misalign,
                }))
                .expect(ExpectKind::Fails, &[V1_REG_003]),
            ],
            &[V1_REG_003],
        ));
    }
    for (via, name) in [(Access::Rw, "rw"), (Access::Mmap, "mmap")] {
        let mut steps = saved("s", via);
        steps.extend(restored("s", via, false));
        out.push(check(
            &format!("v1.save_resume.stop_and_copy_{name}"),
            &format!("stop-and-copy save and resume through the data section ({name})"),
            v1(),
            steps,
            &[
                V1_FLOW_003,
                V1_SAVE_004,
                V1_SAVE_005,
                V1_SAVE_008,
                V1_FIELD_005,
                V1_REG_001,
                V1_REG_004,
                V1_REG_005,
                V1_REG_006,
            ],
        ));
    }
    // Live save: pre-copy one iteration, then stop-and-copy without draining first.
    let mut steps = vec![
        set(o::SAVING | o::RUNNING).expect(ExpectKind::Ok, &[V1_FLOW_005]),
        save("s", Access::Rw, false, true),
        set(o::SAVING).expect(ExpectKind::Ok, &[V1_FLOW_004, V1_FLOW_006, V1_SAVE_007]),
        save("s", Access::Rw, true, false),
        set(0).expect(ExpectKind::Ok, &[V1_FLOW_003]),
        Step::new(Op::Reset).setup(),
    ];
    steps.extend(restored("s", Access::Rw, false));
    out.push(check(
        "v1.save_resume.live",
        "live save: pre-copy, stop-and-copy without draining, stop; the stream restores",
        v1(),
        steps,
        &[V1_FLOW_004, V1_FLOW_005, V1_FLOW_006, V1_SAVE_007],
    ));
    let mut steps = saved("s", Access::Rw);
    steps.extend(restored("s", Access::Rw, true));
    out.push(check(
        "v1.resume.data_consumed_at_data_size",
        "the driver consumes the data when data_size is written: scribbling over it afterwards does not matter",
        v1(),
        steps,
        &[V1_RES_002],
    ));
    let mut steps = vec![
        set(o::SAVING).setup(),
        save("a", Access::Rw, false, false),
        Step::new(Op::Reset).setup(),
        set(o::SAVING).setup(),
    ];
    steps.push(
        Step::new(Op::V1Save(V1SaveArgs {
            capture: Some(StreamName("b".into())),
            extra_pending_reads: 3,
            ..Default::default()
        }))
        .oracle(),
    );
    steps.push(Step::new(Op::Reset).setup());
    steps.extend(restored("b", Access::Rw, false));
    out.push(check(
        "v1.save.pending_bytes_reads_are_idempotent",
        "reading pending_bytes several times per iteration does not spoil the stream",
        v1(),
        steps,
        &[V1_SAVE_001],
    ));
    for v in [o::SAVING, o::SAVING | o::RUNNING, o::RESUMING] {
        out.push(check(
            &format!("v1.reset.from_{v:03b}"),
            &format!("VFIO_DEVICE_RESET from {} returns device_state to 001b", o::name(v)),
            v1(),
            vec![
                set(v).setup(),
                Step::new(Op::Reset).expect(ExpectKind::Ok, &[V1_STATE_004]),
                state_is(1, &[V1_STATE_004]),
            ],
            &[V1_STATE_004],
        ));
    }
    out
}
