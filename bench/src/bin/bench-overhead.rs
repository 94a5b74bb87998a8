//! See [`vmc_bench::overhead`] and docs/performance.md.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = vmc_bench::overhead::main(&args) {
        eprintln!("bench-overhead: {e}");
        std::process::exit(2);
    }
}
