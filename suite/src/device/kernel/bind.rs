//! Binding a PCI function to vfio-pci for a run and putting it back afterwards, the way the
//! kernel's VFIO selftests do (`tools/testing/selftests/vfio/scripts/setup.sh` and
//! `cleanup.sh`, Linux 6.18+):
//!
//! - bind: `sriov_numvfs` to 0 (remembered), unbind from the original driver (remembered),
//!   `driver_override` = `vfio-pci`, bind to vfio-pci;
//! - restore: unbind from vfio-pci, clear `driver_override` (its old value), bind the
//!   original driver, `sriov_numvfs` back.
//!
//! Unlike the selftests' scripts, what is remembered goes to a state file *before* the first
//! change ([`StateDir`]), so a run that crashes or is killed leaves enough behind for the next
//! invocation (or `vfio-mig-conform restore`) to put the device back, and a device the host is
//! using ([`in_use`]: a network interface that is up, a mounted or swapped-on or held block
//! device, VFs bound to drivers, the boot VGA device) is refused unless forced.
//!
//! Every sysfs write goes through [`SysfsWriter`], so the state machine is tested against a
//! fake sysfs whose writer behaves like the driver core (`suite/tests/kernel_bind.rs`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::open::{Env, Spec, parse_spec};
use crate::errno::Errno;

/// The driver the suite binds.
pub const VFIO_PCI: &str = "vfio-pci";

/// Writes one sysfs attribute (the host: `open(O_WRONLY)` + one `write()`).
pub trait SysfsWriter: std::fmt::Debug {
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()>;
}

/// Writes the real sysfs.
#[derive(Debug, Default)]
pub struct HostWriter;

impl SysfsWriter for HostWriter {
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        // sysfs takes the whole value in one write(); no O_CREAT, no O_TRUNC.
        let mut f = fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }
}

/// Where sysfs, /dev and /proc are, and how sysfs is written.
#[derive(Debug)]
pub struct BindEnv<'a> {
    pub env: Env,
    pub proc_root: PathBuf,
    pub writer: &'a dyn SysfsWriter,
    /// How long to wait for the group node after binding (udev/devtmpfs create it).
    pub settle: Duration,
}

impl BindEnv<'_> {
    /// The running system.
    pub fn host() -> BindEnv<'static> {
        static HOST: HostWriter = HostWriter;
        BindEnv {
            env: Env::host(),
            proc_root: PathBuf::from("/proc"),
            writer: &HOST,
            settle: Duration::from_secs(10),
        }
    }

    fn pci_dir(&self, bdf: &str) -> PathBuf {
        self.env.sys.join("bus/pci/devices").join(bdf)
    }

    fn driver_dir(&self, driver: &str) -> PathBuf {
        self.env.sys.join("bus/pci/drivers").join(driver)
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), BindError> {
        self.writer.write(path, value).map_err(|e| BindError::Write {
            device: String::new(),
            path: path.display().to_string(),
            value: value.trim_end().to_string(),
            errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        })
    }
}

/// What went wrong; every message names the device and, for a write, the sysfs file.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "{spec}: --bind takes PCI addresses (dddd:bb:dd.f): an mdev or a device node is bound by its own driver"
    )]
    NotPci { spec: String },

    #[error("{device}: no such PCI device ({sysfs} does not exist)")]
    NoSuchDevice { device: String, sysfs: String },

    #[error(
        "{device}: the host is using it: {}; --force binds it all the same (the host loses the device until the run ends)",
        .uses.join("; ")
    )]
    InUse { device: String, uses: Vec<String> },

    #[error("{device}: vfio-pci is not loaded ({sysfs} does not exist): modprobe vfio-pci")]
    NoVfioPci { device: String, sysfs: String },

    #[error(
        "{device}: has no IOMMU group, so vfio-pci cannot take it: enable the IOMMU (intel_iommu=on, amd_iommu=on), or vfio's unsafe no-IOMMU mode ({param}: {state})"
    )]
    NoIommu { device: String, param: String, state: String },

    #[error("{device}: cannot write `{value}` to {path}: {errno} ({})", .errno.desc())]
    Write { device: String, path: String, value: String, errno: Errno },

    #[error("{device}: {what}")]
    NotBound { device: String, what: String },

    #[error(
        "{device}: still open by {} ({}): the driver cannot be changed while a process holds it; end it first",
        .pids.join(", "), .nodes.join(", ")
    )]
    StillOpen { device: String, pids: Vec<String>, nodes: Vec<String> },

    #[error("{path}: {what}")]
    State { path: String, what: String },
}

impl BindError {
    fn on(self, bdf: &str) -> BindError {
        match self {
            BindError::Write { path, value, errno, .. } => {
                BindError::Write { device: bdf.to_string(), path, value, errno }
            }
            e => e,
        }
    }
}

/// What the state file remembers: everything restore needs, written before the first change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindState {
    /// The PCI address.
    pub device: String,
    /// The driver it was bound to (None: none).
    pub driver: Option<String>,
    /// `driver_override` before (None: unset, `(null)`).
    pub driver_override: Option<String>,
    /// `sriov_numvfs` before (None: not an SR-IOV PF, or 0).
    pub sriov_numvfs: Option<u32>,
    /// The process that bound it (its lock tells whether it still runs).
    pub pid: u32,
    /// When (seconds since the epoch).
    pub started: u64,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn link_base(p: &Path) -> Option<String> {
    fs::read_link(p).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// The driver a PCI function is bound to.
pub fn current_driver(benv: &BindEnv<'_>, bdf: &str) -> Option<String> {
    link_base(&benv.pci_dir(bdf).join("driver"))
}

/// The PCI address a spec names, normalised, or None when it is not a PCI address.
pub fn pci_address(spec: &str) -> Option<String> {
    match parse_spec(spec) {
        Spec::Pci(a) => Some(a),
        _ => None,
    }
}

fn list(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `IFF_UP` in `/sys/class/net/IF/flags`.
const IFF_UP: u64 = 0x1;

/// The kernel objects below a device's sysfs directory, by subsystem (real directories
/// only, so `driver`, `subsystem` and other links are not followed).
fn walk(dir: &Path, depth: u32, budget: &mut u32, out: &mut Vec<(String, PathBuf)>) {
    if depth > 8 || *budget == 0 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        *budget = budget.saturating_sub(1);
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let p = e.path();
        if let Some(sub) = link_base(&p.join("subsystem")) {
            out.push((sub, p.clone()));
        }
        walk(&p, depth + 1, budget, out);
    }
}

/// Why the host is using the device, or nothing. What counts (the selftests' setup.sh checks
/// nothing; the kernel's VFIO docs ask that the host driver give the device up):
/// - one of its network interfaces is up (`IFF_UP` in `net/IF/flags`);
/// - one of its block devices (or a partition) is mounted (`/proc/self/mountinfo`), used as
///   swap (`/proc/swaps`) or held by another block device (`holders/`: LVM, RAID, dm-crypt);
/// - one of its SR-IOV VFs is bound to a driver (setting `sriov_numvfs` to 0 removes it);
/// - it is the boot VGA device (`boot_vga`: the console may be on it).
pub fn in_use(benv: &BindEnv<'_>, bdf: &str) -> Vec<String> {
    let dir = benv.pci_dir(bdf);
    let mut uses = Vec::new();
    let mut objs = Vec::new();
    let mut budget = 100_000;
    walk(&dir, 0, &mut budget, &mut objs);
    let mountinfo = fs::read_to_string(benv.proc_root.join("self/mountinfo")).unwrap_or_default();
    let swaps = fs::read_to_string(benv.proc_root.join("swaps")).unwrap_or_default();
    for (sub, p) in &objs {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match sub.as_str() {
            "net" => {
                let flags = read_trim(&p.join("flags"))
                    .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
                    .unwrap_or(0);
                if flags & IFF_UP != 0 {
                    let state = read_trim(&p.join("operstate")).unwrap_or_else(|| "unknown".into());
                    uses.push(format!(
                        "network interface {name} is up (operstate {state}; ip link set {name} down)"
                    ));
                }
            }
            "block" => {
                let Some(devno) = read_trim(&p.join("dev")) else { continue };
                let mounts: Vec<&str> = mountinfo
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split(' ').collect();
                        (f.get(2) == Some(&devno.as_str())).then(|| f.get(4).copied().unwrap_or("?"))
                    })
                    .collect();
                if !mounts.is_empty() {
                    uses.push(format!("block device {name} ({devno}) is mounted on {}", mounts.join(", ")));
                }
                if swaps.lines().skip(1).any(|l| l.split_whitespace().next() == Some(&format!("/dev/{name}")))
                {
                    uses.push(format!("block device {name} is used as swap"));
                }
                let holders = list(&p.join("holders"));
                if !holders.is_empty() {
                    uses.push(format!("block device {name} is held by {}", holders.join(", ")));
                }
            }
            _ => {}
        }
    }
    for vf in list(&dir).into_iter().filter(|n| n.starts_with("virtfn")) {
        let vfdir = dir.join(&vf);
        if let Some(drv) = link_base(&vfdir.join("driver")) {
            let addr = fs::canonicalize(&vfdir)
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or(vf.clone());
            uses.push(format!("its SR-IOV VF {addr} is bound to {drv}"));
        }
    }
    if read_trim(&dir.join("boot_vga")).as_deref() == Some("1") {
        uses.push("it is the boot VGA device (the console may be on it)".to_string());
    }
    uses
}

fn noiommu_param(benv: &BindEnv<'_>) -> (PathBuf, Option<String>) {
    let p = benv.env.sys.join("module/vfio/parameters/enable_unsafe_noiommu_mode");
    let v = read_trim(&p);
    (p, v)
}

/// The group and cdev nodes a process could hold the device through.
fn device_nodes(benv: &BindEnv<'_>, bdf: &str) -> Vec<PathBuf> {
    let dir = benv.pci_dir(bdf);
    let mut nodes = Vec::new();
    if let Some(g) = link_base(&dir.join("iommu_group")) {
        nodes.push(benv.env.dev.join("vfio").join(&g));
        nodes.push(benv.env.dev.join("vfio").join(format!("noiommu-{g}")));
    }
    for c in list(&dir.join("vfio-dev")) {
        nodes.push(benv.env.dev.join("vfio/devices").join(c));
    }
    nodes
}

/// The processes that hold one of `nodes` open (through `/proc/PID/fd`).
fn holders(benv: &BindEnv<'_>, nodes: &[PathBuf]) -> Vec<String> {
    let mut pids = Vec::new();
    for pid in list(&benv.proc_root).into_iter().filter(|p| p.bytes().all(|c| c.is_ascii_digit())) {
        let fds = benv.proc_root.join(&pid).join("fd");
        let holds = fs::read_dir(&fds)
            .map(|rd| rd.flatten().any(|e| fs::read_link(e.path()).is_ok_and(|t| nodes.contains(&t))))
            .unwrap_or(false);
        if holds {
            let comm = read_trim(&benv.proc_root.join(&pid).join("comm")).unwrap_or_default();
            pids.push(if comm.is_empty() { format!("pid {pid}") } else { format!("pid {pid} ({comm})") });
        }
    }
    pids
}

fn group_node_exists(benv: &BindEnv<'_>, bdf: &str) -> Option<PathBuf> {
    let g = link_base(&benv.pci_dir(bdf).join("iommu_group"))?;
    [g.clone(), format!("noiommu-{g}")].iter().map(|n| benv.env.dev.join("vfio").join(n)).find(|p| p.exists())
}

/// Where bind states live: one `<bdf>.json` per bound device.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    /// The state file of a device.
    pub fn path(&self, bdf: &str) -> PathBuf {
        self.dir.join(format!("{bdf}.json"))
    }

    /// Writes a state durably (temporary file, fsync, rename, fsync of the directory).
    pub fn write(&self, state: &BindState) -> Result<(), BindError> {
        let path = self.path(&state.device);
        let err = |what: String| BindError::State { path: path.display().to_string(), what };
        fs::create_dir_all(&self.dir).map_err(|e| err(format!("cannot create the directory: {e}")))?;
        let tmp = self.dir.join(format!(".{}.json.tmp", state.device));
        let text = serde_json::to_string_pretty(state).map_err(|e| err(e.to_string()))? + "\n";
        let mut f =
            fs::File::create(&tmp).map_err(|e| err(format!("cannot write {}: {e}", tmp.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| err(format!("cannot write: {e}")))?;
        fs::rename(&tmp, &path).map_err(|e| err(format!("cannot rename {}: {e}", tmp.display())))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads a state file; a file that is not a state names what is wrong.
    pub fn read(path: &Path) -> Result<BindState, BindError> {
        let err = |what: String| BindError::State { path: path.display().to_string(), what };
        let text = fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let st: BindState = serde_json::from_str(&text).map_err(|e| {
            err(format!("not a bind state ({e}); it names the device's original driver: restore it by hand and delete the file"))
        })?;
        if pci_address(&st.device).as_deref() != Some(st.device.as_str()) {
            return Err(err(format!("`{}` is not a PCI address", st.device)));
        }
        Ok(st)
    }

    /// The state files present, sorted.
    pub fn list(&self) -> Vec<PathBuf> {
        list(&self.dir)
            .into_iter()
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .map(|n| self.dir.join(n))
            .collect()
    }

    /// Deletes a device's state file (it is restored).
    pub fn remove(&self, bdf: &str) -> Result<(), BindError> {
        let path = self.path(bdf);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BindError::State {
                path: path.display().to_string(),
                what: format!("cannot delete: {e}"),
            }),
        }
    }
}

/// What [`bind`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Bound {
    /// It was on vfio-pci already: nothing changed, nothing to restore.
    Already,
    /// Bound by us: the state (also in the state file) says how to restore it.
    Now(BindState),
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Binds `bdf` to vfio-pci through `driver_override` (setup.sh's steps), after checking that
/// the host is not using it (unless `force`) and writing the state file. A failure after the
/// first change undoes what was done ([`restore`]) before returning the error.
pub fn bind(benv: &BindEnv<'_>, states: &StateDir, bdf: &str, force: bool) -> Result<Bound, BindError> {
    let dir = benv.pci_dir(bdf);
    if !dir.exists() {
        return Err(BindError::NoSuchDevice { device: bdf.to_string(), sysfs: dir.display().to_string() });
    }
    let driver = current_driver(benv, bdf);
    if driver.as_deref() == Some(VFIO_PCI) {
        return Ok(Bound::Already);
    }
    let vfio_pci = benv.driver_dir(VFIO_PCI);
    if !vfio_pci.exists() {
        return Err(BindError::NoVfioPci { device: bdf.to_string(), sysfs: vfio_pci.display().to_string() });
    }
    if !dir.join("iommu_group").exists() {
        let (param, state) = noiommu_param(benv);
        if state.as_deref() != Some("Y") {
            return Err(BindError::NoIommu {
                device: bdf.to_string(),
                param: param.display().to_string(),
                state: match state {
                    Some(s) => format!("{s}; write Y to it"),
                    None => "absent, this kernel has no CONFIG_VFIO_NOIOMMU".to_string(),
                },
            });
        }
    }
    if !force {
        let uses = in_use(benv, bdf);
        if !uses.is_empty() {
            return Err(BindError::InUse { device: bdf.to_string(), uses });
        }
    }
    let state = BindState {
        device: bdf.to_string(),
        driver,
        driver_override: read_trim(&dir.join("driver_override")).filter(|s| s != "(null)" && !s.is_empty()),
        sriov_numvfs: read_trim(&dir.join("sriov_numvfs")).and_then(|n| n.parse().ok()).filter(|n| *n > 0),
        pid: std::process::id(),
        started: now_secs(),
    };
    states.write(&state)?;
    match bind_steps(benv, &state) {
        Ok(()) => Ok(Bound::Now(state)),
        Err(e) => {
            let e = e.on(bdf);
            match restore(benv, &state) {
                Ok(()) => {
                    let _ = states.remove(bdf);
                    Err(e)
                }
                Err(r) => Err(BindError::NotBound {
                    device: bdf.to_string(),
                    what: format!(
                        "{e}; undoing it failed too: {r} (the state is kept in {}: `vfio-mig-conform restore` tries again)",
                        states.path(bdf).display()
                    ),
                }),
            }
        }
    }
}

fn bind_steps(benv: &BindEnv<'_>, st: &BindState) -> Result<(), BindError> {
    let bdf = st.device.as_str();
    let dir = benv.pci_dir(bdf);
    if st.sriov_numvfs.is_some() {
        benv.write(&dir.join("sriov_numvfs"), "0")?;
    }
    if let Some(d) = &st.driver {
        benv.write(&benv.driver_dir(d).join("unbind"), bdf)?;
    }
    benv.write(&dir.join("driver_override"), VFIO_PCI)?;
    benv.write(&benv.driver_dir(VFIO_PCI).join("bind"), bdf)?;
    let now = current_driver(benv, bdf);
    if now.as_deref() != Some(VFIO_PCI) {
        return Err(BindError::NotBound {
            device: bdf.to_string(),
            what: format!(
                "the write to vfio-pci/bind succeeded but the device is bound to {}",
                now.as_deref().unwrap_or("no driver")
            ),
        });
    }
    let deadline = Instant::now() + benv.settle;
    loop {
        if group_node_exists(benv, bdf).is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BindError::NotBound {
                device: bdf.to_string(),
                what: format!(
                    "bound to vfio-pci, but no group node /dev/vfio/N appeared within {:?}",
                    benv.settle
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Puts a device back as `st` remembers it (cleanup.sh's steps): unbind from vfio-pci,
/// `driver_override` back, bind the original driver (or let the bus probe it), and
/// `sriov_numvfs` back. Refuses while a process holds the device open (the unbind would block
/// until it lets go). Safe to repeat: each step is skipped when already done.
pub fn restore(benv: &BindEnv<'_>, st: &BindState) -> Result<(), BindError> {
    let bdf = st.device.as_str();
    let dir = benv.pci_dir(bdf);
    if !dir.exists() {
        return Err(BindError::NoSuchDevice { device: bdf.to_string(), sysfs: dir.display().to_string() });
    }
    let res = restore_steps(benv, st, &dir);
    res.map_err(|e| e.on(bdf))
}

fn restore_steps(benv: &BindEnv<'_>, st: &BindState, dir: &Path) -> Result<(), BindError> {
    let bdf = st.device.as_str();
    let cur = current_driver(benv, bdf);
    if cur.as_deref() == Some(VFIO_PCI) && st.driver.as_deref() != Some(VFIO_PCI) {
        let nodes: Vec<PathBuf> = device_nodes(benv, bdf).into_iter().filter(|n| n.exists()).collect();
        let pids = holders(benv, &nodes);
        if !pids.is_empty() {
            return Err(BindError::StillOpen {
                device: bdf.to_string(),
                pids,
                nodes: nodes.iter().map(|n| n.display().to_string()).collect(),
            });
        }
        benv.write(&benv.driver_dir(VFIO_PCI).join("unbind"), bdf)?;
    }
    let want_override = st.driver_override.clone().unwrap_or_default();
    let have_override = read_trim(&dir.join("driver_override")).filter(|s| s != "(null)").unwrap_or_default();
    if have_override != want_override {
        // A lone newline clears driver_override (drivers/base/driver.c, driver_set_override()).
        benv.write(&dir.join("driver_override"), &format!("{want_override}\n"))?;
    }
    if let Some(d) = &st.driver {
        let cur = current_driver(benv, bdf);
        if cur.as_deref() != Some(d.as_str()) {
            if cur.is_some() {
                return Err(BindError::NotBound {
                    device: bdf.to_string(),
                    what: format!(
                        "bound to {} now, not to {d} as before the run: left alone",
                        cur.as_deref().unwrap_or("")
                    ),
                });
            }
            let drv = benv.driver_dir(d);
            if drv.exists() {
                benv.write(&drv.join("bind"), bdf)?;
            } else {
                // The driver module is gone: let the bus find one (it loads nothing itself).
                benv.write(&benv.env.sys.join("bus/pci/drivers_probe"), bdf)?;
            }
            let now = current_driver(benv, bdf);
            if now.as_deref() != Some(d.as_str()) {
                return Err(BindError::NotBound {
                    device: bdf.to_string(),
                    what: format!(
                        "could not bind it back to {d} (it is bound to {}); `modprobe` the driver, then `vfio-mig-conform restore`",
                        now.as_deref().unwrap_or("no driver")
                    ),
                });
            }
        }
    }
    if let Some(n) = st.sriov_numvfs {
        let have: Option<u32> = read_trim(&dir.join("sriov_numvfs")).and_then(|s| s.parse().ok());
        if have != Some(n) {
            benv.write(&dir.join("sriov_numvfs"), &n.to_string())?;
        }
    }
    Ok(())
}
