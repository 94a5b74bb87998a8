//! The --bind contract that can be seen without changing a driver: a PCI device not on
//! vfio-pci is refused with the commands that bind it, VMC_BDF, the option checks, and
//! `restore` on state files. Nothing here writes to sysfs (a device is only ever looked at);
//! binding itself is tested on a fake sysfs (suite/tests/kernel_bind.rs) and on QEMU's e1000e
//! in the vm/ guest (.ci/vm-bind.sh).

mod common;

use common::{bin, run, text, tmp};

/// A PCI function of this machine that is not on vfio-pci, and its driver.
fn host_pci_device() -> (String, Option<String>) {
    let dir = std::path::Path::new("/sys/bus/pci/devices");
    let mut devs: Vec<_> = std::fs::read_dir(dir)
        .expect("this test needs a PCI bus (/sys/bus/pci/devices)")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    devs.sort();
    devs.into_iter()
        .map(|d| {
            let drv = std::fs::read_link(dir.join(&d).join("driver"))
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
            (d, drv)
        })
        .find(|(_, drv)| drv.as_deref() != Some("vfio-pci"))
        .expect("this test needs a PCI device that is not on vfio-pci")
}

#[test]
fn a_pci_device_not_on_vfio_pci_is_refused_with_how_to_bind_it() {
    let (bdf, driver) = host_pci_device();
    let out = run(&[&bdf]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let bound = match &driver {
        Some(d) => format!("bound to {d}, not to vfio-pci"),
        None => "bound to no driver, not to vfio-pci".to_string(),
    };
    assert!(err.contains(&format!("{bdf}: {bound}: add --bind")), "{err}");
    assert!(err.contains(&format!("echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override")), "{err}");
    // The same device through VMC_BDF, as the kernel selftests take VFIO_SELFTESTS_BDF.
    let out = bin().env("VMC_BDF", &bdf).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("add --bind"));
}

#[test]
fn vmc_bdf_must_be_a_pci_address() {
    let out = bin().env("VMC_BDF", "/dev/vfio/3").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("VMC_BDF=`/dev/vfio/3` is not a PCI address"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_bind_options_are_usage_errors() {
    let out = run(&["sim:v2", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--bind"), "{}", text(&out.stderr));
    let out = run(&["sim:v2", "--iommu-backend", "spapr"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`spapr` is not an IOMMU back end"), "{}", text(&out.stderr));
    let out = run(&["sim:v2", "--iommu-backend", "type1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("sim:v2: --iommu-backend vfio_type1_iommu is for kernel devices"));
    let out = run(&["sim:v2", "--iommu-backend", "all"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--iommu-backend all is for kernel devices"));
}

#[test]
fn restore_without_states_has_nothing_to_do_and_names_bad_ones() {
    let dir = tmp("bind-states");
    let _ = std::fs::remove_dir_all(&dir);
    let out = bin().env("VMC_STATE_DIR", &dir).arg("restore").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nothing to restore"));
    let out = bin().env("VMC_STATE_DIR", &dir).args(["restore", "0000:00:1f.7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("0000:00:1f.7: nothing to restore"), "{}", text(&out.stderr));
    let out = bin().env("VMC_STATE_DIR", &dir).args(["unbind", "eth0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A state that is not one, and the state of a device that does not exist: both named,
    // both kept (nothing is written anywhere).
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0000:00:1f.6.json"), "not json").unwrap();
    std::fs::write(
        dir.join("ffff:ff:1f.7.json"),
        r#"{"device":"ffff:ff:1f.7","driver":"e1000e","driver_override":null,"sriov_numvfs":null,"pid":1,"started":0}"#,
    )
    .unwrap();
    let out = bin().env("VMC_STATE_DIR", &dir).args(["restore", "--wait", "0"]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("0000:00:1f.6.json: not a bind state ("), "{err}");
    assert!(
        err.contains("ffff:ff:1f.7: no such PCI device (/sys/bus/pci/devices/ffff:ff:1f.7 does not exist)"),
        "{err}"
    );
    assert!(dir.join("0000:00:1f.6.json").exists() && dir.join("ffff:ff:1f.7.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn restore_with_its_standard_streams_closed_exits_with_its_code_instead_of_a_panic() {
    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    drop(rd);
    let states = tmp("closed-streams");
    let out = bin()
        .args(["restore", "not-a-bdf"])
        .env("VMC_STATE_DIR", &states)
        .stdout(std::process::Stdio::from(wr.try_clone().expect("dup")))
        .stderr(std::process::Stdio::from(wr))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "a closed stderr is no panic (exit 101)");
    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    drop(rd);
    let out = bin()
        .args(["restore"])
        .env("VMC_STATE_DIR", &states)
        .stdout(std::process::Stdio::from(wr))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "a closed stdout is no panic: {}", text(&out.stderr));
}
