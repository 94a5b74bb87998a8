//! Opening the devices named on the command line.

use vmc::device::Device;
use vmc::device::sim;

use crate::cli::exit;
use crate::run::Exit;

/// Parses `4g`, `64k`, `1048576`.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v.as_str(), 1),
    };
    vmc::state::parse_u64(num)?.checked_mul(mult)
}

/// Opens one device: a simulated one, or a real VFIO device.
pub fn open(spec: &str, device_name: Option<&str>) -> Result<Box<dyn Device>, Exit> {
    if spec.starts_with("sim:") {
        let cfg = sim::parse_spec(spec).map_err(|e| Exit::new(exit::USAGE, e.to_string()))?;
        return Ok(cfg.build());
    }
    vmc::device::kernel::open(spec, device_name).map_err(|e| Exit::new(exit::DEVICE, e.to_string()))
}
