//! The core's VFIO_DEVICE_FEATURE plumbing (drivers/vfio/vfio_main.c,
//! `vfio_ioctl_device_feature()` and `vfio_check_feature()`): what a raw `feature` step must
//! return for the argsz and flags it passed.

use crate::clauses::ClauseId;
use crate::clauses::id::*;
use crate::device::MigrationApi;
use crate::errno::Errno;
use crate::oracle::Violation;
use crate::oracle::model::Observation;
use crate::uapi;

/// What the judgement needs to know about the device.
#[derive(Clone, Copy, Debug)]
pub struct FeatureFacts {
    /// The migration API the device offers.
    pub api: MigrationApi,
    /// Whether it implements the DMA logging features.
    pub dma_logging: bool,
}

/// The core's VFIO_DEVICE_FEATURE plumbing rules (V2-FEAT-*), for raw `feature` steps.
pub fn judge_feature(device: &FeatureFacts, argsz: u32, flags: u32, obs: &Observation) -> Vec<Violation> {
    let mut v = Vec::new();
    let core_bits = uapi::FEATURE_MASK | uapi::FEATURE_GET | uapi::FEATURE_SET | uapi::FEATURE_PROBE;
    let get_set = uapi::FEATURE_GET | uapi::FEATURE_SET;
    let expect_einval = |clause: ClauseId, why: &str, v: &mut Vec<Violation>| {
        if obs.errno != Some(Errno::EINVAL) {
            v.push(Violation {
                clauses: vec![clause],
                expected: format!("EINVAL: {why}"),
                actual: obs.summary(),
            });
        }
    };
    if argsz < 8 {
        expect_einval(V2_FEAT_001, "argsz below the end of flags", &mut v);
        return v;
    }
    if flags & !core_bits != 0 {
        expect_einval(V2_FEAT_001, "unknown flag bits", &mut v);
        return v;
    }
    if flags & uapi::FEATURE_PROBE == 0 && flags & get_set == get_set {
        expect_einval(V2_FEAT_002, "GET and SET together without PROBE", &mut v);
        return v;
    }
    let index = flags & uapi::FEATURE_MASK;
    let supported = match index {
        uapi::FEATURE_MIGRATION | uapi::FEATURE_MIG_DATA_SIZE if device.api == MigrationApi::V2 => {
            Some(uapi::FEATURE_GET)
        }
        uapi::FEATURE_MIG_DEVICE_STATE if device.api == MigrationApi::V2 => Some(get_set),
        uapi::FEATURE_DMA_LOGGING_START | uapi::FEATURE_DMA_LOGGING_STOP if device.dma_logging => {
            Some(uapi::FEATURE_SET)
        }
        uapi::FEATURE_DMA_LOGGING_REPORT if device.dma_logging => Some(uapi::FEATURE_GET),
        _ => None,
    };
    match supported {
        None if matches!(
            index,
            uapi::FEATURE_MIGRATION
                | uapi::FEATURE_MIG_DEVICE_STATE
                | uapi::FEATURE_MIG_DATA_SIZE
                | uapi::FEATURE_DMA_LOGGING_START
                | uapi::FEATURE_DMA_LOGGING_STOP
                | uapi::FEATURE_DMA_LOGGING_REPORT
        ) && obs.errno != Some(Errno::ENOTTY) =>
        {
            v.push(Violation::new(
                [V2_FEAT_004],
                "ENOTTY for a migration or logging feature the device does not implement".to_string(),
                obs.summary(),
            ));
        }
        None => {}
        Some(ops) => {
            if flags & get_set & !ops != 0 {
                expect_einval(
                    if index == uapi::FEATURE_MIGRATION { V2_MIG_001 } else { V2_FEAT_003 },
                    "an operation the feature does not support",
                    &mut v,
                );
            } else if flags & uapi::FEATURE_PROBE != 0 && obs.errno.is_some() {
                v.push(Violation::new(
                    [V2_FEAT_003],
                    "PROBE of a supported feature with supported operations succeeds".to_string(),
                    obs.summary(),
                ));
            } else if flags & uapi::FEATURE_PROBE == 0 && flags & get_set == 0 {
                expect_einval(V2_FEAT_003, "neither GET nor SET without PROBE", &mut v);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(e: Errno) -> Observation {
        Observation { errno: Some(e), ..Observation::ok() }
    }

    const V2: FeatureFacts = FeatureFacts { api: MigrationApi::V2, dma_logging: false };

    #[test]
    fn an_argsz_below_the_flags_must_fail_with_einval() {
        let v = judge_feature(&V2, 4, uapi::FEATURE_GET | uapi::FEATURE_MIGRATION, &Observation::ok());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].clauses, vec![V2_FEAT_001]);
        assert!(judge_feature(&V2, 4, uapi::FEATURE_GET, &failed(Errno::EINVAL)).is_empty());
    }

    #[test]
    fn a_logging_feature_the_device_lacks_must_be_enotty() {
        let flags = uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_STOP;
        assert_eq!(judge_feature(&V2, 8, flags, &failed(Errno::EINVAL))[0].clauses, vec![V2_FEAT_004]);
        assert!(judge_feature(&V2, 8, flags, &failed(Errno::ENOTTY)).is_empty());
    }

    #[test]
    fn probe_of_a_supported_operation_must_succeed() {
        let flags = uapi::FEATURE_PROBE | uapi::FEATURE_GET | uapi::FEATURE_MIGRATION;
        assert_eq!(judge_feature(&V2, 8, flags, &failed(Errno::EIO))[0].clauses, vec![V2_FEAT_003]);
        assert!(judge_feature(&V2, 8, flags, &Observation::ok()).is_empty());
    }
}
