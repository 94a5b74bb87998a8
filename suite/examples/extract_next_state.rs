//! Regenerates a checked-in next-state table from a kernel's drivers/vfio/vfio_main.c:
//!
//! ```text
//! cargo run -p vmc-suite --example extract_next_state -- path/to/vfio_main.c \
//!     --origin linux-source-6.12_6.12.118-1~deb12u1/drivers/vfio/vfio_main.c \
//!     > suite/data/next_state/6.12.json
//! ```
//!
//! `--origin` names the text in the document and in errors (default: the path as given).
//! `suite/tools/kernel-sources.sh` fetches the sources and prints the exact commands. Exit
//! status: 0 written, 1 the source was refused (the error names file:line:col), 2 usage.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut path, mut origin) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--origin" => origin = it.next().cloned(),
            "-h" | "--help" => {
                println!("usage: extract_next_state VFIO_MAIN_C [--origin LABEL]");
                return ExitCode::SUCCESS;
            }
            _ if path.is_none() && !a.starts_with('-') => path = Some(a.clone()),
            _ => {
                eprintln!(
                    "extract_next_state: unexpected argument `{a}`; usage: VFIO_MAIN_C [--origin LABEL]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("extract_next_state: usage: VFIO_MAIN_C [--origin LABEL]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("extract_next_state: {path}: {e}");
            return ExitCode::from(1);
        }
    };
    match vmc::kernel_table::extract(&text, origin.as_deref().unwrap_or(&path)) {
        Ok(table) => {
            print!("{}", table.to_json_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("extract_next_state: {e}");
            ExitCode::from(1)
        }
    }
}
