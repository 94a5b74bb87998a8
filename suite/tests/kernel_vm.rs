//! The kernel backend against real mdev devices, in the `vm/` guest (mtty, mdpy). The tests
//! are `#[ignore]`d: `cargo test` outside the guest does not count them as passes; .ci/run
//! runs them in the guest with `--ignored`, where a missing device fails the test.
//!
//! ```sh
//! cargo test --release -p vmc-suite --test kernel_vm --no-run   # prints the binary path
//! vm/run.sh --bin target/release/deps/kernel_vm-HASH --mdev mtty-2 --mdev mtty-1 \
//!     --mdev mdpy-vga -- kernel_vm-HASH --ignored --test-threads=1
//! ```

use std::sync::Mutex;

use vmc::device::{Device, VFIO_MIG_GET_PRECOPY_INFO};
use vmc::errno::Errno;
use vmc::op::{Access, IrqAction, IrqData};
use vmc::uapi;

/// A group can be open only once: tests take turns.
static TURN: Mutex<()> = Mutex::new(());

/// The group node, UUID and type of the first guest device of an mdev type starting with
/// `prefix`; panics (the test fails) outside the guest or when the guest has no such device.
fn guest_device(prefix: &str) -> (String, String, String) {
    assert_eq!(
        std::env::var("VMC_GUEST").ok().as_deref(),
        Some("1"),
        "not in the vm/ guest: run these tests with vm/run.sh (see the module documentation)"
    );
    let n: usize = std::env::var("VMC_NDEV").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let var = |name: String| std::env::var(name).ok();
    let found = (0..n).find_map(|i| {
        let ty = var(format!("VMC_DEV{i}_TYPE"))?;
        if !ty.starts_with(prefix) {
            return None;
        }
        Some((var(format!("VMC_DEV{i}"))?, var(format!("VMC_DEV{i}_UUID"))?, ty))
    });
    found.unwrap_or_else(|| panic!("the guest has no {prefix} device (vm/run.sh --mdev {prefix}-...)"))
}

/// Opens a device and, like the engine before each check, restores it to RUNNING (mtty
/// keeps its migration state across close/open, so an earlier test may have left it
/// elsewhere).
fn open(node: &str) -> Box<dyn Device> {
    let mut dev = match vmc::device::kernel::open(node, None) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    dev.restore().unwrap();
    dev
}

fn get_state(dev: &mut dyn Device) -> Result<u32, Errno> {
    let mut p = [0u8; 8];
    dev.feature(16, uapi::FEATURE_GET | uapi::FEATURE_MIG_DEVICE_STATE, &mut p)?;
    Ok(u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
}

/// SET MIG_DEVICE_STATE; the returned data fd (or -1).
fn set_state(dev: &mut dyn Device, state: u32) -> Result<i32, Errno> {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&state.to_le_bytes());
    dev.feature(16, uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE, &mut p)?;
    Ok(i32::from_le_bytes([p[4], p[5], p[6], p[7]]))
}

fn read_all(dev: &mut dyn Device, fd: i32) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        match dev.data_read(fd, &mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
        assert!(out.len() < 1 << 20, "stream does not end");
    }
}

const STOP: u32 = 1;
const RUNNING: u32 = 2;
const STOP_COPY: u32 = 3;
const RESUMING: u32 = 4;
const PRE_COPY: u32 = 6;

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn device_info_names_the_mdev_and_its_type() {
    let (node, uuid, ty) = guest_device("mtty");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dev = open(&node);
    let info = dev.info().clone();
    assert_eq!(info.name.as_deref(), Some(uuid.as_str()));
    assert_eq!(info.model.as_deref(), Some(ty.as_str()));
    assert_eq!(info.driver.as_deref(), Some("mtty"));
    assert_eq!(info.backend, vmc::device::Backend::Kernel);
    assert!(info.kernel.is_some_and(|k| k.starts_with("6.")));
    let di = dev.device_info().unwrap();
    assert_eq!((di.flags & 2, di.num_regions, di.num_irqs), (2, 9, 5));
    let r0 = dev.region_info(0).unwrap();
    assert_eq!((r0.flags, r0.size, r0.cap_type, r0.sparse.len()), (3, 8, None, 0));
    let mut vendor = [0u8; 4];
    assert_eq!(dev.region_read(uapi::PCI_CONFIG_REGION_INDEX, 0, &mut vendor, Access::Rw), Ok(4));
    assert_eq!(u32::from_le_bytes(vendor), 0x3253_4348, "mtty's PCI ids");
    assert_eq!(dev.region_read(0, 0, &mut vendor, Access::Mmap), Err(Errno::EINVAL), "BAR0 is not mmappable");
    assert_eq!(dev.region_info(99).err(), Some(Errno::EINVAL));
    assert_eq!(dev.debugfs_state(), None, "Debian has no CONFIG_VFIO_DEBUGFS");
    let irq = dev.irq_info(0).unwrap();
    assert_eq!(irq.count, 1);
}

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn a_group_can_be_open_only_once_and_drop_releases_it() {
    let (node, _, _) = guest_device("mtty");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let dev = open(&node);
    let e = vmc::device::kernel::open(&node, None).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("this process already holds") && e.contains("(the same device given twice"), "{e}");
    drop(dev);
    let _again = open(&node);
}

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn stop_copy_hands_out_an_adopted_data_fd() {
    let (node, _, ty) = guest_device("mtty");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dev = open(&node);
    let mut flags = [0u8; 8];
    dev.feature(16, uapi::FEATURE_GET | uapi::FEATURE_MIGRATION, &mut flags).unwrap();
    assert_eq!(u64::from_le_bytes(flags), 1 | 2 | 4, "STOP_COPY | P2P | PRE_COPY");
    assert_eq!(get_state(dev.as_mut()), Ok(RUNNING));
    assert_eq!(set_state(dev.as_mut(), STOP), Ok(-1));
    let fd = set_state(dev.as_mut(), STOP_COPY).unwrap();
    assert!(fd >= 0);
    let f = dev.data_fd_flags(fd).unwrap();
    assert!(f.cloexec);
    assert_eq!(f.access_mode, 0, "O_RDONLY");
    assert_eq!(dev.data_pread(fd, &mut [0u8; 4], 0), Err(Errno::ESPIPE));
    assert_eq!(dev.data_write(fd, &[0u8; 4]), Err(Errno::EBADF), "a saving fd is read-only");
    let mut small = [0u8; 23];
    assert_eq!(dev.data_ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut small), Err(Errno::EFAULT));
    let mut info = [0u8; 24];
    info[..4].copy_from_slice(&24u32.to_le_bytes());
    assert_eq!(
        dev.data_ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut info),
        Err(Errno::EINVAL),
        "not in PRE_COPY"
    );
    assert_eq!(dev.data_ioctl(fd, 0x3b00, &mut info), Err(Errno::ENOTTY));
    let stream = read_all(dev.as_mut(), fd).unwrap();
    let want = if ty == "mtty-2" { 96 } else { 60 };
    assert_eq!(stream.len(), want, "{ty} stream");
    assert_ne!(dev.data_poll(fd, 0), Err(Errno::EBADF));
    // Unknown numbers never reach a syscall.
    for bogus in [-1, 0, 1, 2, fd + 1000] {
        assert_eq!(dev.data_read(bogus, &mut [0u8; 1]), Err(Errno::EBADF));
        assert_eq!(dev.data_close(bogus), Err(Errno::EBADF));
        assert_eq!(dev.data_fd_flags(bogus).err(), Some(Errno::EBADF));
    }
    assert_eq!(dev.data_close(fd), Ok(()));
    assert_eq!(dev.data_close(fd), Err(Errno::EBADF));
    // Resume what was saved.
    assert_eq!(set_state(dev.as_mut(), STOP), Ok(-1));
    let rfd = set_state(dev.as_mut(), RESUMING).unwrap();
    assert_eq!(dev.data_fd_flags(rfd).map(|f| f.access_mode), Ok(1), "O_WRONLY");
    assert_eq!(dev.data_write(rfd, &stream), Ok(stream.len()));
    assert_eq!(set_state(dev.as_mut(), STOP), Ok(-1));
    assert_eq!(dev.restore(), Ok(()));
    assert_eq!(get_state(dev.as_mut()), Ok(RUNNING));
    assert_eq!(dev.data_read(rfd, &mut [0u8; 1]), Err(Errno::EBADF), "restore closed it");
}

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn pre_copy_info_and_odd_feature_arguments() {
    let (node, _, _) = guest_device("mtty");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dev = open(&node);
    let fd = set_state(dev.as_mut(), PRE_COPY).unwrap();
    let mut info = [0u8; 24];
    info[..4].copy_from_slice(&24u32.to_le_bytes());
    assert_eq!(dev.data_ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut info), Ok(0));
    let initial = u64::from_le_bytes(info[8..16].try_into().unwrap());
    assert!(initial > 0, "initial_bytes {initial}");
    info[..4].copy_from_slice(&16u32.to_le_bytes());
    assert_eq!(dev.data_ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut info), Err(Errno::EINVAL), "short argsz");
    // argsz far beyond the payload: the backend's buffer covers it.
    let mut p = [0u8; 8];
    assert_eq!(dev.feature(u32::MAX, uapi::FEATURE_GET | uapi::FEATURE_MIGRATION, &mut p), Ok(()));
    assert_eq!(dev.feature(4, uapi::FEATURE_GET | uapi::FEATURE_MIGRATION, &mut p), Err(Errno::EINVAL));
    // A short payload with a full argsz: the kernel's data fd is still adopted, not leaked.
    assert_eq!(set_state(dev.as_mut(), RUNNING), Ok(-1));
    let mut short = [0u8; 4];
    short.copy_from_slice(&PRE_COPY.to_le_bytes());
    assert_eq!(dev.feature(16, uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE, &mut short), Ok(()));
    assert_eq!(dev.restore(), Ok(()));
    let mut empty = [0u8; 0];
    assert_eq!(
        dev.feature(8, uapi::FEATURE_PROBE | uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START, &mut empty),
        Ok(()),
        "mtty has DMA-logging stubs"
    );
    assert_eq!(dev.dma_log_start(4096, &[(0, 1 << 20)]), Ok(4096));
    let mut bitmap = vec![0u64; 4];
    assert_eq!(dev.dma_log_report(0, 1 << 20, 4096, &mut bitmap), Err(Errno::EOPNOTSUPP), "no iova_bitmap");
    let mut short_map = vec![0u64; 3];
    assert_eq!(dev.dma_log_report(0, 1 << 20, 4096, &mut short_map), Err(Errno::EFAULT));
    assert_eq!(dev.dma_log_report(0, 1 << 20, 1000, &mut short_map), Err(Errno::EINVAL));
    let mut e = [0u8; 0];
    assert_eq!(dev.feature(8, uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_STOP, &mut e), Ok(()));
}

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn close_and_reopen() {
    let (node, _, _) = guest_device("mtty");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dev = open(&node);
    assert_eq!(dev.reopen(), Err(Errno::EBUSY));
    assert_eq!(set_state(dev.as_mut(), STOP), Ok(-1));
    let fd = set_state(dev.as_mut(), STOP_COPY).unwrap();
    assert_eq!(dev.close(), Ok(()));
    assert_eq!(dev.close(), Err(Errno::EBADF));
    assert_eq!(get_state(dev.as_mut()), Err(Errno::EBADF));
    assert_eq!(dev.reset(), Err(Errno::EBADF));
    let after_close = dev.data_read(fd, &mut [0u8; 8]);
    eprintln!("read on a saving fd after close_device: {after_close:?}");
    assert_ne!(after_close, Err(Errno::EBADF), "the data fd stays open");
    assert_eq!(dev.reopen(), Ok(()));
    // mtty keeps its state across close/open (no open_device hook): V2-OPEN-001 (INFO).
    assert_eq!(get_state(dev.as_mut()), Ok(STOP_COPY), "mtty: the reopened device is still in STOP_COPY");
    assert_eq!(dev.restore(), Ok(()));
    assert_eq!(dev.close(), Ok(()));
    assert_eq!(dev.restore(), Ok(()), "restore reopens");
    assert_eq!(get_state(dev.as_mut()), Ok(RUNNING));
}

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn intx_eventfds_are_counted() {
    let (node, _, _) = guest_device("mtty");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dev = open(&node);
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, 1, IrqData::Eventfd), Ok(()));
    assert_eq!(dev.irq_counts(), vec![((0, 0), 0)]);
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, 1, IrqData::None), Ok(()));
    assert_eq!(dev.irq_counts(), vec![((0, 0), 1)]);
    // INTx is automasked: a second trigger is swallowed until unmask.
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, 1, IrqData::Bool(true)), Ok(()));
    assert_eq!(dev.irq_counts(), vec![((0, 0), 1)]);
    assert_eq!(dev.set_irqs(0, IrqAction::Unmask, 0, 1, IrqData::None), Ok(()));
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, 1, IrqData::None), Ok(()));
    assert_eq!(dev.irq_counts(), vec![((0, 0), 2)]);
    // Re-arming keeps the count; disabling too.
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, 1, IrqData::Eventfd), Ok(()));
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, 0, IrqData::None), Ok(()));
    assert_eq!(dev.irq_counts(), vec![((0, 0), 2)]);
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, u32::MAX, IrqData::Eventfd), Err(Errno::EINVAL));
    assert_eq!(dev.set_irqs(3, IrqAction::Trigger, 0, 1, IrqData::Eventfd), Err(Errno::ENOTTY));
}

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn mdpy_framebuffer_through_mmap() {
    let (node, _, ty) = guest_device("mdpy");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dev = open(&node);
    assert_eq!(dev.info().model.as_deref(), Some(ty.as_str()));
    assert_eq!(dev.info().driver.as_deref(), Some("mdpy"));
    let r0 = dev.region_info(0).unwrap();
    assert_eq!(r0.flags & 7, 7, "READ | WRITE | MMAP");
    assert!(r0.size >= 640 * 480 * 4);
    assert_eq!(dev.region_write(0, 0, &0xa5a5_5a5au32.to_le_bytes(), Access::Mmap), Ok(4));
    let mut v = [0u8; 4];
    assert_eq!(dev.region_read(0, 0, &mut v, Access::Mmap), Ok(4));
    assert_eq!(u32::from_le_bytes(v), 0xa5a5_5a5a);
    let mut rw = [0u8; 4];
    assert_eq!(dev.region_read(0, 0, &mut rw, Access::Rw), Ok(4));
    assert_eq!(rw, v, "mmap and read() see the same framebuffer");
    assert_eq!(dev.region_write(0, 4096, &0x0102_0304u32.to_le_bytes(), Access::Mmap), Ok(4));
    assert_eq!(dev.region_read(0, 4096, &mut rw, Access::Rw), Ok(4));
    eprintln!(
        "mdpy: read() at BAR0+4096 after an mmap write of 0x01020304 there: {:#x}",
        u32::from_le_bytes(rw)
    );
    let mut odd = [0u8; 3];
    assert_eq!(dev.region_read(0, r0.size - 3, &mut odd, Access::Mmap), Ok(3));
    assert_eq!(dev.region_read(0, r0.size - 2, &mut odd, Access::Mmap), Err(Errno::EINVAL));
    // Closing unmaps, so close_device runs and a reopen maps afresh.
    assert_eq!(dev.close(), Ok(()));
    assert_eq!(dev.region_read(0, 0, &mut v, Access::Mmap), Err(Errno::EBADF));
    assert_eq!(dev.reopen(), Ok(()));
    assert_eq!(dev.region_read(0, 0, &mut v, Access::Mmap), Ok(4));
    assert_eq!(dev.restore(), Ok(()), "no migration: reset only");
    let mut p = [0u8; 8];
    assert_eq!(dev.feature(16, uapi::FEATURE_GET | uapi::FEATURE_MIGRATION, &mut p), Err(Errno::ENOTTY));
}

#[test]
#[ignore = "needs the vm/ guest's mdev devices; .ci/run runs it there with --ignored"]
fn irq_ioctls_work_right_after_open() {
    // mtty checks IRQ indices against the num_irqs it saved from the last GET_INFO; the
    // backend issues one at open, as a VMM does, so this works on a device nobody asked.
    let (node, _, _) = guest_device("mtty-1");
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dev = open(&node);
    assert_eq!(dev.irq_info(0).map(|i| i.count), Ok(1));
    assert_eq!(dev.set_irqs(0, IrqAction::Trigger, 0, 1, IrqData::Eventfd), Ok(()));
}

#[test]
fn kernel_device_is_send() {
    fn is_send<T: Send>() {}
    is_send::<vmc::device::kernel::KernelDevice>();
}
