//! Writing walks: seeded random sequences of operations biased towards meaningful ones
//! (mostly valid target states and states that complete the (cur, new) coverage, reads and
//! writes on the current data fd, captures then replays into the same or a peer device). Each
//! walk enables a random subset of the operation kinds (swarm testing).
//!
//! While it writes a walk the walker follows each device with the oracle's own
//! [`crate::oracle::model::Model`], fed with what a conforming device would answer: the
//! walker and the judge share one description of the device.
//!
//! `walk` (this module) chooses each v2 step's operation kind and follows the devices;
//! `args` draws the steps' arguments (target states, fd references, read and write
//! arguments, stream mutations, the save/restore macros); `v1` writes v1 walks.

use std::collections::BTreeSet;

mod args;
mod v1;

use super::LiveOptions;
use crate::check::{Check, Origin, Requires, Step};
use crate::device::MigrationApi;
use crate::engine::{DeviceFacts, Engine};
use crate::errno::Errno;
use crate::op::{
    Access, BadBufferArgs, BadCall, ConfigArgs, DmaReportArgs, DmaStartArgs, FdRef, IrqAction, IrqArgs,
    IrqData, IrqIndex, Mutation, Op, PrecopyArgs, ReadArgs, RegionArgs, RegionRef, Segmentation, Source,
    StreamName, V1Field, V1FieldArgs, V1ResumeArgs, V1SaveArgs, WriteArgs,
};
use crate::oracle::fsm::{SetPrediction, predict_set};
use crate::oracle::model::{Facts, Model, Observation};
use crate::rng::Rng;
use crate::state::{MigFlags, MigState, StateArg};

/// Operation kinds of a v2 walk (the `--ops` names).
pub const V2_KINDS: &[&str] = &[
    "set_state",
    "get_state",
    "get_flags",
    "data_size",
    "read",
    "write",
    "precopy_info",
    "precopy_info_v2",
    "bad_buffer",
    "race_set_read",
    "race_reset",
    "fail_nth",
    "poll",
    "fd_flags",
    "close_fd",
    "reset",
    "close_device",
    "dma_log_start",
    "dma_log_stop",
    "dma_log_report",
    "config_read",
    "region_read",
    "set_irqs",
    "wait",
    "debugfs_state",
    // Disruptive: only with --allow-disruptive.
    "feature",
    "config_write",
    "region_write",
];

/// Operation kinds of a v1 walk.
pub const V1_KINDS: &[&str] = &[
    "v1_set_state",
    "v1_save",
    "v1_resume",
    "v1_read",
    "reset",
    "close_device",
    "config_read",
    "region_read",
    "wait",
    // Disruptive: only with --allow-disruptive.
    "v1_write",
    "config_write",
    "region_write",
];

/// Kinds that can hurt a real host (MMIO and config writes with arbitrary values, raw feature
/// calls, writes into the v1 header).
pub fn kind_is_disruptive(kind: &str) -> bool {
    matches!(kind, "feature" | "config_write" | "region_write" | "v1_write")
}

/// Checks `--ops` against the kinds of `api`: the unknown names, if any.
pub fn unknown_kinds(api: MigrationApi, kinds: &[String]) -> Vec<String> {
    let all = if api == MigrationApi::V1 { V1_KINDS } else { V2_KINDS };
    kinds.iter().filter(|k| !all.contains(&k.as_str())).cloned().collect()
}

/// What the walker expects of one device while it writes a walk: the oracle's [`Model`] fed
/// with the answers of a conforming device, plus the v1 `device_state` and the data fd the
/// engine would call `current`.
#[derive(Clone, Debug)]
struct Expect {
    model: Model,
    v1: u32,
    /// The data fd of the last SET that returned one (numbers are the walker's own).
    current: Option<i32>,
    next_fd: i32,
}

impl Expect {
    fn new(dev: &Dev) -> Expect {
        let facts = Facts {
            flags: dev.facts.flags,
            dma_logging: dev.facts.dma_logging,
            device_type: dev.device_type.clone(),
        };
        Expect {
            model: Model::new(facts, Some(MigState::Running)),
            v1: crate::oracle::v1::RUNNING,
            current: None,
            next_fd: 1000,
        }
    }

    fn state(&self) -> Option<MigState> {
        self.model.state
    }

    /// Whether `current` is the data fd of a live session.
    fn live_fd(&self) -> bool {
        self.current
            .is_some_and(|fd| self.model.saving_fd() == Some(fd) || self.model.resuming_fd() == Some(fd))
    }

    /// Follows `op` as a conforming device would answer it. Leaving RESUMING depends on the
    /// stream, so it is followed as a failure that leaves the state unknown.
    fn follow(&mut self, op: &Op) {
        let ok = Observation::ok();
        match op {
            Op::SetState(t) => self.set(*t),
            Op::RaceSetRead(a) => self.set(a.state),
            // A conforming device ends in RUNNING whichever came first.
            Op::RaceReset(a) => {
                if a.during == crate::op::RaceCall::SetState {
                    self.set(a.state);
                }
                self.model.judge_reset(&ok);
                self.v1 = crate::oracle::v1::RUNNING;
            }
            Op::Reset => {
                self.model.judge_reset(&ok);
                self.v1 = crate::oracle::v1::RUNNING;
            }
            Op::CloseDevice => self.model.on_close(),
            Op::Reopen => self.model.on_reopen(&ok),
            Op::CloseFd { fd: FdRef::Current } => {
                if let Some(fd) = self.current.take() {
                    self.model.on_close_fd(fd);
                }
            }
            Op::DmaLogStart(_) => {
                self.model.judge_dma_start(None, &ok);
            }
            Op::DmaLogStop => {
                self.model.judge_dma_stop(&ok);
            }
            Op::V1SetState(v) => {
                use crate::oracle::v1 as o;
                if o::is_valid(v & o::MASK) {
                    self.v1 = v & o::MASK;
                }
            }
            _ => {}
        }
    }

    fn set(&mut self, t: StateArg) {
        let flags = self.model.facts.flags;
        let req = t.raw();
        let obs = match self.model.state {
            None => Observation {
                state: t.state().filter(|s| s.supported_by(flags)).map(MigState::raw),
                data_fd: Some(-1),
                ..Observation::ok()
            },
            Some(cur) => match predict_set(flags, cur, req) {
                SetPrediction::Walk(_) if cur == MigState::Resuming => {
                    Observation { state: None, ..Observation::err(Errno::EINVAL) }
                }
                p @ SetPrediction::Walk(_) => {
                    let fd = if p.returns_data_fd() {
                        self.next_fd += 1;
                        self.next_fd
                    } else {
                        -1
                    };
                    Observation { state: Some(req), data_fd: Some(fd), ..Observation::ok() }
                }
                SetPrediction::Noop => {
                    Observation { state: Some(cur.raw()), data_fd: Some(-1), ..Observation::ok() }
                }
                SetPrediction::Refuse(_) => {
                    Observation { state: Some(cur.raw()), ..Observation::err(Errno::EINVAL) }
                }
            },
        };
        self.model.judge_set(req, &obs);
        if let Some(fd) = obs.data_fd.filter(|fd| *fd >= 0) {
            self.current = Some(fd);
        }
    }
}

/// A walk being written: the steps so far, what each device is expected to be in, and which
/// captures exist.
#[derive(Clone, Debug)]
pub struct Draft {
    steps: Vec<Step>,
    expects: Vec<Expect>,
    captured: Vec<Option<String>>,
}

impl Draft {
    /// Appends a step and follows it.
    fn push(&mut self, devs: &[Dev], step: Step) {
        let d = step.device.as_deref().and_then(|l| devs.iter().position(|x| x.label == l)).unwrap_or(0);
        self.expects[d].follow(&step.op);
        let capture = match &step.op {
            Op::Read(a) => a.capture.as_ref(),
            Op::V1Save(a) => a.capture.as_ref(),
            _ => None,
        };
        if let Some(c) = capture
            && let Some(i) = CAPTURES.iter().position(|x| *x == c.0)
        {
            self.captured[i] = Some(c.0.clone());
        }
        self.steps.push(step);
    }

    fn have_capture(&self) -> bool {
        self.captured.iter().any(Option::is_some)
    }

    /// The steps written.
    pub fn into_steps(self) -> Vec<Step> {
        self.steps
    }
}

/// A device the walk may use.
#[derive(Clone, Debug)]
struct Dev {
    label: String,
    facts: DeviceFacts,
    device_type: Option<String>,
}

/// Writes random walks.
#[derive(Debug)]
pub struct Walker {
    rng: Rng,
    devs: Vec<Dev>,
    kinds: Vec<&'static str>,
    max_walk: usize,
    walks: u64,
}

const CAPTURES: [&str; 2] = ["s0", "s1"];

impl Walker {
    /// A walker for the engine's devices (the first is the device under test; the others are
    /// peers that restores may target).
    pub fn new(engine: &Engine, opts: &LiveOptions) -> Walker {
        let api = engine.slots[0].facts.api;
        let facts0 = &engine.slots[0].facts;
        let all = if api == MigrationApi::V1 { V1_KINDS } else { V2_KINDS };
        let kinds: Vec<&'static str> = all
            .iter()
            .copied()
            .filter(|k| opts.kinds.as_ref().is_none_or(|ks| ks.iter().any(|x| x == k)))
            .filter(|k| opts.allow_disruptive || !kind_is_disruptive(k))
            .filter(|k| !k.starts_with("dma_log") || facts0.dma_logging)
            .filter(|k| *k != "dma_log_report" || !facts0.report_stub)
            .filter(|k| *k != "precopy_info" || facts0.flags.has_pre_copy())
            .filter(|k| *k != "precopy_info_v2" || facts0.precopy_info_v2)
            .filter(|k| *k != "fail_nth" || facts0.fault_injection)
            .collect();
        // Labels A, B, ... in slot order, as Engine::slot_map assigns them for a walk that
        // lists every label (peers of the first device's type come first).
        let labels: Vec<String> =
            (0..engine.slots.len()).map(|i| ((b'A' + (i as u8 % 26)) as char).to_string()).collect();
        let probe = Check {
            id: "fuzz.live.probe".into(),
            title: String::new(),
            clauses: Vec::new(),
            requires: Requires { devices: labels.clone(), ..Requires::default() },
            steps: Vec::new(),
            origin: Origin::Generated("fuzz".into()),
            models: None,
            citation: None,
            sequence_file: None,
        };
        let map = engine.slot_map(&probe).unwrap_or_else(|_| vec![0]);
        let devs = map
            .iter()
            .zip(&labels)
            .filter(|(i, _)| engine.slots[**i].facts.api == api)
            .map(|(&i, l)| Dev {
                label: l.clone(),
                facts: engine.slots[i].facts.clone(),
                device_type: engine.slots[i].dev.info().model.clone(),
            })
            .collect();
        Walker { rng: Rng::new(opts.seed), devs, kinds, max_walk: opts.max_walk.max(4), walks: 0 }
    }

    /// The kinds this walker draws from.
    pub fn kinds(&self) -> &[&'static str] {
        &self.kinds
    }

    /// The devices' labels, the device under test first.
    pub fn labels(&self) -> Vec<String> {
        self.devs.iter().map(|d| d.label.clone()).collect()
    }

    /// The random number generator of the session (walks, corpus choices and mutations draw
    /// from this one seeded stream, so a session is reproducible from `--seed`).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Longest walk in steps.
    pub fn max_walk(&self) -> usize {
        self.max_walk
    }

    /// A draft holding `prefix`, with every device followed through it.
    pub fn draft(&self, prefix: &[Step]) -> Draft {
        let mut d = Draft {
            steps: Vec::with_capacity(prefix.len() + 8),
            expects: self.devs.iter().map(Expect::new).collect(),
            captured: vec![None; CAPTURES.len()],
        };
        for s in prefix {
            d.push(&self.devs, s.clone());
        }
        d
    }

    /// Swarm: a random subset of the kinds (set_state always, so the FSM is explored).
    fn swarm(&mut self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| matches!(*k, "set_state" | "v1_set_state") || self.rng.chance(1, 2))
            .collect();
        if kinds.is_empty() {
            kinds = self.kinds.clone();
        }
        kinds
    }

    /// Appends about `n` steps (a macro may add a few more) drawn from `kinds` (None: all).
    pub fn extend(
        &mut self,
        draft: &mut Draft,
        n: usize,
        kinds: Option<&[&'static str]>,
        covered: &BTreeSet<(MigState, MigState)>,
    ) {
        let kinds: Vec<&'static str> = kinds.map_or_else(|| self.kinds.clone(), <[_]>::to_vec);
        let target = draft.steps.len() + n;
        let v1 = self.devs.first().is_some_and(|d| d.facts.api == MigrationApi::V1);
        while draft.steps.len() < target {
            if v1 {
                self.v1_step(&kinds, draft);
            } else {
                self.v2_step(&kinds, draft, covered);
            }
        }
    }

    /// A fresh random walk. `covered` is the (cur, new) coverage so far on the first device:
    /// targets that complete it are preferred now and then.
    pub fn walk(&mut self, covered: &BTreeSet<(MigState, MigState)>) -> Check {
        let kinds = self.swarm();
        let len = self.rng.range(4, self.max_walk as u64) as usize;
        let mut draft = self.draft(&[]);
        self.extend(&mut draft, len, Some(&kinds), covered);
        let mut steps = draft.into_steps();
        steps.truncate(len.max(1));
        self.check(steps)
    }

    /// A walk check of these steps (device labels as the steps use them).
    pub fn check(&mut self, steps: Vec<Step>) -> Check {
        self.walks += 1;
        let multi = steps.iter().any(|s| s.device.as_ref().is_some_and(|d| *d != self.devs[0].label));
        walk_check(
            &format!("fuzz.live.walk_{}", self.walks),
            self.devs[0].facts.api,
            self.devs[0].facts.flags,
            if multi { all_labels(&self.devs) } else { Vec::new() },
            steps,
        )
    }

    fn v2_step(
        &mut self,
        kinds: &[&'static str],
        draft: &mut Draft,
        covered: &BTreeSet<(MigState, MigState)>,
    ) {
        let have = |k: &str| kinds.contains(&k);
        // Whole saves and restores now and then, on the device under test or a peer: streams
        // move between devices (a peer of another type makes them foreign).
        if have("read") && self.rng.chance(1, 20) {
            let d = self.pick_dev();
            self.save_macro(d, draft);
            return;
        }
        if have("write") && self.rng.chance(1, 25) && draft.have_capture() {
            let d = self.pick_dev();
            self.restore_macro(d, draft);
            return;
        }
        let flags = self.devs[0].facts.flags;
        let (state, live_fd) = (draft.expects[0].state(), draft.expects[0].live_fd());
        let weights: &[(&str, u64)] = &[
            ("set_state", 30),
            ("get_state", 5),
            ("get_flags", 1),
            ("data_size", 3),
            ("read", if live_fd { 16 } else { 3 }),
            ("write", if state == Some(MigState::Resuming) && draft.have_capture() { 10 } else { 1 }),
            ("precopy_info", if live_fd { 5 } else { 1 }),
            ("bad_buffer", if live_fd { 3 } else { 1 }),
            ("precopy_info_v2", 1),
            ("race_set_read", if live_fd { 2 } else { 0 }),
            ("race_reset", 2),
            ("poll", 1),
            ("fd_flags", 1),
            ("close_fd", 1),
            ("reset", 3),
            ("close_device", 1),
            ("dma_log_start", 2),
            ("dma_log_stop", 2),
            ("dma_log_report", 2),
            ("config_read", 1),
            ("region_read", 1),
            ("set_irqs", 1),
            ("wait", 2),
            ("debugfs_state", 1),
            ("feature", 2),
            ("config_write", 1),
            ("region_write", 1),
        ];
        let kind = self.rng.pick_weighted(weights, have, "set_state");
        let op = match kind {
            "set_state" => {
                let t = self.target(state, flags, Some(covered));
                Op::SetState(t)
            }
            "get_state" => Op::GetState,
            "get_flags" => Op::GetFlags,
            "data_size" => Op::DataSize,
            "read" => Op::Read(self.read_args(state)),
            "write" => Op::Write(self.write_args(&draft.captured)),
            "precopy_info" => Op::PrecopyInfo(PrecopyArgs {
                fd: self.fd_ref(),
                argsz: if self.rng.chance(1, 10) { Some(self.rng.below(40) as u32) } else { None },
                flags: if self.rng.chance(1, 10) { self.rng.below(4) as u32 } else { 0 },
            }),
            // The PRECOPY_INFOv2 opt-in (what QEMU does before migrating): afterwards
            // PRECOPY_INFO's flags are an output.
            "precopy_info_v2" => Op::Feature(crate::op::FeatureArgs {
                feature: crate::uapi::FEATURE_MIG_PRECOPY_INFO_V2 as u16,
                ops: vec![crate::op::FeatureOp::Set],
                extra_flags: 0,
                argsz: None,
                payload: 0,
            }),
            "race_set_read" => Op::RaceSetRead(crate::op::RaceArgs {
                state: self.target(state, flags, Some(covered)),
                fd: self.fd_ref(),
                delay_us: *self.rng.pick(&[0u16, 0, 10, 100, 1000]),
            }),
            "race_reset" => {
                let during = match self.rng.below(6) {
                    0 => crate::op::RaceCall::GetState,
                    1 if live_fd => crate::op::RaceCall::PrecopyInfo,
                    _ => crate::op::RaceCall::SetState,
                };
                // A GET or PRECOPY_INFO holds the state lock briefly: repeated, one of them can
                // meet a reset (a SET is made once).
                let calls = if during.max_calls() > 1 { *self.rng.pick(&[1u8, 8, 32, 64]) } else { 1 };
                Op::RaceReset(crate::op::RaceResetArgs {
                    during,
                    state: self.target(state, flags, Some(covered)),
                    fd: self.fd_ref(),
                    delay_us: *self.rng.pick(&[0u16, 0, 0, 10, 100]),
                    calls,
                })
            }
            "bad_buffer" => {
                let call = match self.rng.below(5) {
                    0 => BadCall::PrecopyInfo,
                    _ if state == Some(MigState::Resuming) => BadCall::Write,
                    _ => BadCall::Read,
                };
                let len = *self.rng.pick(&[1u32, 24, 60, 96, 4096, 8192]);
                let valid = *self.rng.pick(&[0u32, 0, 1, 8, 23, len / 2, len - 1]);
                Op::BadBuffer(BadBufferArgs { fd: self.fd_ref(), call, len, valid })
            }
            "poll" => Op::Poll { fd: self.fd_ref(), timeout_ms: 0 },
            "fd_flags" => Op::FdFlags { fd: self.fd_ref() },
            "close_fd" => Op::CloseFd { fd: FdRef::Current },
            "reset" => Op::Reset,
            "close_device" => {
                // Close and reopen at once: the device is unusable in between.
                draft.push(&self.devs, Step::new(Op::CloseDevice).oracle());
                if self.rng.chance(1, 3) {
                    draft.push(&self.devs, Step::new(Op::GetState).oracle());
                }
                Op::Reopen
            }
            "dma_log_start" => Op::DmaLogStart(DmaStartArgs {
                page_size: *self.rng.pick(&[4096u64, 4096, 8192, 1 << 21, 4095, 0]),
                ranges: Vec::new(),
                count: Some(self.rng.range(1, 4) as u32),
            }),
            "dma_log_stop" => Op::DmaLogStop,
            "dma_log_report" => Op::DmaLogReport(DmaReportArgs {
                iova: *self.rng.pick(&[0u64, 0, 4096, 3]),
                length: *self.rng.pick(&[1u64 << 20, 4096, 64 << 10, 0]),
                page_size: *self.rng.pick(&[4096u64, 4096, 8192, 4095]),
                prefill: *self.rng.pick(&[0u8, 0, 0xff, 0x55]),
            }),
            "config_read" => Op::ConfigRead(ConfigArgs {
                offset: self.rng.below(64) as u16,
                width: *self.rng.pick(&[1u8, 2, 4]),
                value: None,
                save_as: None,
            }),
            "region_read" => Op::RegionRead(RegionArgs {
                region: RegionRef::Bar0,
                offset: 4 * self.rng.below(8),
                width: 4,
                value: None,
                via: Access::Rw,
                save_as: None,
            }),
            "set_irqs" => Op::SetIrqs(IrqArgs {
                index: *self.rng.pick(&[IrqIndex::Intx, IrqIndex::Msi]),
                action: IrqAction::Trigger,
                start: 0,
                count: self.rng.below(2) as u32,
                data: if self.rng.chance(1, 2) { IrqData::Eventfd } else { IrqData::None },
            }),
            "wait" => Op::Wait { ms: self.rng.range(1, 10) as u16 },
            "debugfs_state" => Op::DebugfsState,
            "feature" => Op::Feature(crate::op::FeatureArgs {
                feature: *self.rng.pick(&[0u16, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12]),
                ops: match self.rng.below(5) {
                    0 => vec![crate::op::FeatureOp::Get],
                    1 => vec![crate::op::FeatureOp::Set],
                    2 => vec![crate::op::FeatureOp::Probe, crate::op::FeatureOp::Get],
                    3 => vec![crate::op::FeatureOp::Probe, crate::op::FeatureOp::Set],
                    _ => Vec::new(),
                },
                extra_flags: if self.rng.chance(1, 8) { 1 << 20 } else { 0 },
                argsz: if self.rng.chance(1, 6) { Some(self.rng.below(16) as u32) } else { None },
                payload: 0,
            }),
            "config_write" => Op::ConfigWrite(ConfigArgs {
                offset: 4,
                width: 2,
                value: Some(*self.rng.pick(&[0u32, 6, 7, 0x406])),
                save_as: None,
            }),
            _ => Op::RegionWrite(RegionArgs {
                region: RegionRef::Bar0,
                offset: 4 * self.rng.below(8),
                width: 4,
                value: Some(self.rng.next_u64() & 0xffff_ffff),
                via: Access::Rw,
                save_as: None,
            }),
        };
        let mut step = Step::new(op).oracle();
        // Fault injection of a few of the step's first allocations (out-of-memory paths).
        if have("fail_nth") && can_fault(&step) && self.rng.chance(1, 8) {
            step.fail_nth = Some(*self.rng.pick(&[1u32, 1, 2, 3, 4, 6, 8, 12]));
        }
        draft.push(&self.devs, step);
    }
}

/// Whether a fault can be put on a step: not on a race (the fault would hit the second
/// thread's clone(), not the driver).
pub fn can_fault(step: &Step) -> bool {
    !matches!(step.op, Op::RaceSetRead(_) | Op::RaceReset(_))
}

fn all_labels(devs: &[Dev]) -> Vec<String> {
    let mut v: Vec<String> = devs.iter().map(|d| d.label.clone()).collect();
    v.sort();
    v
}

fn walk_check(id: &str, api: MigrationApi, flags: MigFlags, devices: Vec<String>, steps: Vec<Step>) -> Check {
    Check {
        id: id.to_string(),
        title: "live fuzzing walk".to_string(),
        clauses: Vec::new(),
        requires: Requires {
            api: Some(api),
            flags: if api == MigrationApi::V2 { flags } else { MigFlags(0) },
            devices,
            ..Requires::default()
        },
        steps,
        origin: Origin::Generated("fuzz".to_string()),
        models: None,
        citation: Some("fuzz finding".to_string()),
        sequence_file: None,
    }
}

/// Drops steps that name a stream or fd label no earlier step defines (what the sequence
/// loader would refuse).
pub fn clean(steps: &[Step]) -> Vec<Step> {
    let mut streams: Vec<(Option<String>, String)> = Vec::new();
    let mut out = Vec::new();
    for s in steps {
        let ok = match &s.op {
            Op::Write(WriteArgs { data: Source::Stream(n), mutate, .. }) => {
                streams.iter().any(|(_, x)| *x == n.0)
                    && !matches!(mutate, Some(Mutation::Splice { other, .. } | Mutation::SpliceAt { other, .. }) if !streams.iter().any(|(_, x)| *x == other.0))
            }
            Op::V1Resume(V1ResumeArgs { data: Source::Stream(n), .. }) => {
                streams.iter().any(|(_, x)| *x == n.0)
            }
            _ => true,
        };
        if !ok {
            continue;
        }
        match &s.op {
            Op::Read(a) => streams.extend(a.capture.as_ref().map(|c| (s.device.clone(), c.0.clone()))),
            Op::V1Save(a) => streams.extend(a.capture.as_ref().map(|c| (s.device.clone(), c.0.clone()))),
            _ => {}
        }
        out.push(s.clone());
    }
    out
}
