//! Re-runs the extractor on the real kernel sources and compares the result with the
//! checked-in tables (`suite/data/next_state/<series>.json`). The sources are not in the
//! repository: `eval "$(suite/tools/kernel-sources.sh)"` fetches them and sets
//! VMC_VFIO_MAIN_6_12 / VMC_VFIO_MAIN_7_2; then
//! `cargo test -p vmc-suite --test kernel_table_sources -- --ignored`.
//!
//! The data (tables, control flow, resolution) must be equal. The citation (origin, line
//! numbers) must be equal too when the file is of the package version the table names (the
//! script's cache path holds the version); from another version it is only reported, so a
//! newer Debian package that moved lines but not logic does not fail.

use serde_json::Value;
use vmc::kernel_table::{checked_in, extract};

const LOCATION: [&str; 4] = ["source", "origin", "generator", "lines"];

fn split(mut doc: Value) -> (Value, Value) {
    let obj = doc.as_object_mut().expect("a JSON object");
    let location: serde_json::Map<String, Value> =
        LOCATION.iter().filter_map(|k| obj.remove(*k).map(|v| (k.to_string(), v))).collect();
    (doc, Value::Object(location))
}

fn check(series: &str, var: &str) {
    let path = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: it must name the drivers/vfio/vfio_main.c of Debian's linux-source-{series}; \
             run `eval \"$(suite/tools/kernel-sources.sh)\"` first"
        )
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{var}={path}: {e}"));
    let stored: Value = serde_json::from_str(checked_in(series).expect("checked in")).expect("valid JSON");
    let origin = stored["origin"].as_str().expect("origin").to_string();
    let table = extract(&text, &path).unwrap_or_else(|e| panic!("{series}: {e}"));
    let (mut got_data, _) = split(table.to_json());
    let (want_data, want_loc) = split(stored);
    assert_eq!(
        got_data.take(),
        want_data,
        "{series}: {path} no longer gives suite/data/next_state/{series}.json; regenerate it \
         (suite/tools/kernel-sources.sh --commands prints the command)"
    );
    // Same package version: the citation must match as well.
    let version =
        origin.split_once('_').and_then(|(_, rest)| rest.split_once('/')).map(|(v, _)| v.to_string());
    let (_, got_loc) = split(extract(&text, &origin).expect("extracted above").to_json());
    match version {
        Some(v) if path.contains(&format!("/{v}/")) => {
            assert_eq!(got_loc, want_loc, "{series}: {path} is of {v} but its line numbers differ");
        }
        _ if got_loc != want_loc => {
            eprintln!(
                "note: {series}: {path} is not of the version the table cites ({origin}); lines not compared"
            );
        }
        _ => {}
    }
}

#[test]
#[ignore = "needs kernel sources; .ci/run runs it with --ignored"]
fn the_6_12_table_is_what_the_extractor_reads_from_linux_source_6_12() {
    check("6.12", "VMC_VFIO_MAIN_6_12");
}

#[test]
#[ignore = "needs kernel sources; .ci/run runs it with --ignored"]
fn the_7_2_table_is_what_the_extractor_reads_from_linux_source_7_2() {
    check("7.2", "VMC_VFIO_MAIN_7_2");
}
