//! Where a recorded sequence comes from (`vfio-mig-conform record`): the `provenance:` map of
//! a sequence. The loader checks its shape; nothing in a run depends on it.

use serde::{Deserialize, Serialize};

/// The `provenance:` map of a recorded sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The recorder and its version (`vfio-mig-conform record 0.1.0`).
    pub recorder: String,
    /// When the recording was made (UTC, RFC 3339).
    pub date: String,
    /// The kernel the devices ran on (`uname -r` and `-v`).
    pub kernel: String,
    /// The command the recorder ran (after `--`).
    pub command: Vec<String>,
    /// The processes that opened VFIO devices.
    #[serde(default)]
    pub vmm: Vec<VmmProcess>,
    /// The devices, in label order.
    #[serde(default)]
    pub devices: Vec<RecordedDevice>,
    /// Free text: what the scenario did (monitor commands, stream tampering, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

/// A VMM process of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmmProcess {
    pub pid: i32,
    /// First line of `EXE --version`.
    pub version: String,
    pub exe: String,
    pub argv: Vec<String>,
    /// Labels of the devices it opened.
    pub devices: Vec<String>,
}

/// A device of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedDevice {
    pub label: String,
    /// The device's name (mdev UUID, PCI address).
    pub name: String,
    /// The node it was opened through (/dev/vfio/N or /dev/vfio/devices/vfioN).
    pub path: String,
    /// What sysfs says it is (`mdev type mtty-2, driver mtty`, `PCI 15b3:101e, driver mlx5_vfio_pci`).
    #[serde(rename = "type")]
    pub kind: String,
}
