//! Every injected defect changes what a device does: a short probe sequence gives different
//! observations (or oracle findings) on the defective device than on the reference device,
//! and the reference device raises no finding.

use vmc::check::{Check, Origin, Requires, Step};
use vmc::device::sim::{Defect, SimConfig, parse_spec};
use vmc::engine::{CheckRun, Engine, EngineOptions};
use vmc::op::Op;

/// (defect, probe ops as YAML). The reference device is the same spec without the defect.
const PROBES: &[(&str, &str)] = &[
    ("stop_copy_to_pre_copy_accepted", "[{set_state: STOP_COPY}, {set_state: PRE_COPY}]"),
    ("accepts_unsupported_state", "[{set_state: 8}]"),
    ("data_fd_on_non_session_arc", "[{set_state: PRE_COPY}, {set_state: STOP_COPY}]"),
    ("no_data_fd_on_stop_copy", "[{set_state: STOP_COPY}]"),
    ("get_returns_data_fd", "[get_state]"),
    ("spontaneous_state_change", "[{set_state: STOP}, {wait: {ms: 5}}, get_state]"),
    (
        "failed_set_leaves_off_path_state",
        "[{set_state: RESUMING}, {write: {data: {zeros: 10}}}, {set_state: STOP}, get_state]",
    ),
    ("no_stop_copy_flag", "[get_flags]"),
    ("unknown_flag_advertised", "[get_flags]"),
    ("feature_set_on_migration_accepted", "[{feature: {feature: 1, ops: [SET], payload: 8}}]"),
    ("no_eof_after_stop_copy", "[{set_state: STOP_COPY}, {read: {}}]"),
    ("endless_stop_copy_stream", "[{set_state: STOP_COPY}, {read: {max: 1000000}}]"),
    ("stale_saving_fd_readable", "[{set_state: STOP_COPY}, {set_state: STOP}, {read: {}}]"),
    (
        "resume_fd_writable_after_running",
        "[{set_state: STOP_COPY}, {read: {capture: s}}, {set_state: RESUMING}, {write: {data: {stream: s}}}, {set_state: RUNNING}, {write: {data: {zeros: 8}}}]",
    ),
    ("pre_copy_p2p_ends_session", "[{set_state: PRE_COPY}, {set_state: PRE_COPY_P2P}, {read: {once: true}}]"),
    (
        "accepts_truncated_stream",
        "[{set_state: STOP_COPY}, {read: {capture: s}}, {set_state: RESUMING}, {write: {data: {stream: s}, mutate: {truncate: 100}}}, {set_state: STOP}]",
    ),
    (
        "accepts_foreign_stream",
        "[{set_state: STOP_COPY}, {read: {capture: s}}, {set_state: RESUMING}, {write: {data: {stream: s}, mutate: {flip_bit: {offset: 20, bit: 0}}}}]",
    ),
    (
        "segmentation_dependent_resume",
        "[{set_state: STOP_COPY}, {read: {capture: s}}, {set_state: RESUMING}, {write: {data: {stream: s}, segment: {fixed: 1}}}]",
    ),
    (
        "resume_requires_reset",
        "[{set_state: STOP_COPY}, {read: {capture: s}}, {set_state: RESUMING}, {write: {data: {stream: s}}}, {set_state: RUNNING}, {set_state: RESUMING}]",
    ),
    (
        "state_advances_in_stop",
        "[{set_state: STOP}, {region_read: {region: bar0, offset: 0}}, {wait: {ms: 10}}, {region_read: {region: bar0, offset: 0}}]",
    ),
    (
        "irq_in_stop",
        "[{region_write: {region: bar0, offset: 8, value: 1}}, {set_irqs: {index: intx}}, {set_state: STOP}, {irq_mark: a}, {wait: {ms: 10}}, {irq_mark: b}]",
    ),
    (
        "config_blocked_in_resuming",
        "[{set_state: RESUMING}, {config_write: {offset: 4, width: 2, value: 6}}]",
    ),
    (
        "load_overwrites_config",
        "[{config_write: {offset: 4, width: 2, value: 6}}, {set_state: STOP_COPY}, {read: {capture: s}}, {set_state: RESUMING}, {write: {data: {stream: s}}}, {set_state: STOP}, {config_read: {offset: 4, width: 2}}]",
    ),
    ("reset_keeps_state", "[{set_state: STOP}, reset, get_state]"),
    ("reset_keeps_fd", "[{set_state: STOP_COPY}, reset, {read: {}}]"),
    ("close_keeps_fd", "[{set_state: STOP_COPY}, close_device, {read: {}}]"),
    ("data_size_fails_in_resuming", "[{set_state: RESUMING}, data_size]"),
    ("stream_exceeds_data_size", "[data_size]"),
    ("data_size_enotty", "[data_size]"),
    ("data_fd_not_stream", "[{set_state: STOP_COPY}, {read: {offset: 0}}]"),
    (
        "pre_copy_stops_device",
        "[{set_state: PRE_COPY}, {region_write: {region: bar0, offset: 4, value: 119}}, {region_read: {region: bar0, offset: 4}}]",
    ),
    ("precopy_info_outside_pre_copy", "[{set_state: PRE_COPY}, {set_state: STOP_COPY}, {precopy_info: {}}]"),
    ("precopy_info_unsupported", "[{set_state: PRE_COPY}, {precopy_info: {}}]"),
    ("eof_at_precopy_temporary_end", "[{set_state: PRE_COPY}, {read: {}}]"),
    ("enomsg_in_stop_copy", "[{set_state: STOP_COPY}, {read: {chunk: 100}}]"),
    (
        "initial_bytes_grows",
        "[{set_state: PRE_COPY}, {precopy_info: {}}, {read: {once: true, chunk: 10}}, {precopy_info: {}}]",
    ),
    ("dirty_bytes_starts_nonzero", "[{set_state: PRE_COPY}, {precopy_info: {}}]"),
    ("piv2_get_accepted", "[{feature: {feature: 12, ops: [GET]}}]"),
    (
        "piv2_flags_echoed",
        "[{feature: {feature: 12, ops: [SET]}}, {set_state: PRE_COPY}, {precopy_info: {flags: 6}}]",
    ),
    (
        "reinit_without_opt_in",
        "[{set_state: PRE_COPY}, {read: {max: 100000000}}, {region_write: {region: bar0, offset: 16, value: 1}}, {precopy_info: {}}]",
    ),
    (
        "reinit_keeps_dirty_bytes",
        "[{feature: {feature: 12, ops: [SET]}}, {set_state: PRE_COPY}, {read: {max: 100000000}}, {region_write: {region: bar0, offset: 16, value: 1}}, {precopy_info: {}}]",
    ),
    (
        "reinit_zero_initial_bytes",
        "[{feature: {feature: 12, ops: [SET]}}, {set_state: PRE_COPY}, {read: {max: 100000000}}, {region_write: {region: bar0, offset: 16, value: 1}}, {precopy_info: {}}]",
    ),
    (
        "reinit_initial_bytes_grows",
        "[{feature: {feature: 12, ops: [SET]}}, {set_state: PRE_COPY}, {region_write: {region: bar0, offset: 16, value: 1}}, {precopy_info: {}}, {read: {once: true, chunk: 8}}, {precopy_info: {}}]",
    ),
    ("debugfs_state_stale", "[{set_state: STOP}, debugfs_state]"),
    ("second_dma_log_start_accepted", "[{dma_log_start: {count: 1}}, {dma_log_start: {count: 1}}]"),
    ("report_before_start_ok", "[{dma_log_report: {}}]"),
    (
        "report_clears_preset_bits",
        "[{dma_log_start: {ranges: [[0, 65536]]}}, {wait: {ms: 5}}, {dma_log_report: {length: 65536, prefill: 255}}]",
    ),
    (
        "report_does_not_clear",
        "[{dma_log_start: {ranges: [[0, 65536]]}}, {wait: {ms: 5}}, {dma_log_report: {length: 65536}}, {dma_log_report: {length: 65536}}]",
    ),
    (
        "dma_in_stop",
        "[{dma_log_start: {ranges: [[0, 65536]]}}, {set_state: STOP}, {dma_log_report: {length: 65536}}, {wait: {ms: 5}}, {dma_log_report: {length: 65536}}]",
    ),
    (
        "logging_stops_on_stop_copy_exit",
        "[{dma_log_start: {ranges: [[0, 65536]]}}, {set_state: STOP_COPY}, {set_state: STOP}, {dma_log_report: {length: 65536}}]",
    ),
    ("get_returns_unknown_state", "[{set_state: STOP}, get_state]"),
    ("invalid_data_fd", "[{set_state: STOP_COPY}]"),
    ("poll_never_ready", "[{set_state: STOP_COPY}, {read: {}}, {poll: {}}]"),
    ("v1_accepts_101", "[{v1_set_state: 5}]"),
    ("v1_pending_never_zero", "[{v1_set_state: 2}, {v1_save: {max_iterations: 50}}]"),
    ("v1_pending_bytes_max", "[{v1_set_state: 2}, {v1_read: {field: pending_bytes}}]"),
    ("v1_chunk_beyond_region", "[{v1_set_state: 2}, {v1_save: {}}]"),
    ("v1_data_offset_in_header", "[{v1_set_state: 2}, {v1_save: {}}]"),
    ("v1_state_not_restored_after_failed_write", "[{v1_set_state: 5}, {v1_read: {field: device_state}}]"),
    (
        "v1_unaligned_data_offset",
        "[{v1_set_state: 2}, {v1_read: {field: pending_bytes}}, {v1_read: {field: data_offset}}]",
    ),
    ("v1_reserved_nonzero", "[{v1_read: {field: reserved}}]"),
    (
        "v1_pending_bytes_writable",
        "[{v1_set_state: 2}, {v1_write: {field: pending_bytes, value: 0}}, {v1_read: {field: pending_bytes}}]",
    ),
    ("v1_pre_copy_unsupported", "[{v1_set_state: 3}]"),
    ("v1_requires_drain", "[{v1_set_state: 3}, {v1_set_state: 2}]"),
    (
        "v1_data_offset_changes_within_iteration",
        "[{v1_set_state: 2}, {v1_read: {field: pending_bytes}}, {v1_read: {field: data_offset}}, {v1_read: {field: data_offset}}]",
    ),
    ("v1_overlapping_sparse_areas", "[{v1_set_state: 2}, {v1_save: {}}]"),
    ("v1_mmap_only", "[{v1_set_state: 2}, {v1_save: {}}]"),
    ("v1_reset_not_running", "[{v1_set_state: 2}, reset, {v1_read: {field: device_state}}]"),
    ("v1_narrow_access_accepted", "[{v1_read: {field: device_state, width: 1}}]"),
    ("v1_state_reads_previous_after_write", "[{v1_set_state: 2}]"),
    ("v1_reserved_state_bits_set", "[{v1_read: {field: device_state}}]"),
    ("v1_region_not_writable", "[{v1_set_state: 2}, {v1_save: {}}]"),
    ("v1_saving_gathers_nothing", "[{v1_set_state: 2}, {v1_read: {field: pending_bytes}}]"),
];

fn run(cfg: &SimConfig, ops: &[Op]) -> CheckRun {
    let check = Check {
        id: "probe".into(),
        title: "probe".into(),
        clauses: Vec::new(),
        requires: Requires::default(),
        steps: ops.iter().cloned().map(|op| Step::new(op).oracle()).collect(),
        origin: Origin::Generated("test".into()),
        models: None,
        citation: None,
        sequence_file: None,
    };
    let mut engine = Engine::new(vec![cfg.build()], EngineOptions { max_stream: 1 << 20 });
    engine.run(&check)
}

fn fingerprint(r: &CheckRun) -> String {
    let obs: Vec<String> = r.trace.iter().map(|t| format!("{:?}", t.obs)).collect();
    let findings: Vec<String> =
        r.findings.iter().map(|f| vmc::clauses::join(&f.violation.clauses).replace(" ", "")).collect();
    format!("{obs:?} {findings:?} {:?} {:?}", r.end.error(), r.restore_error)
}

#[test]
fn every_defect_has_a_probe() {
    for d in Defect::ALL {
        // Held-out defects are probed in the simulator's own tests (device::sim::held_out_tests).
        if d.needs_watchdog() || d.held_out() {
            continue;
        }
        assert!(PROBES.iter().any(|(n, _)| *n == d.name()), "no probe for defect {}", d.name());
    }
}

#[test]
fn every_defect_is_observable_and_the_reference_is_clean() {
    for (name, yaml) in PROBES {
        let defect = Defect::by_name(name).unwrap_or_else(|| panic!("unknown defect {name}"));
        let ops: Vec<Op> = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let api = if defect.api() == vmc::device::MigrationApi::V1 { "v1" } else { "v2" };
        let reference = parse_spec(&format!("sim:{api}")).unwrap();
        let defective = SimConfig { defects: vec![defect], ..reference.clone() };
        let good = run(&reference, &ops);
        let bad = run(&defective, &ops);
        assert!(good.end.error().is_none(), "{name}: reference errored: {:?}", good.end);
        assert!(good.findings.is_empty(), "{name}: reference has findings: {:#?}", good.findings);
        assert_ne!(fingerprint(&good), fingerprint(&bad), "{name}: the defect changed nothing");
    }
}

#[test]
fn hang_on_set_blocks_the_calling_thread() {
    let cfg = SimConfig { defects: vec![Defect::HangOnSet], ..SimConfig::v2() };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = run(&cfg, &[Op::SetState(vmc::state::StateArg::Named(vmc::state::MigState::StopCopy))]);
        let _ = tx.send(r);
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(),
        "SET returned despite hang_on_set"
    );
}

/// The backticked identifiers in `text` (`snake_case`, not options such as `--peer`).
fn ticked(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .collect()
}

#[test]
fn docs_sequences_md_names_only_defects_that_exist() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sequences.md")).expect("docs");
    let shipped = doc.split("## Shipped sequences").nth(1).expect("a section `Shipped sequences`");
    let (tables, untargeted) = shipped
        .split_once("Defects no shipped sequence targets")
        .expect("the paragraph of untargeted defects");
    let untargeted = untargeted.split("\n\n").next().unwrap_or("");
    let mut caught = Vec::new();
    for row in tables.lines().filter(|l| l.starts_with("| `")) {
        let catches = row.trim_end_matches('|').rsplit('|').next().unwrap_or("");
        for name in ticked(catches) {
            assert!(
                Defect::by_name(name).is_some(),
                "docs/sequences.md: `{name}` is not a defect (in `{row}`)"
            );
            caught.push(name);
        }
    }
    assert!(caught.len() > 20, "{} defects in the catches column", caught.len());
    let untargeted = ticked(untargeted);
    assert!(untargeted.len() > 10, "{} untargeted defects", untargeted.len());
    for name in untargeted {
        assert!(Defect::by_name(name).is_some(), "docs/sequences.md: `{name}` (untargeted) is not a defect");
        assert!(!caught.contains(&name), "docs/sequences.md: `{name}` is listed as untargeted and as caught");
    }
}

#[test]
fn docs_sequences_md_documents_every_step_kind() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sequences.md")).expect("docs");
    // A table row's first cell starts with the step's YAML key: `name`, `name:` or `name: {...}`.
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|cell| cell.split(['`', '/']).map(|k| k.trim().trim_start_matches('`')))
        .map(|k| k.split([':', ' ']).next().unwrap_or(""))
        .collect();
    for name in vmc::op::Op::NAMES {
        assert!(documented.contains(name), "docs/sequences.md has no table row for the step `{name}`");
    }
}
