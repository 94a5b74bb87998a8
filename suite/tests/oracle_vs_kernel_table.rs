//! Cross-checks the FSM oracle against the kernel 6.12 next-state table
//! (`tests/data/fsm_next_state_6.12.json`, generated from vfio_main.c) for every flag set and
//! every (cur, new) pair.

use serde_json::Value;
use vmc::oracle::fsm::{Refusal, SetPrediction, predict_set, raw_table_step};
use vmc::state::{MigFlags, MigState};

fn table() -> Value {
    serde_json::from_str(include_str!("data/fsm_next_state_6.12.json")).expect("valid JSON")
}

fn state(name: &str) -> MigState {
    MigState::ALL.into_iter().find(|s| s.name() == name).unwrap_or_else(|| panic!("state {name}"))
}

fn flags(name: &str) -> MigFlags {
    MigFlags::parse(&name.replace('|', ",")).expect("flag set name")
}

#[test]
fn raw_table_equals_the_kernel_raw_table() {
    let t = table();
    let raw = t["raw_next_step"].as_object().unwrap();
    let mut compared = 0;
    for (cur, row) in raw {
        for (new, next) in row.as_object().unwrap() {
            let got = raw_table_step(state(cur), state(new));
            assert_eq!(got.name(), next.as_str().unwrap(), "raw table [{cur}][{new}]");
            compared += 1;
        }
    }
    assert_eq!(compared, 64);
}

#[test]
fn oracle_reproduces_every_resolved_kernel_path_for_all_four_flag_sets() {
    let t = table();
    let resolved = t["resolved"].as_object().unwrap();
    assert_eq!(resolved.len(), 4, "four flag sets");
    let mut compared = 0;
    for (set_name, pairs) in resolved {
        let f = flags(set_name);
        for (pair, expected) in pairs.as_object().unwrap() {
            let (cur, new) = pair.split_once("->").unwrap();
            let (cur, new) = (state(cur), state(new));
            let got = predict_set(f, cur, new.raw());
            match expected {
                Value::Array(path) => {
                    let want: Vec<MigState> =
                        path.iter().skip(1).map(|v| state(v.as_str().unwrap())).collect();
                    assert_eq!(got.states(), want, "{set_name}: {pair}");
                    assert_eq!(path[0].as_str().unwrap(), cur.name(), "{set_name}: {pair}");
                }
                Value::String(s) if s.starts_with("no-op") => {
                    assert_eq!(got, SetPrediction::Noop, "{set_name}: {pair}");
                }
                Value::String(s) if s.starts_with("EINVAL+WARN") || s.contains("WARN_ON") => {
                    assert_eq!(got, SetPrediction::Refuse(Refusal::CurrentInvalid), "{set_name}: {pair}");
                }
                Value::String(s) if s == "EINVAL" => {
                    assert!(
                        matches!(got, SetPrediction::Refuse(r) if r != Refusal::CurrentInvalid),
                        "{set_name}: {pair}: expected a target refusal, got {got:?}"
                    );
                }
                other => panic!("unexpected table entry {other} for {set_name}: {pair}"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 4 * 64);
}

#[test]
fn data_fd_is_predicted_exactly_for_paths_ending_in_a_session_opening_arc() {
    let t = table();
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
            assert_eq!(got.returns_data_fd(), opens, "{set_name}: {pair}");
        }
    }
}
