//! The engine: runs a [`Check`]'s steps on one or more devices, captures streams, judges
//! every result (explicit expectations and/or the spec oracle), stops at the first broken
//! MUST and always restores the devices afterwards.

pub mod capture;
mod data;
mod error;
mod exec;
mod probe;
mod run;
mod v1;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::check::Check;
use crate::clauses::Feature;
use crate::device::{Device, DeviceInfo, MigrationApi};
use crate::oracle::model::{Facts, Model};
use crate::state::{MigFlags, MigState};
use crate::uapi;

pub use capture::Capture;
pub use error::HarnessError;
pub(crate) use probe::feature_get;
pub use probe::{DeviceFacts, probe};
pub use run::{CheckEnd, CheckRun, Finding, StepRecord};

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

impl Engine {
    /// The capture named `name` (what a `read` with `capture:` kept), if any.
    pub fn capture(&self, name: &str) -> Option<&Capture> {
        self.streams.get(name)
    }

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
                            obs.fault = fired.as_ref().ok().copied();
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
