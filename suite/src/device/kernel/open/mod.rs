//! Resolving what the user named to one VFIO device, then opening it.
//!
//! [`resolve`] only reads sysfs and `stat()`s nodes (the roots are injectable, so tests use
//! a fake tree); `connect` performs the opens and ioctls. Nothing is opened that the user
//! did not name: a group holding several devices needs `--device-name`.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use vfio_bindings::bindings::vfio as b;

use super::OpenError;
use super::backend::IommuBackend;
use super::ioctl::{self, IommuIoasAlloc};
use crate::errno::Errno;

mod connect;

pub(super) use connect::{Binding, connect};
use connect::{NodeKind, open_error};

/// Where sysfs and /dev are.
#[derive(Clone, Debug)]
pub struct Env {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Env {
    /// The running system.
    pub fn host() -> Env {
        Env { sys: PathBuf::from("/sys"), dev: PathBuf::from("/dev") }
    }
}

/// What kind of name the user gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A device node (or anything else on the filesystem).
    Path(String),
    /// A PCI address, normalised to `dddd:bb:dd.f` in lower case.
    Pci(String),
    /// An mdev UUID in lower case.
    Mdev(String),
}

fn all_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// `dddd:bb:dd.f` (a domain of 4 or more hex digits) or `bb:dd.f`.
fn parse_pci(s: &str) -> Option<String> {
    let (rest, func) = s.rsplit_once('.')?;
    if func.len() != 1 || !matches!(func.as_bytes()[0], b'0'..=b'7') {
        return None;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (domain, bus, dev) = match parts.as_slice() {
        [d, b, v] => (d.to_string(), *b, *v),
        [b, v] => ("0000".to_string(), *b, *v),
        _ => return None,
    };
    if domain.len() < 4 || !all_hex(&domain) || bus.len() != 2 || !all_hex(bus) || dev.len() != 2 {
        return None;
    }
    let devnum = u8::from_str_radix(dev, 16).ok()?;
    if devnum > 0x1f {
        return None;
    }
    Some(format!("{domain}:{bus}:{dev}.{func}").to_ascii_lowercase())
}

fn parse_uuid(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    (lens == [8, 4, 4, 4, 12] && parts.iter().all(|p| all_hex(p))).then(|| s.to_ascii_lowercase())
}

/// Classifies a device spec.
pub fn parse_spec(spec: &str) -> Spec {
    if let Some(p) = parse_pci(spec) {
        Spec::Pci(p)
    } else if let Some(u) = parse_uuid(spec) {
        Spec::Mdev(u)
    } else {
        Spec::Path(spec.to_string())
    }
}

/// The device to open, before anything is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Through the group node `node` (`/dev/vfio/N`), IOMMU group `group`.
    Group { node: PathBuf, group: String, name: String },
    /// Through a device cdev bound to IOMMUFD.
    Cdev { node: PathBuf, name: Option<String>, group: Option<String> },
}

impl Target {
    /// The VFIO device name (PCI address or mdev UUID), when known.
    pub fn name(&self) -> Option<&str> {
        match self {
            Target::Group { name, .. } => Some(name),
            Target::Cdev { name, .. } => name.as_deref(),
        }
    }
}

fn basename(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p).ok().as_deref().and_then(basename)
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// What a character device number is, according to sysfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CharDev {
    /// A VFIO group node: the class device name (`3`, `noiommu-3`).
    Group(String),
    /// A VFIO device cdev; the sysfs directory of the device it belongs to.
    Cdev { cdev: String, device: PathBuf },
    /// `/dev/vfio/vfio`.
    Container,
    /// Something else: `subsystem/name`.
    Other(String),
    /// sysfs does not know it.
    Unknown,
}

/// Looks up `/sys/dev/char/MAJ:MIN`.
pub fn char_dev(env: &Env, major: u64, minor: u64) -> CharDev {
    let link = env.sys.join("dev/char").join(format!("{major}:{minor}"));
    let Ok(dir) = fs::canonicalize(&link) else {
        return CharDev::Unknown;
    };
    let name = basename(&dir).unwrap_or_default();
    let subsystem = link_name(&dir.join("subsystem")).unwrap_or_default();
    match subsystem.as_str() {
        "vfio" => CharDev::Group(name),
        "vfio-dev" => match dir.parent().and_then(Path::parent) {
            Some(device) => CharDev::Cdev { cdev: name, device: device.to_path_buf() },
            None => CharDev::Other(format!("{subsystem}/{name}")),
        },
        "misc" if name == "vfio" => CharDev::Container,
        _ => CharDev::Other(format!("{subsystem}/{name}")),
    }
}

/// A short description of what `path` is, for "not a VFIO node" messages.
pub fn describe_node(env: &Env, path: &Path) -> String {
    let mut prefix = String::new();
    if let Ok(m) = fs::symlink_metadata(path)
        && m.file_type().is_symlink()
    {
        let target = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
        match fs::canonicalize(path) {
            Ok(c) if c.display().to_string() != target => {
                prefix = format!("a symlink to {target} ({}), which is ", c.display());
            }
            Ok(_) => prefix = format!("a symlink to {target}, which is "),
            Err(_) => return format!("a dangling symlink to {target}"),
        }
    }
    let Ok(m) = fs::metadata(path) else {
        return format!("{prefix}not accessible");
    };
    let ft = m.file_type();
    let what = if ft.is_file() {
        "a regular file".to_string()
    } else if ft.is_dir() {
        "a directory".to_string()
    } else if ft.is_char_device() {
        let (maj, min) = (nix::sys::stat::major(m.rdev()), nix::sys::stat::minor(m.rdev()));
        match char_dev(env, maj, min) {
            CharDev::Container => {
                "the VFIO container (/dev/vfio/vfio), which the tool opens itself".to_string()
            }
            CharDev::Other(what) => format!("the character device {maj}:{min} ({what})"),
            _ => format!("the character device {maj}:{min}"),
        }
    } else if ft.is_block_device() {
        format!("the block device {}:{}", nix::sys::stat::major(m.rdev()), nix::sys::stat::minor(m.rdev()))
    } else if ft.is_fifo() {
        "a FIFO".to_string()
    } else if ft.is_socket() {
        "a socket".to_string()
    } else {
        "not a device node".to_string()
    };
    format!("{prefix}{what}")
}

fn list_dir(p: &Path) -> Option<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(p)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Some(v)
}

/// The IOMMU group number behind a VFIO group name (`noiommu-3` → `3`).
fn group_id(vfio_name: &str) -> &str {
    vfio_name.strip_prefix("noiommu-").unwrap_or(vfio_name)
}

/// The devices of IOMMU group `id`, sorted.
pub fn group_devices(env: &Env, id: &str) -> Option<Vec<String>> {
    list_dir(&env.sys.join("kernel/iommu_groups").join(id).join("devices"))
}

/// Picks the device of a group: the only one, or the one `--device-name` names.
fn pick_in_group(
    env: &Env,
    node: &Path,
    vfio_name: &str,
    device_name: Option<&str>,
) -> Result<Target, OpenError> {
    let id = group_id(vfio_name);
    let path = node.display().to_string();
    let devices = group_devices(env, id);
    let name = match (devices, device_name) {
        (Some(d), Some(n)) if d.iter().any(|x| x == n) => n.to_string(),
        (Some(d), Some(n)) if !d.is_empty() => {
            return Err(OpenError::NotInGroup {
                path,
                group: id.to_string(),
                name: n.to_string(),
                devices: d,
            });
        }
        (_, Some(n)) => n.to_string(),
        (Some(d), None) if d.len() == 1 => d[0].clone(),
        (Some(d), None) if d.len() > 1 => {
            return Err(OpenError::Ambiguous { path, group: id.to_string(), devices: d });
        }
        (Some(_), None) => {
            return Err(OpenError::UnknownDevice {
                path,
                group: id.to_string(),
                why: format!("{} lists no devices", env.sys.join("kernel/iommu_groups").join(id).display()),
            });
        }
        (None, None) => {
            return Err(OpenError::UnknownDevice {
                path,
                group: id.to_string(),
                why: format!(
                    "cannot read {}",
                    env.sys.join("kernel/iommu_groups").join(id).join("devices").display()
                ),
            });
        }
    };
    Ok(Target::Group { node: node.to_path_buf(), group: id.to_string(), name })
}

fn missing_hint(env: &Env, spec: &str) -> String {
    let cdevs = env.dev.join("vfio/devices");
    if !spec.starts_with('/') && !spec.starts_with('.') {
        " (give /dev/vfio/N, /dev/vfio/devices/vfioN, a PCI address such as 0000:3b:00.1 or an mdev UUID)"
            .to_string()
    } else if Path::new(spec).starts_with(&cdevs) && !cdevs.exists() {
        format!(
            " ({} does not exist: this kernel has no VFIO device cdevs (CONFIG_VFIO_DEVICE_CDEV is off?); use the group node /dev/vfio/N)",
            cdevs.display()
        )
    } else if Path::new(spec).starts_with(env.dev.join("vfio")) {
        " (is the device bound to a VFIO driver, or the mdev created?)".to_string()
    } else {
        String::new()
    }
}

fn resolve_path(env: &Env, spec: &str, device_name: Option<&str>) -> Result<Target, OpenError> {
    let path = Path::new(spec);
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(OpenError::NotVfio { path: spec.to_string(), what: describe_node(env, path) });
            }
            return Err(OpenError::Missing { path: spec.to_string(), hint: missing_hint(env, spec) });
        }
        Err(e) => {
            return Err(open_error(spec, Errno(e.raw_os_error().unwrap_or(libc::EIO)), NodeKind::Other));
        }
    };
    if !meta.file_type().is_char_device() {
        return Err(OpenError::NotVfio { path: spec.to_string(), what: describe_node(env, path) });
    }
    let (maj, min) = (nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
    match char_dev(env, maj, min) {
        CharDev::Group(vfio_name) => pick_in_group(env, path, &vfio_name, device_name),
        CharDev::Cdev { device, .. } => {
            let name = basename(&device);
            if let (Some(n), Some(actual)) = (device_name, &name)
                && n != actual
            {
                return Err(OpenError::NameConflict {
                    spec: spec.to_string(),
                    name: n.to_string(),
                    actual: actual.clone(),
                });
            }
            Ok(Target::Cdev { node: path.to_path_buf(), name, group: link_name(&device.join("iommu_group")) })
        }
        CharDev::Unknown => {
            // No sysfs: trust the conventional layout, nothing else.
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let file = basename(path).unwrap_or_default();
            if parent == env.dev.join("vfio") && file.bytes().all(|c| c.is_ascii_digit()) && !file.is_empty()
            {
                pick_in_group(env, path, &file, device_name)
            } else if parent == env.dev.join("vfio/devices") && file.starts_with("vfio") {
                Ok(Target::Cdev {
                    node: path.to_path_buf(),
                    name: device_name.map(str::to_string),
                    group: None,
                })
            } else {
                Err(OpenError::NotVfio { path: spec.to_string(), what: describe_node(env, path) })
            }
        }
        CharDev::Container | CharDev::Other(_) => {
            Err(OpenError::NotVfio { path: spec.to_string(), what: describe_node(env, path) })
        }
    }
}

/// The group node of IOMMU group `id` (`/dev/vfio/N`, or `noiommu-N`).
pub(super) fn group_node(env: &Env, id: &str) -> Option<PathBuf> {
    [id.to_string(), format!("noiommu-{id}")]
        .iter()
        .map(|n| env.dev.join("vfio").join(n))
        .find(|p| p.exists())
}

/// A bus device (PCI or mdev) named by address or UUID.
fn resolve_bus(
    env: &Env,
    spec: &str,
    name: &str,
    bus: &str,
    kind: &'static str,
    device_name: Option<&str>,
) -> Result<Target, OpenError> {
    if let Some(n) = device_name
        && n != name
    {
        return Err(OpenError::NameConflict {
            spec: spec.to_string(),
            name: n.to_string(),
            actual: name.to_string(),
        });
    }
    let dir = env.sys.join("bus").join(bus).join("devices").join(name);
    if !dir.exists() {
        return Err(OpenError::NoSuchDevice {
            spec: spec.to_string(),
            kind,
            sysfs: dir.display().to_string(),
        });
    }
    let Some(group) = link_name(&dir.join("iommu_group")) else {
        return Err(OpenError::NoGroup {
            spec: spec.to_string(),
            device: name.to_string(),
            sysfs: dir.join("iommu_group").display().to_string(),
        });
    };
    let Some(node) = group_node(env, &group) else {
        let bound = match link_name(&dir.join("driver")) {
            Some(d) => format!(" (it is bound to {d})"),
            None => " (no driver is bound)".to_string(),
        };
        return Err(OpenError::NotBound {
            spec: spec.to_string(),
            device: name.to_string(),
            node: env.dev.join("vfio").join(&group).display().to_string(),
            group,
            bound,
        });
    };
    Ok(Target::Group { node, group, name: name.to_string() })
}

/// Finds the device `spec` names, without opening anything.
pub fn resolve(env: &Env, spec: &str, device_name: Option<&str>) -> Result<Target, OpenError> {
    match parse_spec(spec) {
        Spec::Pci(addr) => resolve_bus(env, spec, &addr, "pci", "PCI device", device_name),
        Spec::Mdev(uuid) => resolve_bus(env, spec, &uuid, "mdev", "mdev", device_name),
        Spec::Path(_) => resolve_path(env, spec, device_name),
    }
}

/// The sysfs directory of the device `name` (mdev or PCI; else via its IOMMU group).
pub fn device_dir(env: &Env, name: &str, group: Option<&str>) -> Option<PathBuf> {
    let mut candidates =
        vec![env.sys.join("bus/mdev/devices").join(name), env.sys.join("bus/pci/devices").join(name)];
    if let Some(g) = group {
        candidates.push(env.sys.join("kernel/iommu_groups").join(g).join("devices").join(name));
    }
    candidates.into_iter().find(|p| p.exists())
}

/// The bound driver and the model of a device: the mdev type directory name (`mtty-2`),
/// else `vendor:device`.
pub fn describe_device(env: &Env, name: &str, group: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(dir) = device_dir(env, name, group) else {
        return (None, None);
    };
    let driver = link_name(&dir.join("driver"));
    let mdev_type = dir.join("mdev_type");
    let model = if mdev_type.exists() {
        fs::canonicalize(&mdev_type)
            .ok()
            .as_deref()
            .and_then(basename)
            .or_else(|| read_trim(&mdev_type.join("name")))
    } else {
        match (read_trim(&dir.join("vendor")), read_trim(&dir.join("device"))) {
            (Some(v), Some(d)) => Some(format!(
                "{}:{}",
                v.trim_start_matches("0x").to_ascii_lowercase(),
                d.trim_start_matches("0x").to_ascii_lowercase()
            )),
            _ => None,
        }
    };
    (driver, model)
}

fn vfio_capable_driver(driver: &str) -> bool {
    driver.contains("vfio") || driver == "pci-stub"
}

/// Why a group is not viable: its devices bound to drivers other than VFIO ones.
pub fn not_viable_detail(env: &Env, group: &str) -> String {
    let devices = group_devices(env, group).unwrap_or_default();
    let blocking: Vec<String> = devices
        .iter()
        .filter_map(|d| {
            let drv = link_name(
                &env.sys.join("kernel/iommu_groups").join(group).join("devices").join(d).join("driver"),
            )?;
            (!vfio_capable_driver(&drv)).then(|| format!("{d} is bound to {drv}"))
        })
        .collect();
    if blocking.is_empty() {
        "every device of the group must be bound to a VFIO driver (vfio-pci) or to none".to_string()
    } else {
        format!(
            "{}; every device of the group must be bound to a VFIO driver (vfio-pci) or to none",
            blocking.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::connect::connect_cdev;
    use super::*;

    /// A fake sysfs + /dev under a fresh temporary directory.
    struct Fake {
        root: PathBuf,
        env: Env,
    }

    impl Fake {
        fn new(tag: &str) -> Fake {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let root = std::env::temp_dir().join(format!("vmc-kernel-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("sys")).unwrap();
            fs::create_dir_all(root.join("dev/vfio")).unwrap();
            let env = Env { sys: root.join("sys"), dev: root.join("dev") };
            Fake { root, env }
        }
        fn mkdir(&self, p: &str) -> PathBuf {
            let d = self.env.sys.join(p);
            fs::create_dir_all(&d).unwrap();
            d
        }
        fn link(&self, at: &str, to: &str) {
            let p = self.env.sys.join(at);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(to, p).unwrap();
        }
        fn write(&self, at: &str, text: &str) {
            fs::write(self.env.sys.join(at), text).unwrap();
        }
        /// An mdev of type `ty` under parent `mtty`, in IOMMU group `group`, with /dev/vfio/group.
        fn mdev(&self, uuid: &str, ty: &str, group: &str) {
            let dev = format!("devices/virtual/mtty/mtty/{uuid}");
            self.mkdir(&dev);
            self.mkdir(&format!("devices/virtual/mtty/mtty/mdev_supported_types/{ty}"));
            self.write(
                &format!("devices/virtual/mtty/mtty/mdev_supported_types/{ty}/name"),
                "Dual port serial\n",
            );
            self.link(&format!("{dev}/mdev_type"), &format!("../mdev_supported_types/{ty}"));
            self.link(&format!("{dev}/driver"), "../../../../../bus/mdev/drivers/mtty");
            self.mkdir(&format!("kernel/iommu_groups/{group}/devices"));
            self.link(&format!("{dev}/iommu_group"), &format!("../../../../../kernel/iommu_groups/{group}"));
            self.link(&format!("kernel/iommu_groups/{group}/devices/{uuid}"), &format!("../../../../{dev}"));
            self.link(&format!("bus/mdev/devices/{uuid}"), &format!("../../../{dev}"));
            fs::write(self.env.dev.join("vfio").join(group), "").unwrap();
        }
        /// A PCI function bound to `driver` in IOMMU group `group`.
        fn pci(&self, addr: &str, driver: &str, group: &str) {
            let dev = format!("devices/pci0000:00/{addr}");
            self.mkdir(&dev);
            self.write(&format!("{dev}/vendor"), "0x15B3\n");
            self.write(&format!("{dev}/device"), "0x101e\n");
            self.link(&format!("{dev}/driver"), &format!("../../../bus/pci/drivers/{driver}"));
            self.mkdir(&format!("kernel/iommu_groups/{group}/devices"));
            self.link(&format!("{dev}/iommu_group"), &format!("../../../kernel/iommu_groups/{group}"));
            self.link(&format!("kernel/iommu_groups/{group}/devices/{addr}"), &format!("../../../../{dev}"));
            self.link(&format!("bus/pci/devices/{addr}"), &format!("../../../{dev}"));
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    const UUID: &str = "c0000000-0000-4000-8000-000000000000";

    #[test]
    fn specs_are_classified() {
        assert_eq!(parse_spec("0000:3b:00.1"), Spec::Pci("0000:3b:00.1".into()));
        assert_eq!(parse_spec("3B:00.1"), Spec::Pci("0000:3b:00.1".into()));
        assert_eq!(parse_spec("10000:e1:1f.7"), Spec::Pci("10000:e1:1f.7".into()));
        assert_eq!(parse_spec("0000:3b:20.1"), Spec::Path("0000:3b:20.1".into()));
        assert_eq!(parse_spec("0000:3b:00.8"), Spec::Path("0000:3b:00.8".into()));
        assert_eq!(parse_spec(UUID), Spec::Mdev(UUID.into()));
        assert_eq!(parse_spec(&UUID.to_uppercase()), Spec::Mdev(UUID.into()));
        assert_eq!(
            parse_spec("c0000000-0000-4000-8000-00000000000"),
            Spec::Path("c0000000-0000-4000-8000-00000000000".into())
        );
        assert_eq!(parse_spec("/dev/vfio/3"), Spec::Path("/dev/vfio/3".into()));
        assert_eq!(parse_spec(""), Spec::Path(String::new()));
    }

    #[test]
    fn an_mdev_uuid_resolves_to_its_group_and_type() {
        let f = Fake::new("mdev");
        f.mdev(UUID, "mtty-2", "7");
        let t = resolve(&f.env, UUID, None).unwrap();
        assert_eq!(t, Target::Group { node: f.env.dev.join("vfio/7"), group: "7".into(), name: UUID.into() });
        let (driver, model) = describe_device(&f.env, UUID, Some("7"));
        assert_eq!(driver.as_deref(), Some("mtty"));
        assert_eq!(model.as_deref(), Some("mtty-2"));
        let e = resolve(&f.env, UUID, Some("0000:00:01.0")).unwrap_err().to_string();
        assert!(e.contains("contradicts"), "{e}");
    }

    #[test]
    fn a_pci_address_resolves_to_its_group() {
        let f = Fake::new("pci");
        f.pci("0000:3b:00.1", "vfio-pci", "12");
        let e = resolve(&f.env, "0000:3b:00.1", None).unwrap_err().to_string();
        assert!(e.contains("/vfio/12 does not exist") && e.contains("bound to vfio-pci"), "{e}");
        fs::write(f.env.dev.join("vfio/12"), "").unwrap();
        let t = resolve(&f.env, "3b:00.1", None).unwrap();
        assert_eq!(t.name(), Some("0000:3b:00.1"));
        let (driver, model) = describe_device(&f.env, "0000:3b:00.1", None);
        assert_eq!((driver.as_deref(), model.as_deref()), (Some("vfio-pci"), Some("15b3:101e")));
        let e = resolve(&f.env, "0000:3b:00.2", None).unwrap_err().to_string();
        assert!(e.starts_with("0000:3b:00.2: no such PCI device ("), "{e}");
    }

    #[test]
    fn groups_with_several_devices_need_a_device_name() {
        let f = Fake::new("multi");
        f.pci("0000:3b:00.0", "ixgbe", "5");
        f.pci("0000:3b:00.1", "vfio-pci", "5");
        let node = f.env.dev.join("vfio/5");
        let e = pick_in_group(&f.env, &node, "5", None).unwrap_err().to_string();
        assert!(
            e.contains("holds 2 devices (0000:3b:00.0, 0000:3b:00.1): choose one with --device-name"),
            "{e}"
        );
        let t = pick_in_group(&f.env, &node, "5", Some("0000:3b:00.1")).unwrap();
        assert_eq!(t.name(), Some("0000:3b:00.1"));
        let e = pick_in_group(&f.env, &node, "5", Some("0000:3b:00.2")).unwrap_err().to_string();
        assert!(e.contains("has no device `0000:3b:00.2` (it holds 0000:3b:00.0, 0000:3b:00.1)"), "{e}");
        let d = not_viable_detail(&f.env, "5");
        assert!(d.starts_with("0000:3b:00.0 is bound to ixgbe;"), "{d}");
        let t = pick_in_group(&f.env, &node, "noiommu-5", Some("0000:3b:00.0")).unwrap();
        assert_eq!(t, Target::Group { node, group: "5".into(), name: "0000:3b:00.0".into() });
    }

    #[test]
    fn a_group_without_sysfs_needs_a_device_name() {
        let f = Fake::new("nosys");
        let node = f.env.dev.join("vfio/9");
        let e = pick_in_group(&f.env, &node, "9", None).unwrap_err().to_string();
        assert!(e.contains("pass --device-name"), "{e}");
        assert_eq!(pick_in_group(&f.env, &node, "9", Some("x")).unwrap().name(), Some("x"));
    }

    #[test]
    fn char_devices_are_classified_through_sysfs() {
        let f = Fake::new("chardev");
        f.mkdir("devices/virtual/vfio/3");
        f.mkdir("class/vfio");
        f.link("devices/virtual/vfio/3/subsystem", "../../../../class/vfio");
        f.link("dev/char/245:0", "../../devices/virtual/vfio/3");
        assert_eq!(char_dev(&f.env, 245, 0), CharDev::Group("3".into()));
        f.pci("0000:3b:00.1", "vfio-pci", "12");
        f.mkdir("devices/pci0000:00/0000:3b:00.1/vfio-dev/vfio0");
        f.mkdir("class/vfio-dev");
        f.link("devices/pci0000:00/0000:3b:00.1/vfio-dev/vfio0/subsystem", "../../../../../class/vfio-dev");
        f.link("dev/char/511:0", "../../devices/pci0000:00/0000:3b:00.1/vfio-dev/vfio0");
        match char_dev(&f.env, 511, 0) {
            CharDev::Cdev { cdev, device } => {
                assert_eq!(cdev, "vfio0");
                assert_eq!(basename(&device).as_deref(), Some("0000:3b:00.1"));
            }
            other => panic!("{other:?}"),
        }
        f.mkdir("devices/virtual/misc/vfio");
        f.mkdir("class/misc");
        f.link("devices/virtual/misc/vfio/subsystem", "../../../../class/misc");
        f.link("dev/char/10:196", "../../devices/virtual/misc/vfio");
        assert_eq!(char_dev(&f.env, 10, 196), CharDev::Container);
        f.mkdir("devices/virtual/mem/null");
        f.mkdir("class/mem");
        f.link("devices/virtual/mem/null/subsystem", "../../../../class/mem");
        f.link("dev/char/1:3", "../../devices/virtual/mem/null");
        assert_eq!(char_dev(&f.env, 1, 3), CharDev::Other("mem/null".into()));
        assert_eq!(char_dev(&f.env, 1, 5), CharDev::Unknown);
        // /dev/null against this fake sysfs.
        let e = resolve(&f.env, "/dev/null", None).unwrap_err().to_string();
        assert_eq!(
            e,
            "/dev/null: the character device 1:3 (mem/null), not a VFIO group (/dev/vfio/N) or VFIO device (/dev/vfio/devices/vfioN)"
        );
    }

    #[test]
    fn files_symlinks_and_missing_paths_are_named() {
        let f = Fake::new("paths");
        let file = f.root.join("regular");
        fs::write(&file, "x").unwrap();
        let e = resolve(&f.env, &file.display().to_string(), None).unwrap_err().to_string();
        assert!(e.contains(": a regular file, not a VFIO group"), "{e}");
        let link = f.root.join("to-null");
        symlink("/dev/null", &link).unwrap();
        let e = resolve(&f.env, &link.display().to_string(), None).unwrap_err().to_string();
        assert!(e.contains(": a symlink to /dev/null, which is the character device 1:3"), "{e}");
        let dangling = f.root.join("dangling");
        symlink(f.root.join("nowhere"), &dangling).unwrap();
        let e = resolve(&f.env, &dangling.display().to_string(), None).unwrap_err().to_string();
        assert!(e.contains(": a dangling symlink to "), "{e}");
        let e = resolve(&f.env, &f.root.display().to_string(), None).unwrap_err().to_string();
        assert!(e.contains(": a directory, not a VFIO group"), "{e}");
        let gone = f.env.dev.join("vfio/4242").display().to_string();
        let e = resolve(&f.env, &gone, None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{gone}: no such file or directory (is the device bound to a VFIO driver, or the mdev created?)"
            )
        );
        let cdev = f.env.dev.join("vfio/devices/vfio0").display().to_string();
        let e = resolve(&f.env, &cdev, None).unwrap_err().to_string();
        assert!(e.contains("vfio/devices does not exist: this kernel has no VFIO device cdevs"), "{e}");
        let e = resolve(&f.env, "vfio0", None).unwrap_err().to_string();
        assert!(e.starts_with("vfio0: no such file or directory (give /dev/vfio/N,"), "{e}");
    }

    #[test]
    fn a_cdev_without_iommufd_points_at_the_group() {
        let f = Fake::new("cdev");
        fs::write(f.env.dev.join("vfio/12"), "").unwrap();
        let node = f.env.dev.join("vfio/devices/vfio0");
        let e = connect_cdev(&f.env, &node, Some("12")).unwrap_err().to_string();
        assert!(e.contains("a VFIO device cdev needs IOMMUFD, but this kernel has no "), "{e}");
        assert!(
            e.ends_with(&format!("; open its group {} instead", f.env.dev.join("vfio/12").display())),
            "{e}"
        );
    }
}
