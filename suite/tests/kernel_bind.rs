//! The --bind state machine (`device::kernel::bind`) against a fake sysfs whose writer acts
//! like the PCI driver core: unbind removes the `driver` link, bind honours
//! `driver_override`, vfio-pci creates the group node, e1000e the network interface. The real
//! thing is tested on QEMU's e1000e in the vm/ guest by `.ci/vm-bind.sh`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmc::device::kernel::bind::{self, BindEnv, BindError, Bound, StateDir, SysfsWriter};
use vmc::device::kernel::open::Env;

const BDF: &str = "0000:00:04.0";

/// A fake sysfs, /dev and /proc, and the driver core's reactions to writes.
#[derive(Debug)]
struct Fake {
    root: PathBuf,
    env: Env,
    /// Every write, as `path-relative-to-sys = value`.
    log: RefCell<Vec<String>>,
    /// Writes (relative path) that fail with an errno.
    fail: RefCell<BTreeMap<String, i32>>,
    /// The state file that must exist before the first write.
    state_file: PathBuf,
}

impl Fake {
    fn new(tag: &str) -> Fake {
        let root = std::env::temp_dir().join(format!("vmc-bind-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let env = Env { sys: root.join("sys"), dev: root.join("dev") };
        let f = Fake {
            state_file: root.join("state").join(format!("{BDF}.json")),
            root,
            env,
            log: RefCell::new(Vec::new()),
            fail: RefCell::new(BTreeMap::new()),
        };
        for d in
            ["sys/bus/pci/drivers/e1000e", "sys/bus/pci/drivers/vfio-pci", "sys/class/net", "sys/class/block"]
        {
            fs::create_dir_all(f.root.join(d)).unwrap();
        }
        fs::create_dir_all(f.env.dev.join("vfio")).unwrap();
        fs::create_dir_all(f.root.join("proc/self")).unwrap();
        fs::write(f.root.join("proc/self/mountinfo"), "22 1 0:21 / / rw - tmpfs tmpfs rw\n").unwrap();
        fs::write(f.root.join("proc/swaps"), "Filename Type Size Used Priority\n").unwrap();
        let dev = f.dev_dir();
        fs::create_dir_all(&dev).unwrap();
        symlink(&dev, f.env.sys.join("bus/pci/devices").tap_mkdir().join(BDF)).unwrap();
        fs::write(dev.join("driver_override"), "(null)\n").unwrap();
        fs::write(dev.join("vendor"), "0x8086\n").unwrap();
        fs::create_dir_all(f.env.sys.join("kernel/iommu_groups/7/devices")).unwrap();
        symlink(f.env.sys.join("kernel/iommu_groups/7"), dev.join("iommu_group")).unwrap();
        f.attach("e1000e");
        f
    }

    fn dev_dir(&self) -> PathBuf {
        self.env.sys.join("devices/pci0000:00").join(BDF)
    }

    fn driver(&self) -> Option<String> {
        fs::read_link(self.dev_dir().join("driver"))
            .ok()
            .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    }

    fn read(&self, attr: &str) -> String {
        fs::read_to_string(self.dev_dir().join(attr)).unwrap().trim().to_string()
    }

    /// What the driver's probe does in this fake.
    fn attach(&self, driver: &str) {
        let dev = self.dev_dir();
        symlink(self.env.sys.join("bus/pci/drivers").join(driver), dev.join("driver")).unwrap();
        match driver {
            "e1000e" => {
                let net = dev.join("net/eth0");
                fs::create_dir_all(&net).unwrap();
                symlink(self.env.sys.join("class/net"), net.join("subsystem")).unwrap();
                fs::write(net.join("flags"), "0x1002\n").unwrap();
                fs::write(net.join("operstate"), "down\n").unwrap();
            }
            "vfio-pci" => fs::write(self.env.dev.join("vfio/7"), "").unwrap(),
            _ => {}
        }
    }

    fn detach(&self) {
        let dev = self.dev_dir();
        fs::remove_file(dev.join("driver")).unwrap();
        let _ = fs::remove_dir_all(dev.join("net"));
        let _ = fs::remove_file(self.env.dev.join("vfio/7"));
    }

    fn benv(&self) -> BindEnv<'_> {
        BindEnv {
            env: self.env.clone(),
            proc_root: self.root.join("proc"),
            writer: self,
            settle: Duration::from_millis(200),
        }
    }

    fn states(&self) -> StateDir {
        StateDir::new(self.root.join("state"))
    }

    fn writes(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

impl SysfsWriter for Fake {
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        let rel = path.strip_prefix(&self.env.sys).unwrap().display().to_string();
        assert!(self.state_file.exists(), "{rel} written before the state file");
        self.log.borrow_mut().push(format!("{rel} = {}", value.trim_end()));
        if let Some(e) = self.fail.borrow().get(&rel) {
            return Err(errno(*e));
        }
        let value = value.trim_end();
        if let Some(drv) = rel.strip_prefix("bus/pci/drivers/").and_then(|r| r.strip_suffix("/unbind")) {
            if value != BDF || self.driver().as_deref() != Some(drv) {
                return Err(errno(libc::ENODEV));
            }
            self.detach();
        } else if let Some(drv) = rel.strip_prefix("bus/pci/drivers/").and_then(|r| r.strip_suffix("/bind")) {
            let ov = self.read("driver_override");
            if self.driver().is_some() {
                return Err(errno(libc::EBUSY));
            }
            if ov != "(null)" && ov != drv {
                return Err(errno(libc::ENODEV));
            }
            self.attach(drv);
        } else if rel == "bus/pci/drivers_probe" {
            self.attach("e1000e");
        } else if let Some(attr) = rel.strip_prefix(&format!("bus/pci/devices/{BDF}/")) {
            let v = if attr == "driver_override" && value.is_empty() { "(null)" } else { value };
            fs::write(self.dev_dir().join(attr), format!("{v}\n"))?;
        } else {
            panic!("unexpected write: {rel}");
        }
        Ok(())
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn binding_follows_setup_sh_and_restoring_follows_cleanup_sh() {
    let f = Fake::new("cycle");
    let st = match bind::bind(&f.benv(), &f.states(), BDF, false).unwrap() {
        Bound::Now(st) => st,
        Bound::Already => panic!("it was on e1000e"),
    };
    assert_eq!(st.driver.as_deref(), Some("e1000e"));
    assert_eq!((st.driver_override.as_deref(), st.sriov_numvfs), (None, None));
    assert_eq!(f.driver().as_deref(), Some("vfio-pci"));
    assert_eq!(StateDir::read(&f.state_file).unwrap(), st);
    assert_eq!(
        f.writes(),
        [
            format!("bus/pci/drivers/e1000e/unbind = {BDF}"),
            format!("bus/pci/devices/{BDF}/driver_override = vfio-pci"),
            format!("bus/pci/drivers/vfio-pci/bind = {BDF}"),
        ]
    );
    f.log.borrow_mut().clear();
    bind::restore(&f.benv(), &st).unwrap();
    assert_eq!(
        f.writes(),
        [
            format!("bus/pci/drivers/vfio-pci/unbind = {BDF}"),
            format!("bus/pci/devices/{BDF}/driver_override = "),
            format!("bus/pci/drivers/e1000e/bind = {BDF}"),
        ]
    );
    assert_eq!(f.driver().as_deref(), Some("e1000e"));
    assert_eq!(f.read("driver_override"), "(null)");
    // A second restore has nothing left to do.
    f.log.borrow_mut().clear();
    bind::restore(&f.benv(), &st).unwrap();
    assert!(f.writes().is_empty(), "{:?}", f.writes());
}

#[test]
fn a_device_on_vfio_pci_already_is_left_alone() {
    let f = Fake::new("already");
    f.detach();
    f.attach("vfio-pci");
    fs::create_dir_all(f.state_file.parent().unwrap()).unwrap();
    assert_eq!(bind::bind(&f.benv(), &f.states(), BDF, false).unwrap(), Bound::Already);
    assert!(f.writes().is_empty());
}

#[test]
fn an_interface_that_is_up_is_refused_unless_forced() {
    let f = Fake::new("netup");
    fs::write(f.dev_dir().join("net/eth0/flags"), "0x1003\n").unwrap();
    fs::write(f.dev_dir().join("net/eth0/operstate"), "up\n").unwrap();
    let e = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap_err();
    assert!(matches!(e, BindError::InUse { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("network interface eth0 is up (operstate up; ip link set eth0 down)"), "{e}");
    assert!(e.contains("--force binds it all the same"), "{e}");
    assert!(f.writes().is_empty() && !f.state_file.exists());
    assert_eq!(f.driver().as_deref(), Some("e1000e"));
    assert!(matches!(bind::bind(&f.benv(), &f.states(), BDF, true).unwrap(), Bound::Now(_)));
    assert_eq!(f.driver().as_deref(), Some("vfio-pci"));
}

#[test]
fn mounted_swapped_and_held_block_devices_are_in_use() {
    let f = Fake::new("block");
    let nvme = f.dev_dir().join("nvme/nvme0/nvme0n1");
    let part = nvme.join("nvme0n1p1");
    for (d, devno) in [(&nvme, "259:0"), (&part, "259:1")] {
        fs::create_dir_all(d.join("holders")).unwrap();
        symlink(f.env.sys.join("class/block"), d.join("subsystem")).unwrap();
        fs::write(d.join("dev"), format!("{devno}\n")).unwrap();
    }
    assert!(bind::in_use(&f.benv(), BDF).is_empty());
    fs::write(f.root.join("proc/self/mountinfo"), "30 1 259:1 / /data rw - ext4 /dev/nvme0n1p1 rw\n")
        .unwrap();
    fs::write(f.root.join("proc/swaps"), "Filename Type Size Used Priority\n/dev/nvme0n1 partition 1 0 -2\n")
        .unwrap();
    fs::create_dir_all(nvme.join("holders/dm-0")).unwrap();
    let uses = bind::in_use(&f.benv(), BDF);
    assert!(uses.contains(&"block device nvme0n1p1 (259:1) is mounted on /data".to_string()), "{uses:?}");
    assert!(uses.contains(&"block device nvme0n1 is used as swap".to_string()), "{uses:?}");
    assert!(uses.contains(&"block device nvme0n1 is held by dm-0".to_string()), "{uses:?}");
}

#[test]
fn vfs_bound_to_drivers_and_the_boot_vga_device_are_in_use() {
    let f = Fake::new("vf");
    let vf = f.env.sys.join("devices/pci0000:00/0000:00:04.1");
    fs::create_dir_all(&vf).unwrap();
    symlink(&vf, f.dev_dir().join("virtfn0")).unwrap();
    assert!(bind::in_use(&f.benv(), BDF).is_empty());
    symlink(f.env.sys.join("bus/pci/drivers/igbvf"), vf.join("driver")).unwrap();
    fs::write(f.dev_dir().join("boot_vga"), "1\n").unwrap();
    let uses = bind::in_use(&f.benv(), BDF);
    assert_eq!(
        uses,
        [
            "its SR-IOV VF 0000:00:04.1 is bound to igbvf",
            "it is the boot VGA device (the console may be on it)"
        ]
    );
}

#[test]
fn sriov_numvfs_is_set_to_zero_and_put_back() {
    let f = Fake::new("sriov");
    fs::write(f.dev_dir().join("sriov_numvfs"), "4\n").unwrap();
    let Bound::Now(st) = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap() else { panic!() };
    assert_eq!(st.sriov_numvfs, Some(4));
    assert_eq!(f.writes()[0], format!("bus/pci/devices/{BDF}/sriov_numvfs = 0"));
    assert_eq!(f.read("sriov_numvfs"), "0");
    bind::restore(&f.benv(), &st).unwrap();
    assert_eq!(f.writes().last().unwrap(), &format!("bus/pci/devices/{BDF}/sriov_numvfs = 4"));
    assert_eq!(f.read("sriov_numvfs"), "4");
}

#[test]
fn a_failed_vfio_pci_probe_puts_the_original_driver_back() {
    let f = Fake::new("probe");
    f.fail.borrow_mut().insert("bus/pci/drivers/vfio-pci/bind".into(), libc::EINVAL);
    let e = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{BDF}: cannot write `{BDF}` to "))
            && e.ends_with("vfio-pci/bind: EINVAL (Invalid argument)"),
        "{e}"
    );
    assert_eq!(f.driver().as_deref(), Some("e1000e"));
    assert_eq!(f.read("driver_override"), "(null)");
    assert!(!f.state_file.exists(), "the state of an undone bind is removed");
}

#[test]
fn a_bind_whose_undo_fails_keeps_its_state_for_restore() {
    let f = Fake::new("undo");
    f.fail.borrow_mut().insert("bus/pci/drivers/vfio-pci/bind".into(), libc::EINVAL);
    f.fail.borrow_mut().insert("bus/pci/drivers/e1000e/bind".into(), libc::ENOMEM);
    let e = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap_err().to_string();
    assert!(
        e.contains("undoing it failed too") && e.contains("`vfio-mig-conform restore` tries again"),
        "{e}"
    );
    assert!(f.state_file.exists());
    assert_eq!(f.driver(), None);
    f.fail.borrow_mut().clear();
    let st = StateDir::read(&f.state_file).unwrap();
    bind::restore(&f.benv(), &st).unwrap();
    assert_eq!(f.driver().as_deref(), Some("e1000e"));
}

#[test]
fn restore_refuses_while_a_process_holds_the_group() {
    let f = Fake::new("held");
    let Bound::Now(st) = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap() else { panic!() };
    let fd = f.root.join("proc/4242/fd");
    fs::create_dir_all(&fd).unwrap();
    fs::write(f.root.join("proc/4242/comm"), "qemu-system-x86\n").unwrap();
    symlink(f.env.dev.join("vfio/7"), fd.join("9")).unwrap();
    f.log.borrow_mut().clear();
    let e = bind::restore(&f.benv(), &st).unwrap_err().to_string();
    assert!(e.contains("still open by pid 4242 (qemu-system-x86)"), "{e}");
    assert!(f.writes().is_empty());
    fs::remove_file(fd.join("9")).unwrap();
    bind::restore(&f.benv(), &st).unwrap();
    assert_eq!(f.driver().as_deref(), Some("e1000e"));
}

#[test]
fn a_device_without_an_iommu_group_needs_the_no_iommu_mode() {
    let f = Fake::new("noiommu");
    fs::remove_file(f.dev_dir().join("iommu_group")).unwrap();
    let e = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap_err().to_string();
    assert!(
        e.contains("has no IOMMU group") && e.contains("absent, this kernel has no CONFIG_VFIO_NOIOMMU"),
        "{e}"
    );
    let p = f.env.sys.join("module/vfio/parameters");
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("enable_unsafe_noiommu_mode"), "N\n").unwrap();
    let e = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap_err().to_string();
    assert!(e.contains("enable_unsafe_noiommu_mode: N; write Y to it"), "{e}");
    assert!(f.writes().is_empty());
}

#[test]
fn missing_devices_drivers_and_bad_state_files_are_named() {
    let f = Fake::new("errors");
    let e = bind::bind(&f.benv(), &f.states(), "0000:00:1f.7", false).unwrap_err().to_string();
    assert!(e.starts_with("0000:00:1f.7: no such PCI device ("), "{e}");
    fs::remove_dir(f.env.sys.join("bus/pci/drivers/vfio-pci")).unwrap();
    let e = bind::bind(&f.benv(), &f.states(), BDF, false).unwrap_err().to_string();
    assert!(e.ends_with("does not exist): modprobe vfio-pci"), "{e}");
    fs::create_dir_all(f.state_file.parent().unwrap()).unwrap();
    fs::write(&f.state_file, "{\"device\": 3}").unwrap();
    let e = StateDir::read(&f.state_file).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: not a bind state (", f.state_file.display())), "{e}");
    assert_eq!(f.states().list(), std::slice::from_ref(&f.state_file));
}
