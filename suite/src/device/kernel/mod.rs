//! The kernel backend: a real VFIO device through the group/container interface
//! (`/dev/vfio/N`) or a device cdev bound to IOMMUFD (`/dev/vfio/devices/vfioX`).
//!
//! - [`open`](mod@open): spec parsing and sysfs resolution (no side effects), then opening.
//! - `device`: [`KernelDevice`], the [`Device`] implementation.
//! - `ioctl`: one thin wrapper per ioctl; `scratch`: guarded ioctl buffers; `caps`: the
//!   region-info capability chain; `irqs`: eventfds; `mmap`: region mappings; `fdops`: data
//!   fd syscalls.

pub mod backend;
pub mod bind;
mod caps;
mod device;
mod fdops;
mod ioctl;
mod irqs;
mod mmap;
pub mod open;
mod scratch;

pub use backend::IommuBackend;
pub use device::KernelDevice;

use super::Device;
use crate::errno::Errno;

/// Why a device could not be opened. Every message names the path or device concerned.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: no such file or directory{hint}")]
    Missing { path: String, hint: String },

    #[error("{spec}: no such {kind} ({sysfs} does not exist)")]
    NoSuchDevice { spec: String, kind: &'static str, sysfs: String },

    #[error("{path}: {what}, not a VFIO group (/dev/vfio/N) or VFIO device (/dev/vfio/devices/vfioN)")]
    NotVfio { path: String, what: String },

    #[error("{path}: permission denied ({detail}): run as root or give your user read-write access to it")]
    Permission { path: String, detail: String },

    #[error(
        "{path}: device or resource busy: another process (a VM?) holds {path}{hint}; `fuser -v {path}` shows which"
    )]
    Busy { path: String, hint: String },

    #[error(
        "{path}: device or resource busy: this process already holds {path} as fd {fd} (the same device given twice, or an fd inherited from the parent?)"
    )]
    AlreadyOpen { path: String, fd: String },

    #[error("{path}: IOMMU group {group} is not viable: {detail}")]
    NotViable { path: String, group: String, detail: String },

    #[error("{path}: IOMMU group {group} holds {} devices ({}): choose one with --device-name", .devices.len(), .devices.join(", "))]
    Ambiguous { path: String, group: String, devices: Vec<String> },

    #[error("{path}: IOMMU group {group} has no device `{name}` (it holds {})", list_or_none(.devices))]
    NotInGroup { path: String, group: String, name: String, devices: Vec<String> },

    #[error("{path}: cannot tell which device of IOMMU group {group} to open ({why}): pass --device-name")]
    UnknownDevice { path: String, group: String, why: String },

    #[error("--device-name {name} contradicts {spec}, which is the device {actual}")]
    NameConflict { spec: String, name: String, actual: String },

    #[error("{spec}: {device} has no IOMMU group ({sysfs} is missing): enable the IOMMU or use an mdev")]
    NoGroup { spec: String, device: String, sysfs: String },

    #[error(
        "{spec}: {device} is in IOMMU group {group}, but {node} does not exist: bind it to a VFIO driver{bound}"
    )]
    NotBound { spec: String, device: String, group: String, node: String, bound: String },

    #[error(
        "{path}: a VFIO device cdev needs IOMMUFD, but this kernel has no {iommu} (CONFIG_IOMMUFD is off?){hint}"
    )]
    NoIommufd { path: String, iommu: String, hint: String },

    #[error("{container}: {iommu} is not supported ({})", iommu_type_hint(.iommu))]
    NoIommuType { container: String, iommu: &'static str },

    #[error("{0}")]
    Backend(#[from] backend::Unavailable),

    #[error("{container}: VFIO API version {got}, but this tool speaks version {want}")]
    ApiVersion { container: String, got: i32, want: u32 },

    #[error("{path}: {what} failed: {errno} ({})", .errno.desc())]
    Ioctl { path: String, what: String, errno: Errno },

    #[error("{path}: cannot open: {errno} ({})", .errno.desc())]
    Os { path: String, errno: Errno },
}

fn iommu_type_hint(iommu: &str) -> &'static str {
    if iommu == "VFIO_NOIOMMU_IOMMU" {
        "vfio's no-IOMMU mode is off: vfio.enable_unsafe_noiommu_mode=1"
    } else {
        "is vfio_iommu_type1 loaded?"
    }
}

fn list_or_none(devices: &[String]) -> String {
    if devices.is_empty() { "no devices".to_string() } else { devices.join(", ") }
}

/// Opens a VFIO device: `/dev/vfio/N`, `/dev/vfio/devices/vfioX`, a PCI address
/// (`0000:3b:00.1`) or an mdev UUID. `device_name` picks the device in a group that holds
/// several; the backend never opens a device it was not given.
pub fn open(spec: &str, device_name: Option<&str>) -> Result<Box<dyn Device>, OpenError> {
    open_with(spec, device_name, None)
}

/// [`open()`] through a chosen IOMMU back end (None: type1v2 for a group, the no-IOMMU
/// container for a `noiommu-N` group, IOMMUFD for a cdev). The device's
/// [`DeviceInfo::iommu`](crate::device::DeviceInfo::iommu) names the back end used.
pub fn open_with(
    spec: &str,
    device_name: Option<&str>,
    backend: Option<IommuBackend>,
) -> Result<Box<dyn Device>, OpenError> {
    let env = open::Env::host();
    let target = open::resolve(&env, spec, device_name)?;
    let backend = backend.unwrap_or_else(|| IommuBackend::default_for(&target));
    let target = backend::retarget(&env, &target, backend)?;
    let dev = device::KernelDevice::open(&env, spec, &target, backend)?;
    Ok(Box::new(dev))
}
