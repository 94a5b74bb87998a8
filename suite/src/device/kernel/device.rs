//! [`KernelDevice`]: the [`Device`] trait over a real VFIO device fd.
//!
//! Requests go to the kernel as given (any argsz, flags, state); only what would be unsafe
//! for this process is refused before a syscall: an fd number the backend did not hand out
//! (EBADF), a device fd that is closed (EBADF), a buffer smaller than what the command may
//! write (EFAULT). Ioctl arguments the driver fills live in guarded buffers ([`Scratch`]).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::PathBuf;

use vfio_bindings::bindings::vfio as b;

use super::OpenError;
use super::caps::{self, REGION_INFO_SIZE};
use super::fdops;
use super::ioctl;
use super::irqs::{Irqs, MAX_VECTORS};
use super::mmap::Mappings;
use super::open::{self, Binding, Env, Target};
use super::scratch::Scratch;
use crate::device::{Backend, DevInfoRaw, DevResult, Device, DeviceInfo, FdFlags, IrqInfo, RegionInfo};
use crate::errno::Errno;
use crate::op::{Access, IrqAction, IrqData};
use crate::uapi;

/// Largest `argsz` honoured for region info with capabilities; a driver asking for more
/// gets its region reported without capabilities.
const MAX_REGION_INFO: u32 = 64 << 10;
/// `struct vfio_irq_set` without its data.
const IRQ_SET_HEADER: usize = 20;
/// `VFIO_DEVICE_STATE_RUNNING`.
const STATE_RUNNING: u32 = 2;
/// PCI command register: memory space enable.
const PCI_COMMAND: u64 = 4;
const PCI_COMMAND_MEMORY: u16 = 0x2;

/// A region as last reported, with whether it carried a sparse-mmap capability.
#[derive(Clone, Debug)]
struct Region {
    info: RegionInfo,
    sparse_cap: bool,
}

/// A VFIO device opened through its group or cdev.
#[derive(Debug)]
pub struct KernelDevice {
    info: DeviceInfo,
    // Field order is drop order: mappings, data fds and eventfds go before the device fd,
    // which goes before the group/container (or iommufd).
    maps: Mappings,
    data_fds: BTreeMap<i32, OwnedFd>,
    irqs: Irqs,
    regions: BTreeMap<u32, Region>,
    device: Option<OwnedFd>,
    binding: Binding,
    /// The debugfs migration state file, if it existed when the device was opened (it is
    /// created with the device, and looking a missing one up costs a path walk per GET).
    debugfs: Option<PathBuf>,
    /// vfio-pci-core zaps BAR mappings while memory decode is off (an access then raises
    /// SIGBUS), so mmap accesses to BARs check the command register first.
    check_memory_enable: bool,
    /// `/proc/thread-self/fail-nth` of the thread that armed a fault: the handle that arms
    /// and disarms it, and one opened before arming to read it back (opening a file is itself
    /// a fault point; the file cannot seek, so each arming reads from a fresh handle).
    fail_nth: Option<(std::thread::ThreadId, u32, std::fs::File, Option<std::fs::File>)>,
}

fn uname_r() -> Option<String> {
    nix::sys::utsname::uname().ok().map(|u| u.release().to_string_lossy().into_owned())
}

fn ne_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn ioc_size(cmd: u64) -> usize {
    // _IOC_SIZE: bits 16..30 on the generic ioctl layout; 0 for VFIO's _IO() numbers.
    ((cmd >> 16) & 0x3fff) as usize
}

impl KernelDevice {
    /// Opens a resolved target; `spec` is what the user typed.
    pub(super) fn open(
        env: &Env,
        spec: &str,
        target: &Target,
        backend: super::IommuBackend,
    ) -> Result<KernelDevice, OpenError> {
        let (binding, device) = open::connect(env, target, backend)?;
        let group = match target {
            Target::Group { group, .. } => Some(group.as_str()),
            Target::Cdev { group, .. } => group.as_deref(),
        };
        let name = target.name().map(str::to_string);
        let (driver, model) = match &name {
            Some(n) => open::describe_device(env, n, group),
            None => (None, None),
        };
        let check_memory_enable =
            driver.as_deref().is_some_and(|d| d.contains("vfio-pci") || d.contains("vfio_pci"));
        let debugfs = name
            .as_ref()
            .map(|n| env.sys.join("kernel/debug/vfio").join(n).join("migration/state"))
            .filter(|p| p.exists());
        let info = DeviceInfo {
            spec: spec.to_string(),
            backend: Backend::Kernel,
            driver,
            model,
            kernel: uname_r(),
            name,
            iommu: Some(backend.name().to_string()),
        };
        let mut dev = KernelDevice {
            info,
            maps: Mappings::default(),
            data_fds: BTreeMap::new(),
            irqs: Irqs::default(),
            regions: BTreeMap::new(),
            device: Some(device),
            binding,
            debugfs,
            check_memory_enable,
            fail_nth: None,
        };
        dev.first_get_info();
        Ok(dev)
    }

    /// What every VMM does first with a new device fd: VFIO_DEVICE_GET_INFO. Some drivers
    /// depend on it (mtty checks IRQ indices against the `num_irqs` it saved from the last
    /// GET_INFO, so SET_IRQS fails with EINVAL on a device nobody asked). The answer is
    /// not used here; checks ask again through `device_info()`.
    fn first_get_info(&mut self) {
        let _ = self.device_info();
    }

    /// The open device fd, or EBADF (never a syscall on a closed number).
    fn dev(&self) -> DevResult<BorrowedFd<'_>> {
        self.device.as_ref().map(AsFd::as_fd).ok_or(Errno::EBADF)
    }

    /// A data fd this backend adopted, or EBADF.
    fn data(&self, fd: i32) -> DevResult<BorrowedFd<'_>> {
        self.data_fds.get(&fd).map(AsFd::as_fd).ok_or(Errno::EBADF)
    }

    /// Whether `fd` is a number this backend already owns.
    fn owns(&self, fd: i32) -> bool {
        self.data_fds.contains_key(&fd)
            || self.device.as_ref().is_some_and(|d| d.as_raw_fd() == fd)
            || self.binding.raw_fds().contains(&fd)
            || self.irqs.raw_fds().any(|e| e == fd)
    }

    /// Takes ownership of a data fd the kernel returned from SET MIG_DEVICE_STATE.
    fn adopt(&mut self, fd: i32) {
        if fd < 0 || self.owns(fd) {
            // A correct kernel never returns a number we hold: keep ours, close nothing.
            return;
        }
        // SAFETY: VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE just succeeded and the core
        // installed `fd` for this call (vfio_ioct_mig_return_fd), so it is a fresh number no
        // one else in the process owns; it is not one of ours (checked above).
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        self.data_fds.insert(fd, owned);
    }

    /// The region, from the cache or the kernel.
    fn region(&mut self, index: u32) -> DevResult<Region> {
        if let Some(r) = self.regions.get(&index) {
            return Ok(r.clone());
        }
        self.region_info(index)?;
        self.regions.get(&index).cloned().ok_or(Errno::EINVAL)
    }

    /// One VFIO_DEVICE_GET_REGION_INFO with `argsz` bytes.
    fn region_info_call(&self, index: u32, argsz: u32) -> DevResult<Scratch> {
        let mut buf = Scratch::zeroed(argsz as usize)?;
        buf.put_u32(0, argsz);
        buf.put_u32(8, index);
        ioctl::device_get_region_info(self.dev()?, &mut buf)?;
        Ok(buf)
    }

    /// Whether memory decode is on (config space read through the device fd).
    fn memory_enabled(&mut self) -> DevResult<bool> {
        let cfg = self.region(uapi::PCI_CONFIG_REGION_INDEX)?;
        let mut cmd = [0u8; 2];
        fdops::pread(self.dev()?, &mut cmd, cfg.info.offset.wrapping_add(PCI_COMMAND))?;
        Ok(u16::from_le_bytes(cmd) & PCI_COMMAND_MEMORY != 0)
    }

    fn mmap_access(
        &mut self,
        index: u32,
        offset: u64,
        read: Option<&mut [u8]>,
        write: Option<&[u8]>,
    ) -> DevResult<usize> {
        let region = self.region(index)?;
        if self.check_memory_enable && index < 6 && !self.memory_enabled()? {
            // What vfio-pci's read/write path answers; a mapped access would SIGBUS.
            return Err(Errno::EIO);
        }
        let len = read.as_ref().map_or_else(|| write.map_or(0, <[u8]>::len), |r| r.len());
        let dev = self.device.as_ref().map(AsFd::as_fd).ok_or(Errno::EBADF)?;
        let m = self.maps.get(dev, &region.info, region.sparse_cap, offset, len, write.is_some())?;
        match (read, write) {
            (Some(r), _) => m.read(offset, r),
            (None, Some(w)) => m.write(offset, w),
            (None, None) => Ok(0),
        }
    }

    fn close_data_fds(&mut self) {
        self.data_fds.clear();
    }
}

/// The fault-injection knob of the calling thread (CONFIG_FAULT_INJECTION).
const FAIL_NTH: &str = "/proc/thread-self/fail-nth";

impl Device for KernelDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn feature(&mut self, argsz: u32, flags: u32, payload: &mut [u8]) -> DevResult<()> {
        let header = uapi::FEATURE_HEADER as usize;
        let len = (argsz as usize).max(header + payload.len());
        let mut buf = Scratch::zeroed(len)?;
        buf.put_u32(0, argsz);
        buf.put_u32(4, flags);
        buf.as_mut_slice()[header..header + payload.len()].copy_from_slice(payload);
        let r = ioctl::device_feature(self.dev()?, &mut buf);
        payload.copy_from_slice(&buf.as_slice()[header..header + payload.len()]);
        let set_state = flags & uapi::FEATURE_MASK == uapi::FEATURE_MIG_DEVICE_STATE
            && flags & (uapi::FEATURE_SET | uapi::FEATURE_GET | uapi::FEATURE_PROBE) == uapi::FEATURE_SET;
        if r.is_ok()
            && set_state
            && let Some(fd) = ne_u32(buf.as_slice(), header + 4)
        {
            self.adopt(fd as i32);
        }
        r.map(|_| ())
    }

    fn dma_log_start(&mut self, page_size: u64, ranges: &[(u64, u64)]) -> DevResult<u64> {
        let num = u32::try_from(ranges.len()).map_err(|_| Errno::E2BIG)?;
        let mut arr = Scratch::zeroed(ranges.len() * 16)?;
        for (i, &(iova, length)) in ranges.iter().enumerate() {
            arr.put_u64(i * 16, iova);
            arr.put_u64(i * 16 + 8, length);
        }
        // struct vfio_device_feature_dma_logging_control after the 8-byte header.
        let argsz = 8 + std::mem::size_of::<b::vfio_device_feature_dma_logging_control>();
        let mut buf = Scratch::zeroed(argsz)?;
        buf.put_u32(0, argsz as u32);
        buf.put_u32(4, uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START);
        buf.put_u64(8, page_size);
        buf.put_u32(16, num);
        buf.put_u64(24, arr.as_mut_ptr() as u64);
        ioctl::device_feature(self.dev()?, &mut buf)?;
        buf.u64_at(8).ok_or(Errno::EFAULT)
    }

    fn dma_log_report(
        &mut self,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &mut [u64],
    ) -> DevResult<()> {
        // The core writes ceil(length / page_size) bits once the page size is valid; refuse a
        // shorter bitmap rather than let the kernel write past it.
        if page_size >= 4096 && page_size.is_power_of_two() && length > 0 {
            let bits = length.div_ceil(page_size);
            if (bitmap.len() as u64) < bits.div_ceil(64) {
                return Err(Errno::EFAULT);
            }
        }
        let bytes: Vec<u8> = bitmap.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut bits = Scratch::from_bytes(&bytes)?;
        let argsz = 8 + std::mem::size_of::<b::vfio_device_feature_dma_logging_report>();
        let mut buf = Scratch::zeroed(argsz)?;
        buf.put_u32(0, argsz as u32);
        buf.put_u32(4, uapi::FEATURE_GET | uapi::FEATURE_DMA_LOGGING_REPORT);
        buf.put_u64(8, iova);
        buf.put_u64(16, length);
        buf.put_u64(24, page_size);
        buf.put_u64(32, bits.as_mut_ptr() as u64);
        let r = ioctl::device_feature(self.dev()?, &mut buf);
        for (i, w) in bitmap.iter_mut().enumerate() {
            *w = bits.u64_at(i * 8).unwrap_or(*w);
        }
        r.map(|_| ())
    }

    fn reset(&mut self) -> DevResult<()> {
        ioctl::device_reset(self.dev()?).map(|_| ())
    }

    fn data_read(&mut self, fd: i32, buf: &mut [u8]) -> DevResult<usize> {
        fdops::read(self.data(fd)?, buf)
    }

    fn data_pread(&mut self, fd: i32, buf: &mut [u8], offset: u64) -> DevResult<usize> {
        fdops::pread(self.data(fd)?, buf, offset)
    }

    fn data_write(&mut self, fd: i32, buf: &[u8]) -> DevResult<usize> {
        fdops::write(self.data(fd)?, buf)
    }

    fn data_pwrite(&mut self, fd: i32, buf: &[u8], offset: u64) -> DevResult<usize> {
        fdops::pwrite(self.data(fd)?, buf, offset)
    }

    fn data_poll(&mut self, fd: i32, timeout_ms: i32) -> DevResult<i16> {
        fdops::poll(self.data(fd)?, timeout_ms)
    }

    fn data_ioctl(&mut self, fd: i32, cmd: u64, arg: &mut [u8]) -> DevResult<i32> {
        let data = self.data(fd)?;
        let need = if cmd == crate::device::VFIO_MIG_GET_PRECOPY_INFO {
            uapi::PRECOPY_INFO_SIZE as usize
        } else {
            ioc_size(cmd)
        };
        if arg.len() < need {
            return Err(Errno::EFAULT);
        }
        let mut buf = Scratch::from_bytes(arg)?;
        let r = ioctl::data_fd_ioctl(data, cmd, &mut buf);
        arg.copy_from_slice(buf.as_slice());
        r
    }

    fn data_fd_flags(&mut self, fd: i32) -> DevResult<FdFlags> {
        fdops::flags(self.data(fd)?)
    }

    fn data_bad_buffer(
        &mut self,
        fd: i32,
        call: crate::op::BadCall,
        len: usize,
        valid: usize,
    ) -> DevResult<usize> {
        fdops::bad_buffer(self.data(fd)?, call, len, valid)
    }

    fn data_close(&mut self, fd: i32) -> DevResult<()> {
        let owned = self.data_fds.remove(&fd).ok_or(Errno::EBADF)?;
        nix::unistd::close(owned.into_raw_fd()).map_err(Errno::from)
    }

    fn race_set_read(
        &mut self,
        fd: i32,
        state: u32,
        delay_us: u32,
        chunk: usize,
    ) -> DevResult<crate::device::RaceResult> {
        // The reader gets its own descriptor of the same open file, so the two threads share
        // nothing of this backend.
        let reader = self.data(fd)?.try_clone_to_owned().map_err(|e| Errno::from_io(&e))?;
        let chunk = chunk.max(1);
        let started = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            // Spawning may fail (EAGAIN, or an injected fault in clone()): the step's error.
            let h = std::thread::Builder::new().spawn_scoped(s, || {
                let mut buf = vec![0u8; chunk];
                started.wait();
                let mut read = (0u64, None);
                while read.0 < crate::device::RACE_READ_MAX {
                    match fdops::read(reader.as_fd(), &mut buf) {
                        Ok(0) => break,
                        Ok(n) => read.0 += n as u64,
                        Err(e) => {
                            read.1 = Some(e);
                            break;
                        }
                    }
                }
                read
            });
            let h = h.map_err(|e| Errno::from_io(&e))?;
            started.wait();
            if delay_us > 0 {
                std::thread::sleep(std::time::Duration::from_micros(u64::from(delay_us)));
            }
            let mut payload = [0u8; 8];
            payload[..4].copy_from_slice(&state.to_le_bytes());
            payload[4..].copy_from_slice(&(-1i32).to_le_bytes());
            let set = self
                .feature(16, uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE, &mut payload)
                .map(|()| i32::from_le_bytes([payload[4], payload[5], payload[6], payload[7]]));
            let (read_bytes, read_error) = h.join().map_err(|_| Errno::EIO)?;
            Ok(crate::device::RaceResult { set, read_bytes, read_error })
        })
    }

    fn race_reset(
        &mut self,
        call: crate::op::RaceCall,
        state: u32,
        fd: i32,
        delay_us: u32,
        calls: u32,
    ) -> DevResult<crate::device::RaceResetResult> {
        use std::sync::atomic::{AtomicBool, Ordering};
        // The resetting thread gets its own descriptor of the device file.
        let resetter = self.dev()?.try_clone_to_owned().map_err(|e| Errno::from_io(&e))?;
        let (first_done, done) = (AtomicBool::new(false), AtomicBool::new(false));
        std::thread::scope(|s| {
            // Resets back to back from before the first call until after the last returned, so
            // that one of them can find the driver inside it (a thread woken only for one reset
            // arrives after a short SET).
            let h = std::thread::Builder::new().spawn_scoped(s, || {
                let (mut resets, mut error) = (0u32, None);
                loop {
                    resets += 1;
                    if let Err(e) = ioctl::device_reset(resetter.as_fd()) {
                        error.get_or_insert(e);
                    }
                    first_done.store(true, Ordering::Release);
                    if done.load(Ordering::Acquire) || resets >= crate::device::RACE_RESETS_MAX {
                        break (resets, error);
                    }
                }
            });
            let h = h.map_err(|e| Errno::from_io(&e))?;
            while !first_done.load(Ordering::Acquire) && !h.is_finished() {
                std::thread::yield_now();
            }
            if delay_us > 0 {
                std::thread::sleep(std::time::Duration::from_micros(u64::from(delay_us)));
            }
            let (first, calls, calls_failed) = crate::device::race_calls(self, call, state, fd, calls);
            done.store(true, Ordering::Release);
            let (resets, reset_error) = h.join().map_err(|_| Errno::EIO)?;
            Ok(crate::device::RaceResetResult { call: first, calls, calls_failed, resets, reset_error })
        })
    }

    fn inject_fault(&mut self, nth: u32) -> DevResult<()> {
        use std::io::Write;
        // The file names the thread (and process) that opened it: open it again after a
        // fork or from another thread.
        let me = std::thread::current().id();
        let pid = std::process::id();
        if !self.fail_nth.as_ref().is_some_and(|(t, p, _, _)| *t == me && *p == pid) {
            let f = std::fs::OpenOptions::new().write(true).open(FAIL_NTH).map_err(|e| Errno::from_io(&e))?;
            self.fail_nth = Some((me, pid, f, None));
        }
        let reader = std::fs::File::open(FAIL_NTH).map_err(|e| Errno::from_io(&e))?;
        let (_, _, f, r) = self.fail_nth.as_mut().ok_or(Errno::EBADF)?;
        *r = Some(reader);
        f.write_all(nth.to_string().as_bytes()).map_err(|e| Errno::from_io(&e))
    }

    fn fault_injected(&mut self) -> DevResult<bool> {
        use std::io::{Read, Write};
        let (_, _, f, r) = self.fail_nth.as_mut().ok_or(Errno::EBADF)?;
        let mut text = String::new();
        let read = r
            .take()
            .ok_or(Errno::EBADF)
            .and_then(|mut r| r.read_to_string(&mut text).map_err(|e| Errno::from_io(&e)));
        // Disarm whatever the reading says, so that no later call of this thread fails.
        f.write_all(b"0").map_err(|e| Errno::from_io(&e))?;
        read?;
        let left: u32 = text.trim().parse().map_err(|_| Errno::EINVAL)?;
        Ok(left == 0)
    }

    fn close(&mut self) -> DevResult<()> {
        let dev = self.device.take().ok_or(Errno::EBADF)?;
        // A mapping holds the device file open: unmap first so close_device runs.
        self.maps.clear();
        self.irqs.clear();
        self.regions.clear();
        nix::unistd::close(dev.into_raw_fd()).map_err(Errno::from)
    }

    fn reopen(&mut self) -> DevResult<()> {
        if self.device.is_some() {
            return Err(Errno::EBUSY);
        }
        let fd = self.binding.open_device().map_err(|e| match e {
            OpenError::Ioctl { errno, .. } | OpenError::Os { errno, .. } => errno,
            OpenError::Busy { .. } | OpenError::AlreadyOpen { .. } => Errno::EBUSY,
            OpenError::Permission { .. } => Errno::EACCES,
            OpenError::Missing { .. } => Errno::ENOENT,
            _ => Errno::ENODEV,
        })?;
        self.device = Some(fd);
        self.first_get_info();
        Ok(())
    }

    fn device_info(&mut self) -> DevResult<DevInfoRaw> {
        let argsz = std::mem::size_of::<b::vfio_device_info>();
        let mut buf = Scratch::zeroed(argsz)?;
        buf.put_u32(0, argsz as u32);
        ioctl::device_get_info(self.dev()?, &mut buf)?;
        Ok(DevInfoRaw {
            flags: buf.u32_at(4).unwrap_or(0),
            num_regions: buf.u32_at(8).unwrap_or(0),
            num_irqs: buf.u32_at(12).unwrap_or(0),
        })
    }

    fn region_info(&mut self, index: u32) -> DevResult<RegionInfo> {
        let mut buf = self.region_info_call(index, REGION_INFO_SIZE as u32)?;
        let want = buf.u32_at(0).unwrap_or(0);
        let flags = buf.u32_at(4).unwrap_or(0);
        if flags & RegionInfo::FLAG_CAPS != 0 && want > REGION_INFO_SIZE as u32 && want <= MAX_REGION_INFO {
            buf = self.region_info_call(index, want)?;
        }
        let s = buf.as_slice();
        let got_flags = buf.u32_at(4).unwrap_or(0);
        // Only bytes the kernel could have filled: what we gave, and no more than it says it
        // used.
        let bound = s.len().min(buf.u32_at(0).unwrap_or(0) as usize);
        let parsed = if got_flags & RegionInfo::FLAG_CAPS != 0 {
            caps::parse_region_caps(&s[..bound], buf.u32_at(12).unwrap_or(0))
        } else {
            caps::RegionCaps::default()
        };
        let info = RegionInfo {
            index,
            flags: got_flags,
            size: buf.u64_at(16).unwrap_or(0),
            offset: buf.u64_at(24).unwrap_or(0),
            cap_type: parsed.cap_type,
            sparse: parsed.sparse.clone().unwrap_or_default(),
        };
        self.regions.insert(index, Region { info: info.clone(), sparse_cap: parsed.sparse.is_some() });
        Ok(info)
    }

    fn region_read(&mut self, index: u32, offset: u64, buf: &mut [u8], via: Access) -> DevResult<usize> {
        match via {
            Access::Rw => {
                let region = self.region(index)?;
                fdops::pread(self.dev()?, buf, region.info.offset.wrapping_add(offset))
            }
            Access::Mmap => self.mmap_access(index, offset, Some(buf), None),
        }
    }

    fn region_write(&mut self, index: u32, offset: u64, buf: &[u8], via: Access) -> DevResult<usize> {
        match via {
            Access::Rw => {
                let region = self.region(index)?;
                fdops::pwrite(self.dev()?, buf, region.info.offset.wrapping_add(offset))
            }
            Access::Mmap => self.mmap_access(index, offset, None, Some(buf)),
        }
    }

    fn irq_info(&mut self, index: u32) -> DevResult<IrqInfo> {
        let argsz = std::mem::size_of::<b::vfio_irq_info>();
        let mut buf = Scratch::zeroed(argsz)?;
        buf.put_u32(0, argsz as u32);
        buf.put_u32(8, index);
        ioctl::device_get_irq_info(self.dev()?, &mut buf)?;
        Ok(IrqInfo { index, flags: buf.u32_at(4).unwrap_or(0), count: buf.u32_at(12).unwrap_or(0) })
    }

    fn set_irqs(
        &mut self,
        index: u32,
        action: IrqAction,
        start: u32,
        count: u32,
        data: IrqData,
    ) -> DevResult<()> {
        let action_flag = match action {
            IrqAction::Mask => b::VFIO_IRQ_SET_ACTION_MASK,
            IrqAction::Unmask => b::VFIO_IRQ_SET_ACTION_UNMASK,
            IrqAction::Trigger => b::VFIO_IRQ_SET_ACTION_TRIGGER,
        };
        let (data_flag, elem) = match data {
            IrqData::None => (b::VFIO_IRQ_SET_DATA_NONE, 0usize),
            IrqData::Bool(_) => (b::VFIO_IRQ_SET_DATA_BOOL, 1),
            IrqData::Eventfd => (b::VFIO_IRQ_SET_DATA_EVENTFD, 4),
        };
        // Data for at most MAX_VECTORS vectors (no PCI function has more), and only as many
        // eventfds as the process can open; `argsz` still matches `count`. The core rejects
        // an impossible `count` before it reads the data; a driver that reads further than
        // the data held hits the guard page (EFAULT).
        let fds = if data == IrqData::Eventfd { Irqs::create(count) } else { Vec::new() };
        let held = if data == IrqData::Eventfd { fds.len() } else { count.min(MAX_VECTORS) as usize };
        let argsz = (IRQ_SET_HEADER as u64 + u64::from(count) * elem as u64).min(u64::from(u32::MAX)) as u32;
        let mut buf = Scratch::zeroed(IRQ_SET_HEADER + held * elem)?;
        buf.put_u32(0, argsz);
        buf.put_u32(4, data_flag | action_flag);
        buf.put_u32(8, index);
        buf.put_u32(12, start);
        buf.put_u32(16, count);
        match data {
            IrqData::None => {}
            IrqData::Bool(v) => buf.as_mut_slice()[IRQ_SET_HEADER..].fill(u8::from(v)),
            IrqData::Eventfd => {
                for (i, fd) in fds.iter().enumerate() {
                    buf.put_u32(IRQ_SET_HEADER + i * 4, fd.as_raw_fd() as u32);
                }
            }
        }
        ioctl::device_set_irqs(self.dev()?, &mut buf)?;
        match (action, data) {
            (IrqAction::Trigger, IrqData::Eventfd) => self.irqs.install(index, start, fds),
            (IrqAction::Trigger, IrqData::None) if count == 0 => self.irqs.disable(index),
            // Mask/unmask eventfds signal into the kernel, which holds its own reference:
            // ours are closed here.
            _ => {}
        }
        Ok(())
    }

    fn irq_counts(&mut self) -> crate::device::IrqCounts {
        self.irqs.counts()
    }

    fn wait(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn debugfs_state(&mut self) -> Option<DevResult<String>> {
        let path = self.debugfs.as_ref()?;
        if !path.exists() {
            return None;
        }
        Some(
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO))),
        )
    }

    fn debugfs_features(&mut self) -> Option<DevResult<String>> {
        let path = self.debugfs.as_ref()?.with_file_name("features");
        if !path.exists() {
            return None;
        }
        Some(std::fs::read_to_string(path).map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO))))
    }

    fn restore(&mut self) -> DevResult<()> {
        self.close_data_fds();
        if self.device.is_none() {
            self.reopen()?;
        }
        self.reset()?;
        let mut payload = [0u8; 8];
        payload[4..].copy_from_slice(&(-1i32).to_ne_bytes());
        match self.feature(16, uapi::FEATURE_GET | uapi::FEATURE_MIG_DEVICE_STATE, &mut payload) {
            Ok(()) => {
                let state = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                if state == STATE_RUNNING { Ok(()) } else { Err(Errno::EIO) }
            }
            // No v2 migration support: the reset is all there is.
            Err(Errno::ENOTTY) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for KernelDevice {
    fn drop(&mut self) {
        // Explicit for clarity; the field order gives the same sequence.
        self.maps.clear();
        self.data_fds.clear();
        self.irqs.clear();
        self.device = None;
    }
}
