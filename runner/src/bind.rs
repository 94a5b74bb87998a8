//! A run around binding: PCI devices that are not on vfio-pci are refused (exit 3, saying how
//! to bind them) or, with `--bind`, bound for the run and put back when it ends, on Ctrl-C
//! too; a run that was killed leaves a state file that the next run, or `restore`, uses to
//! put the device back. `--iommu-backend all` runs the suite once per available back end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmc::device::kernel::IommuBackend;
use vmc::device::kernel::bind::{self, BindEnv, BindState, Bound, StateDir};

use crate::cli::{RunArgs, exit};
use crate::run::Exit;

/// Where bind states live: `$VMC_STATE_DIR`, else `/run/vfio-mig-conform/bound`.
pub fn state_dir() -> StateDir {
    match std::env::var_os("VMC_STATE_DIR") {
        Some(d) if !d.is_empty() => StateDir::new(PathBuf::from(d)),
        _ => StateDir::new("/run/vfio-mig-conform/bound"),
    }
}

/// The lock a binding run holds on a device for as long as it may be bound by it.
#[derive(Debug)]
struct BindLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

fn lock_path(bdf: &str) -> PathBuf {
    crate::open::lock_dir().join(format!("bind-{}.lock", bdf.replace(':', "_")))
}

/// Takes the bind lock of `bdf`, waiting up to `wait`. Err(holder pid) when another process
/// holds it (a run, or a check process of a run that was killed and is still finishing).
fn take_lock(bdf: &str, wait: Duration) -> Result<Option<BindLock>, String> {
    use std::io::{Read, Seek, Write};
    let path = lock_path(bdf);
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")));
    let deadline = Instant::now() + wait;
    loop {
        let mut file =
            match std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)
            {
                Ok(f) => f,
                Err(_) => return Ok(None),
            };
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut f) => {
                let _ = f.set_len(0);
                let _ = f.rewind();
                let _ = writeln!(f, "{}", std::process::id());
                return Ok(Some(BindLock { _file: f }));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(holder.trim().to_string()),
            Err(_) => return Ok(None),
        }
    }
}

fn bind_exit(e: &bind::BindError) -> Exit {
    Exit::new(exit::DEVICE, e.to_string())
}

fn describe(st: &BindState) -> String {
    let mut s = match &st.driver {
        Some(d) => format!("{} back on {d}", st.device),
        None => format!("{} unbound (as before)", st.device),
    };
    if let Some(n) = st.sriov_numvfs {
        s.push_str(&format!(", sriov_numvfs {n}"));
    }
    s
}

/// Restores the device of one state file, under its lock. Ok(message) or Err(message).
fn restore_one(benv: &BindEnv<'_>, states: &StateDir, path: &Path, wait: Duration) -> Result<String, String> {
    let st = StateDir::read(path).map_err(|e| e.to_string())?;
    let _lock = take_lock(&st.device, wait).map_err(|pid| {
        format!(
            "{}: a vfio-mig-conform run (pid {pid}) still holds it (lock {}); it restores the device when it ends",
            st.device,
            lock_path(&st.device).display()
        )
    })?;
    bind::restore(benv, &st).map_err(|e| format!("{e} (state kept in {})", path.display()))?;
    states.remove(&st.device).map_err(|e| e.to_string())?;
    Ok(describe(&st))
}

/// `vfio-mig-conform restore [BDF...]`: 0 when every named (or recorded) device is back,
/// 3 otherwise.
pub fn restore_command(devices: &[String], wait: u64) -> u8 {
    let states = state_dir();
    let benv = BindEnv::host();
    let mut paths = Vec::new();
    for d in devices {
        let Some(bdf) = bind::pci_address(d) else {
            errln!("vfio-mig-conform restore: `{d}` is not a PCI address (dddd:bb:dd.f)");
            return exit::USAGE;
        };
        let p = states.path(&bdf);
        if !p.exists() {
            errln!("vfio-mig-conform restore: {bdf}: nothing to restore (no {})", p.display());
            return exit::DEVICE;
        }
        paths.push(p);
    }
    if devices.is_empty() {
        paths = states.list();
        if paths.is_empty() {
            outln!("vfio-mig-conform restore: nothing to restore (no state in {})", states.dir.display());
            return exit::OK;
        }
    }
    let mut code = exit::OK;
    for p in paths {
        match restore_one(&benv, &states, &p, Duration::from_secs(wait)) {
            Ok(m) => outln!("vfio-mig-conform restore: {m}"),
            Err(m) => {
                errln!("vfio-mig-conform restore: {m}");
                code = exit::DEVICE;
            }
        }
    }
    code
}

/// States left by runs that ended without restoring (their lock is free): restored now.
fn recover_stale(benv: &BindEnv<'_>, states: &StateDir) {
    for p in states.list() {
        match restore_one(benv, states, &p, Duration::ZERO) {
            Ok(m) => errln!("vfio-mig-conform: restored {m}: an earlier run bound it and did not finish"),
            // A device of a run still going on is that run's business.
            Err(m) if m.contains("still holds it") => {}
            Err(m) => {
                errln!("vfio-mig-conform: warning: cannot restore a device an earlier run bound: {m}");
            }
        }
    }
}

/// Devices bound by this run: restored by [`Binding::restore`], or on drop (a panic).
#[derive(Debug, Default)]
struct Binding {
    bound: Vec<(BindState, Option<BindLock>)>,
    states: Option<StateDir>,
}

impl Binding {
    fn restore(&mut self) -> Result<(), String> {
        let benv = BindEnv::host();
        let mut errors = Vec::new();
        for (st, lock) in self.bound.drain(..) {
            match bind::restore(&benv, &st) {
                Ok(()) => {
                    if let Some(s) = &self.states {
                        let _ = s.remove(&st.device);
                    }
                    errln!("vfio-mig-conform: {}", describe(&st));
                }
                Err(e) => errors
                    .push(format!("{e} (state kept: `vfio-mig-conform restore {}` tries again)", st.device)),
            }
            drop(lock);
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            errln!("vfio-mig-conform: {e}");
        }
    }
}

fn not_on_vfio(bdf: &str, driver: Option<&str>) -> Exit {
    let how = match driver {
        Some(d) => format!(
            "echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; echo {bdf} > /sys/bus/pci/drivers/{d}/unbind; echo {bdf} > /sys/bus/pci/drivers/vfio-pci/bind"
        ),
        None => format!(
            "echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; echo {bdf} > /sys/bus/pci/drivers/vfio-pci/bind"
        ),
    };
    Exit::new(
        exit::DEVICE,
        format!(
            "{bdf}: {}, not to vfio-pci: add --bind to bind it for this run (its driver is put back afterwards), or bind it yourself: {how}",
            match driver {
                Some(d) => format!("bound to {d}"),
                None => "bound to no driver".to_string(),
            }
        ),
    )
}

/// `file.jsonl` -> `file.BACKEND.jsonl`.
fn suffixed(p: &Path, backend: &str) -> PathBuf {
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match p.extension() {
        Some(e) => format!("{stem}.{backend}.{}", e.to_string_lossy()),
        None => format!("{stem}.{backend}"),
    };
    p.with_file_name(name)
}

/// How bad an exit code is, to combine the runs of several back ends.
fn severity(code: u8) -> u8 {
    match code {
        exit::WEDGED => 7,
        exit::INTERRUPTED => 6,
        exit::VIOLATION => 5,
        exit::DEVICE => 4,
        exit::USAGE => 3,
        exit::SKIP => 1,
        exit::OK => 0,
        _ => 8,
    }
}

/// Runs the suite: binds (or refuses) PCI devices first, then one run per IOMMU back end,
/// then puts bound devices back.
pub fn run(args: &RunArgs) -> Result<u8, Exit> {
    if !args.list {
        // First thing: a Ctrl-C while the inputs load or devices are bound still ends the run
        // through its restore (isolate::install_signal_handlers).
        crate::isolate::install_signal_handlers();
    }
    let mut args = args.clone();
    if args.device.is_none() {
        let bdf = args.vmc_bdf.clone().unwrap_or_default();
        if bind::pci_address(&bdf).is_none() {
            return Err(Exit::new(
                exit::USAGE,
                format!("VMC_BDF=`{bdf}` is not a PCI address (dddd:bb:dd.f)"),
            ));
        }
        args.device = Some(bdf);
    }
    let specs: Vec<String> = args.device.iter().chain(args.peers.iter()).cloned().collect();
    let real = specs.iter().any(|s| !s.starts_with("sim:"));
    let states = state_dir();
    let benv = BindEnv::host();
    if real && !args.list {
        crate::isolate::touching_devices();
        recover_stale(&benv, &states);
    }
    let mut binding = Binding { bound: Vec::new(), states: Some(states.clone()) };
    for spec in &specs {
        if crate::isolate::interrupted().is_some() {
            break;
        }
        let Some(bdf) = bind::pci_address(spec) else {
            if args.bind && !spec.starts_with("sim:") && !args.list {
                errln!("vfio-mig-conform: --bind: {spec} is not a PCI address: used as it is");
            }
            continue;
        };
        if !benv.env.sys.join("bus/pci/devices").join(&bdf).exists() {
            continue; // the open names the missing device
        }
        let driver = bind::current_driver(&benv, &bdf);
        if driver.as_deref() == Some(bind::VFIO_PCI) {
            continue;
        }
        if !args.bind || args.list {
            return Err(not_on_vfio(&bdf, driver.as_deref()));
        }
        let lock = take_lock(&bdf, Duration::ZERO).map_err(|pid| {
            Exit::new(
                exit::DEVICE,
                format!("{bdf}: another vfio-mig-conform (pid {pid}) is binding or testing it"),
            )
        })?;
        match bind::bind(&benv, &states, &bdf, args.force).map_err(|e| bind_exit(&e))? {
            Bound::Already => {}
            Bound::Now(st) => {
                errln!(
                    "vfio-mig-conform: bound {bdf} to vfio-pci (was {}; state in {})",
                    st.driver.as_deref().unwrap_or("no driver"),
                    states.path(&bdf).display()
                );
                binding.bound.push((st, lock));
            }
        }
    }
    // Without --bind nothing was bound: an early signal is the run's to report (its record
    // says that no check ran).
    let code = if args.bind && crate::isolate::interrupted().is_some() {
        errln!("vfio-mig-conform: interrupted while binding");
        Ok(exit::INTERRUPTED)
    } else {
        run_backends(&args)
    };
    let restored = binding.restore();
    match (code, restored) {
        (code, Ok(())) => code,
        (Ok(_), Err(e)) | (Err(_), Err(e)) => Err(Exit::new(exit::WEDGED, e)),
    }
}

fn run_backends(args: &RunArgs) -> Result<u8, Exit> {
    if args.iommu_backend.as_deref() != Some("all") {
        return crate::run::run(args);
    }
    let spec = args.device.clone().unwrap_or_default();
    if spec.starts_with("sim:") {
        return Err(Exit::new(exit::USAGE, format!("{spec}: --iommu-backend all is for kernel devices")));
    }
    let env = vmc::device::kernel::open::Env::host();
    let (ok, not) = vmc::device::kernel::backend::available(&env, &spec, args.device_name.as_deref())
        .map_err(|e| Exit::new(exit::DEVICE, e.to_string()))?;
    for u in &not {
        errln!("vfio-mig-conform: skipping {u}");
    }
    if ok.is_empty() {
        return Err(Exit::new(exit::DEVICE, format!("{spec}: no IOMMU back end is available")));
    }
    let backends: Vec<IommuBackend> = ok.iter().map(|(b, _)| *b).collect();
    errln!(
        "vfio-mig-conform: {} IOMMU back end{}: {}",
        backends.len(),
        if backends.len() == 1 { "" } else { "s" },
        backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
    );
    let mut worst = exit::OK;
    let mut summary = Vec::new();
    for b in backends {
        let mut a = args.clone();
        a.iommu_backend = Some(b.name().to_string());
        a.json = args.json.as_deref().map(|p| suffixed(p, b.name()));
        a.junit = args.junit.as_deref().map(|p| suffixed(p, b.name()));
        a.ktap = args.ktap.as_deref().map(|p| suffixed(p, b.name()));
        errln!("vfio-mig-conform: ==== IOMMU back end {b} ====");
        let code = match crate::run::run(&a) {
            Ok(c) => c,
            Err(e) => {
                errln!("vfio-mig-conform: {b}: {}", e.message);
                e.code
            }
        };
        summary.push(format!("{b}: exit {code}"));
        if severity(code) > severity(worst) {
            worst = code;
        }
        if code == exit::INTERRUPTED || code == exit::WEDGED {
            break;
        }
    }
    errln!("vfio-mig-conform: IOMMU back ends: {}", summary.join(", "));
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_of_each_back_end_get_its_name() {
        assert_eq!(suffixed(Path::new("/r/mtty.jsonl"), "iommufd"), PathBuf::from("/r/mtty.iommufd.jsonl"));
        assert_eq!(suffixed(Path::new("out"), "vfio_type1_iommu"), PathBuf::from("out.vfio_type1_iommu"));
    }

    #[test]
    fn the_worst_exit_code_of_the_back_ends_wins() {
        let worst = |codes: &[u8]| codes.iter().copied().max_by_key(|c| severity(*c)).unwrap();
        assert_eq!(worst(&[exit::OK, exit::SKIP]), exit::SKIP);
        assert_eq!(worst(&[exit::SKIP, exit::DEVICE, exit::OK]), exit::DEVICE);
        assert_eq!(worst(&[exit::VIOLATION, exit::DEVICE]), exit::VIOLATION);
        assert_eq!(worst(&[exit::VIOLATION, exit::INTERRUPTED]), exit::INTERRUPTED);
    }
}
