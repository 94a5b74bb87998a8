//! uAPI constants and the argument checks the vfio core applies to every driver
//! (6.12 drivers/vfio/vfio_main.c, include/linux/vfio.h). The simulator uses the checks to
//! behave like the core; the kernel backend uses the constants to build requests.

use vfio_bindings::bindings::vfio as b;

pub const FEATURE_MASK: u32 = b::VFIO_DEVICE_FEATURE_MASK;
pub const FEATURE_GET: u32 = b::VFIO_DEVICE_FEATURE_GET;
pub const FEATURE_SET: u32 = b::VFIO_DEVICE_FEATURE_SET;
pub const FEATURE_PROBE: u32 = b::VFIO_DEVICE_FEATURE_PROBE;

pub const FEATURE_MIGRATION: u32 = b::VFIO_DEVICE_FEATURE_MIGRATION;
pub const FEATURE_MIG_DEVICE_STATE: u32 = b::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
pub const FEATURE_DMA_LOGGING_START: u32 = b::VFIO_DEVICE_FEATURE_DMA_LOGGING_START;
pub const FEATURE_DMA_LOGGING_STOP: u32 = b::VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP;
pub const FEATURE_DMA_LOGGING_REPORT: u32 = b::VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT;
pub const FEATURE_MIG_DATA_SIZE: u32 = b::VFIO_DEVICE_FEATURE_MIG_DATA_SIZE;
pub const FEATURE_MIG_PRECOPY_INFO_V2: u32 = b::VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2;

/// `VFIO_REGION_TYPE_MIGRATION_DEPRECATED` / `..._SUBTYPE_...`.
pub const REGION_TYPE_MIGRATION: (u32, u32) =
    (b::VFIO_REGION_TYPE_MIGRATION_DEPRECATED, b::VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED);

/// PCI region indices.
pub const PCI_BAR0_REGION_INDEX: u32 = 0;
pub const PCI_CONFIG_REGION_INDEX: u32 = 7;
pub const PCI_NUM_REGIONS: u32 = 9;

/// Size of `struct vfio_device_feature` without its data.
pub const FEATURE_HEADER: u32 = 8;
/// `VFIO_PRECOPY_INFO_REINIT` (7.1+): an output flag of PRECOPY_INFO after the opt-in of
/// feature 12 (include/uapi/linux/vfio.h of 7.2).
pub const PRECOPY_INFO_REINIT: u32 = 1 << 0;
/// Size of `struct vfio_precopy_info`.
pub const PRECOPY_INFO_SIZE: u32 = 24;

/// `LOG_MAX_RANGES`: ranges that fit in one 4 KiB kernel page.
pub const LOG_MAX_RANGES: usize = 4096 / 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_match_the_uapi() {
        assert_eq!(crate::device::VFIO_DEVICE_FEATURE, 0x3b75);
        assert_eq!(crate::device::VFIO_MIG_GET_PRECOPY_INFO, 0x3b79);
        assert_eq!(REGION_TYPE_MIGRATION, (3, 1));
    }
}
