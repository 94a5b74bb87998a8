//! Opening a resolved device: the group and container (VFIO_GROUP_SET_CONTAINER,
//! VFIO_SET_IOMMU) or the cdev with iommufd (bind, IOAS, attach), each failure named with the
//! node, the call and the errno; and [`Binding`], which reopens the device fd.

use super::*;

#[derive(Clone, Copy)]
pub(super) enum NodeKind {
    Group,
    Cdev,
    Other,
}

fn permission_detail(path: &str) -> String {
    match fs::metadata(path) {
        Ok(m) => format!("mode {:04o}, owner uid {} gid {}", m.mode() & 0o7777, m.uid(), m.gid()),
        Err(_) => "cannot stat it".to_string(),
    }
}

/// One of this process's fds that is `path` already (through /proc/self/fd).
fn held_by_self(path: &str) -> Option<String> {
    let want = fs::canonicalize(path).ok()?;
    fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| fs::read_link(e.path()).is_ok_and(|t| t == want))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

pub(super) fn open_error(path: &str, errno: Errno, kind: NodeKind) -> OpenError {
    match errno {
        Errno::EACCES | Errno::EPERM => {
            OpenError::Permission { path: path.to_string(), detail: permission_detail(path) }
        }
        Errno::EBUSY if let Some(fd) = held_by_self(path) => OpenError::AlreadyOpen { path: path.to_string(), fd },
        Errno::EBUSY => OpenError::Busy {
            path: path.to_string(),
            hint: match kind {
                NodeKind::Group => {
                    " (a VFIO group can be open only once, and not while a device of it is open through /dev/vfio/devices/)"
                        .to_string()
                }
                NodeKind::Cdev => " (or its group /dev/vfio/N is open)".to_string(),
                NodeKind::Other => String::new(),
            },
        },
        Errno::ENOENT => OpenError::Missing { path: path.to_string(), hint: missing_hint(&Env::host(), path) },
        errno => OpenError::Os { path: path.to_string(), errno },
    }
}

fn open_rw(path: &Path, kind: NodeKind) -> Result<OwnedFd, OpenError> {
    OpenOptions::new().read(true).write(true).open(path).map(OwnedFd::from).map_err(|e| {
        open_error(&path.display().to_string(), Errno(e.raw_os_error().unwrap_or(libc::EIO)), kind)
    })
}

/// How the device fd is (re)obtained; owns the group/container or iommufd fds.
#[derive(Debug)]
pub(in crate::device::kernel) enum Binding {
    Group { group: OwnedFd, container: OwnedFd, node: PathBuf, name: CString },
    Cdev { iommufd: OwnedFd, node: PathBuf, ioas: u32 },
}

/// `argsz` for VFIO_DEVICE_BIND_IOMMUFD: up to `out_devid` (6.6+; later fields are optional).
const BIND_ARGSZ: u32 = 16;
/// `argsz` for VFIO_DEVICE_ATTACH_IOMMUFD_PT: up to `pt_id` (6.6+; `pasid` is optional).
const ATTACH_ARGSZ: u32 = 12;

fn ioctl_err(path: &Path, what: impl Into<String>) -> impl FnOnce(Errno) -> OpenError {
    let path = path.display().to_string();
    let what = what.into();
    move |errno| OpenError::Ioctl { path, what, errno }
}

impl Binding {
    /// A new device fd: VFIO_GROUP_GET_DEVICE_FD, or open + bind + attach for a cdev.
    pub(in crate::device::kernel) fn open_device(&self) -> Result<OwnedFd, OpenError> {
        match self {
            Binding::Group { group, node, name, .. } => ioctl::group_get_device_fd(group.as_fd(), name)
                .map_err(ioctl_err(
                    node,
                    format!("VFIO_GROUP_GET_DEVICE_FD(\"{}\")", name.to_string_lossy()),
                )),
            Binding::Cdev { iommufd, node, ioas } => {
                let dev = open_rw(node, NodeKind::Cdev)?;
                let mut bind = b::vfio_device_bind_iommufd {
                    argsz: BIND_ARGSZ,
                    iommufd: std::os::fd::AsRawFd::as_raw_fd(iommufd),
                    ..Default::default()
                };
                ioctl::bind_iommufd(dev.as_fd(), &mut bind)
                    .map_err(ioctl_err(node, "VFIO_DEVICE_BIND_IOMMUFD"))?;
                let mut attach = b::vfio_device_attach_iommufd_pt {
                    argsz: ATTACH_ARGSZ,
                    pt_id: *ioas,
                    ..Default::default()
                };
                ioctl::attach_iommufd_pt(dev.as_fd(), &mut attach)
                    .map_err(ioctl_err(node, format!("VFIO_DEVICE_ATTACH_IOMMUFD_PT(IOAS {ioas})")))?;
                Ok(dev)
            }
        }
    }

    /// The fds this binding owns (so a data fd number can never alias them).
    pub(in crate::device::kernel) fn raw_fds(&self) -> Vec<i32> {
        use std::os::fd::AsRawFd;
        match self {
            Binding::Group { group, container, .. } => vec![group.as_raw_fd(), container.as_raw_fd()],
            Binding::Cdev { iommufd, .. } => vec![iommufd.as_raw_fd()],
        }
    }
}

fn connect_group(
    env: &Env,
    node: &Path,
    group_id: &str,
    name: &str,
    backend: IommuBackend,
) -> Result<Binding, OpenError> {
    let (container_path, iommu_type) =
        backend.container(env).unwrap_or((env.dev.join("vfio/vfio"), b::VFIO_TYPE1v2_IOMMU));
    let type_name = match iommu_type {
        b::VFIO_TYPE1_IOMMU => "VFIO_TYPE1_IOMMU",
        b::VFIO_NOIOMMU_IOMMU => "VFIO_NOIOMMU_IOMMU",
        _ => "VFIO_TYPE1v2_IOMMU",
    };
    let cname = CString::new(name).map_err(|_| OpenError::NotInGroup {
        path: node.display().to_string(),
        group: group_id.to_string(),
        name: name.to_string(),
        devices: group_devices(env, group_id).unwrap_or_default(),
    })?;
    let group = open_rw(node, NodeKind::Group)?;
    let container = open_rw(&container_path, NodeKind::Other).map_err(|e| match e {
        OpenError::Missing { path, .. } => {
            OpenError::Missing { path, hint: " (is the vfio module loaded?)".to_string() }
        }
        e => e,
    })?;
    let cpath = container_path.display().to_string();
    let version = ioctl::get_api_version(container.as_fd())
        .map_err(ioctl_err(&container_path, "VFIO_GET_API_VERSION"))?;
    if version != b::VFIO_API_VERSION as i32 {
        return Err(OpenError::ApiVersion { container: cpath, got: version, want: b::VFIO_API_VERSION });
    }
    let has_type = ioctl::check_extension(container.as_fd(), iommu_type)
        .map_err(ioctl_err(&container_path, format!("VFIO_CHECK_EXTENSION({type_name})")))?;
    if has_type <= 0 {
        return Err(OpenError::NoIommuType { container: cpath, iommu: type_name });
    }
    let mut status =
        b::vfio_group_status { argsz: std::mem::size_of::<b::vfio_group_status>() as u32, flags: 0 };
    ioctl::group_get_status(group.as_fd(), &mut status).map_err(ioctl_err(node, "VFIO_GROUP_GET_STATUS"))?;
    if status.flags & b::VFIO_GROUP_FLAGS_VIABLE == 0 {
        return Err(OpenError::NotViable {
            path: node.display().to_string(),
            group: group_id.to_string(),
            detail: not_viable_detail(env, group_id),
        });
    }
    ioctl::group_set_container(group.as_fd(), container.as_fd())
        .map_err(ioctl_err(node, format!("VFIO_GROUP_SET_CONTAINER({cpath})")))?;
    ioctl::set_iommu(container.as_fd(), iommu_type)
        .map_err(ioctl_err(&container_path, format!("VFIO_SET_IOMMU({type_name})")))?;
    Ok(Binding::Group { group, container, node: node.to_path_buf(), name: cname })
}

pub(super) fn connect_cdev(env: &Env, node: &Path, group: Option<&str>) -> Result<Binding, OpenError> {
    let iommu = env.dev.join("iommu");
    if !iommu.exists() {
        let hint = match group.and_then(|g| group_node(env, g)) {
            Some(n) => format!("; open its group {} instead", n.display()),
            None => String::new(),
        };
        return Err(OpenError::NoIommufd {
            path: node.display().to_string(),
            iommu: iommu.display().to_string(),
            hint,
        });
    }
    let iommufd = open_rw(&iommu, NodeKind::Other)?;
    let mut alloc =
        IommuIoasAlloc { size: std::mem::size_of::<IommuIoasAlloc>() as u32, ..Default::default() };
    ioctl::ioas_alloc(iommufd.as_fd(), &mut alloc).map_err(ioctl_err(&iommu, "IOMMU_IOAS_ALLOC"))?;
    Ok(Binding::Cdev { iommufd, node: node.to_path_buf(), ioas: alloc.out_ioas_id })
}

/// Opens the target through `backend` (a group target for the container back ends, a cdev
/// for IOMMUFD: [`super::backend::retarget`]): the binding and a first device fd.
pub(in crate::device::kernel) fn connect(
    env: &Env,
    target: &Target,
    backend: IommuBackend,
) -> Result<(Binding, OwnedFd), OpenError> {
    let binding = match target {
        Target::Group { node, group, name } => connect_group(env, node, group, name, backend)?,
        Target::Cdev { node, group, .. } => connect_cdev(env, node, group.as_deref())?,
    };
    let device = binding.open_device()?;
    Ok((binding, device))
}
