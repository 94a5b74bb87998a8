//! Probing a device once, when the engine wraps it: v2 migration flags and features (DMA
//! logging, PRECOPY_INFOv2, whether DMA_LOGGING_REPORT is the kernel's stub), the initial
//! state, the PCI command register, fault injection, or a v1 migration region.

use serde::{Deserialize, Serialize};

use crate::device::{Device, MigrationApi, RegionInfo};
use crate::errno::Errno;
use crate::state::MigFlags;
use crate::uapi;

/// What the suite learnt about a device when it opened it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFacts {
    pub api: MigrationApi,
    pub flags: MigFlags,
    pub dma_logging: bool,
    pub precopy_info_v2: bool,
    /// Whether the backend can inject kernel faults (`/proc/thread-self/fail-nth`).
    #[serde(default)]
    pub fault_injection: bool,
    /// The v1 migration region, if any.
    pub migration_region: Option<RegionInfo>,
    /// State at start (v2).
    pub initial_state: Option<u32>,
    /// Why the device is not migratable, when api is None.
    pub why_not: Option<String>,
    /// DMA_LOGGING_REPORT fails with EOPNOTSUPP right after a successful START: the kernel's
    /// iova_bitmap is a stub (built without IOMMUFD), whatever the driver does.
    #[serde(default)]
    pub report_stub: bool,
    /// The PCI command register when the suite opened the device (restored after each check).
    #[serde(default)]
    pub pci_command: Option<u16>,
}

/// Builds a `VFIO_DEVICE_FEATURE` GET with an 8-byte payload and returns the payload.
pub(crate) fn feature_get(dev: &mut dyn Device, feature: u32) -> Result<[u8; 8], Errno> {
    let mut payload = [0u8; 8];
    dev.feature(uapi::FEATURE_HEADER + 8, uapi::FEATURE_GET | feature, &mut payload)?;
    Ok(payload)
}

/// Learns what a device supports: v2 flags and features, or a v1 migration region.
pub fn probe(dev: &mut dyn Device) -> DeviceFacts {
    let mut facts = DeviceFacts {
        api: MigrationApi::None,
        flags: MigFlags(0),
        dma_logging: false,
        precopy_info_v2: false,
        fault_injection: dev.inject_fault(0).is_ok(),
        migration_region: None,
        initial_state: None,
        why_not: None,
        report_stub: false,
        pci_command: None,
    };
    let mut cmd = [0u8; 2];
    if dev.region_read(uapi::PCI_CONFIG_REGION_INDEX, 4, &mut cmd, crate::op::Access::Rw) == Ok(2) {
        facts.pci_command = Some(u16::from_le_bytes(cmd));
    }
    match feature_get(dev, uapi::FEATURE_MIGRATION) {
        Ok(p) => {
            facts.api = MigrationApi::V2;
            facts.flags = MigFlags(u64::from_le_bytes(p[..8].try_into().unwrap_or([0; 8])));
            let mut empty = [0u8; 0];
            facts.dma_logging = dev
                .feature(
                    8,
                    uapi::FEATURE_PROBE | uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START,
                    &mut empty,
                )
                .is_ok();
            facts.precopy_info_v2 = dev
                .feature(
                    8,
                    uapi::FEATURE_PROBE | uapi::FEATURE_SET | uapi::FEATURE_MIG_PRECOPY_INFO_V2,
                    &mut empty,
                )
                .is_ok();
            if let Ok(p) = feature_get(dev, uapi::FEATURE_MIG_DEVICE_STATE) {
                facts.initial_state = Some(u32::from_le_bytes(p[..4].try_into().unwrap_or([0; 4])));
            }
            if facts.dma_logging && dev.dma_log_start(4096, &[(0, 4096)]).is_ok() {
                let mut bitmap = [0u64; 1];
                facts.report_stub = dev.dma_log_report(0, 4096, 4096, &mut bitmap) == Err(Errno::EOPNOTSUPP);
                let _ = dev.feature(8, uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_STOP, &mut empty);
            }
            return facts;
        }
        Err(e) => {
            facts.why_not = Some(format!("VFIO_DEVICE_FEATURE GET MIGRATION failed with {e}"));
        }
    }
    let regions = dev.device_info().map(|i| i.num_regions).unwrap_or(0).min(64);
    for index in 0..regions {
        if let Ok(info) = dev.region_info(index)
            && info.cap_type == Some(uapi::REGION_TYPE_MIGRATION)
        {
            facts.api = MigrationApi::V1;
            facts.migration_region = Some(info);
            facts.why_not = None;
            return facts;
        }
    }
    if let Some(w) = &mut facts.why_not {
        w.push_str(&format!(
            " and none of its {regions} regions is a v1 migration region (type 3, subtype 1)"
        ));
    }
    facts
}
