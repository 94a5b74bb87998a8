//! See [`vmc_bench::simrun`] and docs/performance.md.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = vmc_bench::simrun::main(&args) {
        eprintln!("bench-simrun: {e}");
        std::process::exit(2);
    }
}
