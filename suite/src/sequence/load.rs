//! Loading sequences: validating a parsed [`SequenceYaml`] into a [`Check`] (names defined
//! before use, known clauses and device labels, located errors), from text, a file, a
//! directory, or the sequences built into the binary (`fixtures/`, see [`crate::embedded`]).

use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::schema::{AccessName, ApiName, ExpectYaml, FlagName, SequenceYaml};
use super::yaml::{LoadError, parse_yaml, read_bounded};
use crate::check::{Check, ExpectKind, Expectation, Loc, Origin, Requires, Step};
use crate::clauses::ClauseId;
use crate::device::MigrationApi;
use crate::op::{Op, Source, StreamName};
use crate::state::MigFlags;

fn loc_of<T>(file: &Arc<str>, s: &Spanned<T>) -> Loc {
    Loc { file: Arc::clone(file), line: s.referenced.line() as usize, col: s.referenced.column() as usize }
}

fn check_clause(file: &Arc<str>, c: &Spanned<String>) -> Result<ClauseId, LoadError> {
    if let Some(id) = ClauseId::parse(&c.value) {
        Ok(id)
    } else {
        let l = loc_of(file, c);
        Err(LoadError::at(
            &l.file,
            l.line,
            l.col,
            format!("unknown clause ID `{}` (see `vfio-mig-conform clauses`)", c.value),
        ))
    }
}

fn expectations(
    file: &Arc<str>,
    e: ExpectYaml,
    step_clauses: &[ClauseId],
    oracle: &mut bool,
    out: &mut Vec<Expectation>,
) -> Result<(), LoadError> {
    match e {
        ExpectYaml::Oracle => *oracle = true,
        ExpectYaml::List(items) => {
            for i in items {
                expectations(file, i, step_clauses, oracle, out)?;
            }
        }
        ExpectYaml::Map(m) => {
            let m = *m;
            *oracle |= m.oracle;
            let mut clauses = Vec::new();
            for c in &m.clauses {
                clauses.push(check_clause(file, c)?);
            }
            if clauses.is_empty() {
                clauses = step_clauses.to_vec();
            }
            let mut push = |kind: ExpectKind| out.push(Expectation { kind, clauses: clauses.clone() });
            match m.ok {
                Some(true) => push(ExpectKind::Ok),
                Some(false) => push(ExpectKind::Fails),
                None => {}
            }
            if let Some(e) = m.errno {
                push(ExpectKind::Errno(e.into_vec()));
            }
            if let Some(s) = m.state {
                push(ExpectKind::State(s));
            }
            if let Some(s) = m.state_in {
                push(ExpectKind::StateIn(s));
            }
            if let Some(b) = m.data_fd {
                push(ExpectKind::DataFd(b));
            }
            if let Some(c) = m.bytes {
                push(ExpectKind::Bytes(c));
            }
            if let Some(b) = m.eof {
                push(ExpectKind::Eof(b));
            }
            if let Some(s) = m.equals {
                push(ExpectKind::Equals(s));
            }
            if let Some(s) = m.differs {
                push(ExpectKind::Differs(s));
            }
            if let Some(c) = m.value {
                push(ExpectKind::Value(c));
            }
            if let Some(mk) = m.value_masked {
                push(ExpectKind::ValueMasked { mask: mk.mask, value: mk.value });
            }
            if let Some(s) = m.equals_saved {
                push(ExpectKind::EqualsSaved(s));
            }
            if let Some(s) = m.no_irqs_since {
                push(ExpectKind::NoIrqsSince(s));
            }
            if let Some(s) = m.irqs_since {
                push(ExpectKind::IrqsSince(s));
            }
            if let Some(b) = m.readable {
                push(ExpectKind::Readable(b));
            }
            if let Some(b) = m.cloexec {
                push(ExpectKind::Cloexec(b));
            }
            if let Some(a) = m.access {
                push(ExpectKind::AccessMode(match a {
                    AccessName::Rdonly => 0,
                    AccessName::Wronly => 1,
                }));
            }
            if let Some(c) = m.initial_bytes {
                push(ExpectKind::InitialBytes(c));
            }
            if let Some(c) = m.dirty_bytes {
                push(ExpectKind::DirtyBytes(c));
            }
            if let Some(c) = m.bits_set {
                push(ExpectKind::BitsSet(c));
            }
            if let Some(b) = m.preset_kept {
                push(ExpectKind::PresetKept(b));
            }
        }
    }
    Ok(())
}

/// Checks a check id: lower-case dotted, at least three components.
pub fn valid_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// Loads a sequence from text. `name` is how errors and reports name the file.
pub fn load_str(name: &str, bytes: &[u8]) -> Result<Check, LoadError> {
    let y: SequenceYaml = parse_yaml(name, bytes)?;
    let file: Arc<str> = Arc::from(name);
    if !valid_id(&y.id.value) {
        let l = loc_of(&file, &y.id);
        return Err(LoadError::at(
            name,
            l.line,
            l.col,
            format!(
                "id `{}` must be lower-case words joined by dots, at least three (e.g. qemu.v2.save_precopy)",
                y.id.value
            ),
        ));
    }
    let mut devices: Vec<String> = y.requires.devices.iter().map(|d| d.value.clone()).collect();
    for (i, d) in y.requires.devices.iter().enumerate() {
        if devices[..i].contains(&d.value) {
            let l = loc_of(&file, d);
            return Err(LoadError::at(
                name,
                l.line,
                l.col,
                format!("device label `{}` listed twice", d.value),
            ));
        }
    }
    if devices.is_empty() {
        devices.push("A".to_string());
    }
    let mut steps = Vec::new();
    let mut captures: Vec<String> = Vec::new();
    let mut fd_names: Vec<String> = vec!["current".to_string(), "previous".to_string()];
    for s in y.steps {
        let loc = loc_of(&file, &s);
        let sy = s.value;
        let mut step_clauses = Vec::new();
        for c in &sy.clauses {
            step_clauses.push(check_clause(&file, c)?);
        }
        let device = match &sy.device {
            Some(d) if !devices.contains(&d.value) => {
                let l = loc_of(&file, d);
                return Err(LoadError::at(
                    name,
                    l.line,
                    l.col,
                    format!(
                        "unknown device label `{}` (requires.devices lists {})",
                        d.value,
                        devices.join(", ")
                    ),
                ));
            }
            Some(d) => Some(d.value.clone()),
            None => None,
        };
        // Names must be defined before they are used.
        let err = |m: String| LoadError::at(name, loc.line, loc.col, m);
        let need_capture = |n: &StreamName, captures: &Vec<String>| {
            if captures.contains(&n.0) {
                Ok(())
            } else {
                Err(err(format!("stream `{n}` is used before any step captures it (read: {{capture: {n}}})")))
            }
        };
        match &sy.op {
            Op::Read(a) => {
                if let Some(c) = &a.capture {
                    captures.push(c.0.clone());
                }
            }
            Op::V1Save(a) => {
                if let Some(c) = &a.capture {
                    captures.push(c.0.clone());
                }
            }
            Op::Write(a) => {
                if let Source::Stream(n) = &a.data {
                    need_capture(n, &captures)?;
                }
                if let Some(
                    crate::op::Mutation::Splice { other, .. } | crate::op::Mutation::SpliceAt { other, .. },
                ) = &a.mutate
                {
                    need_capture(other, &captures)?;
                }
            }
            Op::V1Resume(a) => {
                if let Source::Stream(n) = &a.data {
                    need_capture(n, &captures)?;
                }
            }
            _ => {}
        }
        let fd_ref = match &sy.op {
            Op::Read(a) => Some(&a.fd),
            Op::Write(a) => Some(&a.fd),
            Op::PrecopyInfo(a) => Some(&a.fd),
            Op::BadBuffer(a) => Some(&a.fd),
            Op::RaceSetRead(a) => Some(&a.fd),
            Op::RaceReset(a) if a.during == crate::op::RaceCall::PrecopyInfo => Some(&a.fd),
            Op::Poll { fd, .. } | Op::FdFlags { fd } | Op::CloseFd { fd } => Some(fd),
            _ => None,
        };
        if let Some(f) = fd_ref
            && !fd_names.contains(&f.as_str().to_string())
        {
            return Err(err(format!("data fd `{f}` is used before a step names it with `as: {f}`")));
        }
        if let Some(n) = &sy.name_fd {
            if !matches!(sy.op, Op::SetState(_)) {
                return Err(err(
                    "`as:` names the data fd a set_state step returns; this step is not set_state"
                        .to_string(),
                ));
            }
            fd_names.push(n.clone());
        }
        let mut oracle = false;
        let mut expect = Vec::new();
        if let Some(e) = sy.expect {
            expectations(&file, e, &step_clauses, &mut oracle, &mut expect)?;
        }
        if !step_clauses.is_empty() && expect.is_empty() && !oracle {
            return Err(err("`clauses:` without `expect:`: say what the step must do".to_string()));
        }
        steps.push(Step {
            op: sy.op,
            device,
            name_fd: sy.name_fd,
            expect,
            oracle: oracle || sy.setup,
            setup: sy.setup,
            loc: Some(loc),
            note: sy.note,
            fail_nth: sy.fail_nth,
            precondition: None,
        });
    }
    if steps.is_empty() {
        return Err(LoadError::at(name, 1, 1, "a fixture needs at least one step"));
    }
    let mut extra = Vec::new();
    for c in &y.clauses {
        extra.push(check_clause(&file, c)?);
    }
    let mut flags = MigFlags::STOP_COPY;
    for f in &y.requires.flags {
        flags = MigFlags(
            flags.0
                | match f {
                    FlagName::StopCopy => 1,
                    FlagName::P2p => 2,
                    FlagName::PreCopy => 4,
                },
        );
    }
    let api = y.requires.api.map(|a| match a {
        ApiName::V1 => MigrationApi::V1,
        ApiName::V2 => MigrationApi::V2,
    });
    if matches!(api, Some(MigrationApi::V1)) {
        flags = MigFlags(0);
    }
    let uses_v1 = steps.iter().any(|s| s.op.is_v1());
    let api = api.or(if uses_v1 { Some(MigrationApi::V1) } else { Some(MigrationApi::V2) });
    let mut check = Check {
        id: y.id.value,
        title: y.title,
        clauses: Vec::new(),
        requires: Requires {
            api,
            flags,
            features: y.requires.features,
            devices: if y.requires.devices.is_empty() { Vec::new() } else { devices },
            other_type: y.requires.other_type,
            same_type: y.requires.same_type,
            unavailable: None,
        },
        steps,
        origin: Origin::Sequence(Loc { file: Arc::clone(&file), line: 1, col: 1 }),
        models: y.models,
        citation: y.citation,
        sequence_file: Some(name.to_string()),
    };
    check.collect_clauses(&extra);
    Ok(check)
}

/// Loads a sequence file from disk.
pub fn load_file(path: &Path) -> Result<Check, LoadError> {
    let name = path.display().to_string();
    let bytes = read_bounded(path).map_err(|m| LoadError::at(&name, 1, 1, m))?;
    load_str(&name, &bytes)
}

/// Loads every `*.yaml` below `dir` (sorted), collecting all errors.
pub fn load_dir(dir: &Path) -> Result<Vec<Check>, Vec<LoadError>> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files);
    files.sort();
    let mut checks = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load_file(&f) {
            Ok(c) => checks.push(c),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(checks) } else { Err(errors) }
}

fn collect_yaml(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        // Real subdirectories only: a symlink to a parent directory would never end.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_yaml(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Loads every built-in sequence (`fixtures/**/*.yaml` compiled into the binary); errors name
/// the file as it is in the repository.
pub fn builtin() -> Result<Vec<Check>, Vec<LoadError>> {
    let mut checks = Vec::new();
    let mut errors = Vec::new();
    for (name, bytes) in crate::embedded::SEQUENCES {
        match load_str(name, bytes) {
            Ok(mut c) => {
                // Built-in sequences run with the suite: `--exact ID` reproduces them.
                c.sequence_file = None;
                checks.push(c);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(checks) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::id::*;
    use crate::sequence::yaml::{MAX_FILE, parse_yaml};

    fn err(text: &str) -> String {
        load_str("t.yaml", text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_sequence_loads_with_located_steps() {
        let c = load_str(
            "t.yaml",
            b"id: a.b.c\ntitle: t\nsteps:\n  - set_state: STOP\n    expect: oracle\n  - get_state\n  - reset:\n    expect: {ok: true}\n    clauses: [V2-RESET-001]\n",
        )
        .unwrap();
        assert_eq!(c.steps.len(), 3);
        assert!(c.steps[0].oracle);
        assert_eq!(c.steps[0].loc.as_ref().unwrap().line, 4);
        assert_eq!(c.steps[2].expect[0].clauses, vec![V2_RESET_001]);
        assert!(c.clauses.contains(&V2_STATE_002), "a judged SET can break V2-STATE-002");
        assert!(!c.clauses.contains(&V2_STATE_007), "RUNNING -> STOP cannot break V2-STATE-007");
    }

    #[test]
    fn an_unknown_step_names_its_line_and_column() {
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - set_state: STOP\n  - set_stat: STOP\n");
        assert!(e.starts_with("t.yaml:5:5: unknown step `set_stat`"), "{e}");
    }

    #[test]
    fn wrong_types_and_unknown_clauses_and_devices_are_located() {
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - read: {max: lots}\n");
        assert!(e.starts_with("t.yaml:4:"), "{e}");
        let e = err(
            "id: a.b.c\ntitle: t\nsteps:\n  - reset:\n    expect: {ok: true}\n    clauses: [V2-NOPE-001]\n",
        );
        assert!(e.starts_with("t.yaml:6:") && e.contains("unknown clause ID `V2-NOPE-001`"), "{e}");
        let e = err("id: a.b.c\ntitle: t\nrequires: {devices: [A, B]}\nsteps:\n  - reset:\n    device: C\n");
        assert!(e.starts_with("t.yaml:6:") && e.contains("unknown device label `C`"), "{e}");
    }

    #[test]
    fn streams_and_fds_must_be_defined_before_use() {
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - write: {data: {stream: s}}\n");
        assert!(e.contains("stream `s` is used before"), "{e}");
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - read: {fd: save}\n");
        assert!(e.contains("data fd `save` is used before"), "{e}");
    }

    #[test]
    fn hostile_files_fail_cleanly() {
        assert!(load_str("t.yaml", b"").unwrap_err().message.contains("empty"));
        assert!(load_str("t.yaml", b"# only a comment\n").unwrap_err().message.contains("empty"));
        let e = load_str("t.yaml", b"id: a.b.c\ntitle: \xff\xfe\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 8));
        assert!(e.message.contains("UTF-8"));
        let big = vec![b'#'; MAX_FILE + 1];
        assert!(load_str("t.yaml", &big).unwrap_err().message.contains("limited"));
        let deep = format!("id: a.b.c\ntitle: t\nsteps: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let e = load_str("t.yaml", deep.as_bytes()).unwrap_err();
        assert!(e.message.contains("recursion limit") && e.line == 3, "{e}");
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            laughs.push_str(&format!(
                "{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n",
                (b'b' + i) as char,
                (b'b' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char
            ));
        }
        let e =
            parse_yaml::<std::collections::BTreeMap<String, serde_json::Value>>("t.yaml", laughs.as_bytes())
                .unwrap_err();
        assert!(e.message.contains("budget"), "{e}");
    }
}
