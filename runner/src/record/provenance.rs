//! The provenance of a recording: the recorder, the date, the kernel, the VMM processes (their
//! program, version and command line) and what sysfs says each device is.

use std::collections::BTreeMap;
use std::ffi::OsString;

use vmc::provenance::{Provenance, RecordedDevice, VmmProcess};

use super::decode::Decoder;

/// Gathers the provenance after the recording (the VMM processes have ended: their program
/// and command line were kept when they opened a device).
pub fn gather(command: &[OsString], dec: &Decoder, scenario: Option<String>) -> Provenance {
    let mut versions: BTreeMap<String, String> = BTreeMap::new();
    let mut vmm = Vec::new();
    for (pid, (exe, argv)) in &dec.programs {
        let version = versions.entry(exe.clone()).or_insert_with(|| version_of(exe)).clone();
        let devices = dec.devices.iter().filter(|d| d.pids.contains(pid)).map(|d| d.label.clone()).collect();
        vmm.push(VmmProcess { pid: *pid, version, exe: exe.clone(), argv: argv.clone(), devices });
    }
    let devices = dec
        .devices
        .iter()
        .map(|d| RecordedDevice {
            label: d.label.clone(),
            name: d.name.clone(),
            path: d.path.clone(),
            kind: device_kind(&d.name),
        })
        .collect();
    let u = nix::sys::utsname::uname().ok();
    let kernel = u
        .map(|u| format!("{} {}", u.release().to_string_lossy(), u.version().to_string_lossy()))
        .unwrap_or_default();
    Provenance {
        recorder: format!("vfio-mig-conform record {}", env!("CARGO_PKG_VERSION")),
        date: utc_now(),
        kernel,
        command: command.iter().map(|s| s.to_string_lossy().into_owned()).collect(),
        vmm,
        devices,
        scenario,
    }
}

/// The first line of `EXE --version` (empty if it cannot be run).
fn version_of(exe: &str) -> String {
    if exe.is_empty() {
        return String::new();
    }
    std::process::Command::new(exe)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_default()
}

fn link_name(p: &str) -> Option<String> {
    std::fs::read_link(p).ok().and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// What sysfs says a device is: an mdev's type and driver, a PCI function's ids and driver.
pub fn device_kind(name: &str) -> String {
    let mdev = format!("/sys/bus/mdev/devices/{name}");
    if std::path::Path::new(&mdev).exists() {
        let ty = link_name(&format!("{mdev}/mdev_type")).unwrap_or_else(|| "?".to_string());
        let parent = std::fs::read_link(&mdev)
            .ok()
            .and_then(|l| l.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let driver = link_name(&format!("{mdev}/driver")).unwrap_or_default();
        return format!("mdev type {ty} (parent {parent}), driver {driver}");
    }
    let pci = format!("/sys/bus/pci/devices/{name}");
    if std::path::Path::new(&pci).exists() {
        let id = |f: &str| {
            std::fs::read_to_string(format!("{pci}/{f}"))
                .map(|s| s.trim().trim_start_matches("0x").to_string())
                .unwrap_or_default()
        };
        let driver = link_name(&format!("{pci}/driver")).unwrap_or_default();
        return format!("PCI {}:{} (class {}), driver {driver}", id("vendor"), id("device"), id("class"));
    }
    "unknown (not in /sys/bus/mdev or /sys/bus/pci)".to_string()
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = vmc::units::utc_civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_470_271), "2026-12-05T11:31:11Z");
    }

    #[test]
    fn an_unknown_device_says_so() {
        assert!(device_kind("no-such-device").starts_with("unknown"));
    }
}
