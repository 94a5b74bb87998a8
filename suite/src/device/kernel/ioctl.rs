//! Thin wrappers over the VFIO and IOMMUFD ioctls. Nothing here interprets results: each
//! wrapper issues one ioctl and returns its value or the raw errno.
//!
//! VFIO ioctls are `_IO()` numbers that take a pointer (or an integer), so they are declared
//! with nix's `*_bad!` macros. Ioctls implemented by the vfio core or iommufd take typed
//! structs whose `argsz` is their size; ioctls that reach the driver take a [`Scratch`] so
//! that a driver writing past the given size faults instead of corrupting memory.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::ioctl::ioctl_num_type;
use vfio_bindings::bindings::vfio as b;

use super::scratch::Scratch;
use crate::errno::Errno;

const fn vfio_code(n: u32) -> ioctl_num_type {
    nix::request_code_none!(b::VFIO_TYPE, b::VFIO_BASE + n)
}

/// `IOMMUFD_TYPE` (include/uapi/linux/iommufd.h).
const IOMMUFD_TYPE: u8 = b';';
/// `IOMMUFD_CMD_IOAS_ALLOC` (`IOMMUFD_CMD_BASE` 0x80 + 1).
const IOMMUFD_CMD_IOAS_ALLOC: u32 = 0x81;

pub(super) const VFIO_GET_API_VERSION: ioctl_num_type = vfio_code(0);
pub(super) const VFIO_CHECK_EXTENSION: ioctl_num_type = vfio_code(1);
pub(super) const VFIO_SET_IOMMU: ioctl_num_type = vfio_code(2);
pub(super) const VFIO_GROUP_GET_STATUS: ioctl_num_type = vfio_code(3);
pub(super) const VFIO_GROUP_SET_CONTAINER: ioctl_num_type = vfio_code(4);
pub(super) const VFIO_GROUP_GET_DEVICE_FD: ioctl_num_type = vfio_code(6);
pub(super) const VFIO_DEVICE_GET_INFO: ioctl_num_type = vfio_code(7);
pub(super) const VFIO_DEVICE_GET_REGION_INFO: ioctl_num_type = vfio_code(8);
pub(super) const VFIO_DEVICE_GET_IRQ_INFO: ioctl_num_type = vfio_code(9);
pub(super) const VFIO_DEVICE_SET_IRQS: ioctl_num_type = vfio_code(10);
pub(super) const VFIO_DEVICE_RESET: ioctl_num_type = vfio_code(11);
pub(super) const VFIO_DEVICE_FEATURE: ioctl_num_type = vfio_code(17);
pub(super) const VFIO_DEVICE_BIND_IOMMUFD: ioctl_num_type = vfio_code(18);
pub(super) const VFIO_DEVICE_ATTACH_IOMMUFD_PT: ioctl_num_type = vfio_code(19);
pub(super) const IOMMU_IOAS_ALLOC: ioctl_num_type =
    nix::request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC);

/// `struct iommu_ioas_alloc` (include/uapi/linux/iommufd.h; vfio-bindings has no iommufd).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct IommuIoasAlloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

nix::ioctl_none_bad!(raw_get_api_version, VFIO_GET_API_VERSION);
nix::ioctl_write_int_bad!(raw_check_extension, VFIO_CHECK_EXTENSION);
nix::ioctl_write_int_bad!(raw_set_iommu, VFIO_SET_IOMMU);
nix::ioctl_readwrite_bad!(raw_group_get_status, VFIO_GROUP_GET_STATUS, b::vfio_group_status);
nix::ioctl_write_ptr_bad!(raw_group_set_container, VFIO_GROUP_SET_CONTAINER, libc::c_int);
nix::ioctl_write_ptr_bad!(raw_group_get_device_fd, VFIO_GROUP_GET_DEVICE_FD, libc::c_char);
nix::ioctl_readwrite_bad!(raw_bind_iommufd, VFIO_DEVICE_BIND_IOMMUFD, b::vfio_device_bind_iommufd);
nix::ioctl_readwrite_bad!(raw_attach_pt, VFIO_DEVICE_ATTACH_IOMMUFD_PT, b::vfio_device_attach_iommufd_pt);
nix::ioctl_readwrite_bad!(raw_ioas_alloc, IOMMU_IOAS_ALLOC, IommuIoasAlloc);
nix::ioctl_none_bad!(raw_device_reset, VFIO_DEVICE_RESET);
nix::ioctl_readwrite_bad!(raw_device_get_info, VFIO_DEVICE_GET_INFO, u8);
nix::ioctl_readwrite_bad!(raw_device_get_region_info, VFIO_DEVICE_GET_REGION_INFO, u8);
nix::ioctl_readwrite_bad!(raw_device_get_irq_info, VFIO_DEVICE_GET_IRQ_INFO, u8);
nix::ioctl_write_ptr_bad!(raw_device_set_irqs, VFIO_DEVICE_SET_IRQS, u8);
nix::ioctl_readwrite_bad!(raw_device_feature, VFIO_DEVICE_FEATURE, u8);

type R = Result<libc::c_int, Errno>;

/// `VFIO_GET_API_VERSION` on the container.
pub(super) fn get_api_version(container: BorrowedFd<'_>) -> R {
    // SAFETY: `container` is an open /dev/vfio/vfio fd borrowed from its owner; the ioctl
    // takes no argument.
    unsafe { raw_get_api_version(container.as_raw_fd()) }.map_err(Errno::from)
}

/// `VFIO_CHECK_EXTENSION` on the container (returns 0 when unsupported).
pub(super) fn check_extension(container: BorrowedFd<'_>, ext: u32) -> R {
    // SAFETY: `container` is an open /dev/vfio/vfio fd; the argument is an integer, not a
    // pointer.
    unsafe { raw_check_extension(container.as_raw_fd(), ext as libc::c_int) }.map_err(Errno::from)
}

/// `VFIO_SET_IOMMU` on the container.
pub(super) fn set_iommu(container: BorrowedFd<'_>, ty: u32) -> R {
    // SAFETY: `container` is an open /dev/vfio/vfio fd; the argument is an integer.
    unsafe { raw_set_iommu(container.as_raw_fd(), ty as libc::c_int) }.map_err(Errno::from)
}

/// `VFIO_GROUP_GET_STATUS` (the core copies `offsetofend(flags)` = 8 bytes each way).
pub(super) fn group_get_status(group: BorrowedFd<'_>, status: &mut b::vfio_group_status) -> R {
    // SAFETY: `group` is an open /dev/vfio/N fd; `status` is an exclusive reference to a
    // whole `vfio_group_status`, the exact size the vfio core reads and writes.
    unsafe { raw_group_get_status(group.as_raw_fd(), status) }.map_err(Errno::from)
}

/// `VFIO_GROUP_SET_CONTAINER`.
pub(super) fn group_set_container(group: BorrowedFd<'_>, container: BorrowedFd<'_>) -> R {
    let fd: libc::c_int = container.as_raw_fd();
    // SAFETY: `group` is an open group fd; the core reads one `int` through the pointer,
    // which points to a live local.
    unsafe { raw_group_set_container(group.as_raw_fd(), &fd) }.map_err(Errno::from)
}

/// `VFIO_GROUP_GET_DEVICE_FD`: the new device fd, owned by the caller.
pub(super) fn group_get_device_fd(group: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: `group` is an open group fd; the core reads a NUL-terminated string (at most a
    // page) and `name` is NUL-terminated.
    let fd = unsafe { raw_group_get_device_fd(group.as_raw_fd(), name.as_ptr()) }.map_err(Errno::from)?;
    Ok(adopt(fd))
}

/// `VFIO_DEVICE_BIND_IOMMUFD` on a device cdev.
pub(super) fn bind_iommufd(dev: BorrowedFd<'_>, bind: &mut b::vfio_device_bind_iommufd) -> R {
    // SAFETY: `dev` is an open /dev/vfio/devices/vfioX fd; `bind` is a whole struct and its
    // `argsz` (set by the caller) is at most its size.
    unsafe { raw_bind_iommufd(dev.as_raw_fd(), bind) }.map_err(Errno::from)
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` on a bound device cdev.
pub(super) fn attach_iommufd_pt(dev: BorrowedFd<'_>, attach: &mut b::vfio_device_attach_iommufd_pt) -> R {
    // SAFETY: `dev` is an open, bound device cdev fd; `attach` is a whole struct whose
    // `argsz` is at most its size.
    unsafe { raw_attach_pt(dev.as_raw_fd(), attach) }.map_err(Errno::from)
}

/// `IOMMU_IOAS_ALLOC` on /dev/iommu.
pub(super) fn ioas_alloc(iommufd: BorrowedFd<'_>, alloc: &mut IommuIoasAlloc) -> R {
    // SAFETY: `iommufd` is an open /dev/iommu fd; `alloc` is a whole struct and `size` says
    // so.
    unsafe { raw_ioas_alloc(iommufd.as_raw_fd(), alloc) }.map_err(Errno::from)
}

/// `VFIO_DEVICE_RESET`.
pub(super) fn device_reset(dev: BorrowedFd<'_>) -> R {
    // SAFETY: `dev` is an open device fd; the ioctl takes no argument.
    unsafe { raw_device_reset(dev.as_raw_fd()) }.map_err(Errno::from)
}

/// `VFIO_DEVICE_GET_INFO` with the struct (and room for capabilities) in `buf`.
pub(super) fn device_get_info(dev: BorrowedFd<'_>, buf: &mut Scratch) -> R {
    // SAFETY: `dev` is an open device fd; `buf` is valid for its length and ends at a guard
    // page, so the driver cannot write past it.
    unsafe { raw_device_get_info(dev.as_raw_fd(), buf.as_mut_ptr()) }.map_err(Errno::from)
}

/// `VFIO_DEVICE_GET_REGION_INFO` with the struct and capability space in `buf`.
pub(super) fn device_get_region_info(dev: BorrowedFd<'_>, buf: &mut Scratch) -> R {
    // SAFETY: as for `device_get_info`: a guarded buffer on an open device fd.
    unsafe { raw_device_get_region_info(dev.as_raw_fd(), buf.as_mut_ptr()) }.map_err(Errno::from)
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub(super) fn device_get_irq_info(dev: BorrowedFd<'_>, buf: &mut Scratch) -> R {
    // SAFETY: as for `device_get_info`: a guarded buffer on an open device fd.
    unsafe { raw_device_get_irq_info(dev.as_raw_fd(), buf.as_mut_ptr()) }.map_err(Errno::from)
}

/// `VFIO_DEVICE_SET_IRQS` with header and data in `buf`.
pub(super) fn device_set_irqs(dev: BorrowedFd<'_>, buf: &mut Scratch) -> R {
    // SAFETY: a guarded buffer on an open device fd; the kernel only reads it.
    unsafe { raw_device_set_irqs(dev.as_raw_fd(), buf.as_mut_ptr()) }.map_err(Errno::from)
}

/// `VFIO_DEVICE_FEATURE` with header and payload in `buf`.
pub(super) fn device_feature(dev: BorrowedFd<'_>, buf: &mut Scratch) -> R {
    // SAFETY: a guarded buffer on an open device fd; pointers inside the payload (DMA
    // logging ranges and bitmaps) are the caller's business and point to guarded buffers
    // too.
    unsafe { raw_device_feature(dev.as_raw_fd(), buf.as_mut_ptr()) }.map_err(Errno::from)
}

/// Any ioctl on a migration data fd, with `buf` as its pointer argument.
pub(super) fn data_fd_ioctl(fd: BorrowedFd<'_>, cmd: u64, buf: &mut Scratch) -> R {
    // SAFETY: `fd` is a data fd this backend adopted and still owns; `buf` is valid for its
    // length and ends at a guard page, so whatever the command writes stays inside it or
    // faults. The request is passed through as the caller gave it (truncated to the
    // platform's request type, as C does).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), cmd as _, buf.as_mut_ptr()) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// Takes ownership of an fd the kernel just installed for us.
fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was returned by VFIO_GROUP_GET_DEVICE_FD a moment ago: the kernel
    // allocated it for this call, so nothing else in the process owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // `ioctl_num_type` is `c_ulong` on glibc and `c_int` on musl.
    #[allow(clippy::unnecessary_cast)]
    fn request_codes_match_vfio_h() {
        assert_eq!(VFIO_GET_API_VERSION as u64, 0x3b64);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD as u64, 0x3b6a);
        assert_eq!(VFIO_DEVICE_RESET as u64, 0x3b6f);
        assert_eq!(VFIO_DEVICE_FEATURE as u64, crate::device::VFIO_DEVICE_FEATURE);
        assert_eq!(vfio_code(21) as u64, crate::device::VFIO_MIG_GET_PRECOPY_INFO);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD as u64, 0x3b76);
        assert_eq!(IOMMU_IOAS_ALLOC as u64, 0x3b81);
        assert_eq!(std::mem::size_of::<IommuIoasAlloc>(), 12);
    }
}
