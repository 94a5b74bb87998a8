//! The simulated devices stand on their own: no file under `suite/src/device/sim/` names the
//! oracle (`crate::oracle`) or an argument check of `crate::uapi` (its functions; its
//! constants are the ABI and may be used), and the simulator's next-state helper, run on the
//! kernel's table data, agrees with the oracle's own table for every (flags, cur, new). With
//! both true, a reference-device run judged by the oracle (the "reference passes" tests, the
//! `fsm_v2` fuzz target) compares two independent descriptions of the uAPI.

use std::path::{Path, PathBuf};

use vmc::device::sim::v2::next_state::{self, HelperError};
use vmc::oracle::fsm::{self, Refusal, SetPrediction, predict_set};
use vmc::state::{MigFlags, MigState};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a Rust source with comments, string and char literals blanked (line
/// structure kept), so that only identifiers the compiler sees remain.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(b.len(), |n| i + n + 2);
            out.extend(text[i..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.extend(text[i..(j + 1).min(b.len())].chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
            i = j + 1;
        } else if b[i] == b'\''
            && rest.len() >= 3
            && (rest.as_bytes()[2] == b'\'' || rest.as_bytes()[1] == b'\\')
        {
            // A char literal ('x' or '\n'); lifetimes ('a) are left alone.
            let end = rest[1..].find('\'').map_or(b.len(), |n| i + n + 2);
            out.extend(std::iter::repeat_n(' ', end - i));
            i = end;
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The argument checks `uapi.rs` has held (they move to `oracle/`, which the scan forbids by
/// name anyway); whatever functions it defines today are added by [`uapi_functions`].
const JUDGING: [&str; 3] = ["check_feature", "check_dma_ranges", "check_dma_report"];

/// The names of the functions `uapi.rs` defines (its judgements, as opposed to constants),
/// and [`JUDGING`].
fn uapi_functions() -> Vec<String> {
    let path = manifest().join("src/uapi.rs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names: Vec<String> = code_only(&text)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("pub fn "))
        .map(|rest| rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .collect();
    names.extend(JUDGING.map(String::from));
    names.sort();
    names.dedup();
    names
}

/// Every use of the oracle or of a uAPI judging function in `text`, as `line: what`.
fn violations(text: &str, judging: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in code_only(text).lines().enumerate() {
        let idents: Vec<&str> =
            line.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|t| !t.is_empty()).collect();
        if idents.contains(&"oracle") {
            found.push(format!("{}: names the oracle: {}", n + 1, line.trim()));
        }
        if let Some(f) = idents.iter().find(|t| judging.iter().any(|j| j == *t)) {
            found.push(format!("{}: names uapi::{f}: {}", n + 1, line.trim()));
        }
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if squeezed.contains("uapi::*") {
            found.push(format!("{}: glob import of uapi: {}", n + 1, line.trim()));
        }
    }
    found
}

#[test]
fn no_simulator_file_uses_the_oracle_or_the_uapi_judging_functions() {
    let judging = uapi_functions();
    let mut files = Vec::new();
    rust_files(&manifest().join("src/device/sim"), &mut files);
    assert!(files.len() >= 10, "only {} files under src/device/sim", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for v in violations(&text, &judging) {
            problems.push(format!("{}:{v}", f.strip_prefix(manifest()).unwrap_or(f).display()));
        }
    }
    assert!(
        problems.is_empty(),
        "the simulator must not share the oracle's judgements:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scan_catches_every_way_of_reaching_the_oracle_or_a_uapi_check() {
    let judging = vec!["check_feature".to_string(), "check_dma_ranges".to_string()];
    let caught = |src: &str| !violations(src, &judging).is_empty();
    assert!(caught("use crate::oracle::fsm;\n"));
    assert!(caught("use crate::{errno::Errno,\n    oracle::v1};\n"));
    assert!(caught("let n = crate::oracle::fsm::next_state(f, c, n);\n"));
    assert!(caught("use crate::uapi::{FEATURE_GET, check_dma_ranges};\n"));
    assert!(caught("if !uapi::check_feature(flags, avail, ops, 8)? {}\n"));
    assert!(caught("use crate::uapi::*;\n"));
    assert!(caught("use crate::uapi :: * ;\n"));
    // Comments, strings, constants and functions of the simulator's own are fine.
    assert!(!caught("// the oracle (`oracle::fsm`) has its own table\nuse crate::uapi::FEATURE_GET;\n"));
    assert!(!caught("/* oracle::v1 */ let s = \"oracle\"; fn vfio_check_feature() {}\n"));
    assert!(!caught("//! uapi::check_feature is the core's\n"));
}

fn helper_class(r: Result<MigState, HelperError>) -> Result<MigState, bool> {
    r.map_err(|e| e == HelperError::CurInvalid)
}

fn oracle_class(r: Result<MigState, Refusal>) -> Result<MigState, bool> {
    r.map_err(|e| e == Refusal::CurrentInvalid)
}

/// Raw state values worth asking about: every uAPI state, the first values past them and
/// the largest.
const RAW: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, u32::MAX];

#[test]
fn the_simulators_next_state_helper_equals_the_oracles_for_every_flags_cur_new() {
    let mut compared = 0;
    let mut steps = 0;
    // Every combination of the three defined flag bits, and one undefined bit on top.
    for bits in (0..8).chain([8 | 7]) {
        let flags = MigFlags(bits);
        for cur in RAW {
            for new in RAW {
                let sim = helper_class(next_state::next_state(flags, cur, new));
                let oracle = oracle_class(fsm::next_state(flags, cur, new));
                assert_eq!(
                    sim, oracle,
                    "flags {bits:#x} cur {cur} new {new}: simulator (kernel table) {sim:?}, oracle {oracle:?} \
                     (Err(true) = EINVAL with WARN_ON, Err(false) = EINVAL)"
                );
                compared += 1;
                steps += usize::from(sim.is_ok());
            }
        }
    }
    assert_eq!(compared, 9 * RAW.len() * RAW.len());
    // The walk is not trivially refused: every defined flag set has steps.
    assert!(steps > 100, "only {steps} successful steps");
}

#[test]
fn the_simulators_walk_equals_the_oracles_prediction_for_every_set() {
    for flags in MigFlags::DEFINED_SETS {
        for cur in MigState::ALL {
            for new in RAW {
                let sim = next_state::walk(flags, cur.raw(), new);
                let oracle = predict_set(flags, cur, new);
                let agree = match (&sim, &oracle) {
                    (Ok(path), SetPrediction::Noop) => path.is_empty(),
                    (Ok(path), SetPrediction::Walk(_)) => *path == oracle.states(),
                    (Err((path, e)), SetPrediction::Refuse(r)) => {
                        path.is_empty() && (*e == HelperError::CurInvalid) == (*r == Refusal::CurrentInvalid)
                    }
                    _ => false,
                };
                assert!(
                    agree,
                    "flags {flags:?} {cur} -> {new}: simulator {sim:?}, oracle {}",
                    oracle.render(cur)
                );
            }
        }
    }
}
