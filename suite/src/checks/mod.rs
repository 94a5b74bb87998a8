//! Generated check families. A new check is a YAML sequence or a generator here, never a new
//! code path in the engine. Generators take the device kind only for the few checks that
//! need a device-specific stimulus ([`probes`]); check ids never depend on the device.

pub mod arcs;
pub mod build;
pub mod dmalog;
pub mod feature;
pub mod piv2;
pub mod precopy;
pub mod probes;
pub mod reset;
pub mod sessions;
pub mod stopped;
pub mod streams;
pub mod v1;

use crate::check::Check;

pub use probes::Kind;

/// Every generated check for a device of this kind, in a stable order.
pub fn generated_for(kind: Kind) -> Vec<Check> {
    let mut out = arcs::checks();
    out.extend(reset::reset_checks());
    out.extend(reset::reopen_checks());
    out.extend(sessions::session_checks());
    out.extend(sessions::fd_checks());
    out.extend(streams::replay_checks());
    out.extend(streams::negative_checks(kind));
    out.extend(precopy::checks());
    out.extend(piv2::checks(kind));
    out.extend(dmalog::checks());
    out.extend(feature::checks());
    out.extend(stopped::checks(kind));
    out.extend(v1::checks());
    out
}

/// Every generated check with the simulator's probes (listings, coverage).
pub fn generated() -> Vec<Check> {
    generated_for(Kind::Sim)
}

/// For each clause id, the checks (generated and built-in sequences) that can fail when a
/// driver breaks it: the clauses a check lists are those its expectations name and those
/// the oracle can report on its judged steps ([`crate::oracle::reach`]).
pub fn observers() -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    let mut checks = generated();
    checks.extend(crate::sequence::builtin().unwrap_or_default());
    for c in checks {
        for cl in &c.clauses {
            out.entry(cl.to_string()).or_default().push(c.id.clone());
        }
    }
    for (clause, who) in RUN_WIDE {
        out.entry(clause.to_string()).or_default().push((*who).to_string());
    }
    out
}

/// Clauses judged around every check rather than by one check, with what observes them. Each
/// has been seen to fail: V2-KERNEL-001 on the 7.2 test kernel (mtty's close-in-RESUMING NULL
/// dereference, `.ci/vm-kernels.sh`), V2-DEBUGFS-001 on the defect `debugfs_state_stale`.
pub const RUN_WIDE: &[(crate::clauses::ClauseId, &str)] = &[
    (crate::clauses::id::V2_KERNEL_001, "(every check on a kernel device, with --kernel-log: oracle::kmsg)"),
    (
        crate::clauses::id::V2_DEBUGFS_001,
        "(every SET of every check, where the device has VFIO debugfs: oracle::debugfs)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_id_is_unique_and_has_a_family_and_a_name() {
        for kind in [Kind::Sim, Kind::Mtty, Kind::Other] {
            let checks = generated_for(kind);
            let mut ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
            for id in &ids {
                assert!(crate::sequence::valid_id(id), "{id}: ids need at least three lower-case components");
            }
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), n, "duplicate generated ids");
        }
    }

    #[test]
    fn every_generated_check_names_known_clauses() {
        for c in generated() {
            assert!(!c.clauses.is_empty(), "{} observes no clause", c.id);
            for cl in &c.clauses {
                assert!(crate::clauses::catalog().contains(cl), "{}: unknown clause {cl}", c.id);
            }
        }
    }

    #[test]
    fn a_clause_that_a_check_observes_gives_no_reason_why_none_can() {
        let observers = observers();
        for c in crate::clauses::catalog().all() {
            if let (Some(checks), Some(why)) = (observers.get(&c.id), &c.unobservable) {
                panic!("{} is observed by {checks:?} but says none can: {why}", c.id);
            }
        }
    }
}
