//! Simulated devices: `sim:v2` and `sim:v1`, reference implementations of the two uAPIs
//! with a living internal state and injectable [`defects`].
//!
//! Device strings: `sim:v2?flags=stop_copy,p2p,pre_copy&size=20480&dma=on&defect=NAME`;
//! `sim:plain` is a VFIO device without migration support.
//! Keys: `flags` (v2 migration flags), `size` (state bytes, `k`/`m`/`g` suffixes), `dma`
//! (`on`/`off`: DMA logging), `report` (`stub`: DMA_LOGGING_REPORT fails with EOPNOTSUPP like
//! a kernel without IOMMUFD), `type` (device type name: streams of other types are foreign),
//! `seed`, `kernel` (`6.12`, `7.2`: the kernel release the device acts as if it ran on; the
//! catalog's kernel ranges then apply, and PRECOPY_INFOv2 (feature 12) exists from 7.1 on;
//! without it the device has every feature and no range applies), `defect` (comma separated,
//! repeatable).

pub mod defects;
#[cfg(test)]
mod held_out_tests;
pub mod hw;
mod regions;
pub mod stream;
pub mod v1;
pub mod v2;

use std::fmt;

pub use defects::Defect;

use crate::device::{Device, MigrationApi};
use crate::state::MigFlags;

/// BAR0 region index.
pub const REGION_BAR0: u32 = 0;
/// Config-space region index.
pub const REGION_CONFIG: u32 = 7;
/// The v1 migration region's index (first device-specific region).
pub const REGION_MIGRATION: u32 = 9;

/// Configuration of a simulated device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub api: MigrationApi,
    pub flags: MigFlags,
    pub dma_logging: bool,
    pub report_stub: bool,
    pub state_size: u64,
    pub type_name: String,
    pub seed: u64,
    /// The kernel release (major, minor) the device acts as if it ran on.
    pub kernel: Option<(u32, u32)>,
    pub defects: Vec<Defect>,
}

impl SimConfig {
    /// What a simulated device of this configuration says about itself.
    fn device_info(&self, spec: &str, driver: &str) -> crate::device::DeviceInfo {
        crate::device::DeviceInfo {
            spec: spec.to_string(),
            backend: crate::device::Backend::Sim,
            driver: Some(driver.to_string()),
            model: Some(self.type_name.clone()),
            kernel: Some(self.kernel_info()),
            name: Some(self.type_name.clone()),
            iommu: None,
        }
    }

    pub fn v2() -> SimConfig {
        SimConfig {
            api: MigrationApi::V2,
            flags: MigFlags::ALL,
            dma_logging: true,
            report_stub: false,
            state_size: 5 * hw::PAGE + 123,
            type_name: "sim".to_string(),
            seed: 0x5eed,
            kernel: None,
            defects: Vec::new(),
        }
    }

    pub fn v1() -> SimConfig {
        SimConfig { api: MigrationApi::V1, dma_logging: false, ..SimConfig::v2() }
    }

    /// The canonical device string for this configuration.
    pub fn spec(&self) -> String {
        let mut parts = Vec::new();
        if self.api == MigrationApi::V2 {
            let names: Vec<&str> = [(1, "stop_copy"), (2, "p2p"), (4, "pre_copy")]
                .iter()
                .filter(|(b, _)| self.flags.0 & b != 0)
                .map(|(_, n)| *n)
                .collect();
            parts.push(format!("flags={}", names.join(",")));
            parts.push(format!("dma={}", if self.dma_logging { "on" } else { "off" }));
            if self.report_stub {
                parts.push("report=stub".to_string());
            }
        }
        parts.push(format!("size={}", self.state_size));
        if self.type_name != "sim" {
            parts.push(format!("type={}", self.type_name));
        }
        if self.seed != 0x5eed {
            parts.push(format!("seed={}", self.seed));
        }
        if let Some((major, minor)) = self.kernel {
            parts.push(format!("kernel={major}.{minor}"));
        }
        for d in &self.defects {
            parts.push(format!("defect={}", d.name()));
        }
        let api = match self.api {
            MigrationApi::V1 => "v1",
            MigrationApi::V2 => "v2",
            MigrationApi::None => "plain",
        };
        format!("sim:{api}?{}", parts.join("&"))
    }

    /// Whether the simulated kernel has `VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2` (7.1+).
    pub fn has_precopy_info_v2(&self) -> bool {
        self.kernel.is_none_or(|k| k >= (7, 1))
    }

    /// `DeviceInfo::kernel` of the device: the simulated release, or the suite's version.
    pub fn kernel_info(&self) -> String {
        match self.kernel {
            Some((major, minor)) => format!("{major}.{minor} (simulated)"),
            None => format!("vfio-mig-conform {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Builds the device.
    pub fn build(&self) -> Box<dyn Device> {
        let spec = self.spec();
        match self.api {
            MigrationApi::V1 => Box::new(v1::SimV1::new(self.clone(), &spec)),
            _ => Box::new(v2::SimV2::new(self.clone(), &spec)),
        }
    }
}

/// A device string that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Parses `sim:v2?...` / `sim:v1?...`.
pub fn parse_spec(spec: &str) -> Result<SimConfig, SpecError> {
    let rest = spec.strip_prefix("sim:").ok_or_else(|| {
        SpecError(format!("`{spec}` is not a simulated device (expected sim:v1 or sim:v2)"))
    })?;
    let (kind, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut cfg = match kind {
        "v2" => SimConfig::v2(),
        "v1" => SimConfig::v1(),
        "plain" => SimConfig { api: MigrationApi::None, dma_logging: false, ..SimConfig::v2() },
        other => {
            return Err(SpecError(format!(
                "`{spec}`: unknown simulated device `{other}` (expected v1, v2 or plain)"
            )));
        }
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| SpecError(format!("`{spec}`: `{pair}` is not key=value")))?;
        let bad = |what: &str| SpecError(format!("`{spec}`: bad {key} `{value}`: {what}"));
        match key {
            "flags" if cfg.api == MigrationApi::V2 => {
                cfg.flags = MigFlags::parse(value).map_err(|e| bad(&e))?;
            }
            "size" => {
                cfg.state_size = crate::units::parse_size(value)
                    .ok_or_else(|| bad("expected bytes, e.g. 4096, 64k, 1g"))?;
            }
            "dma" if cfg.api == MigrationApi::V2 => {
                cfg.dma_logging = match value {
                    "on" | "1" | "true" => true,
                    "off" | "0" | "false" => false,
                    _ => return Err(bad("expected on or off")),
                }
            }
            "report" if cfg.api == MigrationApi::V2 => {
                cfg.report_stub = match value {
                    "stub" => true,
                    "real" => false,
                    _ => return Err(bad("expected stub or real")),
                }
            }
            "type" => {
                if value.is_empty()
                    || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(bad("expected a name of letters, digits, - and _"));
                }
                cfg.type_name = value.to_string();
            }
            "seed" => cfg.seed = crate::state::parse_u64(value).ok_or_else(|| bad("expected a number"))?,
            "kernel" => {
                let release = crate::units::release_of(value)
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    .ok_or_else(|| bad("expected a kernel release like 6.12 or 7.2"))?;
                cfg.kernel = Some(release);
            }
            "defect" => {
                for name in value.split(',').filter(|n| !n.is_empty()) {
                    let d = Defect::by_name(name).ok_or_else(|| {
                        SpecError(format!(
                            "`{spec}`: unknown defect `{name}` (see `vfio-mig-conform sim --list-defects`)"
                        ))
                    })?;
                    if d.api() != cfg.api {
                        return Err(SpecError(format!(
                            "`{spec}`: defect `{name}` applies to sim:{} devices",
                            if d.api() == MigrationApi::V1 { "v1" } else { "v2" }
                        )));
                    }
                    if !cfg.defects.contains(&d) {
                        cfg.defects.push(d);
                    }
                }
            }
            _ => {
                let keys = if cfg.api == MigrationApi::V2 {
                    "flags, size, dma, report, type, seed, kernel, defect"
                } else {
                    "size, type, seed, kernel, defect"
                };
                return Err(SpecError(format!("`{spec}`: unknown key `{key}` (known: {keys})")));
            }
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_round_trip() {
        let cfg = parse_spec("sim:v2?flags=stop_copy,p2p&size=64k&dma=off&defect=irq_in_stop").unwrap();
        assert_eq!(cfg.flags, MigFlags(3));
        assert_eq!(cfg.state_size, 65536);
        assert!(!cfg.dma_logging);
        assert_eq!(cfg.defects, vec![Defect::IrqInStop]);
        assert_eq!(parse_spec(&cfg.spec()).unwrap(), cfg);
    }

    #[test]
    fn bad_specs_name_the_problem() {
        assert!(parse_spec("sim:v3").unwrap_err().0.contains("unknown simulated device"));
        assert!(parse_spec("sim:v2?bogus=1").unwrap_err().0.contains("unknown key `bogus`"));
        assert!(parse_spec("sim:v2?defect=nope").unwrap_err().0.contains("unknown defect `nope`"));
        assert!(parse_spec("sim:v2?defect=v1_accepts_101").unwrap_err().0.contains("sim:v1"));
        assert!(parse_spec("sim:v2?size=lots").unwrap_err().0.contains("bad size"));
        assert!(parse_spec("sim:v2?kernel=recent").unwrap_err().0.contains("bad kernel `recent`"));
        assert!(parse_spec("sim:v2?kernel=7.2-rc1").unwrap_err().0.contains("bad kernel"));
    }

    #[test]
    fn a_simulated_kernel_round_trips_and_names_the_device_kernel() {
        let cfg = parse_spec("sim:v2?kernel=6.12").unwrap();
        assert_eq!(cfg.kernel, Some((6, 12)));
        assert!(!cfg.has_precopy_info_v2());
        assert_eq!(parse_spec(&cfg.spec()).unwrap(), cfg);
        assert_eq!(cfg.build().info().kernel.as_deref(), Some("6.12 (simulated)"));
        assert!(parse_spec("sim:v2?kernel=7.2").unwrap().has_precopy_info_v2());
        assert!(parse_spec("sim:v2").unwrap().has_precopy_info_v2());
    }
}
