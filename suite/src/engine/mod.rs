//! The engine: runs a [`Check`]'s steps on one or more devices, captures streams, judges
//! every result (explicit expectations and/or the spec oracle), stops at the first broken
//! MUST and always restores the devices afterwards.

pub mod capture;
mod data;
mod error;
mod exec;
mod v1;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::check::{Check, Loc};
use crate::clauses::Feature;
use crate::device::{Device, DeviceInfo, MigrationApi, RegionInfo};
use crate::errno::Errno;
use crate::oracle::Violation;
use crate::oracle::model::{Facts, Model, Observation};
use crate::state::{MigFlags, MigState};
use crate::uapi;

pub use capture::Capture;
pub use error::HarnessError;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Bound on any one read loop (a stream that never ends is reported, not followed).
    pub max_stream: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { max_stream: 4 << 30 }
    }
}

/// What the suite learnt about a device when it opened it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFacts {
    pub api: MigrationApi,
    pub flags: MigFlags,
    pub dma_logging: bool,
    pub precopy_info_v2: bool,
    /// Whether the backend can inject kernel faults (`/proc/thread-self/fail-nth`).
    #[serde(default)]
    pub fault_injection: bool,
    /// The v1 migration region, if any.
    pub migration_region: Option<RegionInfo>,
    /// State at start (v2).
    pub initial_state: Option<u32>,
    /// Why the device is not migratable, when api is None.
    pub why_not: Option<String>,
    /// DMA_LOGGING_REPORT fails with EOPNOTSUPP right after a successful START: the kernel's
    /// iova_bitmap is a stub (built without IOMMUFD), whatever the driver does.
    #[serde(default)]
    pub report_stub: bool,
    /// The PCI command register when the suite opened the device (restored after each check).
    #[serde(default)]
    pub pci_command: Option<u16>,
}

pub use crate::op::render::render_op;
pub use crate::oracle::dma::REPORT_STUB;

/// The data fds the engine holds for one device.
#[derive(Clone, Debug, Default)]
pub struct FdTable {
    pub current: Option<i32>,
    pub previous: Option<i32>,
    pub named: BTreeMap<String, i32>,
    /// Bytes read so far from each saving fd (stream positions).
    pub pos: BTreeMap<i32, u64>,
}

impl FdTable {
    fn adopt(&mut self, fd: i32, name: Option<&str>) {
        self.previous = self.current;
        self.current = Some(fd);
        if let Some(n) = name {
            self.named.insert(n.to_string(), fd);
        }
    }

    fn forget(&mut self, fd: i32) {
        if self.current == Some(fd) {
            self.current = None;
        }
        if self.previous == Some(fd) {
            self.previous = None;
        }
        self.named.retain(|_, v| *v != fd);
    }
}

/// A device under test with everything the engine tracks about it.
pub struct Slot {
    pub label: String,
    pub dev: Box<dyn Device>,
    pub facts: DeviceFacts,
    pub model: Model,
    pub fds: FdTable,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("label", &self.label).field("facts", &self.facts).finish()
    }
}

/// One broken expectation, located.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(flatten)]
    pub violation: Violation,
    /// 0-based step index.
    pub step: usize,
    /// The step as YAML (`set_state: STOP_COPY`).
    pub op: String,
    pub device: String,
    pub loc: Option<Loc>,
    /// The step was preparation for the behaviour under test.
    pub setup: bool,
}

/// One executed step, for traces and reproducers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub device: String,
    pub op: String,
    pub obs: Observation,
    pub micros: u64,
}

/// How a check's run ended. Findings are kept beside it: a run can break clauses and then
/// end on anything (a harness error at a later step, a precondition that turns out unmet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CheckEnd {
    /// Every step ran, or the run stopped at a broken MUST ([`CheckRun::stopped_early`]).
    #[default]
    Completed,
    /// The check could not observe what it is about here (a feature, a device or a kernel
    /// it needs is absent, a precondition failed): why.
    Unsupported(String),
    /// A harness or environment problem, not a driver violation (a sequence naming what
    /// does not exist, a crashed check process, an interrupt): what.
    HarnessError(String),
    /// A device operation did not return within the watchdog: which step, how long.
    Timeout(String),
}

impl CheckEnd {
    /// The reason, if the run was UNSUPPORTED.
    pub fn unsupported(&self) -> Option<&str> {
        if let CheckEnd::Unsupported(s) = self { Some(s) } else { None }
    }

    /// The harness error, if there was one.
    pub fn error(&self) -> Option<&str> {
        if let CheckEnd::HarnessError(s) = self { Some(s) } else { None }
    }

    /// The watchdog's report, if an operation timed out.
    pub fn timeout(&self) -> Option<&str> {
        if let CheckEnd::Timeout(s) = self { Some(s) } else { None }
    }

    /// The run was interrupted (SIGINT/SIGTERM) before it finished.
    pub fn interrupted(&self) -> bool {
        self.error().is_some_and(|e| e.starts_with("interrupted"))
    }
}

/// The raw result of running a check (the runner turns it into an outcome). It crosses the
/// process boundary of `isolate` as JSON in the form it had before [`CheckEnd`]: the end is
/// one of three optional fields (`unsupported`, `error`, `timeout`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CheckRunWire", into = "CheckRunWire")]
pub struct CheckRun {
    pub findings: Vec<Finding>,
    pub trace: Vec<StepRecord>,
    /// How the run ended.
    pub end: CheckEnd,
    /// Facts worth reporting that are not violations (environment limits, values).
    pub notes: Vec<String>,
    /// The device could not be restored to RUNNING (before or after the check): the run
    /// must stop. Not a [`CheckEnd`]: the restore after a check happens whatever the check
    /// ended with, so it can fail after findings, UNSUPPORTED, a harness error or a timeout,
    /// and both must be reported (the end judges the driver, this stops the run).
    pub restore_error: Option<String>,
    pub duration_us: u64,
    /// The run stopped at a broken MUST before the last step.
    pub stopped_early: bool,
    /// Steps skipped as harness errors (an fd or stream that does not exist) when the engine
    /// runs with [`Engine::skip_harness_errors`] (fuzzing); 0-based.
    pub skipped: Vec<usize>,
}

/// [`CheckRun`] as JSON: its end as the three optional fields it had before [`CheckEnd`].
#[derive(Serialize, Deserialize)]
struct CheckRunWire {
    findings: Vec<Finding>,
    trace: Vec<StepRecord>,
    unsupported: Option<String>,
    error: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    notes: Vec<String>,
    restore_error: Option<String>,
    duration_us: u64,
    stopped_early: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<usize>,
}

impl From<CheckRunWire> for CheckRun {
    fn from(w: CheckRunWire) -> CheckRun {
        // More than one field set (never written, only possible in hand-made JSON): the most
        // severe wins, in the order `oracle::outcome::classify` has always read them.
        let end = match (w.timeout, w.error, w.unsupported) {
            (Some(t), _, _) => CheckEnd::Timeout(t),
            (None, Some(e), _) => CheckEnd::HarnessError(e),
            (None, None, Some(u)) => CheckEnd::Unsupported(u),
            (None, None, None) => CheckEnd::Completed,
        };
        CheckRun {
            findings: w.findings,
            trace: w.trace,
            end,
            notes: w.notes,
            restore_error: w.restore_error,
            duration_us: w.duration_us,
            stopped_early: w.stopped_early,
            skipped: w.skipped,
        }
    }
}

impl From<CheckRun> for CheckRunWire {
    fn from(r: CheckRun) -> CheckRunWire {
        let (mut unsupported, mut error, mut timeout) = (None, None, None);
        match r.end {
            CheckEnd::Completed => {}
            CheckEnd::Unsupported(u) => unsupported = Some(u),
            CheckEnd::HarnessError(e) => error = Some(e),
            CheckEnd::Timeout(t) => timeout = Some(t),
        }
        CheckRunWire {
            findings: r.findings,
            trace: r.trace,
            unsupported,
            error,
            timeout,
            notes: r.notes,
            restore_error: r.restore_error,
            duration_us: r.duration_us,
            stopped_early: r.stopped_early,
            skipped: r.skipped,
        }
    }
}

/// Renders `op` once per step and hands out the cached text afterwards.
fn op_text<'a>(cache: &'a mut Option<String>, op: &crate::op::Op) -> &'a str {
    cache.get_or_insert_with(|| render_op(op))
}

/// Called before every step (index, step as YAML) and as a heartbeat inside long loops
/// (index, `""`): the process-isolation watchdog resets its timer on each call.
pub type Progress = Box<dyn FnMut(usize, &str) + Send>;

/// Where a [`StepHook`] is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPoint {
    /// Right before the step's device operation.
    Before,
    /// Right after it (also when it could not run).
    After,
}

/// Called right before and right after the device operation of each step (index, point), in
/// the process that runs the check: the live fuzzer collects per-step kernel coverage and
/// kernel-log positions with it (`fuzz::coverage`).
pub type StepHook = Box<dyn FnMut(usize, StepPoint) + Send>;

/// The engine.
pub struct Engine {
    pub slots: Vec<Slot>,
    pub opts: EngineOptions,
    /// Progress callback (watchdog heartbeats).
    pub progress: Option<Progress>,
    /// Per-step hook (kernel coverage of the live fuzzer).
    pub step_hook: Option<StepHook>,
    /// Set from a signal handler: stop the current check at the next step.
    pub interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Fuzzing: a step that cannot run (it names a data fd or stream that does not exist) is
    /// skipped and listed in [`CheckRun::skipped`] instead of ending the check with ERROR.
    pub skip_harness_errors: bool,
    /// Record every step in [`CheckRun::trace`] (the default). The fuzz harness turns it off:
    /// rendering each step for the trace is most of the engine's per-step cost.
    pub keep_trace: bool,
    current_step: usize,
    /// The current step compares what it reads with a capture, so reads hash their bytes
    /// (captures always do; a plain drain does not pay for a hash nobody looks at).
    hash_reads: bool,
    streams: BTreeMap<String, Capture>,
    marks: BTreeMap<String, crate::device::IrqCounts>,
    saved: BTreeMap<String, u64>,
    /// The data-path buffer, kept between steps (allocated once, zero pages until used).
    buf: Vec<u8>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("slots", &self.slots).finish()
    }
}

/// Builds a `VFIO_DEVICE_FEATURE` GET with an 8-byte payload and returns the payload.
fn feature_get(dev: &mut dyn Device, feature: u32) -> Result<[u8; 8], Errno> {
    let mut payload = [0u8; 8];
    dev.feature(uapi::FEATURE_HEADER + 8, uapi::FEATURE_GET | feature, &mut payload)?;
    Ok(payload)
}

/// Undoes what a check may have left behind besides the migration state: DMA logging,
/// armed interrupts, the PCI command register. Errors are ignored (an index that was not
/// enabled refuses to be disabled on some drivers).
fn stop_logging(slot: &mut Slot) {
    if slot.facts.dma_logging {
        let mut empty = [0u8; 0];
        let _ = slot.dev.feature(8, uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_STOP, &mut empty);
    }
    for index in [2, 1, 0] {
        let _ = slot.dev.set_irqs(index, crate::op::IrqAction::Trigger, 0, 0, crate::op::IrqData::None);
    }
    if let Some(cmd) = slot.facts.pci_command {
        let _ = slot.dev.region_write(
            uapi::PCI_CONFIG_REGION_INDEX,
            4,
            &cmd.to_le_bytes(),
            crate::op::Access::Rw,
        );
    }
}

/// Learns what a device supports: v2 flags and features, or a v1 migration region.
pub fn probe(dev: &mut dyn Device) -> DeviceFacts {
    let mut facts = DeviceFacts {
        api: MigrationApi::None,
        flags: MigFlags(0),
        dma_logging: false,
        precopy_info_v2: false,
        fault_injection: dev.inject_fault(0).is_ok(),
        migration_region: None,
        initial_state: None,
        why_not: None,
        report_stub: false,
        pci_command: None,
    };
    let mut cmd = [0u8; 2];
    if dev.region_read(uapi::PCI_CONFIG_REGION_INDEX, 4, &mut cmd, crate::op::Access::Rw) == Ok(2) {
        facts.pci_command = Some(u16::from_le_bytes(cmd));
    }
    match feature_get(dev, uapi::FEATURE_MIGRATION) {
        Ok(p) => {
            facts.api = MigrationApi::V2;
            facts.flags = MigFlags(u64::from_le_bytes(p[..8].try_into().unwrap_or([0; 8])));
            let mut empty = [0u8; 0];
            facts.dma_logging = dev
                .feature(
                    8,
                    uapi::FEATURE_PROBE | uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START,
                    &mut empty,
                )
                .is_ok();
            facts.precopy_info_v2 = dev
                .feature(
                    8,
                    uapi::FEATURE_PROBE | uapi::FEATURE_SET | uapi::FEATURE_MIG_PRECOPY_INFO_V2,
                    &mut empty,
                )
                .is_ok();
            if let Ok(p) = feature_get(dev, uapi::FEATURE_MIG_DEVICE_STATE) {
                facts.initial_state = Some(u32::from_le_bytes(p[..4].try_into().unwrap_or([0; 4])));
            }
            if facts.dma_logging && dev.dma_log_start(4096, &[(0, 4096)]).is_ok() {
                let mut bitmap = [0u64; 1];
                facts.report_stub = dev.dma_log_report(0, 4096, 4096, &mut bitmap) == Err(Errno::EOPNOTSUPP);
                let _ = dev.feature(8, uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_STOP, &mut empty);
            }
            return facts;
        }
        Err(e) => {
            facts.why_not = Some(format!("VFIO_DEVICE_FEATURE GET MIGRATION failed with {e}"));
        }
    }
    let regions = dev.device_info().map(|i| i.num_regions).unwrap_or(0).min(64);
    for index in 0..regions {
        if let Ok(info) = dev.region_info(index)
            && info.cap_type == Some(uapi::REGION_TYPE_MIGRATION)
        {
            facts.api = MigrationApi::V1;
            facts.migration_region = Some(info);
            facts.why_not = None;
            return facts;
        }
    }
    if let Some(w) = &mut facts.why_not {
        w.push_str(&format!(
            " and none of its {regions} regions is a v1 migration region (type 3, subtype 1)"
        ));
    }
    facts
}

impl Engine {
    /// Wraps devices (labels A, B, C, ... in order) and probes each.
    pub fn new(devices: Vec<Box<dyn Device>>, opts: EngineOptions) -> Engine {
        let slots = devices
            .into_iter()
            .enumerate()
            .map(|(i, mut dev)| {
                let facts = probe(dev.as_mut());
                let model = Model::new(
                    Facts {
                        flags: facts.flags,
                        dma_logging: facts.dma_logging,
                        device_type: dev.info().model.clone(),
                    },
                    facts.initial_state.and_then(MigState::from_raw),
                );
                let label = ((b'A' + (i as u8 % 26)) as char).to_string();
                Slot { label, dev, facts, model, fds: FdTable::default() }
            })
            .collect();
        Engine {
            slots,
            opts,
            progress: None,
            step_hook: None,
            interrupt: None,
            skip_harness_errors: false,
            keep_trace: true,
            current_step: 0,
            hash_reads: false,
            streams: BTreeMap::new(),
            marks: BTreeMap::new(),
            saved: BTreeMap::new(),
            buf: vec![0u8; exec::READ_BUF],
        }
    }

    /// Device info of every slot.
    pub fn infos(&self) -> Vec<DeviceInfo> {
        self.slots.iter().map(|s| s.dev.info().clone()).collect()
    }

    /// Which slot plays each of the check's device labels: the first label is the device
    /// under test; the others prefer devices of the same type (streams move between them),
    /// except that with `other_type` the second label gets a device of another type.
    pub fn slot_map(&self, check: &Check) -> Result<Vec<usize>, HarnessError> {
        let labels = check.devices();
        let mut map = vec![0usize];
        let model0 = self.slots[0].dev.info().model.clone();
        for i in 1..labels.len() {
            let free = |j: &usize| !map.contains(j);
            let want_other = check.requires.other_type && i == 1;
            let strict = want_other || check.requires.same_type;
            let pick = (1..self.slots.len())
                .filter(free)
                .find(|&j| (self.slots[j].dev.info().model != model0) == want_other)
                .or_else(|| if strict { None } else { (1..self.slots.len()).find(free) });
            match pick {
                Some(j) => map.push(j),
                None if want_other => {
                    return Err(HarnessError::NeedsOtherType {
                        model: model0.as_deref().unwrap_or("the first").to_string(),
                    });
                }
                None if check.requires.same_type => {
                    return Err(HarnessError::NeedsSameType {
                        count: labels.len(),
                        model: model0.as_deref().unwrap_or("of the first").to_string(),
                    });
                }
                None => {
                    return Err(HarnessError::NeedsDevices { count: labels.len(), given: self.slots.len() });
                }
            }
        }
        Ok(map)
    }

    /// Why `check` cannot run here, if it cannot.
    pub fn unsupported(&self, check: &Check) -> Option<String> {
        if let Some(why) = &check.requires.unavailable {
            return Some(why.clone());
        }
        let map = match self.slot_map(check) {
            Ok(m) => m,
            Err(e) => return Some(e.to_string()),
        };
        for slot in map.iter().map(|&i| &self.slots[i]) {
            // The kernel first: a clause the kernel does not have explains the rest.
            if let Some(kernel) = &slot.dev.info().kernel
                && let Some(why) = crate::oracle::kernels::absent_on(&check.clauses, kernel)
            {
                return Some(why);
            }
            let f = &slot.facts;
            if let Some(api) = check.requires.api
                && api != f.api
            {
                return Some(format!("needs a {api:?} device").to_lowercase());
            }
            if !f.flags.contains(check.requires.flags) {
                return Some(format!("device lacks {}", MigFlags(check.requires.flags.0 & !f.flags.0)));
            }
            for feat in &check.requires.features {
                let has = match feat {
                    Feature::None => true,
                    Feature::P2p => f.flags.has_p2p(),
                    Feature::Precopy => f.flags.has_pre_copy(),
                    Feature::DmaLogging => f.dma_logging,
                    Feature::PrecopyInfoV2 => f.precopy_info_v2,
                };
                if !has {
                    return Some(format!("device lacks {}", feat.as_str()));
                }
            }
        }
        None
    }

    fn slot_index(check: &Check, map: &[usize], label: Option<&str>) -> Option<usize> {
        match label {
            None => Some(map[0]),
            Some(l) => check.devices().iter().position(|x| x == l).and_then(|i| map.get(i).copied()),
        }
    }

    /// Restores every device the check uses and resets the per-check state.
    fn prepare(&mut self, map: &[usize]) -> Result<(), HarnessError> {
        self.streams.clear();
        self.marks.clear();
        self.saved.clear();
        for &i in map {
            let slot = &mut self.slots[i];
            stop_logging(slot);
            slot.dev
                .restore()
                .map_err(|errno| HarnessError::ResetBefore { device: slot.label.clone(), errno })?;
            slot.fds = FdTable::default();
            let state = if slot.facts.api == MigrationApi::V2 {
                let p = feature_get(slot.dev.as_mut(), uapi::FEATURE_MIG_DEVICE_STATE)
                    .map_err(|errno| HarnessError::GetStateBefore { device: slot.label.clone(), errno })?;
                MigState::from_raw(u32::from_le_bytes(p[..4].try_into().unwrap_or([0; 4])))
            } else {
                None
            };
            let facts = Facts {
                flags: slot.facts.flags,
                dma_logging: slot.facts.dma_logging,
                device_type: slot.dev.info().model.clone(),
            };
            slot.model = Model::new(facts, state);
        }
        Ok(())
    }

    /// Runs one check and restores the devices afterwards.
    pub fn run(&mut self, check: &Check) -> CheckRun {
        let start = Instant::now();
        let mut run = CheckRun::default();
        if let Some(why) = self.unsupported(check) {
            run.end = CheckEnd::Unsupported(why);
            return run;
        }
        let map = match self.slot_map(check) {
            Ok(m) => m,
            Err(e) => {
                run.end = CheckEnd::Unsupported(e.to_string());
                return run;
            }
        };
        let labels = check.devices();
        run.trace.reserve(check.steps.len());
        if let Err(e) = self.prepare(&map) {
            run.end = CheckEnd::HarnessError(e.to_string());
            run.restore_error = Some(e.to_string());
            run.duration_us = start.elapsed().as_micros() as u64;
            return run;
        }
        for (i, step) in check.steps.iter().enumerate() {
            if self.interrupt.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst)) {
                run.end = CheckEnd::HarnessError(format!("interrupted before step {}", i + 1));
                break;
            }
            self.current_step = i;
            let mut rendered: Option<String> = None;
            if let Some(p) = &mut self.progress {
                p(i, op_text(&mut rendered, &step.op));
            }
            let Some(si) = Self::slot_index(check, &map, step.device.as_deref()) else {
                run.end = CheckEnd::HarnessError(format!(
                    "step {} names unknown device `{}`",
                    i + 1,
                    step.device.as_deref().unwrap_or("")
                ));
                break;
            };
            let t0 = Instant::now();
            self.hash_reads = step.expect.iter().any(|e| {
                matches!(e.kind, crate::check::ExpectKind::Equals(_) | crate::check::ExpectKind::Differs(_))
            });
            // Armed outside the hook's window: the procfs writes are not the step's coverage.
            let armed = match step.fail_nth {
                Some(n) if n > 0 => self.slots[si].dev.inject_fault(n).map_err(|e| e.to_string()),
                _ => Err(String::new()),
            };
            if let Some(h) = &mut self.step_hook {
                h(i, StepPoint::Before);
            }
            let mut outcome = self.exec_step(si, step);
            if let Some(h) = &mut self.step_hook {
                h(i, StepPoint::After);
            }
            if let Some(n) = step.fail_nth {
                let fired = match &armed {
                    Ok(()) => Some(self.slots[si].dev.fault_injected().map_err(|e| e.to_string())),
                    Err(_) => None,
                };
                if let Ok((obs, violations, notes)) = &mut outcome {
                    match (&armed, fired) {
                        (Ok(()), Some(fired)) => {
                            let model = &mut self.slots[si].model;
                            obs.notes.push(crate::oracle::fault::judge_injected(n, fired, violations, model));
                        }
                        (Err(e), _) => notes.push(format!("step {}: fail_nth {n} not armed: {e}", i + 1)),
                        (Ok(()), None) => {}
                    }
                }
            }
            let micros = t0.elapsed().as_micros() as u64;
            let label = step.device.as_deref().unwrap_or(&labels[0]);
            let (obs, mut violations, notes) = match outcome {
                Ok(x) => x,
                Err(_) if self.skip_harness_errors => {
                    run.skipped.push(i);
                    continue;
                }
                Err(e) => {
                    let op = op_text(&mut rendered, &step.op);
                    run.end = CheckEnd::HarnessError(match &step.loc {
                        Some(l) => format!("{l}: step {} `{op}`: {e}", i + 1),
                        None => format!("step {} `{op}`: {e}", i + 1),
                    });
                    break;
                }
            };
            let irq_now = if step.expect.iter().any(|e| {
                matches!(
                    e.kind,
                    crate::check::ExpectKind::IrqsSince(_) | crate::check::ExpectKind::NoIrqsSince(_)
                )
            }) {
                self.slots[si].dev.irq_counts()
            } else {
                Vec::new()
            };
            if let Some(why) = matches!(step.op, crate::op::Op::DmaLogReport(_))
                .then(|| crate::oracle::dma::report_unobservable(obs.errno, self.slots[si].facts.report_stub))
                .flatten()
            {
                run.end = CheckEnd::Unsupported(why.to_string());
                let op = op_text(&mut rendered, &step.op).to_string();
                run.trace.push(StepRecord { step: i, device: label.to_string(), op, obs, micros });
                break;
            }
            let memory = crate::oracle::expect::Memory {
                saved: &self.saved,
                marks: &self.marks,
                stream: &|name: &str| self.streams.get(name).map(|c| (c.len(), c.hash())),
                irq_now: &irq_now,
            };
            let expected = crate::oracle::expect::evaluate(&memory, step, &obs);
            if let (Some(why), Some(first)) = (&step.precondition, expected.first()) {
                run.end = CheckEnd::Unsupported(format!("{why} (step {}: {})", i + 1, first.actual));
                if self.keep_trace {
                    let op = op_text(&mut rendered, &step.op).to_string();
                    run.trace.push(StepRecord { step: i, device: label.to_string(), op, obs, micros });
                }
                break;
            }
            violations.extend(expected);
            run.notes.extend(notes);
            if self.keep_trace {
                let op = op_text(&mut rendered, &step.op).to_string();
                run.trace.push(StepRecord { step: i, device: label.to_string(), op, obs, micros });
            }
            let mut stop = false;
            for v in violations {
                stop |= crate::oracle::outcome::stops_check(&v);
                run.findings.push(Finding {
                    violation: v,
                    step: i,
                    op: op_text(&mut rendered, &step.op).to_string(),
                    device: label.to_string(),
                    loc: step.loc.clone(),
                    setup: step.setup,
                });
            }
            if stop && i + 1 < check.steps.len() {
                run.stopped_early = true;
                break;
            }
        }
        for slot in map.iter().map(|&i| &self.slots[i]) {
            if slot.model.report_stub && !slot.facts.report_stub {
                run.notes.push(format!(
                    "device {}: DMA_LOGGING_REPORT failed with EOPNOTSUPP after a successful START: the kernel's \
                     iova_bitmap is a stub (built without CONFIG_IOMMUFD_DRIVER), so REPORT cannot work for any \
                     driver on this kernel; report-based clauses were not observable",
                    slot.label
                ));
                break;
            }
        }
        for &i in &map {
            let slot = &mut self.slots[i];
            stop_logging(slot);
            if let Err(e) = slot.dev.restore() {
                run.restore_error =
                    Some(format!("device {} did not return to RUNNING after the check: {e}", slot.label));
            }
            slot.fds = FdTable::default();
        }
        run.duration_us = start.elapsed().as_micros() as u64;
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_run_crosses_the_process_boundary_in_its_old_json_form() {
        let run = CheckRun {
            end: CheckEnd::Timeout("step 2 `read: {}` did not return within 5 s".to_string()),
            restore_error: Some("device A did not return to RUNNING after the check: EIO".to_string()),
            duration_us: 7,
            ..Default::default()
        };
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["timeout"], "step 2 `read: {}` did not return within 5 s");
        assert!(json["error"].is_null() && json["unsupported"].is_null(), "{json}");
        assert!(json.get("end").is_none(), "{json}");
        let back: CheckRun = serde_json::from_value(json).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn a_check_run_written_before_check_end_reads_with_the_most_severe_end() {
        let old = r#"{"findings":[],"trace":[],"unsupported":"device lacks p2p","error":null,
            "notes":[],"restore_error":null,"duration_us":1,"stopped_early":false}"#;
        let run: CheckRun = serde_json::from_str(old).unwrap();
        assert_eq!(run.end, CheckEnd::Unsupported("device lacks p2p".to_string()));
        let both = old.replace(r#""error":null"#, r#""error":"EBUSY""#);
        let run: CheckRun = serde_json::from_str(&both).unwrap();
        assert_eq!(run.end, CheckEnd::HarnessError("EBUSY".to_string()));
    }
}
