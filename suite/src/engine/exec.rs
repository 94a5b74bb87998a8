//! Executes one operation on a device and observes the result (the dispatch; the data path is
//! in data.rs, the v1 region protocol in v1.rs). The spec model always follows along; its
//! judgements are returned only when the step asks for the oracle.

use super::{Engine, HarnessError, feature_get};
use crate::check::Step;
use crate::device::{Device, MigrationApi, VFIO_MIG_GET_PRECOPY_INFO};
use crate::errno::Errno;
use crate::op::{Access, ConfigArgs, FdRef, Op, RegionArgs, RegionRef};
use crate::oracle::Violation;
use crate::oracle::feature::{FeatureFacts, judge_feature};
use crate::oracle::model::Observation;
use crate::oracle::{data_fd, dma};
use crate::uapi;

type StepOutput = (Observation, Vec<Violation>, Vec<String>);
type Result<T> = std::result::Result<T, HarnessError>;

/// Size of the buffer used for reads.
pub(super) const READ_BUF: usize = 1 << 20;

pub(super) fn obs_of<T>(r: &std::result::Result<T, Errno>) -> Observation {
    match r {
        Ok(_) => Observation::ok(),
        Err(e) => Observation::err(*e),
    }
}

impl Engine {
    pub(super) fn fd(&self, si: usize, r: &FdRef) -> Result<i32> {
        let t = &self.slots[si].fds;
        let fd = match r {
            FdRef::Current => t.current,
            FdRef::Previous => t.previous,
            FdRef::Named(n) => t.named.get(n).copied(),
        };
        fd.ok_or_else(|| HarnessError::NoDataFd { fd: r.to_string(), device: self.slots[si].label.clone() })
    }

    pub(super) fn get_state(dev: &mut dyn Device) -> Option<u32> {
        feature_get(dev, uapi::FEATURE_MIG_DEVICE_STATE)
            .ok()
            .map(|p| u32::from_le_bytes(p[..4].try_into().unwrap_or([0; 4])))
    }

    pub(super) fn region_index(&self, si: usize, r: &RegionRef) -> Result<u32> {
        Ok(match r {
            RegionRef::Bar0 => 0,
            RegionRef::Bar1 => 1,
            RegionRef::Bar2 => 2,
            RegionRef::Config => uapi::PCI_CONFIG_REGION_INDEX,
            RegionRef::Index(i) => *i,
            RegionRef::Migration => self.slots[si]
                .facts
                .migration_region
                .as_ref()
                .map(|m| m.index)
                .ok_or(HarnessError::NoMigrationRegion)?,
        })
    }

    pub(super) fn mig_region(&self, si: usize) -> Result<crate::device::RegionInfo> {
        self.slots[si].facts.migration_region.clone().ok_or(HarnessError::NoMigrationRegion)
    }

    /// Runs one step.
    pub(super) fn exec_step(&mut self, si: usize, step: &Step) -> Result<StepOutput> {
        let oracle = step.oracle;
        let mut notes = Vec::new();
        let is_v2 = self.slots[si].facts.api == MigrationApi::V2;
        // While the suite has the device fd closed, operations on it fail with EBADF whatever
        // the driver: the model neither judges nor follows them (data fds stay open and are
        // still judged).
        let closed_snapshot = (self.slots[si].model.is_closed() && uses_device_fd(&step.op))
            .then(|| self.slots[si].model.clone());
        let (obs, judged) = match &step.op {
            Op::SetState(arg) => {
                let req = arg.raw();
                let slot = &mut self.slots[si];
                let mut payload = [0u8; 8];
                payload[..4].copy_from_slice(&req.to_le_bytes());
                payload[4..].copy_from_slice(&(-1i32).to_le_bytes());
                let r =
                    slot.dev.feature(16, uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE, &mut payload);
                let mut obs = obs_of(&r);
                let fd = i32::from_le_bytes(payload[4..8].try_into().unwrap_or([0; 4]));
                obs.data_fd = Some(if obs.errno.is_none() { fd } else { -1 });
                let mut extra = Vec::new();
                if obs.errno.is_none() && fd >= 0 {
                    let flags = slot.dev.data_fd_flags(fd);
                    if let Ok(f) = &flags {
                        obs.fd_flags = Some((f.cloexec, f.access_mode));
                    }
                    extra.extend(data_fd::judge_new_data_fd(fd, flags));
                    slot.fds.adopt(fd, step.name_fd.as_deref());
                }
                obs.state = Self::get_state(slot.dev.as_mut());
                let mut v = slot.model.judge_set(req, &obs);
                v.extend(extra);
                // The second observer (CONFIG_VFIO_DEBUGFS, 6.8+) after every state change.
                if let Some(Ok(text)) = slot.dev.debugfs_state() {
                    v.extend(crate::oracle::debugfs::judge_state(&text, obs.state, slot.model.state));
                    obs.notes.push(format!("debugfs state {}", text.trim()));
                }
                (obs, v)
            }
            Op::GetState => {
                let slot = &mut self.slots[si];
                let mut obs = match feature_get(slot.dev.as_mut(), uapi::FEATURE_MIG_DEVICE_STATE) {
                    Ok(p) => Observation {
                        state: Some(u32::from_le_bytes(p[..4].try_into().unwrap_or([0; 4]))),
                        data_fd: Some(i32::from_le_bytes(p[4..8].try_into().unwrap_or([0; 4]))),
                        ..Default::default()
                    },
                    Err(e) => Observation::err(e),
                };
                if let Some(Ok(s)) = slot.dev.debugfs_state() {
                    obs.notes.push(format!("debugfs state {s}"));
                }
                let v = slot.model.judge_get(&obs);
                (obs, v)
            }
            Op::GetFlags => {
                let r = feature_get(self.slots[si].dev.as_mut(), uapi::FEATURE_MIGRATION);
                let mut obs = obs_of(&r.as_ref().map(|_| ()).map_err(|e| *e));
                if let Ok(p) = r {
                    obs.value = Some(u64::from_le_bytes(p[..8].try_into().unwrap_or([0; 8])));
                }
                let mut v = if is_v2 { self.slots[si].model.judge_flags(&obs) } else { Vec::new() };
                // The second observer's features file (6.18+) against what GET returned.
                if let Some(flags) = obs.value
                    && is_v2
                    && let Some(Ok(text)) = self.slots[si].dev.debugfs_features()
                {
                    let dma_logging = self.slots[si].facts.dma_logging;
                    v.extend(crate::oracle::debugfs::judge_features(&text, flags, dma_logging));
                    obs.notes.push(format!(
                        "debugfs features {}",
                        text.split_whitespace().collect::<Vec<_>>().join(" ")
                    ));
                }
                (obs, v)
            }
            Op::DataSize => {
                let slot = &mut self.slots[si];
                let r = feature_get(slot.dev.as_mut(), uapi::FEATURE_MIG_DATA_SIZE);
                let mut obs = obs_of(&r.as_ref().map(|_| ()).map_err(|e| *e));
                if let Ok(p) = r {
                    obs.value = Some(u64::from_le_bytes(p[..8].try_into().unwrap_or([0; 8])));
                }
                let v = slot.model.judge_data_size(&obs);
                if let Some(size) = obs.value {
                    self.saved.insert("data_size".to_string(), size);
                }
                (obs, v)
            }
            Op::Feature(a) => {
                let flags = a.flags();
                let mut payload = vec![0u8; usize::from(a.payload)];
                let argsz = a.argsz();
                let r = self.slots[si].dev.feature(argsz, flags, &mut payload);
                let obs = obs_of(&r);
                let facts = &self.slots[si].facts;
                let device = FeatureFacts { api: facts.api, dma_logging: facts.dma_logging };
                let mut v = judge_feature(&device, argsz, flags, &obs);
                // A raw DMA_LOGGING_STOP that went through stops logging like dma_log_stop.
                if obs.errno.is_none()
                    && flags & uapi::FEATURE_MASK == uapi::FEATURE_DMA_LOGGING_STOP
                    && flags & uapi::FEATURE_SET != 0
                    && flags & uapi::FEATURE_PROBE == 0
                {
                    v.extend(self.slots[si].model.judge_dma_stop(&obs));
                }
                // The PRECOPY_INFOv2 opt-in (7.1+) makes PRECOPY_INFO flags an output.
                if obs.errno.is_none()
                    && flags & uapi::FEATURE_MASK == uapi::FEATURE_MIG_PRECOPY_INFO_V2
                    && flags & uapi::FEATURE_SET != 0
                    && flags & uapi::FEATURE_PROBE == 0
                {
                    self.slots[si].model.on_precopy_v2_opt_in();
                }
                (obs, v)
            }
            Op::DmaLogStart(a) => {
                let ranges: Vec<(u64, u64)> = match a.count {
                    // Wrapping: a hostile page size makes iovas the core must refuse, never a panic.
                    Some(n) => (0..u64::from(n))
                        .map(|i| (i.wrapping_mul(2).wrapping_mul(a.page_size), a.page_size))
                        .collect(),
                    None => a.ranges.clone(),
                };
                let core = dma::core_start_refusal(a.page_size, &ranges);
                let slot = &mut self.slots[si];
                let r = slot.dev.dma_log_start(a.page_size, &ranges);
                let mut obs = obs_of(&r);
                obs.value = r.ok();
                let v = slot.model.judge_dma_start(core, &obs);
                (obs, v)
            }
            Op::DmaLogStop => {
                let slot = &mut self.slots[si];
                let mut empty = [0u8; 0];
                let r = slot.dev.feature(8, uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_STOP, &mut empty);
                let obs = obs_of(&r);
                let v = slot.model.judge_dma_stop(&obs);
                (obs, v)
            }
            Op::DmaLogReport(a) => {
                let core = dma::core_report_refusal(a.iova, a.length, a.page_size);
                let bits = if a.page_size == 0 { 0 } else { a.length.div_ceil(a.page_size) };
                let words = bits.div_ceil(64);
                if words > (16 << 20) / 8 {
                    return Err(HarnessError::BitmapTooLarge(words * 8));
                }
                let fill = u64::from_ne_bytes([a.prefill; 8]);
                let mut bitmap = vec![fill; words.max(1) as usize];
                let slot = &mut self.slots[si];
                let r = slot.dev.dma_log_report(a.iova, a.length, a.page_size, &mut bitmap);
                let mut obs = obs_of(&r);
                if r.is_ok() {
                    let set: u64 = bitmap.iter().map(|w| u64::from(w.count_ones())).sum();
                    let lost: u64 = bitmap.iter().map(|w| u64::from((fill & !w).count_ones())).sum();
                    obs.bitmap = Some((set, lost));
                }
                let v = slot.model.judge_dma_report(core, &obs);
                (obs, v)
            }
            Op::Read(a) => {
                let fd = self.fd(si, &a.fd)?;
                let obs = self.read_loop(si, fd, a)?;
                let v = if a.offset.is_some() {
                    self.slots[si].model.judge_positioned(fd, &obs)
                } else {
                    self.slots[si].model.judge_read(fd, &obs)
                };
                (obs, v)
            }
            Op::Write(a) => {
                let fd = self.fd(si, &a.fd)?;
                let obs = self.write_loop(si, fd, a)?;
                let v = if a.offset.is_some() {
                    self.slots[si].model.judge_positioned(fd, &obs)
                } else {
                    let piece = self.piece(&a.data, a.mutate.as_ref());
                    self.slots[si].model.judge_write(fd, piece, &obs)
                };
                (obs, v)
            }
            Op::BadBuffer(a) => self.bad_buffer(si, a)?,
            Op::RaceSetRead(a) => {
                let fd = self.fd(si, &a.fd)?;
                let slot = &mut self.slots[si];
                let r = match slot.dev.race_set_read(fd, a.state.raw(), u32::from(a.delay_us), READ_BUF) {
                    Ok(r) => r,
                    Err(e) => {
                        // No second thread (clone() failed): nothing ran on the device.
                        let mut obs = Observation::err(e);
                        obs.notes.push(format!("race_set_read: no reader thread: {e}"));
                        return Ok((obs, Vec::new(), notes));
                    }
                };
                // The reader's bytes came from the same open file: later reads of `fd` start
                // after them (a capture made then is not the start of the stream).
                *slot.fds.pos.entry(fd).or_default() += r.read_bytes;
                let mut obs = obs_of(&r.set);
                obs.bytes = Some(r.read_bytes);
                obs.error_at = r.read_error.map(|_| r.read_bytes);
                if let Some(e) = r.read_error {
                    obs.notes.push(format!("the racing read failed with {e} after {} bytes", r.read_bytes));
                }
                let new_fd = r.set.as_ref().copied().unwrap_or(-1);
                obs.data_fd = Some(new_fd);
                if new_fd >= 0 {
                    slot.fds.adopt(new_fd, step.name_fd.as_deref());
                }
                obs.state = Self::get_state(slot.dev.as_mut());
                // What a read racing a SET sees is not specified: the model forgets the
                // state and the data fds and learns them again from the next GET.
                slot.model.forget();
                (obs, Vec::new())
            }
            Op::RaceReset(a) => {
                let fd = if a.during == crate::op::RaceCall::PrecopyInfo { self.fd(si, &a.fd)? } else { -1 };
                let slot = &mut self.slots[si];
                let r = match slot.dev.race_reset(
                    a.during,
                    a.state.raw(),
                    fd,
                    u32::from(a.delay_us),
                    u32::from(a.calls),
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        // No second thread (clone() failed): nothing ran on the device.
                        let mut obs = Observation::err(e);
                        obs.notes.push(format!("race_reset: no resetting thread: {e}"));
                        return Ok((obs, Vec::new(), notes));
                    }
                };
                let mut obs = obs_of(&r.call);
                let what = match a.during {
                    crate::op::RaceCall::SetState => "SET",
                    crate::op::RaceCall::GetState => "GET",
                    crate::op::RaceCall::PrecopyInfo => "PRECOPY_INFO",
                };
                if r.calls > 1 {
                    obs.notes.push(format!(
                        "{} VFIO_DEVICE_RESET(s) raced {} {what} calls ({} failed; the first one's result is shown)",
                        r.resets, r.calls, r.calls_failed
                    ));
                } else {
                    obs.notes.push(format!("{} VFIO_DEVICE_RESET(s) raced the {what}", r.resets));
                }
                if let Some(e) = r.reset_error {
                    obs.notes.push(format!("a racing VFIO_DEVICE_RESET failed with {e}"));
                }
                if a.during == crate::op::RaceCall::SetState {
                    let new_fd = r.call.as_ref().copied().unwrap_or(-1);
                    obs.data_fd = Some(new_fd);
                    if new_fd >= 0 {
                        slot.fds.adopt(new_fd, step.name_fd.as_deref());
                    }
                }
                obs.state = Self::get_state(slot.dev.as_mut());
                // How a reset orders with a concurrent call is not specified: the model forgets
                // the state and the data fds and learns them again from the next GET.
                slot.model.forget();
                (obs, Vec::new())
            }
            Op::PrecopyInfo(a) => {
                let fd = self.fd(si, &a.fd)?;
                let argsz = a.argsz.unwrap_or(uapi::PRECOPY_INFO_SIZE);
                let mut buf = [0u8; 24];
                buf[..4].copy_from_slice(&argsz.to_le_bytes());
                buf[4..8].copy_from_slice(&a.flags.to_le_bytes());
                let slot = &mut self.slots[si];
                let r = slot.dev.data_ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut buf);
                let mut obs = obs_of(&r);
                if r.is_ok() {
                    let u = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap_or([0; 8]));
                    obs.precopy =
                        Some((u(8), u(16), u32::from_le_bytes(buf[4..8].try_into().unwrap_or([0; 4]))));
                }
                let v = slot.model.judge_precopy(fd, argsz, a.flags, &obs);
                (obs, v)
            }
            Op::Poll { fd, timeout_ms } => {
                let fd = self.fd(si, fd)?;
                let r = self.slots[si].dev.data_poll(fd, i32::from(*timeout_ms));
                let mut obs = obs_of(&r);
                obs.value = r.ok().map(|v| v as u16 as u64);
                let v = self.slots[si].model.judge_poll(fd, &obs);
                (obs, v)
            }
            Op::FdFlags { fd } => {
                let fd = self.fd(si, fd)?;
                let r = self.slots[si].dev.data_fd_flags(fd);
                let mut obs = obs_of(&r);
                obs.fd_flags = r.ok().map(|f| (f.cloexec, f.access_mode));
                (obs, Vec::new())
            }
            Op::CloseFd { fd } => {
                let fd = self.fd(si, fd)?;
                let slot = &mut self.slots[si];
                let r = slot.dev.data_close(fd);
                slot.fds.forget(fd);
                slot.model.on_close_fd(fd);
                (obs_of(&r), Vec::new())
            }
            Op::Reset => {
                let slot = &mut self.slots[si];
                let obs = obs_of(&slot.dev.reset());
                let v = if is_v2 { slot.model.judge_reset(&obs) } else { Vec::new() };
                (obs, v)
            }
            Op::CloseDevice => {
                let slot = &mut self.slots[si];
                let obs = obs_of(&slot.dev.close());
                slot.model.on_close();
                (obs, Vec::new())
            }
            Op::Reopen => {
                let slot = &mut self.slots[si];
                let obs = obs_of(&slot.dev.reopen());
                slot.model.on_reopen(&obs);
                (obs, Vec::new())
            }
            Op::ConfigRead(a) | Op::ConfigWrite(a) => {
                let write = matches!(step.op, Op::ConfigWrite(_));
                let ra = RegionArgs {
                    region: RegionRef::Config,
                    offset: u64::from(a.offset),
                    width: a.width,
                    value: a.value.map(u64::from),
                    via: Access::Rw,
                    save_as: a.save_as.clone(),
                };
                let _: &ConfigArgs = a;
                (self.region_access(si, &ra, write)?, Vec::new())
            }
            Op::RegionRead(a) => (self.region_access(si, a, false)?, Vec::new()),
            Op::RegionWrite(a) => (self.region_access(si, a, true)?, Vec::new()),
            Op::SetIrqs(a) => {
                let r = self.slots[si].dev.set_irqs(a.index.raw(), a.action, a.start, a.count, a.data);
                (obs_of(&r), Vec::new())
            }
            Op::IrqMark(name) => {
                let counts = self.slots[si].dev.irq_counts();
                let total: u64 = counts.iter().map(|(_, c)| c).sum();
                self.marks.insert(name.clone(), counts);
                (Observation { value: Some(total), ..Default::default() }, Vec::new())
            }
            Op::Wait { ms } => {
                // A deliberate sleep is not a stuck device: wait in slices and tell the watchdog
                // between them, so a wait longer than --timeout is not reported as a TIMEOUT.
                let mut left = u64::from(*ms);
                while left > 0 {
                    let slice = left.min(WAIT_SLICE_MS);
                    self.slots[si].dev.wait(slice);
                    left -= slice;
                    if left > 0
                        && let Some(p) = &mut self.progress
                    {
                        p(self.current_step, "");
                    }
                }
                (Observation::ok(), Vec::new())
            }
            Op::DebugfsState => match self.slots[si].dev.debugfs_state() {
                Some(Ok(s)) => {
                    let raw =
                        crate::state::MigState::ALL.iter().find(|m| m.name() == s.trim()).map(|m| m.raw());
                    let mut obs = Observation { state: raw, ..Default::default() };
                    obs.notes.push(format!("debugfs: {}", s.trim()));
                    (obs, Vec::new())
                }
                Some(Err(e)) => (Observation::err(e), Vec::new()),
                None => {
                    notes.push("no debugfs migration state file on this device".to_string());
                    (Observation::err(Errno::ENOENT), Vec::new())
                }
            },
            Op::V1Read(a) => self.v1_field_judged(si, a, false, oracle)?,
            Op::V1Write(a) => self.v1_field_judged(si, a, true, oracle)?,
            Op::V1SetState(value) => self.v1_set_state(si, *value)?,
            Op::V1Save(a) => self.v1_save(si, a)?,
            Op::V1Resume(a) => self.v1_resume(si, a)?,
        };
        let mut obs = obs;
        let judged = match closed_snapshot {
            Some(model) => {
                self.slots[si].model = model;
                Vec::new()
            }
            None => judged,
        };
        if is_v2 && obs.state.is_none() && step.expect.iter().any(|e| e.kind.needs_state()) {
            obs.state = Self::get_state(self.slots[si].dev.as_mut());
        }
        Ok((obs, if oracle { judged } else { Vec::new() }, notes))
    }

    /// The data-path buffer with at least `len` bytes (its contents are stale: callers only
    /// use what a read or a view fills).
    pub(super) fn take_buf(&mut self, len: usize) -> Vec<u8> {
        let b = std::mem::take(&mut self.buf);
        if b.len() >= len { b } else { vec![0u8; len] }
    }

    /// Keeps a buffer for the next step, unless it is larger than a read buffer.
    pub(super) fn give_buf(&mut self, b: Vec<u8>) {
        if b.len() <= READ_BUF {
            self.buf = b;
        }
    }

    pub(super) fn region_access(&mut self, si: usize, a: &RegionArgs, write: bool) -> Result<Observation> {
        let index = self.region_index(si, &a.region)?;
        let width = usize::from(a.width);
        if !(1..=8).contains(&width) {
            return Err(HarnessError::AccessWidth(width));
        }
        let dev = self.slots[si].dev.as_mut();
        if write {
            let value = a.value.ok_or(HarnessError::RegionWriteNeedsValue)?;
            let bytes = value.to_le_bytes();
            let r = dev.region_write(index, a.offset, &bytes[..width], a.via);
            return Ok(obs_of(&r));
        }
        let mut buf = [0u8; 8];
        let r = dev.region_read(index, a.offset, &mut buf[..width], a.via);
        let mut obs = obs_of(&r);
        if r.is_ok() {
            let v = u64::from_le_bytes(buf);
            obs.value = Some(v);
            if let Some(name) = &a.save_as {
                self.saved.insert(name.clone(), v);
            }
        }
        Ok(obs)
    }
}

/// Whether an operation goes through the device fd (as opposed to a data fd, or none).
fn uses_device_fd(op: &Op) -> bool {
    !matches!(
        op,
        Op::Read(_)
            | Op::Write(_)
            | Op::PrecopyInfo(_)
            | Op::BadBuffer(_)
            | Op::Poll { .. }
            | Op::FdFlags { .. }
            | Op::CloseFd { .. }
            | Op::CloseDevice
            | Op::Reopen
            | Op::IrqMark(_)
            | Op::Wait { .. }
    )
}

/// A `wait` step sleeps in slices this long, with a watchdog heartbeat between them (the
/// shortest `--timeout` is 1 s).
const WAIT_SLICE_MS: u64 = 200;
