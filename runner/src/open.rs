//! Opening the devices named on the command line.

use vmc::device::Device;
use vmc::device::sim;

use crate::cli::exit;
use crate::run::Exit;

/// Opens one device: a simulated one, or a real VFIO device.
pub fn open(spec: &str, device_name: Option<&str>) -> Result<Box<dyn Device>, Exit> {
    if spec.starts_with("sim:") {
        let cfg = sim::parse_spec(spec).map_err(|e| Exit::new(exit::USAGE, e.to_string()))?;
        return Ok(cfg.build());
    }
    vmc::device::kernel::open(spec, device_name).map_err(|e| Exit::new(exit::DEVICE, e.to_string()))
}

/// [`open`] through the IOMMU back end named by `--iommu-backend` (a concrete one, never
/// `all`, which `bind::run` expands into one run per back end).
pub fn open_with(
    spec: &str,
    device_name: Option<&str>,
    backend: Option<&str>,
) -> Result<Box<dyn Device>, Exit> {
    let Some(b) = backend.and_then(vmc::device::kernel::IommuBackend::parse) else {
        return open(spec, device_name);
    };
    if spec.starts_with("sim:") {
        return Err(Exit::new(exit::USAGE, format!("{spec}: --iommu-backend {b} is for kernel devices")));
    }
    vmc::device::kernel::open_with(spec, device_name, Some(b))
        .map_err(|e| Exit::new(exit::DEVICE, e.to_string()))
}

/// [`open_with`] after [`crate::isolate::preflight`] (when `fork`) has shown that the device
/// answers: a wedged kernel device is exit 6 with what to do, not a runner hanging in the
/// kernel. `timeout` is the watchdog's `--timeout` in seconds.
pub fn open_answering(
    spec: &str,
    device_name: Option<&str>,
    backend: Option<&str>,
    timeout: u64,
    fork: bool,
) -> Result<Box<dyn Device>, Exit> {
    if fork && !spec.starts_with("sim:") {
        crate::isolate::preflight(
            spec,
            || open_with(spec, device_name, backend).map(|mut dev| vmc::engine::probe(dev.as_mut())).is_ok(),
            std::time::Duration::from_secs(timeout),
        )
        .map_err(|e| Exit::new(exit::WEDGED, e))?;
    }
    open_with(spec, device_name, backend)
}

/// Holds the per-device lock for the whole run.
#[derive(Debug)]
pub struct DeviceLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

pub(crate) fn lock_dir() -> std::path::PathBuf {
    let run = std::path::Path::new("/run/lock");
    if run.is_dir() {
        run.join("vfio-mig-conform")
    } else {
        std::env::temp_dir().join("vfio-mig-conform-locks")
    }
}

/// Takes an exclusive lock for a real device (simulated devices need none), so that a second
/// runner on the same device refuses clearly instead of failing in the middle of a check.
pub fn lock(spec: &str) -> Result<Option<DeviceLock>, Exit> {
    use std::io::{Read, Seek, Write};
    if spec.starts_with("sim:") {
        return Ok(None);
    }
    let key: String = std::fs::canonicalize(spec)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| spec.to_string())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    let dir = lock_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{key}.lock"));
    let mut file =
        match std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path) {
            Ok(f) => f,
            // No lock possible (read-only /run, ...): the kernel's own exclusivity still applies.
            Err(_) => return Ok(None),
        };
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut f) => {
            let _ = f.set_len(0);
            let _ = f.rewind();
            let _ = writeln!(f, "{}", std::process::id());
            Ok(Some(DeviceLock { _file: f }))
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Exit::new(
            exit::DEVICE,
            format!(
                "{spec}: another vfio-mig-conform (pid {}) is testing this device; wait for it to finish \
                 (lock {})",
                holder.trim(),
                path.display()
            ),
        )),
        Err(_) => Ok(None),
    }
}
