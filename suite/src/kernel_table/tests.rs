//! The extractor on synthetic sources: a C rendering of the checked-in 6.12 table (so the
//! round trip is exact), then the same with one thing changed.

use serde_json::Value;

use super::*;
use crate::state::MigState::{PreCopy as PC, PreCopyP2p as PCP, Resuming as RES, StopCopy as SC};

type Table = [[MigState; NUM_STATES]; NUM_STATES];

const ORIGIN: &str = "synthetic.c";

const CUR_CHECK: &str = "\tif (WARN_ON(cur_fsm >= ARRAY_SIZE(vfio_from_fsm_table) ||\n\
    \t\t    (state_flags_table[cur_fsm] & device->migration_flags) !=\n\
    \t\t\tstate_flags_table[cur_fsm]))\n\t\treturn -EINVAL;\n";
const NEW_CHECK: &str = "\tif (new_fsm >= ARRAY_SIZE(vfio_from_fsm_table) ||\n\
    \t   (state_flags_table[new_fsm] & device->migration_flags) !=\n\
    \t\t\tstate_flags_table[new_fsm])\n\t\treturn -EINVAL;\n";
const FIRST_STEP: &str =
    "\t/* skip unsupported states */\n\t*next_fsm = vfio_from_fsm_table[cur_fsm][new_fsm];\n";
const LOOP_FIXED: &str = "\twhile (*next_fsm != VFIO_DEVICE_STATE_ERROR &&\n\
    \t       (state_flags_table[*next_fsm] & device->migration_flags) !=\n\
    \t\t\tstate_flags_table[*next_fsm])\n\t\t*next_fsm = vfio_from_fsm_table[*next_fsm][new_fsm];\n";
const LOOP_UNGUARDED: &str = "\twhile ((state_flags_table[*next_fsm] & device->migration_flags) !=\n\
    \t\t\tstate_flags_table[*next_fsm])\n\t\t*next_fsm = vfio_from_fsm_table[*next_fsm][new_fsm];\n";
const RETURN: &str = "\treturn (*next_fsm != VFIO_DEVICE_STATE_ERROR) ? 0 : -EINVAL;\n";

fn checked_in_6_12() -> Value {
    serde_json::from_str(checked_in("6.12").expect("6.12 is checked in")).expect("valid JSON")
}

fn state(name: &str) -> MigState {
    MigState::ALL.into_iter().find(|s| s.name() == name).unwrap_or_else(|| panic!("state {name}"))
}

/// The tables of the checked-in 6.12 document.
fn kernel_data() -> (Table, [u32; NUM_STATES]) {
    let doc = checked_in_6_12();
    let mut next = [[MigState::Error; NUM_STATES]; NUM_STATES];
    let mut required = [0; NUM_STATES];
    for cur in MigState::ALL {
        for new in MigState::ALL {
            next[cur as usize][new as usize] =
                state(doc["raw_next_step"][cur.name()][new.name()].as_str().unwrap());
        }
        required[cur as usize] = match &doc["state_required_flags"][cur.name()] {
            Value::Number(n) => u32::try_from(n.as_u64().unwrap()).unwrap(),
            Value::String(s) => u32::from_str_radix(s[2..10].trim(), 16).unwrap(),
            other => panic!("unexpected {other}"),
        };
    }
    (next, required)
}

/// What to render.
struct Src {
    next: Table,
    required: [u32; NUM_STATES],
    /// fsm-table entries left out.
    omit: Vec<(MigState, MigState)>,
    skip_loop: &'static str,
    ret: &'static str,
}

impl Src {
    fn kernel() -> Src {
        let (next, required) = kernel_data();
        Src { next, required, omit: Vec::new(), skip_loop: LOOP_FIXED, ret: RETURN }
    }

    fn render(&self) -> String {
        let name = |s: MigState| format!("VFIO_DEVICE_STATE_{}", s.name());
        let mut c = String::from(
            "// synthetic: the shape of drivers/vfio/vfio_main.c\n\
             int vfio_mig_get_next_state(struct vfio_device *device,\n\
             \t\t\t    enum vfio_device_mig_state cur_fsm,\n\
             \t\t\t    enum vfio_device_mig_state new_fsm,\n\
             \t\t\t    enum vfio_device_mig_state *next_fsm);\n\n\
             int vfio_mig_get_next_state(struct vfio_device *device,\n\
             \t\t\t    enum vfio_device_mig_state cur_fsm,\n\
             \t\t\t    enum vfio_device_mig_state new_fsm,\n\
             \t\t\t    enum vfio_device_mig_state *next_fsm)\n{\n\
             \tenum { VFIO_DEVICE_NUM_STATES = VFIO_DEVICE_STATE_PRE_COPY_P2P + 1 };\n\
             \t/* the table */\n\
             \tstatic const u8 vfio_from_fsm_table[VFIO_DEVICE_NUM_STATES][VFIO_DEVICE_NUM_STATES] = {\n",
        );
        for cur in MigState::ALL {
            c.push_str(&format!("\t\t[{}] = {{\n", name(cur)));
            for new in MigState::ALL {
                if !self.omit.contains(&(cur, new)) {
                    let next = self.next[cur as usize][new as usize];
                    c.push_str(&format!("\t\t\t[{}] = {},\n", name(new), name(next)));
                }
            }
            c.push_str("\t\t},\n");
        }
        c.push_str("\t};\n\n\tstatic const unsigned int state_flags_table[VFIO_DEVICE_NUM_STATES] = {\n");
        for st in MigState::ALL {
            let req = self.required[st as usize];
            let value = if req == u32::MAX {
                "~0U".to_string()
            } else {
                [(1, "STOP_COPY"), (2, "P2P"), (4, "PRE_COPY")]
                    .iter()
                    .filter(|(bit, _)| req & bit != 0)
                    .map(|(_, n)| format!("VFIO_MIGRATION_{n}"))
                    .collect::<Vec<_>>()
                    .join(" |\n\t\t\t")
            };
            c.push_str(&format!("\t\t[{}] = {value},\n", name(st)));
        }
        c.push_str("\t};\n\n");
        for part in [CUR_CHECK, "\n", NEW_CHECK, "\n", FIRST_STEP, self.skip_loop, "\n", self.ret] {
            c.push_str(part);
        }
        c.push_str("}\nEXPORT_SYMBOL_GPL(vfio_mig_get_next_state);\n");
        c
    }

    fn extract(&self) -> Result<KernelTable, ExtractError> {
        extract(&self.render(), ORIGIN)
    }
}

/// The document without the fields that say where the text came from.
fn data_of(mut doc: Value) -> Value {
    for k in ["source", "origin", "generator", "lines"] {
        doc.as_object_mut().unwrap().remove(k);
    }
    doc
}

/// The 1-based line of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> u32 {
    let i = src.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in source"));
    u32::try_from(i + 1).unwrap()
}

#[test]
fn a_rendering_of_the_6_12_table_extracts_to_the_checked_in_document() {
    let table = Src::kernel().extract().unwrap();
    assert_eq!(table.flow.skip_loop, SkipLoop::StopsAtError);
    assert!(table.implicit.is_empty());
    assert_eq!(data_of(table.to_json()), data_of(checked_in_6_12()));
}

#[test]
fn the_document_text_is_valid_json_equal_to_the_value() {
    let table = Src::kernel().extract().unwrap();
    let text = table.to_json_text();
    assert!(text.starts_with("{\n \"source\": \"synthetic.c vfio_mig_get_next_state() lines 7-"));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), table.to_json());
}

#[test]
fn lines_name_the_function_and_each_statement() {
    let src = Src::kernel();
    let text = src.render();
    let table = src.extract().unwrap();
    let l = table.lines;
    assert_eq!(l.function.0, 7, "the definition, not the prototype on line 2");
    assert_eq!(l.function.1, line_of(&text, "EXPORT_SYMBOL_GPL") - 1);
    assert_eq!(l.fsm_table, line_of(&text, "static const u8"));
    assert_eq!(l.flags_table, line_of(&text, "state_flags_table[VFIO_DEVICE_NUM_STATES]"));
    assert_eq!(l.cur_check, line_of(&text, "WARN_ON"));
    assert_eq!(l.skip_loop, line_of(&text, "while"));
    assert_eq!(l.ret, line_of(&text, "return (*next_fsm"));
}

#[test]
fn a_changed_table_entry_changes_the_raw_step_and_the_resolved_path() {
    let mut src = Src::kernel();
    // STOP -> RUNNING directly instead of through RUNNING_P2P.
    src.next[MigState::Stop as usize][MigState::Running as usize] = MigState::Running;
    let doc = src.extract().unwrap().to_json();
    let kernel = checked_in_6_12();
    assert_eq!(doc["raw_next_step"]["STOP"]["RUNNING"], "RUNNING");
    assert_eq!(kernel["raw_next_step"]["STOP"]["RUNNING"], "RUNNING_P2P");
    assert_eq!(doc["resolved"]["STOP_COPY|P2P"]["STOP->RUNNING"], serde_json::json!(["STOP", "RUNNING"]));
    assert_eq!(
        kernel["resolved"]["STOP_COPY|P2P"]["STOP->RUNNING"],
        serde_json::json!(["STOP", "RUNNING_P2P", "RUNNING"])
    );
    // Nothing else in the raw table moved.
    let mut a = doc["raw_next_step"].clone();
    a["STOP"]["RUNNING"] = kernel["raw_next_step"]["STOP"]["RUNNING"].clone();
    assert_eq!(a, kernel["raw_next_step"]);
}

#[test]
fn a_missing_entry_is_c_zero_that_is_error_and_is_listed() {
    let mut src = Src::kernel();
    src.omit.push((MigState::Stop, RES));
    let table = src.extract().unwrap();
    assert_eq!(table.implicit, ["vfio_from_fsm_table[STOP][RESUMING]"]);
    assert_eq!(table.next[MigState::Stop as usize][RES as usize], MigState::Error);
    for flags in MigFlags::DEFINED_SETS {
        assert_eq!(table.resolve(flags, MigState::Stop, RES), Resolved::Einval, "{flags:?}");
    }
    // Walks through STOP towards RESUMING now fail after their first arcs.
    let (run, rp2p, stop) = (MigState::Running, MigState::RunningP2p, MigState::Stop);
    assert_eq!(table.resolve(MigFlags::ALL, run, RES), Resolved::EinvalAfter(vec![run, rp2p, stop]));
    assert_eq!(table.resolve(MigFlags::STOP_COPY, run, RES), Resolved::EinvalAfter(vec![run, stop]));
    let doc = table.to_json();
    assert_eq!(doc["implicit_entries"], serde_json::json!(["vfio_from_fsm_table[STOP][RESUMING]"]));
    assert_eq!(
        doc["resolved"]["STOP_COPY|P2P"]["RUNNING->RESUMING"],
        "EINVAL after RUNNING -> RUNNING_P2P -> STOP (a later helper call failed)"
    );
}

#[test]
fn the_unguarded_skip_loop_of_6_2_hangs_on_exactly_the_blocked_arcs() {
    let fixed = Src::kernel().extract().unwrap();
    let old = Src { skip_loop: LOOP_UNGUARDED, ..Src::kernel() }.extract().unwrap();
    assert_eq!(old.flow.skip_loop, SkipLoop::Unguarded);
    let mut differ = Vec::new();
    for flags in MigFlags::DEFINED_SETS {
        for cur in MigState::ALL {
            for new in MigState::ALL {
                let (a, b) = (fixed.resolve(flags, cur, new), old.resolve(flags, cur, new));
                if a != b {
                    assert_eq!((a, b), (Resolved::Einval, Resolved::Hang));
                    differ.push((flags.0, cur, new));
                }
            }
        }
    }
    assert_eq!(differ, [(5, SC, PC), (7, SC, PC), (7, SC, PCP)]);
    assert!(
        old.to_json()["resolved"]["STOP_COPY|PRE_COPY"]["STOP_COPY->PRE_COPY"]
            .as_str()
            .unwrap()
            .starts_with("HANG")
    );
}

#[test]
fn an_unknown_control_flow_is_an_error_naming_its_line() {
    let src = Src { ret: "\treturn *next_fsm == VFIO_DEVICE_STATE_ERROR ? -EINVAL : 0;\n", ..Src::kernel() };
    let text = src.render();
    let err = src.extract().unwrap_err();
    let line = line_of(&text, "return *next_fsm ==");
    assert_eq!((err.line, err.col), (line, 2));
    assert!(matches!(err.kind, ErrorKind::UnknownShape { what: "return", .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("synthetic.c:{line}:2: unrecognised return: `return * next_fsm"))
    );
}

#[test]
fn a_third_skip_loop_shape_is_refused_not_guessed() {
    let odd = "\twhile (*next_fsm != VFIO_DEVICE_STATE_ERROR &&\n\t       !(state_flags_table[*next_fsm] & device->migration_flags))\n\t\t*next_fsm = vfio_from_fsm_table[*next_fsm][new_fsm];\n";
    let src = Src { skip_loop: odd, ..Src::kernel() };
    let err = src.extract().unwrap_err();
    assert_eq!(err.line, line_of(&src.render(), "while"));
    assert!(matches!(err.kind, ErrorKind::UnknownShape { what: "skip loop", .. }), "{err}");
}

#[test]
fn a_statement_after_the_return_is_refused() {
    let src = Src {
        ret: "\treturn (*next_fsm != VFIO_DEVICE_STATE_ERROR) ? 0 : -EINVAL;\n\tfoo();\n",
        ..Src::kernel()
    };
    let err = src.extract().unwrap_err();
    assert_eq!(err.line, line_of(&src.render(), "foo();"));
}

#[test]
fn an_unknown_state_name_is_an_error_at_its_column() {
    let text = Src::kernel().render().replacen(
        "[VFIO_DEVICE_STATE_RUNNING] = VFIO_DEVICE_STATE_RUNNING_P2P,",
        "[VFIO_DEVICE_STATE_RUNNING] = VFIO_DEVICE_STATE_WARP,",
        1,
    );
    let err = extract(&text, ORIGIN).unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownState("VFIO_DEVICE_STATE_WARP".into()));
    assert_eq!((err.line, err.col), (line_of(&text, "STATE_WARP"), 34));
}

#[test]
fn a_duplicate_entry_names_both_lines() {
    let text = Src::kernel().render().replacen(
        "\t\t\t[VFIO_DEVICE_STATE_STOP] = VFIO_DEVICE_STATE_STOP,\n",
        "\t\t\t[VFIO_DEVICE_STATE_STOP] = VFIO_DEVICE_STATE_STOP,\n\t\t\t[VFIO_DEVICE_STATE_STOP] = VFIO_DEVICE_STATE_RUNNING,\n",
        1,
    );
    let err = extract(&text, ORIGIN).unwrap_err();
    let first = line_of(&text, "[VFIO_DEVICE_STATE_STOP] = VFIO_DEVICE_STATE_STOP,");
    assert_eq!(err.kind, ErrorKind::Duplicate("[VFIO_DEVICE_STATE_STOP]".into(), first));
    assert_eq!(err.line, first + 1);
}

#[test]
fn an_unknown_flag_or_operator_in_the_flags_table_is_refused() {
    let base = Src::kernel().render();
    let text = base.replacen("= VFIO_MIGRATION_STOP_COPY,", "= VFIO_MIGRATION_WARP,", 1);
    assert_eq!(
        extract(&text, ORIGIN).unwrap_err().kind,
        ErrorKind::UnknownFlag("VFIO_MIGRATION_WARP".into())
    );
    let text = base.replacen("= VFIO_MIGRATION_STOP_COPY,", "= VFIO_MIGRATION_STOP_COPY + 1,", 1);
    let err = extract(&text, ORIGIN).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Unexpected { ref found, .. } if found == "+"), "{err}");
}

#[test]
fn a_different_state_count_is_refused() {
    let text = Src::kernel().render().replace("STATE_PRE_COPY_P2P + 1", "STATE_RUNNING_P2P + 1");
    let err = extract(&text, ORIGIN).unwrap_err();
    assert_eq!(err.kind, ErrorKind::StateCount(6));
    assert_eq!(err.line, line_of(&text, "VFIO_DEVICE_NUM_STATES ="));
}

#[test]
fn a_file_without_the_function_is_refused() {
    let err = extract("int main(void) { return 0; }\n", "x.c").unwrap_err();
    assert_eq!(err.kind, ErrorKind::FunctionNotFound);
    assert_eq!(err.to_string(), "x.c:1:1: no definition of vfio_mig_get_next_state() in this file");
}

#[test]
fn every_checked_in_document_names_its_series_and_a_known_skip_loop() {
    for (series, text) in CHECKED_IN {
        let doc: Value = serde_json::from_str(text).unwrap();
        let origin = doc["origin"].as_str().unwrap();
        assert!(origin.starts_with(&format!("linux-source-{series}_")), "{series}: {origin}");
        assert!(origin.ends_with("/drivers/vfio/vfio_main.c"), "{series}: {origin}");
        let skip = doc["control_flow"]["skip_loop"].as_str().unwrap();
        assert!(
            [SkipLoop::StopsAtError.name(), SkipLoop::Unguarded.name()].contains(&skip),
            "{series}: {skip}"
        );
        assert_eq!(doc["resolved"].as_object().unwrap().len(), 4, "{series}");
    }
}
