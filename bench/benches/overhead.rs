//! `cargo bench --bench overhead`: boots the mtty VM (`vm/run.sh`, TCG) and runs
//! `bench-overhead` in it with the `vfio-mig-conform` binary beside it (arguments after `--`
//! are passed on).

use std::path::Path;
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let bench = Path::new(env!("CARGO_BIN_EXE_bench-overhead"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let built = Command::new(&cargo)
        .args(["build", "--release", "-q", "-p", "vfio-mig-conform"])
        .current_dir(root)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("bench overhead: cannot build vfio-mig-conform");
        std::process::exit(2);
    }
    let runner = bench.with_file_name("vfio-mig-conform");
    let status = Command::new(root.join("vm/run.sh"))
        .arg("--bin")
        .arg(bench)
        .arg("--bin")
        .arg(&runner)
        .args(["--mdev", "mtty-2", "--timeout", "3000", "--", "bench-overhead"])
        .args(&args)
        .current_dir(root)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("bench overhead: vm/run.sh exited with {s} (see vm/README.md)");
            std::process::exit(s.code().unwrap_or(2));
        }
        Err(e) => {
            eprintln!("bench overhead: vm/run.sh: {e}");
            std::process::exit(2);
        }
    }
}
