//! Generated family: what must hold in the stopped states, and that internal device state
//! travels with the stream (device-specific probes where needed).

use super::arcs::reach;
use super::build::{check, get, save_to, set, v2, write};
use super::probes::{Kind, region_read, region_write};
use crate::check::{Check, Cmp, CmpOp, ExpectKind, Requires, Step};
use crate::clauses::id::*;
use crate::op::{ConfigArgs, IrqAction, IrqArgs, IrqData, IrqIndex, Op, Segmentation};
use crate::state::MigState;

fn config_read(save_as: Option<&str>) -> Step {
    Step::new(Op::ConfigRead(ConfigArgs {
        offset: 4,
        width: 2,
        value: None,
        save_as: save_as.map(str::to_string),
    }))
}

fn config_write(value: u32) -> Step {
    Step::new(Op::ConfigWrite(ConfigArgs { offset: 4, width: 2, value: Some(value), save_as: None }))
}

fn irqs(index: IrqIndex, count: u32, data: IrqData) -> Step {
    Step::new(Op::SetIrqs(IrqArgs { index, action: IrqAction::Trigger, start: 0, count, data }))
}

const STOPPED: [MigState; 3] = [MigState::Stop, MigState::StopCopy, MigState::Resuming];

/// `stop.*` and `device.state.*`.
pub fn checks(kind: Kind) -> Vec<Check> {
    let mut out = Vec::new();
    for s in STOPPED {
        let mut steps = reach(s);
        steps.push(config_read(Some("cmd")).expect(ExpectKind::Ok, &[V2_ARC_STOP_002]));
        steps.push(config_write(0x0006).expect(ExpectKind::Ok, &[V2_ARC_STOP_002]));
        steps.push(irqs(IrqIndex::Intx, 1, IrqData::Eventfd).expect(ExpectKind::Ok, &[V2_ARC_STOP_002]));
        steps.push(irqs(IrqIndex::Intx, 0, IrqData::None).expect(ExpectKind::Ok, &[V2_ARC_STOP_002]));
        steps.push(get().expect(ExpectKind::State(s), &[V2_ARC_STOP_002, V2_STATE_003]));
        out.push(check(
            &format!("stop.external_access.{}", s.ident()),
            &format!("in {s} config space and SET_IRQS still work (external subsystems)"),
            v2(1),
            steps,
            &[V2_ARC_STOP_002],
        ));

        let source = kind.irq_source();
        let mut steps = vec![irqs(IrqIndex::Intx, 1, IrqData::Eventfd).setup()];
        steps.push(Step::new(Op::IrqMark("running".into())));
        steps.extend(source.clone().unwrap_or_default());
        steps.push(Step::new(Op::Wait { ms: 200 }));
        // Control: the stimulus does raise interrupts while RUNNING, or silence later proves
        // nothing.
        steps.push(
            Step::new(Op::GetState)
                .expect(ExpectKind::IrqsSince("running".into()), &[])
                .precondition("the stimulus raised no interrupt while RUNNING"),
        );
        steps.extend(reach(s));
        steps.push(Step::new(Op::IrqMark("stopped".into())));
        steps.push(Step::new(Op::Wait { ms: 200 }));
        steps.push(
            Step::new(Op::GetState)
                .oracle()
                .expect(ExpectKind::NoIrqsSince("stopped".into()), &[V2_ARC_STOP_001]),
        );
        let mut c = check(
            &format!("stop.no_interrupts.{}", s.ident()),
            &format!("a device in {s} raises no interrupt"),
            v2(1),
            steps,
            &[V2_ARC_STOP_001],
        );
        if let Err(why) = source {
            c.requires.unavailable = Some(why);
        }
        out.push(c);
    }

    // Internal state travels with the stream.
    let reg = kind.state_register();
    let (r, o, w) = reg.clone().unwrap_or((crate::op::RegionRef::Bar0, 0, 4));
    let mark = |v: u64| region_write(r.clone(), o, w, v);
    let readback = || {
        region_read(r.clone(), o, w, None)
            .expect(ExpectKind::Value(Cmp { op: CmpOp::Eq, value: 0x5a }), &[V2_ARC_RUN_001])
    };
    let restore = |name: &str| {
        vec![set(MigState::Resuming), write(name, None, Segmentation::Whole), set(MigState::Running)]
    };
    let mut variants = Vec::new();
    // Reset before RESUMING (QEMU loadvm).
    let mut steps = vec![mark(0x5a)];
    steps.extend(save_to("s"));
    steps.push(mark(0x33));
    steps.push(Step::new(Op::Reset).setup());
    steps.extend(restore("s"));
    steps.push(readback());
    variants.push((
        "device.state.restored_after_reset",
        "internal state saved by STOP_COPY is back after a restore that follows a reset",
        steps,
        vec![V2_ARC_RUN_001, V2_ARC_RES_001],
    ));
    // No reset before RESUMING: resume onto a used device (debate a).
    let mut steps = vec![
        mark(0x5a),
        set(MigState::StopCopy),
        super::build::capture("s"),
        set(MigState::Running),
        mark(0x33),
    ];
    let mut back = restore("s");
    back[0] = set(MigState::Resuming).expect(ExpectKind::Ok, &[V2_RESUME_003, DEBATE_RESET_001]);
    steps.extend(back);
    steps.push(readback());
    variants.push((
        "device.state.restored_without_reset",
        "resuming straight onto a used device (no reset first) restores the saved state",
        steps,
        vec![V2_ARC_RUN_001, V2_RESUME_003, DEBATE_RESET_001],
    ));
    for (id, title, steps, clauses) in variants {
        let mut c = check(id, title, v2(1), steps, &clauses);
        if reg.is_none() {
            c.requires.unavailable = Some(Kind::why_unknown());
        }
        out.push(c);
    }
    // The saving arcs do not stop the device: in PRE_COPY it still answers MMIO.
    let mut c = check(
        "device.running.in_pre_copy",
        "a device in PRE_COPY keeps running: its registers still take writes and read back",
        v2(5),
        vec![
            set(MigState::PreCopy),
            region_write(r.clone(), o, w, 0x77),
            region_read(r.clone(), o, w, None)
                .expect(ExpectKind::Value(Cmp { op: CmpOp::Eq, value: 0x77 }), &[V2_SAVE_004]),
            get().expect(ExpectKind::State(MigState::PreCopy), &[V2_SAVE_004]),
        ],
        &[V2_SAVE_004],
    );
    if reg.is_none() {
        c.requires.unavailable = Some(Kind::why_unknown());
    }
    out.push(c);
    // State moves to a second device of the same type.
    let mut steps = vec![mark(0x5a), set(MigState::StopCopy), super::build::capture("s")];
    steps.push(region_write(r.clone(), o, w, 0x33).on("B"));
    steps.push(set(MigState::Resuming).on("B"));
    steps.push(write("s", None, Segmentation::Whole).on("B"));
    steps.push(set(MigState::Running).on("B"));
    steps.push(
        region_read(r.clone(), o, w, None)
            .on("B")
            .expect(ExpectKind::Value(Cmp { op: CmpOp::Eq, value: 0x5a }), &[V2_ARC_RUN_001]),
    );
    let mut c = check(
        "device.state.moves_to_peer",
        "the state saved on one device is restored on another device of the same type",
        Requires { devices: vec!["A".into(), "B".into()], same_type: true, ..v2(1) },
        steps,
        &[V2_ARC_RUN_001, V2_ARC_RES_001],
    );
    if reg.is_none() {
        c.requires.unavailable = Some(Kind::why_unknown());
    }
    out.push(c);
    out
}
