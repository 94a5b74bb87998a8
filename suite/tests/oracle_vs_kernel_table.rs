//! Cross-checks the FSM oracle against every checked-in kernel next-state table
//! (`suite/data/next_state/<series>.json`, produced from the kernel's vfio_main.c by
//! `vmc::kernel_table`, see `examples/extract_next_state.rs`) for every flag set and every
//! (cur, new) pair.
//!
//! The oracle (`oracle::fsm`) models one kernel. Where a kernel's table differs from it, the
//! difference must be listed in [`KNOWN_DIFFERENCES`], so that the lead can give the oracle a
//! kernel parameter; an unlisted difference, or a listed one that is no longer there, fails.

use serde_json::Value;
use vmc::kernel_table::CHECKED_IN;
use vmc::oracle::fsm::{Refusal, SetPrediction, predict_set, raw_table_step};
use vmc::state::{MigFlags, MigState};

/// (series, flag set, "CUR->NEW") where the kernel's table and the oracle are known to differ.
///
/// Empty: Debian's linux-source-6.12 6.12.118-1~deb12u1 and linux-source-7.2 7.2.13-1 have the
/// same vfio_mig_get_next_state() (6.12.96 took the one change since 6.12, a26b499b757c
/// "vfio: prevent infinite loop in vfio_mig_get_next_state() on blocked arc"). A table made
/// from a kernel without that commit (any since 6.2 that lacks it: 6.2 .. 6.12.95, 6.13 .. 7.1.3) resolves
/// ("STOP_COPY|PRE_COPY", "STOP_COPY->PRE_COPY"), ("STOP_COPY|P2P|PRE_COPY",
/// "STOP_COPY->PRE_COPY") and ("STOP_COPY|P2P|PRE_COPY", "STOP_COPY->PRE_COPY_P2P") as HANG
/// where the oracle predicts EINVAL (V2-STATE-007); those three would be listed here
/// (`comparison_reports_the_blocked_arc_hang_of_a_kernel_without_the_fix` shows it).
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[];

fn tables() -> Vec<(&'static str, Value)> {
    CHECKED_IN.iter().map(|(s, text)| (*s, serde_json::from_str(text).expect("valid JSON"))).collect()
}

fn state(name: &str) -> MigState {
    MigState::ALL.into_iter().find(|s| s.name() == name).unwrap_or_else(|| panic!("state {name}"))
}

fn flags(name: &str) -> MigFlags {
    MigFlags::parse(&name.replace('|', ",")).expect("flag set name")
}

/// Every resolved entry of `doc` the oracle predicts differently: (flag set, pair, why).
fn differences(doc: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let resolved = doc["resolved"].as_object().expect("resolved");
    assert_eq!(resolved.len(), 4, "four flag sets");
    let mut compared = 0;
    for (set_name, pairs) in resolved {
        let f = flags(set_name);
        for (pair, expected) in pairs.as_object().unwrap() {
            let (cur, new) = pair.split_once("->").unwrap();
            let (cur, new) = (state(cur), state(new));
            let got = predict_set(f, cur, new.raw());
            let agrees = match expected {
                Value::Array(path) => {
                    let want: Vec<MigState> =
                        path.iter().skip(1).map(|v| state(v.as_str().unwrap())).collect();
                    path[0].as_str() == Some(cur.name()) && got.states() == want
                }
                Value::String(s) if s.starts_with("no-op") => got == SetPrediction::Noop,
                Value::String(s) if s.starts_with("EINVAL+WARN") || s.contains("WARN_ON") => {
                    got == SetPrediction::Refuse(Refusal::CurrentInvalid)
                }
                Value::String(s) if s == "EINVAL" => {
                    matches!(got, SetPrediction::Refuse(r) if r != Refusal::CurrentInvalid)
                }
                // HANG, EINVAL after a partial walk, NEVER ARRIVES: outcomes the oracle has no
                // word for.
                _ => false,
            };
            if !agrees {
                out.push((
                    set_name.clone(),
                    pair.clone(),
                    format!("kernel {expected}, oracle {}", got.render(cur)),
                ));
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 4 * 64);
    out
}

#[test]
fn raw_table_equals_the_raw_table_of_every_checked_in_kernel() {
    for (series, t) in tables() {
        let raw = t["raw_next_step"].as_object().unwrap();
        let mut compared = 0;
        for (cur, row) in raw {
            for (new, next) in row.as_object().unwrap() {
                let got = raw_table_step(state(cur), state(new));
                assert_eq!(got.name(), next.as_str().unwrap(), "{series}: raw table [{cur}][{new}]");
                compared += 1;
            }
        }
        assert_eq!(compared, 64, "{series}");
    }
}

#[test]
fn oracle_reproduces_every_resolved_path_of_every_checked_in_kernel_but_the_known_differences() {
    for (series, t) in tables() {
        let found: Vec<(String, String)> = differences(&t).into_iter().map(|(s, p, _)| (s, p)).collect();
        let known: Vec<(String, String)> = KNOWN_DIFFERENCES
            .iter()
            .filter(|(s, _, _)| *s == series)
            .map(|(_, set, pair)| (set.to_string(), pair.to_string()))
            .collect();
        let unlisted: Vec<_> = differences(&t)
            .into_iter()
            .filter(|(s, p, _)| !known.contains(&(s.clone(), p.clone())))
            .collect();
        assert!(unlisted.is_empty(), "{series}: the oracle differs from the kernel on {unlisted:#?}");
        let gone: Vec<_> = known.iter().filter(|k| !found.contains(k)).collect();
        assert!(gone.is_empty(), "{series}: KNOWN_DIFFERENCES lists {gone:?}, which now agree");
    }
}

#[test]
fn comparison_reports_the_blocked_arc_hang_of_a_kernel_without_the_fix() {
    // What the extractor writes for a kernel with the unguarded skip loop of 6.2
    // (kernel_table's own tests extract it from a synthetic source).
    let mut t = tables().remove(0).1;
    let hang = Value::String("HANG (the helper's skip loop never ends)".into());
    for (set, pair) in [
        ("STOP_COPY|PRE_COPY", "STOP_COPY->PRE_COPY"),
        ("STOP_COPY|P2P|PRE_COPY", "STOP_COPY->PRE_COPY"),
        ("STOP_COPY|P2P|PRE_COPY", "STOP_COPY->PRE_COPY_P2P"),
    ] {
        t["resolved"][set][pair] = hang.clone();
    }
    let found: Vec<(String, String)> = differences(&t).into_iter().map(|(s, p, _)| (s, p)).collect();
    assert_eq!(
        found,
        [
            ("STOP_COPY|P2P|PRE_COPY".to_string(), "STOP_COPY->PRE_COPY".to_string()),
            ("STOP_COPY|P2P|PRE_COPY".to_string(), "STOP_COPY->PRE_COPY_P2P".to_string()),
            ("STOP_COPY|PRE_COPY".to_string(), "STOP_COPY->PRE_COPY".to_string()),
        ]
    );
}

#[test]
fn data_fd_is_predicted_exactly_for_paths_ending_in_a_session_opening_arc() {
    for (series, t) in tables() {
        for (set_name, pairs) in t["resolved"].as_object().unwrap() {
            let f = flags(set_name);
            for (pair, expected) in pairs.as_object().unwrap() {
                let Value::Array(path) = expected else { continue };
                let names: Vec<&str> = path.iter().map(|v| v.as_str().unwrap()).collect();
                let last = (names[names.len() - 2], names[names.len() - 1]);
                let opens = matches!(
                    last,
                    ("RUNNING", "PRE_COPY")
                        | ("RUNNING_P2P", "PRE_COPY_P2P")
                        | ("STOP", "STOP_COPY")
                        | ("STOP", "RESUMING")
                );
                let (cur, new) = pair.split_once("->").unwrap();
                let got = predict_set(f, state(cur), state(new).raw());
                assert_eq!(got.returns_data_fd(), opens, "{series}: {set_name}: {pair}");
            }
        }
    }
}
