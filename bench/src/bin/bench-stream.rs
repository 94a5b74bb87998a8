//! See [`vmc_bench::stream`] and docs/performance.md.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = vmc_bench::stream::main(&args) {
        eprintln!("bench-stream: {e}");
        std::process::exit(2);
    }
}
