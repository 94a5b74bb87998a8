//! Migration states and capability flags of both uAPIs.
//!
//! v2: `enum vfio_device_mig_state` and the `VFIO_MIGRATION_*` flags (include/uapi/linux/vfio.h,
//! 6.12 l.1213-1223). v1: the bit-encoded `device_state` of the migration region (5.8-5.17).

use std::fmt;

use arbitrary::Arbitrary;
use serde::{Deserialize, Serialize};

/// A v2 device state (`VFIO_DEVICE_STATE_*`). Numeric values are the uAPI's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Arbitrary)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MigState {
    Error = 0,
    Stop = 1,
    Running = 2,
    StopCopy = 3,
    Resuming = 4,
    RunningP2p = 5,
    PreCopy = 6,
    PreCopyP2p = 7,
}

impl MigState {
    /// All eight states in uAPI order.
    pub const ALL: [MigState; 8] = [
        MigState::Error,
        MigState::Stop,
        MigState::Running,
        MigState::StopCopy,
        MigState::Resuming,
        MigState::RunningP2p,
        MigState::PreCopy,
        MigState::PreCopyP2p,
    ];

    /// The state with this raw value, if it is one the uAPI defines.
    pub fn from_raw(raw: u32) -> Option<MigState> {
        usize::try_from(raw).ok().and_then(|i| Self::ALL.get(i)).copied()
    }

    /// The raw uAPI value.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// The uAPI name without the `VFIO_DEVICE_STATE_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            MigState::Error => "ERROR",
            MigState::Stop => "STOP",
            MigState::Running => "RUNNING",
            MigState::StopCopy => "STOP_COPY",
            MigState::Resuming => "RESUMING",
            MigState::RunningP2p => "RUNNING_P2P",
            MigState::PreCopy => "PRE_COPY",
            MigState::PreCopyP2p => "PRE_COPY_P2P",
        }
    }

    /// Lower-case name for stable check identifiers (`stop_copy`).
    pub fn ident(self) -> String {
        self.name().to_ascii_lowercase()
    }

    /// The flags a device must advertise for this state to exist
    /// (`state_flags_table` in vfio_main.c). ERROR is never a valid target.
    pub fn required_flags(self) -> Option<MigFlags> {
        match self {
            MigState::Error => None,
            MigState::Stop | MigState::Running | MigState::StopCopy | MigState::Resuming => {
                Some(MigFlags::STOP_COPY)
            }
            MigState::RunningP2p => Some(MigFlags(MigFlags::STOP_COPY.0 | MigFlags::P2P.0)),
            MigState::PreCopy => Some(MigFlags(MigFlags::STOP_COPY.0 | MigFlags::PRE_COPY.0)),
            MigState::PreCopyP2p => Some(MigFlags::ALL),
        }
    }

    /// Whether a device advertising `flags` supports this state.
    pub fn supported_by(self, flags: MigFlags) -> bool {
        self.required_flags().is_some_and(|req| flags.contains(req))
    }

    /// PRE_COPY, PRE_COPY_P2P and STOP_COPY share one saving session (V2-SAVE-001).
    pub fn is_saving(self) -> bool {
        matches!(self, MigState::PreCopy | MigState::PreCopyP2p | MigState::StopCopy)
    }

    /// States in which the device must be stopped (V2-ARC-STOP-001).
    pub fn is_stopped(self) -> bool {
        matches!(self, MigState::Stop | MigState::StopCopy | MigState::Resuming)
    }

    /// States in which the device's internal state may advance on its own.
    pub fn is_running(self) -> bool {
        matches!(self, MigState::Running | MigState::RunningP2p | MigState::PreCopy | MigState::PreCopyP2p)
    }
}

impl fmt::Display for MigState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A state value as the suite sends or receives it: a named state or any raw `u32`
/// (the suite deliberately sends values >= 8, and hostile drivers may return them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum StateArg {
    Named(MigState),
    Raw(u32),
}

impl StateArg {
    pub fn raw(self) -> u32 {
        match self {
            StateArg::Named(s) => s.raw(),
            StateArg::Raw(r) => r,
        }
    }

    /// The named state if the raw value is one the uAPI defines.
    pub fn state(self) -> Option<MigState> {
        MigState::from_raw(self.raw())
    }
}

impl<'de> Deserialize<'de> for StateArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StateArg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a state name (STOP, RUNNING, STOP_COPY, ...) or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StateArg, E> {
                MigState::ALL.iter().find(|s| s.name() == v).map(|s| StateArg::Named(*s)).ok_or_else(|| {
                    let names: Vec<&str> = MigState::ALL.iter().map(|s| s.name()).collect();
                    E::custom(format!(
                        "unknown state `{v}`: expected one of {} or a number",
                        names.join(", ")
                    ))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StateArg, E> {
                u32::try_from(v)
                    .map(StateArg::Raw)
                    .map_err(|_| E::custom(format!("state value {v} does not fit in 32 bits")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StateArg, E> {
                u32::try_from(v)
                    .map(StateArg::Raw)
                    .map_err(|_| E::custom(format!("state value {v} is not a u32")))
            }
        }
        d.deserialize_any(V)
    }
}

impl From<MigState> for StateArg {
    fn from(s: MigState) -> Self {
        StateArg::Named(s)
    }
}

impl<'a> Arbitrary<'a> for StateArg {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        // Mostly valid states; sometimes a hostile raw value.
        Ok(match u.int_in_range(0u8..=9)? {
            0 => StateArg::Raw(*u.choose(&[8, 9, 255, 0xffff_ffff, 0x8000_0002])?),
            _ => StateArg::Named(MigState::arbitrary(u)?),
        })
    }
}

impl fmt::Display for StateArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state() {
            Some(s) => write!(f, "{s}"),
            None => write!(f, "{} (not a uAPI state)", self.raw()),
        }
    }
}

/// Renders a raw state as `NAME` or `raw N`.
pub fn state_name(raw: u32) -> String {
    MigState::from_raw(raw).map_or_else(|| format!("raw {raw}"), |s| s.name().to_string())
}

/// `VFIO_DEVICE_FEATURE_MIGRATION` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MigFlags(pub u64);

impl MigFlags {
    pub const STOP_COPY: MigFlags = MigFlags(1);
    pub const P2P: MigFlags = MigFlags(2);
    pub const PRE_COPY: MigFlags = MigFlags(4);
    pub const ALL: MigFlags = MigFlags(7);

    /// The four flag sets the uAPI defines behaviour for (V2-MIG-003/004).
    pub const DEFINED_SETS: [MigFlags; 4] = [MigFlags(1), MigFlags(3), MigFlags(5), MigFlags(7)];

    pub fn contains(self, other: MigFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn has_p2p(self) -> bool {
        self.contains(Self::P2P)
    }

    pub fn has_pre_copy(self) -> bool {
        self.contains(Self::PRE_COPY)
    }

    /// Whether this is one of the four combinations with defined behaviour.
    pub fn is_defined_set(self) -> bool {
        Self::DEFINED_SETS.contains(&self)
    }

    /// The states a device with these flags must accept as SET targets (V2-MIG-003).
    pub fn states(self) -> Vec<MigState> {
        MigState::ALL.into_iter().filter(|s| s.supported_by(self)).collect()
    }

    /// Parses `stop_copy,p2p,pre_copy` (any order, `|` or `,` separated).
    pub fn parse(text: &str) -> Result<MigFlags, String> {
        let mut flags = 0u64;
        for part in text.split([',', '|', '+']).map(str::trim).filter(|p| !p.is_empty()) {
            flags |= match part.to_ascii_lowercase().as_str() {
                "stop_copy" => 1,
                "p2p" => 2,
                "pre_copy" | "precopy" => 4,
                other => {
                    if let Some(v) = parse_u64(other) {
                        v
                    } else {
                        return Err(format!(
                            "unknown migration flag `{other}` (expected stop_copy, p2p, pre_copy or a number)"
                        ));
                    }
                }
            };
        }
        Ok(MigFlags(flags))
    }
}

impl fmt::Display for MigFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.0 & 1 != 0 {
            parts.push("STOP_COPY".to_string());
        }
        if self.0 & 2 != 0 {
            parts.push("P2P".to_string());
        }
        if self.0 & 4 != 0 {
            parts.push("PRE_COPY".to_string());
        }
        let unknown = self.0 & !7;
        if unknown != 0 {
            parts.push(format!("{unknown:#x}"));
        }
        if parts.is_empty() { f.write_str("none") } else { f.write_str(&parts.join("|")) }
    }
}

/// Parses decimal or `0x` hexadecimal.
pub fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        t.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip_for_every_state() {
        for s in MigState::ALL {
            assert_eq!(MigState::from_raw(s.raw()), Some(s));
        }
        assert_eq!(MigState::from_raw(8), None);
        assert_eq!(MigState::from_raw(u32::MAX), None);
    }

    #[test]
    fn flags_imply_exactly_the_uapi_state_sets() {
        use MigState::*;
        assert_eq!(MigFlags(1).states(), vec![Stop, Running, StopCopy, Resuming]);
        assert_eq!(MigFlags(3).states(), vec![Stop, Running, StopCopy, Resuming, RunningP2p]);
        assert_eq!(MigFlags(5).states(), vec![Stop, Running, StopCopy, Resuming, PreCopy]);
        assert_eq!(MigFlags(7).states().len(), 7);
        assert!(MigFlags(0).states().is_empty());
    }

    #[test]
    fn flag_parser_accepts_names_and_rejects_unknown_words() {
        assert_eq!(MigFlags::parse("stop_copy,p2p").unwrap(), MigFlags(3));
        assert_eq!(MigFlags::parse("stop_copy|pre_copy").unwrap(), MigFlags(5));
        assert!(MigFlags::parse("stop_copy,bogus").unwrap_err().contains("bogus"));
    }

    #[test]
    fn state_names_serialize_as_uapi_names() {
        let yaml = serde_saphyr::to_string(&MigState::PreCopyP2p).unwrap();
        assert_eq!(yaml.trim(), "PRE_COPY_P2P");
        let s: StateArg = serde_saphyr::from_str("RUNNING_P2P").unwrap();
        assert_eq!(s, StateArg::Named(MigState::RunningP2p));
        let r: StateArg = serde_saphyr::from_str("255").unwrap();
        assert_eq!(r, StateArg::Raw(255));
    }
}
