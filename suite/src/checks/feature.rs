//! Generated family: VFIO_DEVICE_FEATURE plumbing (argsz, flags, PROBE), the migration flags,
//! MIG_DATA_SIZE in every state, GET in every state, no spontaneous state changes.

use super::arcs::reach;
use super::build::{check, get, set, v2};
use crate::check::{Check, Cmp, CmpOp, ExpectKind, Step};
use crate::clauses::id::*;
use crate::op::{FeatureArgs, FeatureOp, Op};
use crate::state::MigState;
use crate::uapi;

fn feature(feature: u32, ops: &[FeatureOp], payload: u16, argsz: Option<u32>, extra: u32) -> Step {
    Step::new(Op::Feature(FeatureArgs {
        feature: feature as u16,
        ops: ops.to_vec(),
        extra_flags: extra,
        argsz,
        payload,
    }))
    .oracle()
}

fn states() -> impl Iterator<Item = MigState> {
    MigState::ALL.into_iter().filter(|s| *s != MigState::Error)
}

/// `feature.*`, `mig.*`, `datasize.*`, `fsm.get.*`, `fsm.idle.*`.
pub fn checks() -> Vec<Check> {
    use FeatureOp::*;
    let mut out = vec![
        check(
            "feature.argsz.too_small",
            "VFIO_DEVICE_FEATURE with argsz below the header fails with EINVAL",
            v2(1),
            vec![feature(uapi::FEATURE_MIGRATION, &[Get], 8, Some(4), 0)],
            &[V2_FEAT_001],
        ),
        check(
            "feature.flags.unknown_bits",
            "VFIO_DEVICE_FEATURE with unknown flag bits fails with EINVAL",
            v2(1),
            vec![feature(uapi::FEATURE_MIGRATION, &[Get], 8, None, 1 << 20)],
            &[V2_FEAT_001],
        ),
        check(
            "feature.flags.get_and_set",
            "GET and SET together without PROBE fail with EINVAL",
            v2(1),
            vec![feature(uapi::FEATURE_MIG_DEVICE_STATE, &[Get, Set], 8, None, 0)],
            &[V2_FEAT_002],
        ),
        check(
            "feature.flags.neither_get_nor_set",
            "neither GET nor SET nor PROBE fails with EINVAL",
            v2(1),
            vec![feature(uapi::FEATURE_MIG_DEVICE_STATE, &[], 8, None, 0)],
            &[V2_FEAT_003],
        ),
        check(
            "mig.flags.valid",
            "the migration flags include STOP_COPY and are one of the defined combinations",
            crate::check::Requires { api: Some(crate::device::MigrationApi::V2), ..Default::default() },
            vec![
                Step::new(Op::GetFlags)
                    .expect(ExpectKind::ValueMasked { mask: 1, value: 1 }, &[V2_MIG_002])
                    .expect(ExpectKind::ValueMasked { mask: !7, value: 0 }, &[V2_MIG_004]),
            ],
            &[V2_MIG_002, V2_MIG_004],
        ),
        check(
            "mig.flags.set_rejected",
            "SET of VFIO_DEVICE_FEATURE_MIGRATION fails with EINVAL (GET only)",
            v2(1),
            vec![feature(uapi::FEATURE_MIGRATION, &[Set], 8, None, 0)],
            &[V2_MIG_001],
        ),
        check(
            "datasize.feature.set_rejected",
            "SET of VFIO_DEVICE_FEATURE_MIG_DATA_SIZE fails with EINVAL (GET only)",
            v2(1),
            vec![feature(uapi::FEATURE_MIG_DATA_SIZE, &[Set], 8, None, 0)],
            &[V2_FEAT_003, V2_DATASIZE_001],
        ),
    ];
    for (fname, f, ops) in [
        ("migration", uapi::FEATURE_MIGRATION, Get),
        ("mig_device_state", uapi::FEATURE_MIG_DEVICE_STATE, Get),
        ("mig_data_size", uapi::FEATURE_MIG_DATA_SIZE, Get),
    ] {
        for (pname, probe_ops) in [
            ("plain", vec![Probe]),
            ("get", vec![Probe, Get]),
            ("set", vec![Probe, Set]),
            ("get_set", vec![Probe, Get, Set]),
        ] {
            let _ = ops;
            out.push(check(
                &format!("feature.probe.{fname}.{pname}"),
                &format!("PROBE of {fname} with {pname} answers as GET/SET behave"),
                v2(1),
                vec![feature(f, &probe_ops, 0, None, 0)],
                &[V2_FEAT_003, V2_MIG_001],
            ));
        }
    }
    for s in states() {
        let mut steps = reach(s);
        steps.push(Step::new(Op::DataSize).oracle().expect(ExpectKind::Ok, &[V2_DATASIZE_002]));
        out.push(check(
            &format!("datasize.in.{}", s.ident()),
            &format!("MIG_DATA_SIZE succeeds in {s}"),
            v2(s.required_flags().map_or(1, |f| f.0)),
            steps,
            &[V2_DATASIZE_002],
        ));
        let mut steps = reach(s);
        steps.push(get().expect(ExpectKind::State(s), &[V2_STATE_002]));
        out.push(check(
            &format!("fsm.get.in.{}", s.ident()),
            &format!("GET in {s} returns {s} with data_fd -1"),
            v2(s.required_flags().map_or(1, |f| f.0)),
            steps,
            &[V2_STATE_001, V2_STATE_002],
        ));
    }
    for s in [MigState::Running, MigState::Stop] {
        out.push(check(
            &format!("fsm.idle.{}", s.ident()),
            &format!("the state does not change by itself while the device sits in {s}"),
            v2(1),
            vec![
                set(s),
                Step::new(Op::Wait { ms: 200 }),
                get().expect(ExpectKind::State(s), &[V2_STATE_003]),
            ],
            &[V2_STATE_003],
        ));
    }
    out.push(check(
        "datasize.estimate.matches_stream",
        "the STOP_COPY stream is not far larger than MIG_DATA_SIZE announced (at most 4x)",
        v2(1),
        vec![
            Step::new(Op::DataSize).oracle(),
            set(MigState::StopCopy),
            super::build::drain()
                .expect(ExpectKind::BytesAtMost { saved: "data_size".into(), factor: 4 }, &[V2_DATASIZE_004]),
        ],
        &[V2_DATASIZE_004],
    ));
    out.push(check(
        "datasize.estimate.nonzero",
        "MIG_DATA_SIZE announces a non-zero estimate",
        v2(1),
        vec![
            Step::new(Op::DataSize)
                .oracle()
                .expect(ExpectKind::Value(Cmp { op: CmpOp::Gt, value: 0 }), &[V2_DATASIZE_004]),
        ],
        &[V2_DATASIZE_004],
    ));
    out
}
