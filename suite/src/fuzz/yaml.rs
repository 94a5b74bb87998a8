//! Fuzz cases and shrunk walks as YAML sequences (`--sequence FILE` replays them): a header with
//! id, title and citation "fuzz finding", `requires` from the flags, and steps judged by the
//! oracle.

use serde::Serialize;
use serde::ser::SerializeMap;

use super::{CaseRun, FuzzCase, Target};
use crate::device::MigrationApi;
use crate::hash::StreamHash;
use crate::op::Op;
use crate::state::MigFlags;

/// One step of a rendered sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct YamlStep {
    pub op: Op,
    /// `as:` label of the data fd a set_state step returns.
    pub name: Option<String>,
    /// `device:` label (None: the first device).
    pub device: Option<String>,
    /// `fail_nth:` fault injection of the step.
    pub fail_nth: Option<u32>,
}

/// A sequence to render as YAML.
#[derive(Clone, Debug, PartialEq)]
pub struct YamlSequence {
    /// Comment lines at the top (without `# `).
    pub comments: Vec<String>,
    pub id: String,
    pub title: String,
    pub api: MigrationApi,
    pub flags: MigFlags,
    /// Device labels when the sequence uses more than one device.
    pub devices: Vec<String>,
    pub steps: Vec<YamlStep>,
}

#[derive(Serialize)]
struct Requires {
    api: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    flags: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    devices: Vec<String>,
}

#[derive(Serialize)]
struct Out<'a> {
    id: &'a str,
    title: &'a str,
    citation: &'static str,
    requires: Requires,
    steps: Vec<StepOut>,
}

struct StepOut {
    key: String,
    value: serde_json::Value,
    name: Option<String>,
    device: Option<String>,
    fail_nth: Option<u32>,
}

impl Serialize for StepOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(&self.key, &self.value)?;
        if let Some(d) = &self.device {
            m.serialize_entry("device", d)?;
        }
        if let Some(n) = &self.name {
            m.serialize_entry("as", n)?;
        }
        if let Some(n) = self.fail_nth {
            m.serialize_entry("fail_nth", &n)?;
        }
        m.serialize_entry("expect", "oracle")?;
        m.end()
    }
}

/// Drops `null` members (every optional operation argument has a default).
fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn step_out(s: &YamlStep) -> StepOut {
    let (key, mut value) = match serde_json::to_value(&s.op) {
        Ok(serde_json::Value::Object(m)) if m.len() == 1 => {
            m.into_iter().next().unwrap_or((s.op.name().to_string(), serde_json::Value::Null))
        }
        _ => (s.op.name().to_string(), serde_json::Value::Null),
    };
    strip_nulls(&mut value);
    StepOut { key, value, name: s.name.clone(), device: s.device.clone(), fail_nth: s.fail_nth }
}

/// The lower-case flag names a sequence's `requires.flags` takes.
pub fn flag_names(flags: MigFlags) -> Vec<&'static str> {
    [(1, "stop_copy"), (2, "p2p"), (4, "pre_copy")]
        .iter()
        .filter(|(b, _)| flags.0 & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// A short stable hex hash of some text, for reproducer ids.
pub fn short_hash(text: &str) -> String {
    let mut h = StreamHash::default();
    h.update(text.as_bytes());
    format!("{:08x}", h.value() as u32)
}

impl YamlSequence {
    /// The sequence text.
    pub fn render(&self) -> String {
        let out = Out {
            id: &self.id,
            title: &self.title,
            citation: "fuzz finding",
            requires: Requires {
                api: if self.api == MigrationApi::V1 { "v1" } else { "v2" },
                flags: if self.api == MigrationApi::V1 { Vec::new() } else { flag_names(self.flags) },
                devices: self.devices.clone(),
            },
            steps: self.steps.iter().map(step_out).collect(),
        };
        let mut text = String::new();
        for c in &self.comments {
            for line in c.lines() {
                text.push_str("# ");
                text.push_str(line);
                text.push('\n');
            }
        }
        match serde_saphyr::to_string(&out) {
            Ok(y) => text.push_str(&y),
            Err(e) => text.push_str(&format!("# cannot render the sequence: {e}\n")),
        }
        text
    }
}

/// The device string a case runs on, for `--sequence` replays.
pub fn replay_command(case: &FuzzCase) -> String {
    format!("vfio-mig-conform '{}' --max-stream 1m --sequence FILE", case.sim_config().spec())
}

/// A case run as a sequence: the steps that ran (without those skipped as harness errors), up
/// to the first finding.
pub fn reproducer(case: &FuzzCase, out: &CaseRun, target: Target) -> String {
    let keep = out.reproducer_steps();
    let steps: Vec<YamlStep> = keep
        .iter()
        .filter_map(|&i| {
            Some(YamlStep {
                op: case.ops.get(i)?.clone(),
                name: case.names.get(i).cloned().flatten(),
                device: None,
                fail_nth: None,
            })
        })
        .collect();
    let what = match out.run.findings.first() {
        Some(f) => crate::clauses::join(&f.violation.clauses),
        None => out.problem().unwrap_or_else(|| "no finding on this simulator".to_string()),
    };
    let mut comments = vec![format!("fuzz finding ({}): {what}", target.name())];
    if let Some(f) = out.run.findings.first() {
        comments.push(format!("step {}: expected {}", f.step + 1, f.violation.expected));
        comments.push(format!("  actual {}", f.violation.actual));
    }
    comments.push(format!("replay: {}", replay_command(case)));
    let seq = YamlSequence {
        comments,
        id: String::new(),
        title: format!("fuzz finding ({}): {what}", target.name()),
        api: case.api,
        flags: case.flags,
        devices: Vec::new(),
        steps,
    };
    let body = format!("{:?}{}", seq.steps, case.sim_config().spec());
    YamlSequence { id: format!("fuzz.{}.case_{}", target.name(), short_hash(&body)), ..seq }.render()
}

/// A `resume_stream` case as a sequence: the bytes written to a RESUMING session, then the
/// SET that leaves RESUMING, judged by the oracle (which treats literal bytes as invalid).
pub fn resume_reproducer(case: &super::stream::Case) -> String {
    use crate::op::{FdRef, Segmentation, Source, WriteArgs};
    use crate::state::{MigState, StateArg};
    let hex: String = case.bytes.iter().map(|b| format!("{b:02x}")).collect();
    let sizes: Vec<u32> = case.segments.iter().map(|s| *s as u32).collect();
    let set = |s: MigState| YamlStep {
        op: Op::SetState(StateArg::Named(s)),
        name: None,
        device: None,
        fail_nth: None,
    };
    let steps = vec![
        set(MigState::Stop),
        YamlStep {
            op: Op::SetState(StateArg::Named(MigState::Resuming)),
            name: Some("load".into()),
            device: None,
            fail_nth: None,
        },
        YamlStep {
            op: Op::Write(WriteArgs {
                fd: FdRef::Named("load".into()),
                data: Source::Hex(hex),
                mutate: None,
                segment: if sizes.is_empty() { Segmentation::Whole } else { Segmentation::Cycle(sizes) },
                offset: None,
                keep_going: false,
                from_thread: false,
            }),
            name: None,
            device: None,
            fail_nth: None,
        },
        set(case.leave_to),
    ];
    let body = format!("{steps:?}{}", case.spec);
    YamlSequence {
        comments: vec![
            format!("fuzz finding (resume_stream): {} bytes written to a RESUMING session", case.bytes.len()),
            format!(
                "replay: vfio-mig-conform '{}' --max-stream 1m --sequence FILE (the oracle treats literal bytes as an invalid stream)",
                case.spec
            ),
        ],
        id: format!("fuzz.resume_stream.case_{}", short_hash(&body)),
        title: "fuzz finding (resume_stream): bytes written to a RESUMING session".to_string(),
        api: MigrationApi::V2,
        flags: MigFlags::ALL,
        devices: Vec::new(),
        steps,
    }
    .render()
}
