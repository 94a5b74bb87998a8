//! The second observation channel (6.8+ with CONFIG_VFIO_DEBUGFS):
//! `/sys/kernel/debug/vfio/<device>/migration/state` prints the state the driver's
//! migration_get_state returns (drivers/vfio/debugfs.c), the same callback GET
//! MIG_DEVICE_STATE uses. After a state change it must name the state GET reports and the state
//! the oracle expects; a disagreement is a finding of V2-DEBUGFS-001.

use super::Violation;
use crate::clauses::id::*;
use crate::state::MigState;

/// Judges what debugfs printed after a SET (`debugfs`, the file's text) against GET's state and
/// the oracle's (None where the oracle leaves it open, e.g. after a failed SET).
pub fn judge_state(debugfs: &str, get: Option<u32>, oracle: Option<MigState>) -> Vec<Violation> {
    let text = debugfs.trim();
    // debugfs.c prints the name for the eight states and "Invalid" for anything else.
    let shown = MigState::ALL.iter().copied().find(|s| s.name() == text);
    let get_state = get.and_then(MigState::from_raw);
    let mut v = Vec::new();
    if let Some(g) = get
        && shown.map(MigState::raw) != Some(g)
    {
        v.push(Violation::new(
            [V2_DEBUGFS_001],
            format!(
                "debugfs migration/state names the state GET MIG_DEVICE_STATE reports ({})",
                get_state.map_or_else(|| g.to_string(), |s| s.name().to_string())
            ),
            format!("debugfs shows `{text}`"),
        ));
    } else if let Some(o) = oracle
        && shown != Some(o)
    {
        v.push(Violation::new(
            [V2_DEBUGFS_001],
            format!("debugfs migration/state names the state the SET reached ({})", o.name()),
            format!("debugfs shows `{text}`"),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debugfs_agreeing_with_get_and_the_oracle_is_no_finding() {
        assert!(
            judge_state("STOP_COPY\n", Some(MigState::StopCopy.raw()), Some(MigState::StopCopy)).is_empty()
        );
        assert!(judge_state("RUNNING", None, None).is_empty());
    }

    #[test]
    fn debugfs_disagreeing_with_get_or_the_oracle_is_a_debugfs_finding() {
        let v = judge_state("STOP", Some(MigState::StopCopy.raw()), Some(MigState::StopCopy));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].clauses, [V2_DEBUGFS_001]);
        assert!(v[0].expected.contains("STOP_COPY") && v[0].actual.contains("`STOP`"), "{v:?}");
        let v = judge_state("Invalid", None, Some(MigState::Running));
        assert_eq!(v.len(), 1, "{v:?}");
    }
}
