//! Generated family: the 7.1+ PRECOPY_INFOv2 opt-in (feature 12) and VFIO_PRECOPY_INFO_REINIT
//! (include/uapi/linux/vfio.h of 7.2 l.1269-1280, l.1527-1535). On older kernels every clause
//! of these checks is outside the kernel's range: UNSUPPORTED (oracle::kernels).

use super::build::{check, errno, read_once, set, v2f};
use super::probes::Kind;
use crate::check::{Check, ExpectKind, Step};
use crate::clauses::Feature;
use crate::clauses::id::*;
use crate::errno::Errno;
use crate::op::{FdRef, FeatureArgs, FeatureOp, Op, PrecopyArgs, ReadArgs};
use crate::state::MigState;
use crate::uapi;

fn piv2(ops: &[FeatureOp]) -> Step {
    Step::new(Op::Feature(FeatureArgs {
        feature: uapi::FEATURE_MIG_PRECOPY_INFO_V2 as u16,
        ops: ops.to_vec(),
        extra_flags: 0,
        argsz: None,
        payload: 0,
    }))
    .oracle()
}

/// The opt-in, as setup.
fn opt_in() -> Step {
    piv2(&[FeatureOp::Set]).setup().expect(ExpectKind::Ok, &[V2_PIV2_001])
}

fn info(flags: u32) -> Step {
    Step::new(Op::PrecopyInfo(PrecopyArgs { flags, ..Default::default() })).oracle()
}

/// Reads the initial data up to the temporary end of the PRE_COPY stream (not judged: how
/// the temporary end looks is V2-PRECOPY-007's business, not these checks').
fn drain_initial() -> Step {
    Step::new(Op::Read(ReadArgs { max: Some(64 << 20), ..Default::default() })).setup()
}

/// `piv2.*`.
pub fn checks(kind: Kind) -> Vec<Check> {
    use FeatureOp::*;
    let mut out = vec![
        check(
            "piv2.opt_in.set_only",
            "PRECOPY_INFOv2 (feature 12) is a SET-only opt-in: PROBE|SET and SET succeed, GET and PROBE|GET fail with EINVAL",
            v2f(5, &[Feature::PrecopyInfoV2]),
            vec![
                piv2(&[Probe, Set]).expect(ExpectKind::Ok, &[V2_PIV2_001]),
                piv2(&[Get]).expect(errno(&[Errno::EINVAL]), &[V2_PIV2_001]),
                piv2(&[Probe, Get]).expect(errno(&[Errno::EINVAL]), &[V2_PIV2_001]),
                piv2(&[Set]).expect(ExpectKind::Ok, &[V2_PIV2_001]),
            ],
            &[V2_PIV2_001],
        ),
        check(
            "piv2.flags.output_after_opt_in",
            "after the opt-in PRECOPY_INFO flags is an output: all-ones passed in, only REINIT may come back",
            v2f(5, &[Feature::PrecopyInfoV2]),
            vec![
                opt_in(),
                set(MigState::PreCopy),
                info(0xffff_fffe),
                read_once(FdRef::Current, 8),
                info(0xffff_fffe),
            ],
            &[V2_PIV2_002],
        ),
    ];
    // Without the opt-in: a fresh open (the core clears the opt-in on the last close), then the
    // whole pre-copy session with flags 0 in, across a reconfiguration where one is known.
    let mut steps = vec![
        Step::new(Op::CloseDevice).setup(),
        Step::new(Op::Reopen).setup(),
        set(MigState::PreCopy),
        info(0),
        drain_initial(),
    ];
    steps.extend(kind.reconfigure());
    steps.extend([info(0), read_once(FdRef::Current, 8), info(0)]);
    out.push(check(
        "piv2.reinit.none_without_opt_in",
        "without the PRECOPY_INFOv2 opt-in no PRECOPY_INFO answer carries VFIO_PRECOPY_INFO_REINIT",
        v2f(5, &[Feature::Precopy]),
        steps,
        &[V2_PIV2_004],
    ));
    let mut steps = vec![opt_in(), set(MigState::PreCopy), info(0), drain_initial()];
    steps.extend(kind.reconfigure());
    steps.extend([info(0), read_once(FdRef::Current, 8), info(0), read_once(FdRef::Current, 4096), info(0)]);
    out.push(check(
        "piv2.reinit.semantics",
        "after the opt-in a REINIT answer reports new initial data (initial_bytes > 0, dirty_bytes 0) that progresses towards 0",
        v2f(5, &[Feature::PrecopyInfoV2]),
        steps,
        &[V2_PIV2_002, V2_PIV2_003, V2_PIV2_007, V2_PIV2_009],
    ));
    out
}

#[cfg(test)]
mod tests {
    use crate::device::sim::parse_spec;
    use crate::engine::{Engine, EngineOptions};

    fn run(spec: &str) -> Vec<(String, crate::engine::CheckRun)> {
        let dev = parse_spec(spec).expect("spec").build();
        let mut e = Engine::new(vec![dev], EngineOptions::default());
        super::checks(super::Kind::Sim).into_iter().map(|c| (c.id.clone(), e.run(&c))).collect()
    }

    #[test]
    fn on_a_6_12_kernel_every_piv2_check_is_unsupported_for_its_kernel_range() {
        for (id, r) in run("sim:v2?kernel=6.12") {
            let why = r.end.unsupported().unwrap_or_default().to_string();
            assert!(why.contains("(7.1+)") && why.contains("6.12 (simulated)"), "{id}: {why:?}");
        }
    }

    #[test]
    fn on_a_7_2_kernel_the_reference_passes_and_each_defect_fails_its_check() {
        for (id, r) in run("sim:v2?kernel=7.2") {
            assert!(r.end == crate::engine::CheckEnd::Completed && r.findings.is_empty(), "{id}: {r:?}");
        }
        for (defect, check, clause) in [
            ("piv2_get_accepted", "piv2.opt_in.set_only", "V2-PIV2-001"),
            ("piv2_flags_echoed", "piv2.flags.output_after_opt_in", "V2-PIV2-002"),
            ("reinit_without_opt_in", "piv2.reinit.none_without_opt_in", "V2-PIV2-004"),
            ("reinit_keeps_dirty_bytes", "piv2.reinit.semantics", "V2-PIV2-003"),
            ("reinit_zero_initial_bytes", "piv2.reinit.semantics", "V2-PIV2-007"),
            ("reinit_initial_bytes_grows", "piv2.reinit.semantics", "V2-PIV2-009"),
        ] {
            let runs = run(&format!("sim:v2?kernel=7.2&defect={defect}"));
            let (_, r) = runs.iter().find(|(id, _)| id == check).expect("check");
            assert!(
                r.findings.iter().any(|f| f.violation.clauses.iter().any(|c| c.as_str() == clause)),
                "{defect}: {check} has no {clause} finding: {:?}",
                r.findings
            );
        }
    }
}
