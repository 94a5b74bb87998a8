//! The fuzz harness: cases decoded from fuzzer bytes (or from YAML seeds), run on the reference
//! simulators with the spec oracle judging every step, and the live fuzzer's random walks.
//!
//! The cargo-fuzz targets in `fuzz/` are thin wrappers around [`fsm_v2`], [`v1_region`],
//! [`resume_stream`], [`yaml_sequence`] and [`yaml_profile`]; `cargo test` replays the checked-in
//! corpora through the same functions (`suite/tests/fuzz_corpus.rs`).
//!
//! A fuzz input is either raw bytes, decoded with [`arbitrary::Unstructured`] into a
//! [`FuzzCase`], or text that starts with [`YAML_MARKER`]: an optional `#device: sim:v2?...`
//! line, then a YAML sequence or a YAML list of steps. Seed corpora are readable YAML generated
//! from `fixtures/`, and libFuzzer still mutates them.
//!
//! In [`fsm_v2`] and [`v1_region`] the simulator and the oracle are two independent
//! descriptions of the uAPI: any finding on a reference simulator is a disagreement, a bug in
//! one of them, and the target panics with the finding and a YAML reproducer.

pub mod corpus;
pub mod coverage;
pub mod kcov;
pub mod live;
mod opgen;
/// The suite's PRNG, used by the fuzzer (re-exported where it used to live).
pub use crate::rng;
pub mod stream;
pub mod symbolize;
pub mod yaml;

use arbitrary::{Arbitrary, Unstructured};

use crate::check::{Check, Origin, Requires, Step};
use crate::device::MigrationApi;
use crate::device::sim::{SimConfig, parse_spec};
use crate::engine::{CheckEnd, CheckRun, Engine, EngineOptions};
use crate::op::{Op, Source, WriteArgs};
use crate::state::MigFlags;

/// First line of a YAML fuzz input.
pub const YAML_MARKER: &str = "#vmc-fuzz-yaml\n";
/// Optional second line of a YAML fuzz input: the simulated device to run on.
pub const DEVICE_LINE: &str = "#device: ";
/// Most operations one case runs.
pub const MAX_OPS: usize = 64;
/// Stream bound of the harness engine (the reference simulators' streams are a few KiB).
pub const MAX_STREAM: u64 = 1 << 20;
/// State sizes a decoded case picks from (a few pages at most, so a case stays fast).
const STATE_SIZES: [u64; 7] = [1, 24, 96, 4095, 4096, 4097, 2 * 4096 + 123];

/// Which harness a fuzz input is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    FsmV2,
    V1Region,
    ResumeStream,
    YamlSequence,
    YamlProfile,
}

impl Target {
    pub const ALL: [Target; 5] =
        [Target::FsmV2, Target::V1Region, Target::ResumeStream, Target::YamlSequence, Target::YamlProfile];

    pub fn name(self) -> &'static str {
        match self {
            Target::FsmV2 => "fsm_v2",
            Target::V1Region => "v1_region",
            Target::ResumeStream => "resume_stream",
            Target::YamlSequence => "yaml_sequence",
            Target::YamlProfile => "yaml_profile",
        }
    }

    pub fn by_name(name: &str) -> Option<Target> {
        Target::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// Runs the harness function of this target on one input.
    pub fn run(self, data: &[u8]) {
        match self {
            Target::FsmV2 => fsm_v2(data),
            Target::V1Region => v1_region(data),
            Target::ResumeStream => resume_stream(data),
            Target::YamlSequence => yaml_sequence(data),
            Target::YamlProfile => yaml_profile(data),
        }
    }
}

/// One fuzz case: a simulated device configuration and the operations run on it.
#[derive(Clone, Debug, PartialEq)]
pub struct FuzzCase {
    pub api: MigrationApi,
    pub flags: MigFlags,
    pub dma: bool,
    pub state_size: u64,
    pub ops: Vec<Op>,
    /// `as:` labels, one per op: the name of the data fd a `set_state` step returns.
    pub names: Vec<Option<String>>,
    /// Injected defects (only from a `#device:` line of a YAML input; never from raw bytes).
    pub defects: Vec<crate::device::sim::Defect>,
}

impl FuzzCase {
    fn empty(api: MigrationApi) -> FuzzCase {
        FuzzCase {
            api,
            flags: if api == MigrationApi::V2 { MigFlags::ALL } else { MigFlags(0) },
            dma: api == MigrationApi::V2,
            state_size: 4096 + 123,
            ops: Vec::new(),
            names: Vec::new(),
            defects: Vec::new(),
        }
    }

    /// Decodes a fuzz input exactly as the target `fsm_v2` (`api` V2) or `v1_region` (V1) does:
    /// None when the bytes do not make a case (not enough data, YAML that does not load).
    pub fn decode(api: MigrationApi, data: &[u8]) -> Option<FuzzCase> {
        let mut case = match data.strip_prefix(YAML_MARKER.as_bytes()) {
            Some(text) => Self::from_yaml(api, text)?,
            None => Self::from_unstructured(api, &mut Unstructured::new(data)).ok()?,
        };
        case.normalize();
        Some(case)
    }

    fn from_unstructured(api: MigrationApi, u: &mut Unstructured<'_>) -> arbitrary::Result<FuzzCase> {
        let mut case = FuzzCase::empty(api);
        if api == MigrationApi::V2 {
            case.flags = MigFlags(*u.choose(&[1u64, 3, 5, 7])?);
            case.dma = u.arbitrary()?;
        }
        case.state_size = *u.choose(&STATE_SIZES)?;
        while case.ops.len() < MAX_OPS && !u.is_empty() {
            let op = if api == MigrationApi::V2 { opgen::v2_op(u)? } else { opgen::v1_op(u)? };
            let name = if matches!(op, Op::SetState(_)) && u.ratio(1u8, 6)? {
                Some("stale".to_string())
            } else {
                None
            };
            case.ops.push(op);
            case.names.push(name);
        }
        Ok(case)
    }

    fn from_yaml(api: MigrationApi, text: &[u8]) -> Option<FuzzCase> {
        let mut case = FuzzCase::empty(api);
        let mut body = text;
        if let Some(rest) = text.strip_prefix(DEVICE_LINE.as_bytes()) {
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            let spec = std::str::from_utf8(&rest[..end]).ok()?.trim();
            let cfg = parse_spec(spec).ok()?;
            if cfg.api != api {
                return None;
            }
            case.flags = cfg.flags;
            case.dma = cfg.dma_logging;
            case.state_size = cfg.state_size.clamp(1, STATE_SIZES[STATE_SIZES.len() - 1]);
            case.defects = cfg.defects;
            body = rest.get(end + 1..).unwrap_or(&[]);
        }
        let check = load_steps(body)?;
        for s in check.steps {
            if s.device.is_some() {
                // Single-device harness: steps on peers are dropped.
                continue;
            }
            case.ops.push(s.op);
            case.names.push(s.name_fd);
            if case.ops.len() == MAX_OPS {
                break;
            }
        }
        Some(case)
    }

    /// Bounds every size so one case runs in well under a millisecond on the simulator, and
    /// drops what the sequence loader would refuse (an fd or stream used before it exists):
    /// what runs is exactly what `fuzz-to-yaml` prints.
    pub fn normalize(&mut self) {
        let api = self.api;
        let mut fds: Vec<String> = Vec::new();
        let mut streams: Vec<String> = Vec::new();
        let mut ops = Vec::with_capacity(self.ops.len());
        let mut names = Vec::with_capacity(self.ops.len());
        let pairs = std::mem::take(&mut self.ops).into_iter().zip(std::mem::take(&mut self.names));
        for (mut op, mut name) in pairs.take(MAX_OPS) {
            let keep = match api {
                MigrationApi::V1 => opgen::is_v1_relevant(&op),
                _ => !op.is_v1(),
            };
            if !keep {
                continue;
            }
            opgen::clamp(&mut op);
            // What the loader refuses cannot be a reproducer (the clamps keep this rare).
            if op.check_limits().is_err() || !names_defined(&op, &fds, &streams) {
                continue;
            }
            if !matches!(op, Op::SetState(_)) {
                name = None;
            }
            if let Some(n) = &name {
                if matches!(n.as_str(), "current" | "previous") || n.is_empty() {
                    name = None;
                } else if !fds.contains(n) {
                    fds.push(n.clone());
                }
            }
            match &op {
                Op::Read(a) => streams.extend(a.capture.as_ref().map(|c| c.0.clone())),
                Op::V1Save(a) => streams.extend(a.capture.as_ref().map(|c| c.0.clone())),
                _ => {}
            }
            ops.push(op);
            names.push(name);
        }
        self.ops = ops;
        self.names = names;
    }

    /// The simulated device the case runs on.
    pub fn sim_config(&self) -> SimConfig {
        let base = if self.api == MigrationApi::V1 { SimConfig::v1() } else { SimConfig::v2() };
        SimConfig {
            flags: self.flags,
            dma_logging: self.dma,
            state_size: self.state_size,
            defects: self.defects.clone(),
            ..base
        }
    }

    /// The case as a check: every step judged by the oracle.
    pub fn check(&self, id: &str) -> Check {
        self.check_of(id, &(0..self.ops.len()).collect::<Vec<_>>())
    }

    /// The check made of the steps at `keep` (indices into `ops`).
    pub fn check_of(&self, id: &str, keep: &[usize]) -> Check {
        let steps = keep
            .iter()
            .filter_map(|&i| {
                let op = self.ops.get(i)?.clone();
                let mut s = Step::new(op).oracle();
                s.name_fd = self.names.get(i).cloned().flatten();
                Some(s)
            })
            .collect();
        Check {
            id: id.to_string(),
            title: "fuzz case".to_string(),
            clauses: Vec::new(),
            requires: Requires {
                api: Some(self.api),
                flags: if self.api == MigrationApi::V2 { self.flags } else { MigFlags(0) },
                ..Requires::default()
            },
            steps,
            origin: Origin::Generated("fuzz".to_string()),
            models: None,
            citation: Some("fuzz finding".to_string()),
            sequence_file: None,
        }
    }

    /// Runs the case on a fresh simulator (harness errors skip the step).
    pub fn run(&self) -> CaseRun {
        self.run_steps(&(0..self.ops.len()).collect::<Vec<_>>())
    }

    /// Runs the steps at `keep`.
    pub fn run_steps(&self, keep: &[usize]) -> CaseRun {
        let cfg = self.sim_config();
        let mut engine = Engine::new(vec![cfg.build()], EngineOptions { max_stream: MAX_STREAM });
        engine.skip_harness_errors = true;
        engine.keep_trace = false;
        let check = self.check_of("fuzz.case.input", keep);
        let run = engine.run(&check);
        CaseRun { keep: keep.to_vec(), run }
    }
}

/// Loads a sequence or a bare YAML list of steps.
fn load_steps(text: &[u8]) -> Option<Check> {
    if text.len() > crate::sequence::MAX_FILE {
        return None;
    }
    let s = std::str::from_utf8(text).ok()?;
    let is_list = s
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with('-') || l.starts_with('['));
    if !is_list {
        return crate::sequence::load_str("fuzz-input.yaml", text).ok();
    }
    let mut wrapped = String::with_capacity(s.len() + s.lines().count() * 2 + 48);
    wrapped.push_str("id: fuzz.input.case\ntitle: fuzz input\nsteps:\n");
    for line in s.lines() {
        wrapped.push_str("  ");
        wrapped.push_str(line);
        wrapped.push('\n');
    }
    crate::sequence::load_str("fuzz-input.yaml", wrapped.as_bytes()).ok()
}

/// Whether every fd label and stream `op` names is defined by an earlier step (the sequence
/// loader's rule).
fn names_defined(op: &Op, fds: &[String], streams: &[String]) -> bool {
    let fd_ok = |f: &crate::op::FdRef| match f {
        crate::op::FdRef::Named(n) => fds.contains(n),
        _ => true,
    };
    let stream_ok = |s: &crate::op::StreamName| streams.contains(&s.0);
    match op {
        Op::Read(a) => fd_ok(&a.fd),
        Op::PrecopyInfo(a) => fd_ok(&a.fd),
        Op::BadBuffer(a) => fd_ok(&a.fd),
        Op::RaceSetRead(a) => fd_ok(&a.fd),
        Op::RaceReset(a) => fd_ok(&a.fd),
        Op::Poll { fd, .. } | Op::FdFlags { fd } | Op::CloseFd { fd } => fd_ok(fd),
        Op::Write(WriteArgs { fd, data, mutate, .. }) => {
            fd_ok(fd)
                && !matches!(data, Source::Stream(s) if !stream_ok(s))
                && !matches!(
                    mutate,
                    Some(crate::op::Mutation::Splice { other, .. } | crate::op::Mutation::SpliceAt { other, .. })
                        if !stream_ok(other)
                )
        }
        Op::V1Resume(a) => !matches!(&a.data, Source::Stream(s) if !stream_ok(s)),
        _ => true,
    }
}

/// The result of running a case: which steps ran and what happened.
#[derive(Clone, Debug)]
pub struct CaseRun {
    /// Indices into the case's ops of the steps of the check that ran.
    pub keep: Vec<usize>,
    pub run: CheckRun,
}

impl CaseRun {
    /// The indices (into the case's ops) of the steps that ran, without those skipped as
    /// harness errors, up to and including the step of the first finding.
    pub fn reproducer_steps(&self) -> Vec<usize> {
        let last = self.run.findings.first().map(|f| f.step);
        self.keep
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.run.skipped.contains(i) && last.is_none_or(|l| *i <= l))
            .map(|(_, k)| *k)
            .collect()
    }

    /// What the target treats as a crash: a finding, an error or a device that did not
    /// restore.
    pub fn problem(&self) -> Option<String> {
        if let Some(f) = self.run.findings.first() {
            return Some(format!(
                "{} at step {} `{}`: expected {}; actual {}",
                crate::clauses::join(&f.violation.clauses),
                f.step + 1,
                f.op,
                f.violation.expected,
                f.violation.actual
            ));
        }
        if let Some(e) = &self.run.restore_error {
            return Some(format!("the simulator did not restore: {e}"));
        }
        match &self.run.end {
            CheckEnd::HarnessError(e) => Some(format!("harness error: {e}")),
            CheckEnd::Timeout(e) => Some(format!("timeout: {e}")),
            CheckEnd::Unsupported(u) => Some(format!("the case did not run: {u}")),
            CheckEnd::Completed => None,
        }
    }
}

fn run_target(api: MigrationApi, data: &[u8]) {
    let Some(case) = FuzzCase::decode(api, data) else { return };
    if case.ops.is_empty() {
        return;
    }
    if api == MigrationApi::V2
        && let Err(problem) = next_state_helpers_agree(&case)
    {
        panic!(
            "the simulator's next-state helper and the oracle's disagree on {}: {problem}",
            case.sim_config().spec()
        );
    }
    let out = case.run();
    if let Some(problem) = out.problem() {
        let target = if api == MigrationApi::V2 { Target::FsmV2 } else { Target::V1Region };
        let repro = yaml::reproducer(&case, &out, target);
        panic!(
            "oracle and simulator disagree on {}: {problem}\nreproducer ({}):\n{repro}",
            case.sim_config().spec(),
            yaml::replay_command(&case)
        );
    }
}

/// For every SET target of `case`, the simulator's next-state helper (the kernel's table data,
/// `device::sim::v2::next_state`) and the oracle's (`oracle::fsm`, its own table) take the
/// same step from every current state, or refuse alike.
fn next_state_helpers_agree(case: &FuzzCase) -> Result<(), String> {
    use crate::device::sim::v2::next_state::{self, HelperError};
    use crate::oracle::fsm::{self, Refusal};
    for op in &case.ops {
        let Op::SetState(target) = op else { continue };
        let new = target.raw();
        for cur in (0..=8).chain([new, u32::MAX]) {
            let sim = next_state::next_state(case.flags, cur, new).map_err(|e| e == HelperError::CurInvalid);
            let oracle = fsm::next_state(case.flags, cur, new).map_err(|r| r == Refusal::CurrentInvalid);
            if sim != oracle {
                return Err(format!(
                    "cur {cur} new {new}: simulator {sim:?}, oracle {oracle:?} (Err(true) = EINVAL with WARN_ON)"
                ));
            }
        }
    }
    Ok(())
}

/// `fsm_v2`: operations on `sim:v2` with the case's flags, every step judged by the oracle;
/// any finding is a disagreement between the two and panics with a YAML reproducer. Before
/// running, the two next-state helpers are compared on every SET target of the case.
pub fn fsm_v2(data: &[u8]) {
    run_target(MigrationApi::V2, data);
}

/// `v1_region`: the same for `sim:v1` and the v1 region protocol, including misaligned and
/// partial header accesses.
pub fn v1_region(data: &[u8]) {
    run_target(MigrationApi::V1, data);
}

/// `resume_stream`: arbitrary bytes and a segmentation written into a RESUMING session of
/// `sim:v2`; nothing panics, and leaving RESUMING succeeds exactly when the bytes are a
/// valid stream of the device (checked by an independent parser of the stream format).
pub fn resume_stream(data: &[u8]) {
    if let Err(e) = stream::run(data) {
        panic!("{e}");
    }
}

/// `yaml_sequence`: the sequence loader never panics and stays within its budgets.
pub fn yaml_sequence(data: &[u8]) {
    let text = data.strip_prefix(YAML_MARKER.as_bytes()).unwrap_or(data);
    if let Ok(check) = crate::sequence::load_str("fuzz.yaml", text) {
        let budget = crate::sequence::yaml_options().budget.map_or(usize::MAX, |b| b.max_nodes);
        assert!(check.steps.len() <= budget, "{} steps from a budget of {budget} nodes", check.steps.len());
        assert!(!check.steps.is_empty(), "a sequence without steps loaded");
        assert!(crate::sequence::valid_id(&check.id), "invalid id `{}` loaded", check.id);
        // Every loaded sequence must also be a valid fuzz case.
        let mut wrapped = YAML_MARKER.as_bytes().to_vec();
        wrapped.extend_from_slice(text);
        let api = check.requires.api.unwrap_or(MigrationApi::V2);
        if api != MigrationApi::None {
            assert!(
                FuzzCase::decode(api, &wrapped).is_some(),
                "a sequence the loader accepts is not a fuzz case"
            );
        }
    }
}

/// `yaml_profile`: the profile loader never panics and stays within its budgets.
pub fn yaml_profile(data: &[u8]) {
    if let Ok(p) = crate::profile::Profile::load_str("fuzz.yaml", data) {
        let budget = crate::sequence::yaml_options().budget.map_or(usize::MAX, |b| b.max_nodes);
        assert!(p.deviations.len() <= budget, "{} deviations from {budget} nodes", p.deviations.len());
        for d in &p.deviations {
            assert!(!d.checks.is_empty(), "a deviation without checks loaded");
            for c in &d.clauses {
                assert!(crate::clauses::catalog().contains(c), "unknown clause {c} loaded");
            }
        }
        // Applying the profile never panics.
        let clauses: Vec<String> = p.deviations.iter().flat_map(|d| d.clauses.clone()).collect();
        let _ = p.apply("fuzz.case.input", None, crate::outcome::Outcome::Fail, &clauses);
        let _ = p.covers(&clauses);
    }
}

/// Decodes a crash file of `target` and prints the YAML sequence that replays it.
pub fn to_yaml(target: Target, data: &[u8]) -> Result<String, String> {
    match target {
        Target::FsmV2 | Target::V1Region => {
            let api = if target == Target::FsmV2 { MigrationApi::V2 } else { MigrationApi::V1 };
            let case = FuzzCase::decode(api, data)
                .ok_or_else(|| format!("the input does not decode to a {} case", target.name()))?;
            if case.ops.is_empty() {
                // `steps: []` is no sequence: the loader refuses it.
                return Err(format!(
                    "the input ({} bytes) decodes to a {} case without operations: there is nothing to replay",
                    data.len(),
                    target.name()
                ));
            }
            let out = case.run();
            Ok(yaml::reproducer(&case, &out, target))
        }
        Target::ResumeStream => {
            let case = stream::decode(data)
                .ok_or_else(|| "the input does not decode to a resume_stream case".to_string())?;
            Ok(yaml::resume_reproducer(&case))
        }
        Target::YamlSequence | Target::YamlProfile => {
            Err(format!("{} inputs are YAML already: the file itself is the reproducer", target.name()))
        }
    }
}

impl<'a> Arbitrary<'a> for FuzzCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut c = FuzzCase::from_unstructured(MigrationApi::V2, u)?;
        c.normalize();
        Ok(c)
    }
}
