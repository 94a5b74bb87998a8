//! A check: a named sequence of steps with expectations, produced by a YAML sequence or a
//! generator. The engine runs checks; it never needs to know where they came from.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clauses::{ClauseId, Feature};
use crate::errno::Errno;
use crate::op::{Op, StreamName};
use crate::state::{MigFlags, MigState};

/// A position in a YAML file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A comparison on a number: `>0`, `==96`, `<=4096`, or a plain number (equality).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CmpRepr", into = "String")]
pub struct Cmp {
    pub op: CmpOp,
    pub value: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CmpRepr {
    Num(u64),
    Text(String),
}

impl TryFrom<CmpRepr> for Cmp {
    type Error = String;
    fn try_from(r: CmpRepr) -> Result<Self, String> {
        match r {
            CmpRepr::Num(n) => Ok(Cmp { op: CmpOp::Eq, value: n }),
            CmpRepr::Text(t) => Cmp::parse(&t),
        }
    }
}

impl From<Cmp> for String {
    fn from(c: Cmp) -> String {
        c.to_string()
    }
}

impl Cmp {
    pub fn parse(text: &str) -> Result<Cmp, String> {
        let t = text.trim();
        let (op, rest) = [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ]
        .iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r)))
        .unwrap_or((CmpOp::Eq, t));
        let value = crate::state::parse_u64(rest)
            .ok_or_else(|| format!("`{text}` is not a comparison like >0, ==96 or <=4096"))?;
        Ok(Cmp { op, value })
    }

    pub fn holds(self, x: u64) -> bool {
        match self.op {
            CmpOp::Eq => x == self.value,
            CmpOp::Ne => x != self.value,
            CmpOp::Lt => x < self.value,
            CmpOp::Le => x <= self.value,
            CmpOp::Gt => x > self.value,
            CmpOp::Ge => x >= self.value,
        }
    }
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        };
        write!(f, "{op}{}", self.value)
    }
}

/// One thing a step's result must satisfy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectKind {
    /// The call succeeded.
    Ok,
    /// The call failed (any errno).
    Fails,
    /// The call failed with one of these errnos.
    Errno(Vec<Errno>),
    /// GET MIG_DEVICE_STATE after the step returns this state.
    State(MigState),
    /// ... one of these states.
    StateIn(Vec<MigState>),
    /// SET returned a data fd (true) or -1 (false).
    DataFd(bool),
    /// Bytes moved.
    Bytes(Cmp),
    /// Bytes moved are at most `factor` times a value saved earlier (`data_size` holds the
    /// last MIG_DATA_SIZE).
    BytesAtMost { saved: String, factor: u32 },
    /// The read loop ended with end of stream (read returned 0).
    Eof(bool),
    /// The bytes read equal (hash and length) a captured stream.
    Equals(StreamName),
    /// The bytes read differ from a captured stream.
    Differs(StreamName),
    /// The value read (register, header field, flags) compares so.
    Value(Cmp),
    /// Value masked with `mask` equals `value`.
    ValueMasked { mask: u64, value: u64 },
    /// The value read equals a value saved earlier with `save_as`.
    EqualsSaved(String),
    /// No interrupt has been counted since this `irq_mark`.
    NoIrqsSince(String),
    /// At least one interrupt has been counted since this `irq_mark`.
    IrqsSince(String),
    /// poll() revents include POLLIN.
    Readable(bool),
    /// The data fd has FD_CLOEXEC.
    Cloexec(bool),
    /// The data fd's access mode (0 = O_RDONLY, 1 = O_WRONLY).
    AccessMode(u32),
    /// PRECOPY_INFO initial_bytes.
    InitialBytes(Cmp),
    /// PRECOPY_INFO dirty_bytes.
    DirtyBytes(Cmp),
    /// DMA report: number of bits set.
    BitsSet(Cmp),
    /// DMA report: pre-set bits are all still set.
    PresetKept(bool),
}

impl ExpectKind {
    /// Whether checking this expectation needs a GET after the step.
    pub fn needs_state(&self) -> bool {
        matches!(self, ExpectKind::State(_) | ExpectKind::StateIn(_))
    }

    /// Human description for `Expected:` lines.
    pub fn describe(&self) -> String {
        match self {
            ExpectKind::Ok => "the call succeeds".to_string(),
            ExpectKind::Fails => "the call fails".to_string(),
            ExpectKind::Errno(v) => {
                format!("the call fails with {}", v.iter().map(|e| e.name()).collect::<Vec<_>>().join(" or "))
            }
            ExpectKind::State(s) => format!("state {s}"),
            ExpectKind::StateIn(v) => {
                format!("state one of {}", v.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "))
            }
            ExpectKind::DataFd(true) => "a data fd is returned".to_string(),
            ExpectKind::DataFd(false) => "data_fd -1".to_string(),
            ExpectKind::Bytes(c) => format!("bytes {c}"),
            ExpectKind::BytesAtMost { saved, factor } => format!("at most {factor} x `{saved}` bytes"),
            ExpectKind::Eof(true) => "the stream ends (read returns 0)".to_string(),
            ExpectKind::Eof(false) => "the stream does not end (no read returning 0)".to_string(),
            ExpectKind::Equals(s) => format!("the bytes equal captured stream `{s}`"),
            ExpectKind::Differs(s) => format!("the bytes differ from captured stream `{s}`"),
            ExpectKind::Value(c) => format!("value {c}"),
            ExpectKind::ValueMasked { mask, value } => format!("value & {mask:#x} == {value:#x}"),
            ExpectKind::EqualsSaved(n) => format!("value equals saved `{n}`"),
            ExpectKind::NoIrqsSince(m) => format!("no interrupt since mark `{m}`"),
            ExpectKind::IrqsSince(m) => format!("at least one interrupt since mark `{m}`"),
            ExpectKind::Readable(b) => format!("poll reports {}readable", if *b { "" } else { "not " }),
            ExpectKind::Cloexec(b) => format!("FD_CLOEXEC {}", if *b { "set" } else { "clear" }),
            ExpectKind::AccessMode(0) => "the fd is O_RDONLY".to_string(),
            ExpectKind::AccessMode(1) => "the fd is O_WRONLY".to_string(),
            ExpectKind::AccessMode(m) => format!("access mode {m}"),
            ExpectKind::InitialBytes(c) => format!("initial_bytes {c}"),
            ExpectKind::DirtyBytes(c) => format!("dirty_bytes {c}"),
            ExpectKind::BitsSet(c) => format!("bits set {c}"),
            ExpectKind::PresetKept(_) => "every pre-set bitmap bit stays set".to_string(),
        }
    }
}

/// An expectation with the clauses it checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    pub kind: ExpectKind,
    pub clauses: Vec<ClauseId>,
}

/// One step of a check.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub op: Op,
    /// Device label (default: the check's first device).
    pub device: Option<String>,
    /// Name for a data fd this step returns.
    pub name_fd: Option<String>,
    pub expect: Vec<Expectation>,
    /// Let the spec oracle judge the result.
    pub oracle: bool,
    /// Preparation only: a broken expectation is still reported, marked as setup.
    pub setup: bool,
    pub loc: Option<Loc>,
    pub note: Option<String>,
    /// Fault injection: the step's `fail_nth`-th injectable kernel call (a slab or page
    /// allocation, ...) fails (`/proc/thread-self/fail-nth`). A step whose fault fired is
    /// not judged and the oracle forgets the device state; kernel reports still count.
    pub fail_nth: Option<u32>,
    /// The step checks that the check can observe what it is about (a stimulus that does
    /// raise interrupts, a feature that answers): if one of its expectations fails, the check
    /// is UNSUPPORTED with this reason and the expectation's actual value, not FAIL or PASS.
    pub precondition: Option<String>,
}

impl Step {
    pub fn new(op: Op) -> Step {
        Step {
            op,
            device: None,
            name_fd: None,
            expect: Vec::new(),
            oracle: false,
            setup: false,
            loc: None,
            note: None,
            fail_nth: None,
            precondition: None,
        }
    }

    pub fn oracle(mut self) -> Step {
        self.oracle = true;
        self
    }

    pub fn setup(mut self) -> Step {
        self.setup = true;
        self.oracle = true;
        self
    }

    pub fn on(mut self, device: &str) -> Step {
        self.device = Some(device.to_string());
        self
    }

    pub fn expect(mut self, kind: ExpectKind, clauses: &[ClauseId]) -> Step {
        self.expect.push(Expectation { kind, clauses: clauses.to_vec() });
        self
    }

    /// Makes the step a precondition of observation (see [`Step::precondition`]).
    pub fn precondition(mut self, why: &str) -> Step {
        self.precondition = Some(why.to_string());
        self
    }

    pub fn named(mut self, name: &str) -> Step {
        self.name_fd = Some(name.to_string());
        self
    }
}

/// What a check needs from the devices it runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requires {
    /// `v1` or `v2` (None: either).
    pub api: Option<crate::device::MigrationApi>,
    /// Migration flags every device must advertise.
    pub flags: MigFlags,
    /// Optional features the check needs (UNSUPPORTED when absent).
    pub features: Vec<Feature>,
    /// Devices the check uses (labels); at least one.
    pub devices: Vec<String>,
    /// The second device must be of another type than the first (foreign streams).
    pub other_type: bool,
    /// Every device must be of the first one's type (streams move between them).
    #[serde(default)]
    pub same_type: bool,
    /// The check cannot run on this kind of device at all (why).
    pub unavailable: Option<String>,
}

/// Where a check comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Generated(String),
    /// Loaded from a sequence file (serialized as `fixture`, its name before the rename).
    #[serde(rename = "fixture")]
    Sequence(Loc),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Generated(g) => write!(f, "generated by {g}"),
            Origin::Sequence(l) => write!(f, "{l}"),
        }
    }
}

/// A runnable check.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Stable hierarchical name (`fsm.arc.running.stop_copy`).
    pub id: String,
    pub title: String,
    /// Every clause the check can observe.
    pub clauses: Vec<ClauseId>,
    pub requires: Requires,
    pub steps: Vec<Step>,
    pub origin: Origin,
    /// What the sequence models (QEMU 8.2+, the spec, a debate).
    pub models: Option<String>,
    pub citation: Option<String>,
    /// The sequence file to replay with `--sequence`, if any.
    pub sequence_file: Option<String>,
}

impl Check {
    /// The device labels the check uses, primary first.
    pub fn devices(&self) -> Vec<String> {
        if self.requires.devices.is_empty() { vec!["A".to_string()] } else { self.requires.devices.clone() }
    }

    /// Collects the clause list from the steps (explicit expectations and, on v2, the
    /// clauses the oracle can report on its judged SET steps) plus `extra`.
    pub fn collect_clauses(&mut self, extra: &[ClauseId]) {
        let mut all: Vec<ClauseId> = extra.to_vec();
        if self.requires.api != Some(crate::device::MigrationApi::V1) {
            let first = self.devices().into_iter().next().unwrap_or_default();
            all.extend(crate::oracle::reach::set_clauses(self.requires.flags, &self.steps, &first));
        }
        for s in &self.steps {
            for e in &s.expect {
                all.extend(e.clauses.iter().copied());
            }
        }
        all.sort();
        all.dedup();
        self.clauses = all;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_parse_and_hold() {
        assert!(Cmp::parse(">0").unwrap().holds(1));
        assert!(!Cmp::parse(">0").unwrap().holds(0));
        assert!(Cmp::parse("==96").unwrap().holds(96));
        assert!(Cmp::parse("<=0x10").unwrap().holds(16));
        Cmp::parse("lots").unwrap_err();
    }
}
