//! The vfio core's next-state helper as the simulated driver calls it:
//! `vfio_mig_get_next_state()` (6.12 drivers/vfio/vfio_main.c l.667-860), run on the kernel's
//! own table data.
//!
//! The data is the checked-in extraction of that function's two tables
//! (`suite/data/next_state/6.12.json`, [`crate::kernel_table::CHECKED_IN`]): `raw_next_step`
//! is `vfio_from_fsm_table[cur][new]` (l.740-822) and `state_required_flags` is
//! `state_flags_table[state]` (l.823-836). The control flow below is the helper's, written
//! here from the C text (l.838-859); it shares no code with `oracle::fsm`, which has its own
//! table, so `suite/tests/sim_independence.rs` compares two independent implementations.

use std::sync::OnceLock;

use serde_json::Value;

use crate::kernel_table;
use crate::state::{MigFlags, MigState};

/// The kernel series whose table the simulator runs (the Debian VM's kernel).
pub const SERIES: &str = "6.12";

/// Why one call of the helper returns `-EINVAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperError {
    /// `cur_fsm` is out of range or needs flags the device lacks: the `WARN_ON` of l.838 fires.
    CurInvalid,
    /// `new_fsm` is out of range or needs flags the device lacks (l.843), or the walk ends on
    /// ERROR, a blocked arc (l.859).
    Einval,
}

/// The two tables of `vfio_mig_get_next_state()`, indexed by raw state value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreTable {
    /// `vfio_from_fsm_table[cur][new]`.
    next: [[MigState; 8]; 8],
    /// `state_flags_table[state]`.
    required: [u32; 8],
}

impl CoreTable {
    /// Reads the tables out of a checked-in JSON document (`suite/data/next_state/*.json`).
    /// Only the skip loop of a26b499b757c (`stops_at_error`, 6.12.96 and later) is
    /// implemented: the older loop spins forever on a blocked arc, which a reference device
    /// must not do.
    pub fn from_json(text: &str) -> Result<CoreTable, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let skip = doc.pointer("/control_flow/skip_loop").and_then(Value::as_str);
        if skip != Some("stops_at_error") {
            return Err(format!("skip loop {skip:?}: the simulator implements only \"stops_at_error\""));
        }
        let by_name = |name: &str| {
            MigState::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| format!("unknown state `{name}`"))
        };
        let mut next = [[MigState::Error; 8]; 8];
        let raw = doc.get("raw_next_step").and_then(Value::as_object).ok_or("no raw_next_step object")?;
        for (cur, row) in raw {
            let cur = by_name(cur)?;
            let row = row.as_object().ok_or_else(|| format!("raw_next_step.{cur} is not an object"))?;
            for (new, step) in row {
                let step =
                    step.as_str().ok_or_else(|| format!("raw_next_step.{cur}.{new} is not a state"))?;
                next[cur as usize][by_name(new)? as usize] = by_name(step)?;
            }
            if row.len() != 8 {
                return Err(format!("raw_next_step.{cur} has {} entries, not 8", row.len()));
            }
        }
        if raw.len() != 8 {
            return Err(format!("raw_next_step has {} rows, not 8", raw.len()));
        }
        let mut required = [0u32; 8];
        let flags =
            doc.get("state_required_flags").and_then(Value::as_object).ok_or("no state_required_flags")?;
        for (state, v) in flags {
            // A number, or a string starting with the hex value (`0xffffffff (never ...)`).
            let value = match v {
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                Value::String(s) => s
                    .split_whitespace()
                    .next()
                    .and_then(|h| h.strip_prefix("0x"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok()),
                _ => None,
            };
            required[by_name(state)? as usize] =
                value.ok_or_else(|| format!("state_required_flags.{state} is not a u32: {v}"))?;
        }
        if flags.len() != 8 {
            return Err(format!("state_required_flags has {} entries, not 8", flags.len()));
        }
        Ok(CoreTable { next, required })
    }

    /// `(state_flags_table[state] & device->migration_flags) == state_flags_table[state]`,
    /// with `state >= ARRAY_SIZE(vfio_from_fsm_table)` false.
    pub fn supports(&self, flags: MigFlags, state: u32) -> bool {
        usize::try_from(state).ok().and_then(|i| self.required.get(i)).is_some_and(|&req| {
            let req = u64::from(req);
            flags.0 & req == req
        })
    }

    /// One call `vfio_mig_get_next_state(device, cur, new, &next)` (l.838-859).
    pub fn next_state(&self, flags: MigFlags, cur: u32, new: u32) -> Result<MigState, HelperError> {
        // l.838: if (WARN_ON(cur_fsm >= ARRAY_SIZE(..) || (state_flags_table[cur_fsm] & ...) != ...))
        if !self.supports(flags, cur) {
            return Err(HelperError::CurInvalid);
        }
        // l.843: if (new_fsm >= ARRAY_SIZE(..) || (state_flags_table[new_fsm] & ...) != ...)
        if !self.supports(flags, new) {
            return Err(HelperError::Einval);
        }
        // Both were checked against the 8-entry tables above.
        let (cur, new) = (cur as usize, new as usize);
        // l.853: *next_fsm = vfio_from_fsm_table[cur_fsm][new_fsm];
        let mut next = self.next[cur][new];
        // l.854: while (*next_fsm != ERROR && (state_flags_table[*next_fsm] & ..) != ..)
        //            *next_fsm = vfio_from_fsm_table[*next_fsm][new_fsm];
        // Every state it visits is one the device lacks; the uAPI states number 8, so a walk
        // longer than 8 revisits one (the kernel's tables never do: every skip makes progress).
        let mut guard = 0;
        while next != MigState::Error && !self.supports(flags, next.raw()) {
            next = self.next[next as usize][new];
            guard += 1;
            if guard > 8 {
                return Err(HelperError::Einval);
            }
        }
        // l.859: return (*next_fsm != VFIO_DEVICE_STATE_ERROR) ? 0 : -EINVAL;
        if next == MigState::Error { Err(HelperError::Einval) } else { Ok(next) }
    }
}

/// The table of [`SERIES`], read once from the checked-in data.
pub fn table() -> Result<&'static CoreTable, &'static str> {
    static TABLE: OnceLock<Result<CoreTable, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let text =
                kernel_table::checked_in(SERIES).ok_or_else(|| format!("no checked-in table {SERIES}"))?;
            CoreTable::from_json(text).map_err(|e| format!("suite/data/next_state/{SERIES}.json: {e}"))
        })
        .as_ref()
        .map_err(String::as_str)
}

/// [`CoreTable::next_state`] on the table of [`SERIES`]; a broken checked-in table refuses
/// every call (and `next_state_table_of_the_simulator_loads` fails).
pub fn next_state(flags: MigFlags, cur: u32, new: u32) -> Result<MigState, HelperError> {
    table().map_err(|_| HelperError::Einval)?.next_state(flags, cur, new)
}

/// Whether a device with `flags` has the uAPI state `state` (`state_flags_table`).
pub fn supports(flags: MigFlags, state: u32) -> bool {
    table().is_ok_and(|t| t.supports(flags, state))
}

/// The states a driver's loop `while (cur != new) { helper(cur, new, &next); step(next); }`
/// walks, `cur` excluded, or the helper's error (with the states walked before it).
pub fn walk(flags: MigFlags, cur: u32, new: u32) -> Result<Vec<MigState>, (Vec<MigState>, HelperError)> {
    let mut path = Vec::new();
    let mut at = cur;
    while at != new {
        match next_state(flags, at, new) {
            Ok(next) => {
                path.push(next);
                at = next.raw();
            }
            Err(e) => return Err((path, e)),
        }
        if path.len() > 8 {
            return Err((path, HelperError::Einval));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MigState::*;

    #[test]
    fn next_state_table_of_the_simulator_loads() {
        let t = table().expect("the checked-in 6.12 table");
        assert_eq!(t.next[Running as usize][StopCopy as usize], RunningP2p);
        assert_eq!(t.required[Error as usize], u32::MAX);
        assert_eq!(t.required[PreCopyP2p as usize], 7);
    }

    #[test]
    fn skipped_optional_states_lead_to_the_next_logical_state() {
        // Without P2P, RUNNING -> STOP skips RUNNING_P2P.
        assert_eq!(next_state(MigFlags::STOP_COPY, Running.raw(), Stop.raw()), Ok(Stop));
        assert_eq!(next_state(MigFlags::ALL, Running.raw(), Stop.raw()), Ok(RunningP2p));
        assert_eq!(walk(MigFlags::ALL, Running.raw(), StopCopy.raw()), Ok(vec![RunningP2p, Stop, StopCopy]));
    }

    #[test]
    fn refusals_follow_the_helper_checks() {
        assert_eq!(next_state(MigFlags::ALL, Error.raw(), Stop.raw()), Err(HelperError::CurInvalid));
        assert_eq!(next_state(MigFlags::ALL, 9, Stop.raw()), Err(HelperError::CurInvalid));
        assert_eq!(next_state(MigFlags::ALL, Stop.raw(), Error.raw()), Err(HelperError::Einval));
        assert_eq!(next_state(MigFlags::ALL, Stop.raw(), 8), Err(HelperError::Einval));
        assert_eq!(next_state(MigFlags::STOP_COPY, Stop.raw(), PreCopy.raw()), Err(HelperError::Einval));
        // The blocked arc STOP_COPY -> PRE_COPY ends on ERROR.
        assert_eq!(next_state(MigFlags::ALL, StopCopy.raw(), PreCopy.raw()), Err(HelperError::Einval));
    }

    #[test]
    fn a_table_with_the_unguarded_skip_loop_is_refused() {
        let text = kernel_table::checked_in(SERIES).unwrap().replace("\"stops_at_error\"", "\"unguarded\"");
        assert!(CoreTable::from_json(&text).unwrap_err().contains("unguarded"));
    }
}
