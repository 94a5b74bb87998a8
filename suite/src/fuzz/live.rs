//! Live fuzzing of a device: seeded random walks of operations, run as checks (the runner runs
//! them in a child process under the watchdog and restores the device after each), every step
//! judged by the oracle. A discrepancy is shrunk by delta debugging (dropping chunks of steps
//! and re-running each candidate on the device after a reset) into a minimal YAML reproducer
//! naming the clause.
//!
//! Walks are biased towards meaningful sequences: mostly valid target states (and states
//! that complete the (cur, new) coverage), reads and writes on the current data fd, captures
//! then replays into the same or a peer device. Each walk enables a random subset of the
//! operation kinds (swarm testing).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::rng::Rng;
use super::yaml::{YamlSequence, YamlStep, short_hash};
use crate::check::{Check, Origin, Requires, Step};
use crate::device::MigrationApi;
use crate::engine::{CheckEnd, CheckRun, DeviceFacts, Engine};
use crate::op::{
    Access, ConfigArgs, DmaReportArgs, DmaStartArgs, FdRef, IrqAction, IrqArgs, IrqData, IrqIndex, Mutation,
    Op, PrecopyArgs, ReadArgs, RegionArgs, RegionRef, Segmentation, Source, StreamName, V1Field, V1FieldArgs,
    V1ResumeArgs, V1SaveArgs, WriteArgs,
};
use crate::oracle::fsm::{SetPrediction, predict_set};
use crate::report::record::{FuzzFinding, FuzzSummary};
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

/// Live fuzzing settings.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub seed: u64,
    /// Only these operation kinds (`--ops`); None: all that apply.
    pub kinds: Option<Vec<String>>,
    pub allow_disruptive: bool,
    /// Longest walk in steps.
    pub max_walk: usize,
    /// Most candidate runs one shrink may take.
    pub shrink_budget: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions { seed: 1, kinds: None, allow_disruptive: false, max_walk: 48, shrink_budget: 150 }
    }
}

/// Checks `--ops` against the kinds of `api`: the unknown names, if any.
pub fn unknown_kinds(api: MigrationApi, kinds: &[String]) -> Vec<String> {
    let all = if api == MigrationApi::V1 { V1_KINDS } else { V2_KINDS };
    kinds.iter().filter(|k| !all.contains(&k.as_str())).cloned().collect()
}

/// What the walker assumes about one device while it writes a walk.
#[derive(Clone, Debug)]
struct Guess {
    state: Option<MigState>,
    v1: u32,
    /// A data fd of a live session is `current`.
    fd: bool,
    logging: bool,
}

/// A device the walk may use.
#[derive(Clone, Debug)]
struct Dev {
    label: String,
    facts: DeviceFacts,
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
            .map(|(&i, l)| Dev { label: l.clone(), facts: engine.slots[i].facts.clone() })
            .collect();
        Walker { rng: Rng::new(opts.seed), devs, kinds, max_walk: opts.max_walk.max(4), walks: 0 }
    }

    /// The kinds this walker draws from.
    pub fn kinds(&self) -> &[&'static str] {
        &self.kinds
    }

    fn fresh_guess(&self, _d: &Dev) -> Guess {
        Guess { state: Some(MigState::Running), v1: crate::oracle::v1::RUNNING, fd: false, logging: false }
    }

    /// One walk. `covered` is the (cur, new) coverage so far on the first device: targets
    /// that complete it are preferred now and then.
    pub fn walk(&mut self, covered: &BTreeSet<(MigState, MigState)>) -> Check {
        self.walks += 1;
        // Swarm: each walk enables a random subset of the kinds (set_state always, so the
        // FSM is explored).
        let mut kinds: Vec<&'static str> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| matches!(*k, "set_state" | "v1_set_state") || self.rng.chance(1, 2))
            .collect();
        if kinds.is_empty() {
            kinds = self.kinds.clone();
        }
        let len = self.rng.range(4, self.max_walk as u64) as usize;
        let mut guesses: Vec<Guess> = self.devs.iter().map(|d| self.fresh_guess(d)).collect();
        let mut captured: Vec<Option<String>> = vec![None; CAPTURES.len()];
        let mut steps: Vec<Step> = Vec::new();
        let v1 = self.devs.first().is_some_and(|d| d.facts.api == MigrationApi::V1);
        while steps.len() < len {
            if v1 {
                self.v1_step(&kinds, &mut guesses[0], &mut captured, &mut steps);
            } else {
                self.v2_step(&kinds, &mut guesses, &mut captured, covered, &mut steps);
            }
        }
        steps.truncate(len.max(1));
        let mut labels: Vec<String> = vec![self.devs[0].label.clone()];
        for s in &steps {
            if let Some(d) = &s.device
                && !labels.contains(d)
            {
                labels.push(d.clone());
            }
        }
        walk_check(
            &format!("fuzz.live.walk_{}", self.walks),
            self.devs[0].facts.api,
            self.devs[0].facts.flags,
            if labels.len() > 1 { all_labels(&self.devs) } else { Vec::new() },
            steps,
        )
    }

    fn target(
        &mut self,
        cur: Option<MigState>,
        flags: MigFlags,
        covered: Option<&BTreeSet<(MigState, MigState)>>,
    ) -> StateArg {
        let mut states = flags.states();
        if states.is_empty() {
            // Flags without STOP_COPY define no state: try them all.
            states = MigState::ALL.to_vec();
        }
        if let (Some(c), Some(cov)) = (cur, covered)
            && self.rng.chance(1, 3)
        {
            let missing: Vec<MigState> = states.iter().copied().filter(|n| !cov.contains(&(c, *n))).collect();
            if !missing.is_empty() {
                return StateArg::Named(*self.rng.pick(&missing));
            }
        }
        match self.rng.below(20) {
            0 => StateArg::Raw(*self.rng.pick(&[8u32, 9, 255, 0xffff_ffff])),
            1 => StateArg::Named(MigState::Error),
            2 => {
                let unsupported: Vec<MigState> =
                    MigState::ALL.iter().copied().filter(|s| !s.supported_by(flags)).collect();
                StateArg::Named(
                    unsupported
                        .get(self.rng.below(unsupported.len() as u64) as usize)
                        .copied()
                        .unwrap_or(MigState::Error),
                )
            }
            _ => StateArg::Named(*self.rng.pick(&states)),
        }
    }

    fn v2_step(
        &mut self,
        kinds: &[&'static str],
        guesses: &mut [Guess],
        captured: &mut [Option<String>],
        covered: &BTreeSet<(MigState, MigState)>,
        steps: &mut Vec<Step>,
    ) {
        let have = |k: &str| kinds.contains(&k);
        // Whole saves and restores now and then, on the device under test or a peer: streams
        // move between devices (a peer of another type makes them foreign).
        if have("read") && self.rng.chance(1, 20) {
            let d = self.pick_dev();
            self.save_macro(d, guesses, captured, steps);
            return;
        }
        if have("write") && self.rng.chance(1, 25) && captured.iter().any(Option::is_some) {
            let d = self.pick_dev();
            self.restore_macro(d, guesses, captured, steps);
            return;
        }
        let flags = self.devs[0].facts.flags;
        let g = &mut guesses[0];
        let weights: &[(&str, u64)] = &[
            ("set_state", 30),
            ("get_state", 5),
            ("get_flags", 1),
            ("data_size", 3),
            ("read", if g.fd { 16 } else { 3 }),
            (
                "write",
                if g.state == Some(MigState::Resuming) && captured.iter().any(Option::is_some) {
                    10
                } else {
                    1
                },
            ),
            ("precopy_info", if g.fd { 5 } else { 1 }),
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
                let t = self.target(g.state, flags, Some(covered));
                g.apply_set(flags, t);
                Op::SetState(t)
            }
            "get_state" => Op::GetState,
            "get_flags" => Op::GetFlags,
            "data_size" => Op::DataSize,
            "read" => Op::Read(self.read_args(g, captured)),
            "write" => {
                let Some(w) = self.write_args(captured) else { return };
                Op::Write(w)
            }
            "precopy_info" => Op::PrecopyInfo(PrecopyArgs {
                fd: self.fd_ref(),
                argsz: if self.rng.chance(1, 10) { Some(self.rng.below(40) as u32) } else { None },
                flags: if self.rng.chance(1, 10) { self.rng.below(4) as u32 } else { 0 },
            }),
            "poll" => Op::Poll { fd: self.fd_ref(), timeout_ms: 0 },
            "fd_flags" => Op::FdFlags { fd: self.fd_ref() },
            "close_fd" => {
                g.fd = false;
                Op::CloseFd { fd: FdRef::Current }
            }
            "reset" => {
                g.state = Some(MigState::Running);
                g.fd = false;
                Op::Reset
            }
            "close_device" => {
                // Close and reopen at once: the device is unusable in between.
                steps.push(Step::new(Op::CloseDevice).oracle());
                if self.rng.chance(1, 3) {
                    steps.push(Step::new(Op::GetState).oracle());
                }
                *g = Guess { state: None, fd: false, logging: false, ..g.clone() };
                Op::Reopen
            }
            "dma_log_start" => {
                g.logging = true;
                Op::DmaLogStart(DmaStartArgs {
                    page_size: *self.rng.pick(&[4096u64, 4096, 8192, 1 << 21, 4095, 0]),
                    ranges: Vec::new(),
                    count: Some(self.rng.range(1, 4) as u32),
                })
            }
            "dma_log_stop" => {
                g.logging = false;
                Op::DmaLogStop
            }
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
                feature: *self.rng.pick(&[0u16, 1, 2, 3, 6, 7, 8, 9, 10, 11]),
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
        steps.push(Step::new(op).oracle());
    }

    /// The device under test two times in three, else a peer.
    fn pick_dev(&mut self) -> usize {
        if self.devs.len() < 2 || self.rng.chance(2, 3) {
            0
        } else {
            1 + self.rng.below(self.devs.len() as u64 - 1) as usize
        }
    }

    fn fd_ref(&mut self) -> FdRef {
        if self.rng.chance(1, 10) { FdRef::Previous } else { FdRef::Current }
    }

    fn read_args(&mut self, g: &Guess, captured: &mut [Option<String>]) -> ReadArgs {
        let whole = g.state == Some(MigState::StopCopy) && self.rng.chance(2, 3);
        let capture = if self.rng.chance(1, 2) {
            let i = self.rng.below(CAPTURES.len() as u64) as usize;
            captured[i] = Some(CAPTURES[i].to_string());
            Some(StreamName(CAPTURES[i].to_string()))
        } else {
            None
        };
        // Only a STOP_COPY read goes to the end of the stream: a PRE_COPY stream read in small
        // pieces may never reach a temporary end (the device dirties state faster).
        let once = !whole && self.rng.chance(1, 2);
        let fd = self.fd_ref();
        let mut max = if whole || once { None } else { Some(self.rng.range(1, 64 << 10)) };
        let chunk = *self.rng.pick(&[1u32 << 20, 4096, 4096, 64, 24, 7, 4095, 4097]);
        if whole && chunk < 4095 {
            // A read to the end in small pieces is bounded to ~1000 read() calls: a stream that
            // never ends (a stale fd that stays readable) would otherwise take --max-stream / 7
            // calls, minutes; large pieces still find a stream without an end (--max-stream).
            max = Some(u64::from(chunk) * 1024);
        }
        ReadArgs {
            fd,
            max,
            chunk,
            once,
            offset: if self.rng.chance(1, 30) { Some(0) } else { None },
            append: capture.is_some() && self.rng.chance(1, 3),
            capture,
        }
    }

    fn mutation(&mut self) -> Option<Mutation> {
        if !self.rng.chance(1, 4) {
            return None;
        }
        Some(match self.rng.below(6) {
            0 => Mutation::DropTail(self.rng.range(1, 16)),
            1 => Mutation::Fraction { num: 1, den: self.rng.range(2, 4) as u32 },
            2 => Mutation::FlipAt { num: self.rng.below(4) as u32, den: 4, bit: self.rng.below(8) as u8 },
            3 => Mutation::FlipBit { offset: self.rng.below(1 << 16), bit: self.rng.below(8) as u8 },
            4 => Mutation::Truncate(self.rng.below(64)),
            _ => Mutation::Empty,
        })
    }

    fn write_args(&mut self, captured: &[Option<String>]) -> Option<WriteArgs> {
        let have: Vec<&String> = captured.iter().flatten().collect();
        let data = if have.is_empty() || self.rng.chance(1, 10) {
            Source::Zeros(self.rng.range(1, 64) as u32)
        } else {
            Source::Stream(StreamName((*self.rng.pick(&have)).clone()))
        };
        Some(WriteArgs {
            fd: self.fd_ref(),
            data,
            mutate: self.mutation(),
            segment: self.segmentation(),
            offset: if self.rng.chance(1, 30) { Some(0) } else { None },
            keep_going: false,
            from_thread: false,
        })
    }

    fn segmentation(&mut self) -> Segmentation {
        match self.rng.below(6) {
            0 => Segmentation::Fixed(*self.rng.pick(&[1u32, 7, 8, 24, 4095, 4096])),
            1 => Segmentation::Cycle(vec![1, 7, 4095]),
            2 => Segmentation::Random { seed: self.rng.next_u64(), max: 512 },
            _ => Segmentation::Whole,
        }
    }

    /// STOP, STOP_COPY, read the stream to its end into a capture, STOP, on device `d`.
    fn save_macro(
        &mut self,
        d: usize,
        guesses: &mut [Guess],
        captured: &mut [Option<String>],
        steps: &mut Vec<Step>,
    ) {
        let i = self.rng.below(CAPTURES.len() as u64) as usize;
        let label = if d == 0 { None } else { Some(self.devs[d].label.clone()) };
        let on = |s: Step| match &label {
            Some(l) => s.on(l),
            None => s,
        };
        let set = |s: MigState| Step::new(Op::SetState(StateArg::Named(s))).oracle();
        steps.push(on(set(MigState::Stop)));
        steps.push(on(set(MigState::StopCopy)));
        steps.push(on(Step::new(Op::Read(ReadArgs {
            capture: Some(StreamName(CAPTURES[i].to_string())),
            ..ReadArgs::default()
        }))
        .oracle()));
        captured[i] = Some(CAPTURES[i].to_string());
        steps.push(on(set(MigState::Stop)));
        let g = &mut guesses[d];
        g.state = Some(MigState::Stop);
        g.fd = false;
    }

    /// Reset, RESUMING, write a capture (sometimes mutated), then leave RESUMING, on device
    /// `d`.
    fn restore_macro(
        &mut self,
        d: usize,
        guesses: &mut [Guess],
        captured: &[Option<String>],
        steps: &mut Vec<Step>,
    ) {
        let have: Vec<&String> = captured.iter().flatten().collect();
        let Some(name) = have.first().map(|s| (*s).clone()) else { return };
        let name = if have.len() > 1 && self.rng.chance(1, 2) { have[1].clone() } else { name };
        let label = if d == 0 { None } else { Some(self.devs[d].label.clone()) };
        let on = |s: Step| match &label {
            Some(l) => s.on(l),
            None => s,
        };
        let set = |s: MigState| Step::new(Op::SetState(StateArg::Named(s))).oracle();
        if self.rng.chance(1, 2) {
            steps.push(on(Step::new(Op::Reset).oracle()));
        }
        steps.push(on(set(MigState::Stop)));
        steps.push(on(set(MigState::Resuming)));
        steps.push(on(Step::new(Op::Write(WriteArgs {
            fd: FdRef::Current,
            data: Source::Stream(StreamName(name)),
            mutate: self.mutation(),
            segment: self.segmentation(),
            offset: None,
            keep_going: false,
            from_thread: false,
        }))
        .oracle()));
        let to = *self.rng.pick(&[MigState::Stop, MigState::Running, MigState::Running]);
        steps.push(on(set(to)));
        if self.rng.chance(1, 3) {
            steps.push(on(Step::new(Op::GetState).oracle()));
        }
        let g = &mut guesses[d];
        g.state = None;
        g.fd = false;
    }

    fn v1_step(
        &mut self,
        kinds: &[&'static str],
        g: &mut Guess,
        captured: &mut [Option<String>],
        steps: &mut Vec<Step>,
    ) {
        use crate::oracle::v1 as o;
        let have = |k: &str| kinds.contains(&k);
        let weights: &[(&str, u64)] = &[
            ("v1_set_state", 30),
            ("v1_save", if g.v1 & o::SAVING != 0 { 14 } else { 2 }),
            ("v1_resume", if g.v1 == o::RESUMING && captured.iter().any(Option::is_some) { 12 } else { 1 }),
            ("v1_read", 6),
            ("reset", 3),
            ("close_device", 1),
            ("config_read", 1),
            ("region_read", 1),
            ("wait", 2),
            ("v1_write", 3),
            ("config_write", 1),
            ("region_write", 1),
        ];
        let kind = self.rng.pick_weighted(weights, have, "v1_set_state");
        let field = |r: &mut Rng| {
            *r.pick(&[
                V1Field::DeviceState,
                V1Field::Reserved,
                V1Field::PendingBytes,
                V1Field::DataOffset,
                V1Field::DataSize,
            ])
        };
        let op = match kind {
            "v1_set_state" => {
                let v = match self.rng.below(12) {
                    0 => *self.rng.pick(&[5u32, 6, 7]),
                    1 => 8 | self.rng.below(5) as u32,
                    _ => self.rng.below(5) as u32,
                };
                if o::is_valid(v & o::MASK) {
                    g.v1 = v & o::MASK;
                }
                Op::V1SetState(v)
            }
            "v1_save" => {
                let capture = if self.rng.chance(2, 3) {
                    let i = self.rng.below(CAPTURES.len() as u64) as usize;
                    captured[i] = Some(CAPTURES[i].to_string());
                    Some(StreamName(CAPTURES[i].to_string()))
                } else {
                    None
                };
                Op::V1Save(V1SaveArgs {
                    append: capture.is_some() && self.rng.chance(1, 3),
                    capture,
                    via: if self.rng.chance(1, 4) { Access::Mmap } else { Access::Rw },
                    max_iterations: Some(1000),
                    once: self.rng.chance(1, 2),
                    extra_pending_reads: self.rng.below(2) as u8,
                })
            }
            "v1_resume" => {
                let have: Vec<&String> = captured.iter().flatten().collect();
                let data = if have.is_empty() {
                    Source::Zeros(self.rng.range(1, 64) as u32)
                } else {
                    Source::Stream(StreamName((*self.rng.pick(&have)).clone()))
                };
                Op::V1Resume(V1ResumeArgs {
                    data,
                    mutate: self.mutation(),
                    via: if self.rng.chance(1, 4) { Access::Mmap } else { Access::Rw },
                    scribble: self.rng.chance(1, 8),
                })
            }
            "v1_read" => {
                let natural = self.rng.chance(3, 4);
                Op::V1Read(V1FieldArgs {
                    field: field(&mut self.rng),
                    value: None,
                    width: if natural { None } else { Some(*self.rng.pick(&[1u8, 2, 3, 8])) },
                    misalign: if natural { 0 } else { self.rng.below(4) as u8 },
                })
            }
            "v1_write" => {
                let f = *self.rng.pick(&[
                    V1Field::Reserved,
                    V1Field::PendingBytes,
                    V1Field::DataOffset,
                    V1Field::DataSize,
                ]);
                Op::V1Write(V1FieldArgs {
                    field: f,
                    value: Some(*self.rng.pick(&[0u64, 1, 4096, u64::MAX])),
                    width: None,
                    misalign: 0,
                })
            }
            "reset" => {
                g.v1 = o::RUNNING;
                Op::Reset
            }
            "close_device" => {
                steps.push(Step::new(Op::CloseDevice).oracle());
                Op::Reopen
            }
            "config_read" => Op::ConfigRead(ConfigArgs {
                offset: self.rng.below(64) as u16,
                width: 4,
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
            "wait" => Op::Wait { ms: self.rng.range(1, 10) as u16 },
            "config_write" => {
                Op::ConfigWrite(ConfigArgs { offset: 4, width: 2, value: Some(6), save_as: None })
            }
            _ => Op::RegionWrite(RegionArgs {
                region: RegionRef::Bar0,
                offset: 4 * self.rng.below(8),
                width: 4,
                value: Some(self.rng.next_u64() & 0xffff_ffff),
                via: Access::Rw,
                save_as: None,
            }),
        };
        steps.push(Step::new(op).oracle());
    }
}

impl Guess {
    fn apply_set(&mut self, flags: MigFlags, t: StateArg) {
        let Some(cur) = self.state else {
            self.state = t.state().filter(|s| s.supported_by(flags));
            return;
        };
        match predict_set(flags, cur, t.raw()) {
            SetPrediction::Walk(arcs) => {
                if arcs.iter().any(|a| a.ends_saving() || a.ends_resuming()) {
                    self.fd = false;
                }
                if arcs.last().is_some_and(|a| a.opens_session()) {
                    self.fd = true;
                }
                // Leaving RESUMING may fail (the stream decides).
                self.state = if cur == MigState::Resuming { None } else { t.state() };
            }
            SetPrediction::Noop | SetPrediction::Refuse(_) => {}
        }
    }
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
fn clean(steps: &[Step]) -> Vec<Step> {
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

/// A finding of the live fuzzer.
#[derive(Clone, Debug)]
pub struct LiveFinding {
    /// Sorted clauses: the identity of the finding.
    pub key: Vec<String>,
    pub record: FuzzFinding,
    /// The shrunk reproducer.
    pub sequence: YamlSequence,
    /// How many walks showed it.
    pub sightings: u64,
    /// Steps before and after shrinking.
    pub shrunk_from: usize,
    pub shrink_runs: usize,
}

/// What one walk did.
#[derive(Debug)]
pub enum WalkOutcome {
    /// Indices into [`Session::findings`] of findings first seen in this walk.
    Done(Vec<usize>),
    /// The device could not be restored: stop.
    Wedged(String),
    /// SIGINT/SIGTERM: stop.
    Interrupted(String),
}

/// A live fuzzing session.
#[derive(Debug)]
pub struct Session {
    pub opts: LiveOptions,
    walker: Walker,
    pub started: Instant,
    pub ops: u64,
    pub walks: u64,
    pub covered: BTreeSet<(MigState, MigState)>,
    pub possible: BTreeSet<(MigState, MigState)>,
    /// When every possible (cur, new) pair had been covered: (seconds, ops).
    pub covered_all: Option<(f64, u64)>,
    pub errors: BTreeMap<String, u64>,
    pub findings: Vec<LiveFinding>,
    api: MigrationApi,
    flags: MigFlags,
    device_label: String,
    model: Option<String>,
}

/// Runs one check on the engine (the runner passes its process isolation).
pub type Exec<'a> = dyn FnMut(&mut Engine, &Check) -> CheckRun + 'a;

impl Session {
    pub fn new(engine: &mut Engine, opts: LiveOptions) -> Session {
        engine.skip_harness_errors = true;
        engine.keep_trace = true;
        let walker = Walker::new(engine, &opts);
        let facts = &engine.slots[0].facts;
        let possible = if facts.api == MigrationApi::V2 {
            let s = facts.flags.states();
            s.iter().flat_map(|a| s.iter().map(move |b| (*a, *b))).collect()
        } else {
            BTreeSet::new()
        };
        Session {
            opts,
            walker,
            started: Instant::now(),
            ops: 0,
            walks: 0,
            covered: BTreeSet::new(),
            possible,
            covered_all: None,
            errors: BTreeMap::new(),
            findings: Vec::new(),
            api: facts.api,
            flags: facts.flags,
            device_label: engine.slots[0].label.clone(),
            model: engine.slots[0].dev.info().model.clone(),
        }
    }

    /// The operation kinds walks draw from.
    pub fn kinds(&self) -> &[&'static str] {
        self.walker.kinds()
    }

    /// Whether every possible (cur, new) pair has been covered.
    pub fn all_covered(&self) -> bool {
        !self.possible.is_empty() && self.possible.is_subset(&self.covered)
    }

    /// Runs one walk and shrinks what it finds.
    pub fn walk(&mut self, engine: &mut Engine, exec: &mut Exec<'_>) -> WalkOutcome {
        let check = self.walker.walk(&self.covered);
        let run = exec(engine, &check);
        self.walks += 1;
        self.account(&check, &run);
        if let Some(e) = &run.restore_error {
            return WalkOutcome::Wedged(e.clone());
        }
        if let Some(e) = run.end.error().filter(|_| run.end.interrupted()) {
            return WalkOutcome::Interrupted(e.to_string());
        }
        let mut new = Vec::new();
        let problem = match &run.end {
            CheckEnd::HarnessError(e) => Some((e.clone(), false)),
            CheckEnd::Timeout(t) => Some((t.clone(), true)),
            CheckEnd::Completed | CheckEnd::Unsupported(_) => None,
        };
        if let Some((problem, timeout)) = problem {
            let key = vec![if timeout { "TIMEOUT".to_string() } else { "ERROR".to_string() }];
            if let Some(i) = self.seen(&key) {
                self.findings[i].sightings += 1;
            } else {
                let expected = if timeout {
                    "every operation returns within the watchdog timeout".to_string()
                } else {
                    "the walk runs without a harness error".to_string()
                };
                // Errors (a panic of the suite, a crashed check process) shrink like findings;
                // a timeout costs the whole watchdog per attempt and is kept as found.
                let (steps, runs) = if timeout {
                    (check.steps.clone(), 0)
                } else {
                    let same = |r: &CheckRun| (r.end.error() == Some(problem.as_str())).then_some(usize::MAX);
                    let last = check.steps.len().saturating_sub(1);
                    let (steps, _, runs) = self.shrink(engine, exec, &check, &same, last);
                    (steps, runs)
                };
                self.findings.push(self.finding(&check, key, expected, problem, &steps, runs));
                new.push(self.findings.len() - 1);
            }
        }
        let mut keys: Vec<(Vec<String>, usize)> = Vec::new();
        for f in &run.findings {
            let mut key: Vec<String> = f.violation.clauses.iter().map(|c| c.to_string()).collect();
            key.sort();
            key.dedup();
            if !keys.iter().any(|(k, _)| *k == key) {
                keys.push((key, f.step));
            }
        }
        for (key, step) in keys {
            if let Some(i) = self.seen(&key) {
                self.findings[i].sightings += 1;
                continue;
            }
            let same = |r: &CheckRun| {
                r.findings.iter().find(|f| sorted(&f.violation.clauses) == key).map(|f| f.step)
            };
            let (steps, final_run, runs) = self.shrink(engine, exec, &check, &same, step);
            let (expected, actual) = final_run
                .findings
                .iter()
                .find(|f| sorted(&f.violation.clauses) == key)
                .or_else(|| run.findings.iter().find(|f| sorted(&f.violation.clauses) == key))
                .map(|f| (f.violation.expected.clone(), f.violation.actual.clone()))
                .unwrap_or_default();
            let mut finding = self.finding(&check, key, expected, actual, &steps, runs);
            finding.shrunk_from = step + 1;
            self.findings.push(finding);
            new.push(self.findings.len() - 1);
            if interrupted(&run) {
                break;
            }
        }
        WalkOutcome::Done(new)
    }

    fn seen(&self, key: &[String]) -> Option<usize> {
        self.findings.iter().position(|f| f.key == key)
    }

    fn finding(
        &self,
        check: &Check,
        key: Vec<String>,
        expected: String,
        actual: String,
        steps: &[Step],
        runs: usize,
    ) -> LiveFinding {
        let what = if key.is_empty() { "finding".to_string() } else { key.join(", ") };
        let yaml_steps: Vec<YamlStep> = steps
            .iter()
            .map(|s| YamlStep {
                op: s.op.clone(),
                name: s.name_fd.clone(),
                device: s.device.clone().filter(|d| *d != self.device_label),
            })
            .collect();
        let mut devices: Vec<String> = vec![self.device_label.clone()];
        for s in &yaml_steps {
            if let Some(d) = &s.device
                && !devices.contains(d)
            {
                devices.push(d.clone());
            }
        }
        devices.sort();
        let slug: String = what
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
            .split('_')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let seq = YamlSequence {
            comments: vec![
                format!("live fuzzing finding: {what}"),
                format!("expected: {expected}"),
                format!("  actual: {actual}"),
                format!(
                    "shrunk from {} to {} steps in {runs} runs; seed {}, walk {}",
                    check.steps.len(),
                    yaml_steps.len(),
                    self.opts.seed,
                    check.id
                ),
            ],
            id: String::new(),
            title: format!("fuzz finding: {what}"),
            api: self.api,
            flags: self.flags,
            devices: if devices.len() > 1 { devices } else { Vec::new() },
            steps: yaml_steps,
        };
        let id = format!("fuzz.live.{}_{}", slug, short_hash(&format!("{:?}", seq.steps)));
        let seq = YamlSequence { id, ..seq };
        LiveFinding {
            record: FuzzFinding {
                clauses: key.clone(),
                expected,
                actual,
                reproducer: seq.render(),
                reproducer_file: None,
                replay: None,
                known: None,
                level: crate::oracle::outcome::clauses_level(key.iter().map(String::as_str)),
                after_secs: self.started.elapsed().as_secs_f64(),
            },
            key,
            sequence: seq,
            sightings: 1,
            shrunk_from: check.steps.len(),
            shrink_runs: runs,
        }
    }

    /// Delta debugging: the smallest subsequence of `check`'s first `step + 1` steps whose
    /// run still shows the problem (`same`: the step of a finding with the same clauses, or
    /// `usize::MAX` for the same error; None when the run does not show it). Returns the steps, the last run that showed it and how many runs it took.
    fn shrink(
        &mut self,
        engine: &mut Engine,
        exec: &mut Exec<'_>,
        check: &Check,
        same: &dyn Fn(&CheckRun) -> Option<usize>,
        step: usize,
    ) -> (Vec<Step>, CheckRun, usize) {
        let mut runs = 0usize;
        let budget = self.opts.shrink_budget;
        let mut test = |steps: &[Step], runs: &mut usize, this: &mut Session| -> Option<CheckRun> {
            *runs += 1;
            let c = Check { steps: steps.to_vec(), ..check.clone() };
            let r = exec(engine, &c);
            this.ops += r.trace.len() as u64;
            same(&r).is_some().then_some(r)
        };
        let mut best: Vec<Step> = clean(&check.steps[..=step.min(check.steps.len().saturating_sub(1))]);
        let mut best_run = match test(&best, &mut runs, self) {
            Some(r) => r,
            None => {
                // Not reproducible when cut at the finding (or cleaned): keep the whole walk.
                best = check.steps.clone();
                return (best, CheckRun::default(), runs);
            }
        };
        let mut n = 2usize;
        while best.len() >= 2 && runs < budget && !interrupted(&best_run) {
            let chunk = best.len().div_ceil(n);
            let mut reduced = None;
            for i in 0..n {
                let lo = i * chunk;
                if lo >= best.len() {
                    break;
                }
                let hi = (lo + chunk).min(best.len());
                let mut cand: Vec<Step> = best[..lo].to_vec();
                cand.extend_from_slice(&best[hi..]);
                let cand = clean(&cand);
                if cand.is_empty() || runs >= budget {
                    continue;
                }
                if let Some(r) = test(&cand, &mut runs, self) {
                    reduced = Some((cand, r));
                    break;
                }
            }
            match reduced {
                Some((cand, r)) => {
                    best = cand;
                    best_run = r;
                    n = (n - 1).max(2);
                }
                None if n >= best.len() => break,
                None => n = (n * 2).min(best.len()),
            }
        }
        // Steps skipped as harness errors do nothing: drop them, and the steps after the
        // finding.
        let last = same(&best_run).filter(|s| *s != usize::MAX);
        let trimmed: Vec<Step> = best
            .iter()
            .enumerate()
            .filter(|(i, _)| !best_run.skipped.contains(i) && last.is_none_or(|l| *i <= l))
            .map(|(_, s)| s.clone())
            .collect();
        if trimmed.len() < best.len()
            && let Some(r) = test(&trimmed, &mut runs, self)
        {
            return (trimmed, r, runs);
        }
        (best, best_run, runs)
    }

    fn account(&mut self, check: &Check, run: &CheckRun) {
        self.ops += run.trace.len() as u64;
        let mut cur = Some(MigState::Running);
        for rec in &run.trace {
            let Some(step) = check.steps.get(rec.step) else { continue };
            let obs = &rec.obs;
            let name = step.op.name();
            if let Some(e) = obs.errno {
                *self.errors.entry(format!("{name}:{}", e.name())).or_default() += 1;
            } else if let Some(crate::oracle::model::StreamEnd::Errno(e)) = obs.end {
                *self.errors.entry(format!("{name}:{} (after data)", e.name())).or_default() += 1;
            }
            if rec.device != self.device_label || self.api != MigrationApi::V2 {
                continue;
            }
            match &step.op {
                Op::SetState(arg) => {
                    if let (Some(c), Some(n)) = (cur, arg.state()) {
                        self.covered.insert((c, n));
                    }
                    cur = obs.state.and_then(MigState::from_raw);
                }
                Op::GetState => {
                    cur = if obs.errno.is_none() { obs.state.and_then(MigState::from_raw) } else { None }
                }
                Op::Reset if obs.errno.is_none() => cur = Some(MigState::Running),
                Op::CloseDevice | Op::Reopen | Op::Reset => cur = None,
                _ => {}
            }
        }
        if self.covered_all.is_none() && self.all_covered() {
            self.covered_all = Some((self.started.elapsed().as_secs_f64(), self.ops));
        }
    }

    /// Pairs still missing, as `CUR->NEW`.
    pub fn missing(&self) -> Vec<String> {
        self.possible.difference(&self.covered).map(|(a, b)| format!("{a}->{b}")).collect()
    }

    /// The session as a record line.
    pub fn summary(&self, device: &str) -> FuzzSummary {
        let secs = self.started.elapsed().as_secs_f64();
        let covered_possible: Vec<String> =
            self.covered.intersection(&self.possible).map(|(a, b)| format!("{a}->{b}")).collect();
        FuzzSummary {
            device: device.to_string(),
            seed: self.opts.seed,
            duration_ms: (secs * 1000.0) as u64,
            ops: self.ops,
            ops_per_sec: if secs > 0.0 { self.ops as f64 / secs } else { 0.0 },
            arcs_covered: covered_possible,
            arcs_possible: self.possible.len(),
            error_paths: self.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            findings: self.findings.iter().map(|f| f.record.clone()).collect(),
        }
    }

    /// The device model of the device under test (for profile matching).
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

fn sorted(v: &[crate::clauses::ClauseId]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|c| c.to_string()).collect();
    v.sort();
    v.dedup();
    v
}

fn interrupted(run: &CheckRun) -> bool {
    run.end.interrupted()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::id::*;
    use crate::device::sim::{Defect, SimConfig};
    use crate::engine::EngineOptions;

    fn session(cfg: &SimConfig, seed: u64) -> (Engine, Session) {
        let mut e = Engine::new(vec![cfg.build()], EngineOptions { max_stream: 1 << 20 });
        let s = Session::new(&mut e, LiveOptions { seed, ..LiveOptions::default() });
        (e, s)
    }

    #[test]
    fn walks_on_the_reference_simulator_find_nothing_and_cover_every_pair() {
        for flags in [1u64, 3, 5, 7] {
            let cfg = SimConfig { flags: MigFlags(flags), ..SimConfig::v2() };
            let (mut e, mut s) = session(&cfg, flags);
            let mut exec = |e: &mut Engine, c: &Check| e.run(c);
            for _ in 0..400 {
                let WalkOutcome::Done(new) = s.walk(&mut e, &mut exec) else { panic!("walk stopped") };
                assert!(new.is_empty(), "{:?}", s.findings.iter().map(|f| &f.record).collect::<Vec<_>>());
                if s.all_covered() {
                    break;
                }
            }
            assert!(s.all_covered(), "flags {flags}: missing {:?}", s.missing());
        }
    }

    #[test]
    fn a_defect_is_found_and_shrunk_to_a_reproducer_that_loads_and_replays() {
        let cfg = SimConfig { defects: vec![Defect::StopCopyToPreCopy], ..SimConfig::v2() };
        let (mut e, mut s) = session(&cfg, 3);
        let mut exec = |e: &mut Engine, c: &Check| e.run(c);
        let mut found = None;
        for _ in 0..2000 {
            if let WalkOutcome::Done(new) = s.walk(&mut e, &mut exec)
                && let Some(&i) = new.first()
            {
                found = Some(i);
                break;
            }
        }
        let f = &s.findings[found.expect("the defect is found")];
        assert_eq!(f.key, vec![V2_STATE_007.to_string()]);
        assert!(f.sequence.steps.len() <= 4, "not shrunk: {}", f.record.reproducer);
        let check = crate::sequence::load_str("r.yaml", f.record.reproducer.as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{}", f.record.reproducer));
        let run = e.run(&check);
        assert!(run.findings.iter().any(|x| x.violation.clauses == vec![V2_STATE_007]));
    }
}
