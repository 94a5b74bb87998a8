//! The kernel backend (VFIO group/cdev ioctls).

use super::Device;

/// Why a device could not be opened.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Opens a VFIO device.
pub fn open(spec: &str, _device_name: Option<&str>) -> Result<Box<dyn Device>, OpenError> {
    Err(OpenError(format!("{spec}: the kernel backend is not built in yet")))
}
