//! The engine: runs a [`Check`]'s steps on one or more devices, captures streams, judges
//! every result (explicit expectations and/or the spec oracle), stops at the first broken
//! MUST and always restores the devices afterwards.

mod badbuf;
pub mod capture;
mod exec;
mod expect;

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

/// Why report-based checks cannot observe anything on a kernel whose iova_bitmap is a stub.
pub const REPORT_STUB: &str = "DMA_LOGGING_REPORT fails with EOPNOTSUPP for every driver on this kernel: its \
    iova_bitmap is a stub (no CONFIG_IOMMUFD_DRIVER), so the driver's read_and_clear is never called";

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

/// The raw result of running a check (the runner turns it into an outcome).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRun {
    pub findings: Vec<Finding>,
    pub trace: Vec<StepRecord>,
    /// Why the check could not run on these devices (optional feature absent).
    pub unsupported: Option<String>,
    /// A harness or environment problem (not a driver violation).
    pub error: Option<String>,
    /// A device operation did not return within the watchdog (which step, how long).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Facts worth reporting that are not violations (environment limits, values).
    pub notes: Vec<String>,
    /// The device could not be restored to RUNNING (before or after the check): the run
    /// must stop.
    pub restore_error: Option<String>,
    pub duration_us: u64,
    /// The run stopped at a broken MUST before the last step.
    pub stopped_early: bool,
    /// Steps skipped as harness errors (an fd or stream that does not exist) when the engine
    /// runs with [`Engine::skip_harness_errors`] (fuzzing); 0-based.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<usize>,
}

/// Renders an op as one line of YAML flow, as a sequence author would write the step, with only
/// the keys whose value differs from the default: `set_state: STOP`, `read: {capture: s}`,
/// `write: {data: {stream: s}, segment: {fixed: 1}}`. Keys are in alphabetical order.
///
/// Reads and plain writes (most steps) are rendered directly; the others go through their serde
/// form. Both give the same text (`render_op_matches_serde`).
pub fn render_op(op: &crate::op::Op) -> String {
    use crate::op::Op;
    use crate::state::StateArg;
    match op {
        Op::SetState(StateArg::Named(s)) => ["set_state: ", s.name()].concat(),
        Op::SetState(StateArg::Raw(n)) => format!("set_state: {n}"),
        Op::V1SetState(n) => format!("v1_set_state: {n}"),
        Op::GetState => "get_state".to_string(),
        Op::GetFlags => "get_flags".to_string(),
        Op::DataSize => "data_size".to_string(),
        Op::DmaLogStop => "dma_log_stop".to_string(),
        Op::Reset => "reset".to_string(),
        Op::CloseDevice => "close_device".to_string(),
        Op::Reopen => "reopen".to_string(),
        Op::DebugfsState => "debugfs_state".to_string(),
        Op::Read(a) => render_read(a),
        Op::Write(a) => render_write(a).unwrap_or_else(|| render_op_serde(op)),
        _ => render_op_serde(op),
    }
}

/// Appends a string as a YAML plain scalar when it reads back as the same string, else quoted.
fn flow_str(out: &mut String, s: &str) {
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
        && !s.starts_with(['-', '.'])
        && !matches!(s, "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n")
        && s.parse::<f64>().is_err();
    if plain {
        out.push_str(s);
        return;
    }
    // Double-quoted, with every character YAML does not accept as printable escaped.
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control()
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a JSON value in YAML flow style.
fn flow_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => flow_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                flow_value(out, x);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Builds `{k: v, ...}` from the keys that are present, in the order given (alphabetical).
struct FlowMap {
    out: String,
    first: bool,
}

impl FlowMap {
    fn new(name: &str) -> FlowMap {
        let mut out = String::with_capacity(64);
        out.push_str(name);
        out.push_str(": {");
        FlowMap { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push_str(", ");
        }
        self.first = false;
        self.out.push_str(k);
        self.out.push_str(": ");
        &mut self.out
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// `read: {...}` without the defaults of [`crate::op::ReadArgs`].
fn render_read(a: &crate::op::ReadArgs) -> String {
    use std::fmt::Write;
    let d = crate::op::ReadArgs::default();
    let mut m = FlowMap::new("read");
    if a.append {
        m.key("append").push_str("true");
    }
    if let Some(c) = &a.capture {
        flow_str(m.key("capture"), &c.0);
    }
    if a.chunk != d.chunk {
        let _ = write!(m.key("chunk"), "{}", a.chunk);
    }
    if a.fd != d.fd {
        flow_str(m.key("fd"), a.fd.as_str());
    }
    if let Some(n) = a.max {
        let _ = write!(m.key("max"), "{n}");
    }
    if let Some(n) = a.offset {
        let _ = write!(m.key("offset"), "{n}");
    }
    if a.once {
        m.key("once").push_str("true");
    }
    m.finish()
}

/// `write: {...}` for writes without a mutation (the others go through serde).
fn render_write(a: &crate::op::WriteArgs) -> Option<String> {
    use std::fmt::Write;

    use crate::op::{FdRef, Segmentation, Source};
    if a.mutate.is_some() {
        return None;
    }
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let mut m = FlowMap::new("write");
    let o = m.key("data");
    match &a.data {
        Source::Stream(n) => {
            o.push_str("{stream: ");
            flow_str(o, &n.0);
            o.push('}');
        }
        Source::Zeros(n) => {
            let _ = write!(o, "{{zeros: {n}}}");
        }
        Source::Hex(h) => {
            o.push_str("{hex: ");
            flow_str(o, h);
            o.push('}');
        }
    }
    if a.fd != FdRef::default() {
        flow_str(m.key("fd"), a.fd.as_str());
    }
    if a.from_thread {
        m.key("from_thread").push_str("true");
    }
    if a.keep_going {
        m.key("keep_going").push_str("true");
    }
    if let Some(n) = a.offset {
        let _ = write!(m.key("offset"), "{n}");
    }
    if a.segment != Segmentation::default() {
        let o = m.key("segment");
        match &a.segment {
            Segmentation::Whole => o.push_str("whole"),
            Segmentation::Fixed(n) => {
                let _ = write!(o, "{{fixed: {n}}}");
            }
            Segmentation::Cycle(v) => {
                let _ = write!(o, "{{cycle: [{}]}}", list(v));
            }
            Segmentation::Random { seed, max } => {
                let _ = write!(o, "{{random: {{max: {max}, seed: {seed}}}}}");
            }
            Segmentation::Head { sizes, head } => {
                let _ = write!(o, "{{head: {{head: {head}, sizes: [{}]}}}}", list(sizes));
            }
        }
    }
    Some(m.finish())
}

/// [`render_op`] through the op's serde form: each argument whose removal reads back as the
/// same op is a default and is left out.
fn render_op_serde(op: &crate::op::Op) -> String {
    use serde_json::{Map, Value};
    match serde_json::to_value(op) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(m)) if m.len() == 1 => {
            let Some((k, v)) = m.into_iter().next() else { return op.name().to_string() };
            let v = match v {
                Value::Object(mut args) => {
                    let keys: Vec<String> = args.keys().cloned().collect();
                    for key in keys {
                        let Some(val) = args.remove(&key) else { continue };
                        let mut probe = Map::new();
                        probe.insert(k.clone(), Value::Object(args.clone()));
                        let same = serde_json::from_value::<crate::op::Op>(Value::Object(probe))
                            .is_ok_and(|back| back == *op);
                        if !same {
                            args.insert(key, val);
                        }
                    }
                    Value::Object(args)
                }
                other => other,
            };
            let mut out = format!("{k}: ");
            flow_value(&mut out, &v);
            out
        }
        Ok(other) => other.to_string(),
        Err(_) => op.name().to_string(),
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
    pub fn slot_map(&self, check: &Check) -> Result<Vec<usize>, String> {
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
                    return Err(format!(
                        "needs a second device of a type other than {} (add one with --peer)",
                        model0.as_deref().unwrap_or("the first")
                    ));
                }
                None if check.requires.same_type => {
                    return Err(format!(
                        "needs {} devices of type {} (add them with --peer)",
                        labels.len(),
                        model0.as_deref().unwrap_or("of the first")
                    ));
                }
                None => {
                    return Err(format!(
                        "needs {} devices, {} given (add more with --peer)",
                        labels.len(),
                        self.slots.len()
                    ));
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
            Err(e) => return Some(e),
        };
        for slot in map.iter().map(|&i| &self.slots[i]) {
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
    fn prepare(&mut self, map: &[usize]) -> Result<(), String> {
        self.streams.clear();
        self.marks.clear();
        self.saved.clear();
        for &i in map {
            let slot = &mut self.slots[i];
            stop_logging(slot);
            slot.dev
                .restore()
                .map_err(|e| format!("device {} could not be reset before the check: {e}", slot.label))?;
            slot.fds = FdTable::default();
            let state = if slot.facts.api == MigrationApi::V2 {
                let p = feature_get(slot.dev.as_mut(), uapi::FEATURE_MIG_DEVICE_STATE)
                    .map_err(|e| format!("GET MIG_DEVICE_STATE on {} failed with {e}", slot.label))?;
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
            run.unsupported = Some(why);
            return run;
        }
        let map = match self.slot_map(check) {
            Ok(m) => m,
            Err(e) => {
                run.unsupported = Some(e);
                return run;
            }
        };
        let labels = check.devices();
        run.trace.reserve(check.steps.len());
        if let Err(e) = self.prepare(&map) {
            run.error = Some(e.clone());
            run.restore_error = Some(e);
            run.duration_us = start.elapsed().as_micros() as u64;
            return run;
        }
        for (i, step) in check.steps.iter().enumerate() {
            if self.interrupt.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst)) {
                run.error = Some(format!("interrupted before step {}", i + 1));
                break;
            }
            self.current_step = i;
            let mut rendered: Option<String> = None;
            if let Some(p) = &mut self.progress {
                p(i, op_text(&mut rendered, &step.op));
            }
            let Some(si) = Self::slot_index(check, &map, step.device.as_deref()) else {
                run.error = Some(format!(
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
                        (Ok(()), Some(Ok(false))) => {
                            obs.notes.push(format!("fail_nth {n}: no fault injected"));
                        }
                        (Ok(()), Some(fired)) => {
                            // Any error is allowed once an allocation failed (or when it is
                            // not known whether one did): not judged, and the model learns
                            // the state again.
                            violations.clear();
                            self.slots[si].model.forget();
                            obs.notes.push(match fired {
                                Ok(_) => format!("fault injected (fail_nth {n})"),
                                Err(e) => format!("fail_nth {n}: unknown whether a fault was injected: {e}"),
                            });
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
                    run.error = Some(match &step.loc {
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
            if matches!(step.op, crate::op::Op::DmaLogReport(_))
                && obs.errno == Some(Errno::EOPNOTSUPP)
                && self.slots[si].facts.report_stub
            {
                run.unsupported = Some(REPORT_STUB.to_string());
                let op = op_text(&mut rendered, &step.op).to_string();
                run.trace.push(StepRecord { step: i, device: label.to_string(), op, obs, micros });
                break;
            }
            violations.extend(expect::evaluate(self, &irq_now, step, &obs));
            run.notes.extend(notes);
            if self.keep_trace {
                let op = op_text(&mut rendered, &step.op).to_string();
                run.trace.push(StepRecord { step: i, device: label.to_string(), op, obs, micros });
            }
            let mut stop = false;
            for v in violations {
                stop |= v.clauses.iter().any(|c| c.level().is_mandatory());
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
mod render_tests {
    use super::{render_op, render_op_serde};
    use crate::op::Op;

    fn ops() -> Vec<Op> {
        let mut ops: Vec<Op> = Vec::new();
        for kind in [crate::checks::Kind::Sim, crate::checks::Kind::Mtty, crate::checks::Kind::Other] {
            for c in crate::checks::generated_for(kind) {
                ops.extend(c.steps.into_iter().map(|s| s.op));
            }
        }
        for c in crate::embedded::fixtures().unwrap_or_default() {
            ops.extend(c.steps.into_iter().map(|s| s.op));
        }
        for raw in [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 255, u32::MAX] {
            ops.push(Op::SetState(crate::state::StateArg::Raw(raw)));
            ops.push(Op::V1SetState(raw));
        }
        // Names that YAML would read as something else unless quoted.
        for name in ["null", "0123", "1e5", "-x", "", "a\"b\\c", "\u{7f}\u{85}\t", "ü ñ", "yes", ".5", "a: b"]
        {
            let v = serde_json::json!({"read": {"fd": name, "capture": name}});
            ops.push(serde_json::from_value(v).expect("read op"));
            let v = serde_json::json!({"config_read": {"offset": 4, "save_as": name}});
            ops.push(serde_json::from_value(v).expect("config_read op"));
        }
        // Arbitrary ops from pseudo-random bytes.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if let Ok(op) = arbitrary::Arbitrary::arbitrary(&mut arbitrary::Unstructured::new(&bytes)) {
                ops.push(op);
            }
        }
        ops
    }

    #[test]
    fn a_rendered_step_reads_back_as_yaml_into_the_same_operation() {
        let ops = ops();
        for op in &ops {
            let text = render_op(op);
            let back: Result<Op, _> = crate::fixture::parse_yaml("render.yaml", text.as_bytes());
            assert_eq!(back.as_ref().ok(), Some(op), "`{text}`: {back:?}");
        }
    }

    #[test]
    fn reads_and_writes_show_only_what_differs_from_the_defaults() {
        let read: Op = serde_json::from_str(r#"{"read":{"capture":"s"}}"#).expect("read");
        let write: Op = serde_json::from_str(r#"{"write":{"data":{"stream":"s"},"segment":{"fixed":1}}}"#)
            .expect("write");

        assert_eq!(render_op(&read), "read: {capture: s}");
        assert_eq!(render_op(&write), "write: {data: {stream: s}, segment: {fixed: 1}}");
    }

    #[test]
    fn render_op_matches_serde() {
        let ops = ops();
        assert!(ops.len() > 1000);
        let count = |f: fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count();
        assert!(count(|o| matches!(o, Op::Read(_))) > 100);
        assert!(count(|o| matches!(o, Op::Write(w) if w.mutate.is_none())) > 50);
        assert!(count(|o| matches!(o, Op::Write(w) if matches!(w.data, crate::op::Source::Hex(_)))) > 5);
        for op in ops {
            assert_eq!(render_op(&op), render_op_serde(&op), "{op:?}");
        }
    }
}
