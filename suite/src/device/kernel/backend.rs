//! IOMMU back ends: how a device is attached to an IOMMU before the suite talks to it.
//!
//! The names are the kernel VFIO selftests' (`tools/testing/selftests/vfio/lib/iommu.c`,
//! Linux 6.18+): the legacy container `/dev/vfio/vfio` with `VFIO_TYPE1_IOMMU` or
//! `VFIO_TYPE1v2_IOMMU`, the same container interface served by IOMMUFD (`/dev/iommu`,
//! `CONFIG_IOMMUFD_VFIO_CONTAINER`), and the device cdev bound to IOMMUFD. `vfio_noiommu` is
//! the container with `VFIO_NOIOMMU_IOMMU`, the only one a no-IOMMU group
//! (`/dev/vfio/noiommu-N`, `vfio.enable_unsafe_noiommu_mode=1`) accepts
//! (`vfio_iommu_driver_allowed()` in drivers/vfio/container.c).

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use vfio_bindings::bindings::vfio as b;

use super::OpenError;
use super::ioctl;
use super::open::{Env, Target, device_dir, group_node};

/// One way of attaching the device to an IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IommuBackend {
    /// `/dev/vfio/vfio` with `VFIO_TYPE1_IOMMU`.
    VfioType1,
    /// `/dev/vfio/vfio` with `VFIO_TYPE1v2_IOMMU` (what QEMU uses).
    VfioType1v2,
    /// `/dev/iommu` as a VFIO container (IOMMUFD's compatibility layer), `VFIO_TYPE1_IOMMU`.
    IommufdCompatType1,
    /// `/dev/iommu` as a VFIO container, `VFIO_TYPE1v2_IOMMU`.
    IommufdCompatType1v2,
    /// The device cdev bound to IOMMUFD (`VFIO_DEVICE_BIND_IOMMUFD`, an IOAS attached).
    Iommufd,
    /// `/dev/vfio/vfio` with `VFIO_NOIOMMU_IOMMU`, for a no-IOMMU group.
    VfioNoiommu,
}

impl IommuBackend {
    /// Every back end, in the selftests' order (no-IOMMU last).
    pub const ALL: [IommuBackend; 6] = [
        IommuBackend::VfioType1,
        IommuBackend::VfioType1v2,
        IommuBackend::IommufdCompatType1,
        IommuBackend::IommufdCompatType1v2,
        IommuBackend::Iommufd,
        IommuBackend::VfioNoiommu,
    ];

    /// The selftests' name (`vfio_type1v2_iommu`, `iommufd`, ...).
    pub fn name(self) -> &'static str {
        match self {
            IommuBackend::VfioType1 => "vfio_type1_iommu",
            IommuBackend::VfioType1v2 => "vfio_type1v2_iommu",
            IommuBackend::IommufdCompatType1 => "iommufd_compat_type1",
            IommuBackend::IommufdCompatType1v2 => "iommufd_compat_type1v2",
            IommuBackend::Iommufd => "iommufd",
            IommuBackend::VfioNoiommu => "vfio_noiommu",
        }
    }

    /// Parses a name; `type1`, `type1v2` and `noiommu` are accepted too.
    pub fn parse(s: &str) -> Option<IommuBackend> {
        Some(match s {
            "vfio_type1_iommu" | "type1" => IommuBackend::VfioType1,
            "vfio_type1v2_iommu" | "type1v2" => IommuBackend::VfioType1v2,
            "iommufd_compat_type1" => IommuBackend::IommufdCompatType1,
            "iommufd_compat_type1v2" => IommuBackend::IommufdCompatType1v2,
            "iommufd" => IommuBackend::Iommufd,
            "vfio_noiommu" | "noiommu" => IommuBackend::VfioNoiommu,
            _ => return None,
        })
    }

    /// The container node and IOMMU type of the container back ends (None for the cdev).
    pub fn container(self, env: &Env) -> Option<(PathBuf, u32)> {
        let vfio = env.dev.join("vfio/vfio");
        let iommu = env.dev.join("iommu");
        Some(match self {
            IommuBackend::VfioType1 => (vfio, b::VFIO_TYPE1_IOMMU),
            IommuBackend::VfioType1v2 => (vfio, b::VFIO_TYPE1v2_IOMMU),
            IommuBackend::IommufdCompatType1 => (iommu, b::VFIO_TYPE1_IOMMU),
            IommuBackend::IommufdCompatType1v2 => (iommu, b::VFIO_TYPE1v2_IOMMU),
            IommuBackend::VfioNoiommu => (vfio, b::VFIO_NOIOMMU_IOMMU),
            IommuBackend::Iommufd => return None,
        })
    }

    /// What the suite picks when the user does not say: the group node with type1v2 (the
    /// no-IOMMU container for a `noiommu-N` group), the cdev with IOMMUFD.
    pub fn default_for(target: &Target) -> IommuBackend {
        match target {
            Target::Group { node, .. } if is_noiommu_node(node) => IommuBackend::VfioNoiommu,
            Target::Group { .. } => IommuBackend::VfioType1v2,
            Target::Cdev { .. } => IommuBackend::Iommufd,
        }
    }
}

impl std::fmt::Display for IommuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn is_noiommu_node(node: &Path) -> bool {
    node.file_name().is_some_and(|n| n.to_string_lossy().starts_with("noiommu-"))
}

/// The device cdev (`/dev/vfio/devices/vfioN`) of a device, from its sysfs `vfio-dev/`.
pub fn cdev_of(env: &Env, name: &str, group: Option<&str>) -> Option<PathBuf> {
    let dir = device_dir(env, name, group)?.join("vfio-dev");
    let mut cdevs: Vec<String> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vfio"))
        .collect();
    cdevs.sort();
    cdevs.first().map(|c| env.dev.join("vfio/devices").join(c))
}

/// Why a back end cannot be used for this device, or Ok.
#[derive(Debug, thiserror::Error)]
#[error("{device}: back end {backend} is not available: {why}")]
pub struct Unavailable {
    pub device: String,
    pub backend: IommuBackend,
    pub why: String,
}

/// The target to open for `backend`: the group node for the container back ends, the cdev
/// for IOMMUFD (found through sysfs from the other one).
pub fn retarget(env: &Env, target: &Target, backend: IommuBackend) -> Result<Target, Unavailable> {
    let device = target.name().unwrap_or("the device").to_string();
    let unavailable = |why: String| Unavailable { device: device.clone(), backend, why };
    match (target, backend) {
        (Target::Group { node, .. }, IommuBackend::VfioNoiommu) if !is_noiommu_node(node) => {
            Err(unavailable(format!(
                "{} is a group with an IOMMU; the no-IOMMU container takes only noiommu-N groups",
                node.display()
            )))
        }
        (Target::Group { node, .. }, b) if b != IommuBackend::VfioNoiommu && is_noiommu_node(node) => {
            Err(unavailable(format!(
                "{} is a no-IOMMU group: only vfio_noiommu can attach it (drivers/vfio/container.c, vfio_iommu_driver_allowed())",
                node.display()
            )))
        }
        (Target::Group { .. }, b) if b != IommuBackend::Iommufd => Ok(target.clone()),
        (Target::Group { group, name, .. }, _) => match cdev_of(env, name, Some(group)) {
            Some(node) => Ok(Target::Cdev { node, name: Some(name.clone()), group: Some(group.clone()) }),
            None => Err(unavailable(format!(
                "{name} has no VFIO device cdev (no vfio-dev/ in sysfs: CONFIG_VFIO_DEVICE_CDEV is off?)"
            ))),
        },
        (Target::Cdev { .. }, IommuBackend::Iommufd) => Ok(target.clone()),
        (Target::Cdev { name, group, node }, b) => {
            let Some(g) = group.as_deref() else {
                return Err(unavailable(format!("cannot tell the IOMMU group of {}", node.display())));
            };
            let Some(gnode) = group_node(env, g) else {
                return Err(unavailable(format!(
                    "{} has no group node (CONFIG_VFIO_GROUP is off?)",
                    env.dev.join("vfio").join(g).display()
                )));
            };
            let Some(name) = name.clone() else {
                return Err(unavailable(format!("cannot tell the device name of {}", node.display())));
            };
            let t = Target::Group { node: gnode, group: g.to_string(), name };
            // The noiommu/IOMMU pairing is checked on the group form.
            retarget(env, &t, b)
        }
    }
}

/// Whether `backend` can attach `target` on this system, asking the container without
/// attaching anything (`VFIO_GET_API_VERSION`, `VFIO_CHECK_EXTENSION`). `target` is the
/// result of [`retarget`].
pub fn probe(env: &Env, target: &Target, backend: IommuBackend) -> Result<(), Unavailable> {
    let device = target.name().unwrap_or("the device").to_string();
    let unavailable = |why: String| Unavailable { device: device.clone(), backend, why };
    let Some((container, ty)) = backend.container(env) else {
        let iommu = env.dev.join("iommu");
        return if iommu.exists() {
            Ok(())
        } else {
            Err(unavailable(format!("{} does not exist (CONFIG_IOMMUFD is off?)", iommu.display())))
        };
    };
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&container)
        .map_err(|e| unavailable(format!("cannot open {}: {e}", container.display())))?;
    match ioctl::get_api_version(f.as_fd()) {
        Ok(v) if v == b::VFIO_API_VERSION as i32 => {}
        Ok(v) => return Err(unavailable(format!("{} speaks VFIO API version {v}", container.display()))),
        Err(e) => {
            return Err(unavailable(format!(
                "{} is not a VFIO container: VFIO_GET_API_VERSION failed with {e}{}",
                container.display(),
                if container.ends_with("iommu") { " (CONFIG_IOMMUFD_VFIO_CONTAINER is off?)" } else { "" }
            )));
        }
    }
    match ioctl::check_extension(f.as_fd(), ty) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(unavailable(format!(
            "{} does not offer IOMMU type {ty}{}",
            container.display(),
            if backend == IommuBackend::VfioNoiommu {
                " (vfio's no-IOMMU mode is off: vfio.enable_unsafe_noiommu_mode=1)"
            } else {
                ""
            }
        ))),
        Err(e) => {
            Err(unavailable(format!("VFIO_CHECK_EXTENSION({ty}) on {} failed with {e}", container.display())))
        }
    }
}

/// The back ends a device can be opened through (each with its target), and why the others
/// cannot.
pub type Availability = (Vec<(IommuBackend, Target)>, Vec<Unavailable>);

/// The back ends available for the device `spec` names, each with the target to open, and
/// why the others are not.
pub fn available(env: &Env, spec: &str, device_name: Option<&str>) -> Result<Availability, OpenError> {
    let target = super::open::resolve(env, spec, device_name)?;
    let mut ok = Vec::new();
    let mut not = Vec::new();
    for b in IommuBackend::ALL {
        match retarget(env, &target, b).and_then(|t| probe(env, &t, b).map(|()| t)) {
            Ok(t) => ok.push((b, t)),
            Err(u) => not.push(u),
        }
    }
    Ok((ok, not))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_short_names_are_accepted() {
        for b in IommuBackend::ALL {
            assert_eq!(IommuBackend::parse(b.name()), Some(b));
        }
        assert_eq!(IommuBackend::parse("type1v2"), Some(IommuBackend::VfioType1v2));
        assert_eq!(IommuBackend::parse("noiommu"), Some(IommuBackend::VfioNoiommu));
        assert_eq!(IommuBackend::parse("spapr"), None);
    }

    #[test]
    fn a_noiommu_group_takes_only_the_noiommu_container() {
        let env = Env { sys: PathBuf::from("/nonexistent/sys"), dev: PathBuf::from("/nonexistent/dev") };
        let t = Target::Group {
            node: PathBuf::from("/nonexistent/dev/vfio/noiommu-0"),
            group: "0".into(),
            name: "0000:00:03.0".into(),
        };
        assert_eq!(IommuBackend::default_for(&t), IommuBackend::VfioNoiommu);
        assert_eq!(retarget(&env, &t, IommuBackend::VfioNoiommu).unwrap(), t);
        let e = retarget(&env, &t, IommuBackend::VfioType1v2).unwrap_err().to_string();
        assert!(e.contains("is a no-IOMMU group: only vfio_noiommu"), "{e}");
        let g = Target::Group {
            node: PathBuf::from("/nonexistent/dev/vfio/7"),
            group: "7".into(),
            name: "x".into(),
        };
        assert_eq!(IommuBackend::default_for(&g), IommuBackend::VfioType1v2);
        let e = retarget(&env, &g, IommuBackend::VfioNoiommu).unwrap_err().to_string();
        assert!(e.contains("is a group with an IOMMU"), "{e}");
        let e = retarget(&env, &g, IommuBackend::Iommufd).unwrap_err().to_string();
        assert!(e.contains("has no VFIO device cdev"), "{e}");
    }
}
