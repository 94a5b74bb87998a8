//! `cargo bench --bench stream`: runs [`vmc_bench::stream`] (arguments after `--` are passed on).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = vmc_bench::stream::main(&args) {
        eprintln!("bench stream: {e}");
        std::process::exit(2);
    }
}
