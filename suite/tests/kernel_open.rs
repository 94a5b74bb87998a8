//! Opening things that are not VFIO devices through the public entry point: each error names
//! the path and says what it is. (Real devices: `kernel_vm.rs`, in the vm/ guest.)

fn open_err(spec: &str, name: Option<&str>) -> String {
    match vmc::device::kernel::open(spec, name) {
        Ok(_) => panic!("{spec} opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn dev_null_is_named_as_a_character_device() {
    let e = open_err("/dev/null", None);
    assert!(e.starts_with("/dev/null: the character device 1:3"), "{e}");
    assert!(e.ends_with("not a VFIO group (/dev/vfio/N) or VFIO device (/dev/vfio/devices/vfioN)"), "{e}");
}

#[test]
fn missing_paths_and_unknown_names() {
    assert_eq!(
        open_err("/dev/vfio/4242", None),
        "/dev/vfio/4242: no such file or directory (is the device bound to a VFIO driver, or the mdev created?)"
    );
    let e = open_err("ffff:ff:1f.7", None);
    assert_eq!(e, "ffff:ff:1f.7: no such PCI device (/sys/bus/pci/devices/ffff:ff:1f.7 does not exist)");
    let e = open_err("00000000-0000-0000-0000-00000000beef", None);
    assert!(e.contains(": no such mdev (/sys/bus/mdev/devices/00000000-0000-0000-0000-00000000beef"), "{e}");
    let e = open_err("ffff:ff:1f.7", Some("0000:00:00.0"));
    assert!(e.starts_with("--device-name 0000:00:00.0 contradicts ffff:ff:1f.7"), "{e}");
}

#[test]
fn regular_files_and_directories() {
    let dir = std::env::temp_dir().join(format!("vmc-kernel-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    let e = open_err(&file.display().to_string(), None);
    assert!(e.ends_with(
        ": a regular file, not a VFIO group (/dev/vfio/N) or VFIO device (/dev/vfio/devices/vfioN)"
    ));
    let e = open_err(&dir.display().to_string(), None);
    assert!(e.contains(": a directory, not a VFIO group"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
