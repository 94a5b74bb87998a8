//! The raw baseline: a VFIO device driven with libc calls and nothing else (no suite code),
//! issuing the ioctls with plain stack buffers, exactly as a minimal C program would.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)` (include/uapi/linux/vfio.h).
const fn vfio_io(nr: u32) -> libc::c_ulong {
    ((b';' as u32) << 8 | (100 + nr)) as libc::c_ulong
}

const VFIO_SET_IOMMU: libc::c_ulong = vfio_io(2);
const VFIO_GROUP_SET_CONTAINER: libc::c_ulong = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: libc::c_ulong = vfio_io(6);
const VFIO_DEVICE_GET_INFO: libc::c_ulong = vfio_io(7);
const VFIO_DEVICE_GET_REGION_INFO: libc::c_ulong = vfio_io(8);
const VFIO_DEVICE_SET_IRQS: libc::c_ulong = vfio_io(10);
const VFIO_DEVICE_RESET: libc::c_ulong = vfio_io(11);
const VFIO_DEVICE_FEATURE: libc::c_ulong = vfio_io(17);
const VFIO_TYPE1V2_IOMMU: libc::c_ulong = 3;
const FEATURE_GET: u32 = 1 << 16;
const FEATURE_SET: u32 = 1 << 17;
const FEATURE_MIG_DEVICE_STATE: u32 = 2;
const FEATURE_DMA_LOGGING_STOP: u32 = 7;
const IRQ_SET_DATA_NONE: u32 = 1;
const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
const PCI_CONFIG_REGION_INDEX: u32 = 7;

/// `Err(errno)` of the last failed call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn check(r: libc::c_int) -> Result<libc::c_int, i32> {
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn open_rw(path: &str) -> std::io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| std::io::Error::other("NUL in path"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `open` just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A VFIO device opened through its group, held by the raw baseline.
#[derive(Debug)]
pub struct RawDevice {
    dev: OwnedFd,
    _group: OwnedFd,
    _container: OwnedFd,
    /// Offset of the PCI config region on the device fd.
    pub config_offset: u64,
}

impl AsRawFd for RawDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

impl RawDevice {
    /// Opens `group` (`/dev/vfio/N`) and the device `name` in it (type1v2 IOMMU), then asks
    /// GET_INFO and the config region's offset, as any VMM does first.
    pub fn open(group: &str, name: &str) -> std::io::Result<RawDevice> {
        let container = open_rw("/dev/vfio/vfio")?;
        let grp = open_rw(group)?;
        let cfd: libc::c_int = container.as_raw_fd();
        let err = |what: &str| std::io::Error::other(format!("{what}: {}", std::io::Error::last_os_error()));
        // SAFETY: the group fd is open; the core reads one int through the pointer to `cfd`.
        if unsafe { libc::ioctl(grp.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &cfd) } < 0 {
            return Err(err("VFIO_GROUP_SET_CONTAINER"));
        }
        // SAFETY: the container fd is open; the argument is an integer.
        if unsafe { libc::ioctl(container.as_raw_fd(), VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU) } < 0 {
            return Err(err("VFIO_SET_IOMMU"));
        }
        let cname = CString::new(name).map_err(|_| std::io::Error::other("NUL in device name"))?;
        // SAFETY: the group fd is open; the core reads a NUL-terminated string.
        let fd = unsafe { libc::ioctl(grp.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, cname.as_ptr()) };
        if fd < 0 {
            return Err(err("VFIO_GROUP_GET_DEVICE_FD"));
        }
        // SAFETY: the kernel just installed this fd for us.
        let dev = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut info = [0u32; 6];
        info[0] = 24;
        // SAFETY: a 24-byte `vfio_device_info` on the stack, argsz 24.
        if unsafe { libc::ioctl(dev.as_raw_fd(), VFIO_DEVICE_GET_INFO, info.as_mut_ptr()) } < 0 {
            return Err(err("VFIO_DEVICE_GET_INFO"));
        }
        // struct vfio_region_info: argsz, flags, index, cap_offset, size (u64), offset (u64).
        let mut region = [0u64; 4];
        region[0] = 32;
        region[1] = u64::from(PCI_CONFIG_REGION_INDEX);
        // SAFETY: a 32-byte `vfio_region_info` on the stack, argsz 32 (no capability space,
        // so the kernel writes at most 32 bytes).
        if unsafe { libc::ioctl(dev.as_raw_fd(), VFIO_DEVICE_GET_REGION_INFO, region.as_mut_ptr()) } < 0 {
            return Err(err("VFIO_DEVICE_GET_REGION_INFO"));
        }
        Ok(RawDevice { dev, _group: grp, _container: container, config_offset: region[3] })
    }

    fn fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }

    /// SET MIG_DEVICE_STATE: the data fd (-1 if none) or the errno.
    #[inline]
    pub fn set_state(&self, state: u32) -> Result<i32, i32> {
        let mut buf = [16u32, FEATURE_SET | FEATURE_MIG_DEVICE_STATE, state, u32::MAX];
        // SAFETY: a 16-byte feature header + `vfio_device_feature_mig_state` on the stack,
        // argsz 16.
        check(unsafe { libc::ioctl(self.fd(), VFIO_DEVICE_FEATURE, buf.as_mut_ptr()) })?;
        Ok(buf[3] as i32)
    }

    /// GET MIG_DEVICE_STATE.
    #[inline]
    pub fn get_state(&self) -> Result<u32, i32> {
        let mut buf = [16u32, FEATURE_GET | FEATURE_MIG_DEVICE_STATE, 0, u32::MAX];
        // SAFETY: as in `set_state`.
        check(unsafe { libc::ioctl(self.fd(), VFIO_DEVICE_FEATURE, buf.as_mut_ptr()) })?;
        Ok(buf[2])
    }

    /// SET DMA_LOGGING_STOP (no payload).
    #[inline]
    pub fn dma_logging_stop(&self) -> Result<i32, i32> {
        let mut buf = [8u32, FEATURE_SET | FEATURE_DMA_LOGGING_STOP];
        // SAFETY: an 8-byte feature header on the stack, argsz 8.
        check(unsafe { libc::ioctl(self.fd(), VFIO_DEVICE_FEATURE, buf.as_mut_ptr()) })
    }

    /// SET_IRQS DATA_NONE|ACTION_TRIGGER with count 0 (disables an index).
    #[inline]
    pub fn irqs_off(&self, index: u32) -> Result<i32, i32> {
        let mut buf = [20u32, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, index, 0, 0];
        // SAFETY: a 20-byte `vfio_irq_set` without data on the stack, argsz 20.
        check(unsafe { libc::ioctl(self.fd(), VFIO_DEVICE_SET_IRQS, buf.as_mut_ptr()) })
    }

    /// VFIO_DEVICE_RESET.
    #[inline]
    pub fn reset(&self) -> Result<i32, i32> {
        // SAFETY: the device fd is open; the ioctl takes no argument.
        check(unsafe { libc::ioctl(self.fd(), VFIO_DEVICE_RESET, 0) })
    }

    /// pread from config space.
    pub fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, i32> {
        // SAFETY: `buf` is valid for writes of its length.
        let r = unsafe {
            libc::pread(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                (self.config_offset + offset) as libc::off_t,
            )
        };
        if r < 0 { Err(errno()) } else { Ok(r as usize) }
    }

    /// pwrite to config space.
    #[inline]
    pub fn config_write(&self, offset: u64, buf: &[u8]) -> Result<usize, i32> {
        // SAFETY: `buf` is valid for reads of its length.
        let r = unsafe {
            libc::pwrite(
                self.fd(),
                buf.as_ptr().cast(),
                buf.len(),
                (self.config_offset + offset) as libc::off_t,
            )
        };
        if r < 0 { Err(errno()) } else { Ok(r as usize) }
    }
}

/// read(2) on a data fd.
#[inline]
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for writes of its length; a bad fd gives EBADF.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 { Err(errno()) } else { Ok(r as usize) }
}

/// write(2) on a data fd.
#[inline]
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for reads of its length; a bad fd gives EBADF.
    let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if r < 0 { Err(errno()) } else { Ok(r as usize) }
}

/// F_GETFD and F_GETFL, as the suite checks every new data fd.
#[inline]
pub fn fd_flags(fd: RawFd) -> Result<(i32, i32), i32> {
    // SAFETY: fcntl with integer commands only reads the fd table.
    let a = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    let b = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    Ok((a, b))
}

/// close(2) of a data fd the baseline owns.
#[inline]
pub fn close(fd: RawFd) {
    // SAFETY: only called on data fds the device returned to the baseline and that it has
    // not closed yet.
    unsafe { libc::close(fd) };
}
