//! `sim:v2`: a reference v2 migration device. It emulates the vfio core's feature plumbing
//! (argsz, flags, PROBE, ENOTTY, the DMA-logging argument checks) and a well-behaved driver
//! on top (a `vfio_mig_get_next_state()` loop, sessions, stream validation), with defects that
//! can be switched on one by one.

use std::collections::BTreeMap;

use super::defects::Defect;
use super::hw::{CONFIG_SIZE, Hw, NUM_REGS, PCI_COMMAND};
use super::stream::{LoadError, Loader, Saver, StreamIdentity};
use super::{REGION_BAR0, REGION_CONFIG, SimConfig};
use crate::device::{
    DevInfoRaw, DevResult, Device, DeviceInfo, FdFlags, IrqInfo, RegionInfo, VFIO_MIG_GET_PRECOPY_INFO,
};
use crate::errno::Errno;
use crate::op::{Access, IrqAction, IrqData};
use crate::oracle::fsm;
use crate::state::{MigFlags, MigState};
use crate::uapi;

/// Which kind of session a data fd belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FdKind {
    Saving,
    Resuming,
}

#[derive(Clone, Debug)]
struct SimFd {
    kind: FdKind,
    session: u64,
}

/// Driver state that only held-out defects use (`Defect::held_out`).
#[derive(Debug, Default)]
struct Held {
    /// get_reports_target_after_failed_set: what GET reports after a failed SET.
    reported: Option<MigState>,
    /// stop_to_running_p2p_stays_stopped, pre_copy_p2p_exit_stays_quiesced: the device does
    /// not run although its state is a running one; cleared by the next arc.
    quiesced: bool,
    /// stop_completes_late: ticks the device still runs after SET(STOP) returned.
    late_ticks: u32,
    /// Reads in the current saving session (enomsg_before_first_chunk).
    session_reads: u32,
}

#[derive(Debug)]
enum Session {
    Saving { id: u64, saver: Saver, stop_copy_reads: u32 },
    Resuming { id: u64, loader: Loader },
}

/// A simulated v2 device.
#[derive(Debug)]
pub struct SimV2 {
    cfg: SimConfig,
    info: DeviceInfo,
    hw: Hw,
    state: MigState,
    open: bool,
    session: Option<Session>,
    fds: BTreeMap<i32, SimFd>,
    next_fd: i32,
    next_session: u64,
    logging: bool,
    reset_since_resume: bool,
    ticks_in_state: u64,
    precopy_queries: u32,
    /// The PRECOPY_INFOv2 opt-in (7.1+): set by a SET of feature 12, cleared on close.
    precopy_v2: bool,
    /// A reconfiguration queued new initial data that the next PRECOPY_INFO reports (REINIT).
    reinit_pending: bool,
    /// PRECOPY_INFO answers since the last REINIT (reinit_initial_bytes_grows).
    since_reinit: Option<u32>,
    /// The state before the last successful SET (debugfs_state_stale).
    before_last_set: MigState,
    held: Held,
}

impl SimV2 {
    pub fn new(cfg: SimConfig, spec: &str) -> SimV2 {
        let hw = Hw::new(&cfg.type_name, cfg.state_size);
        let info = DeviceInfo {
            spec: spec.to_string(),
            backend: crate::device::Backend::Sim,
            driver: Some("sim-v2".to_string()),
            model: Some(cfg.type_name.clone()),
            kernel: Some(cfg.kernel_info()),
            name: Some(cfg.type_name.clone()),
            iommu: None,
        };
        SimV2 {
            cfg,
            info,
            hw,
            state: MigState::Running,
            open: true,
            session: None,
            fds: BTreeMap::new(),
            next_fd: 100,
            next_session: 1,
            logging: false,
            reset_since_resume: true,
            ticks_in_state: 0,
            precopy_queries: 0,
            precopy_v2: false,
            reinit_pending: false,
            since_reinit: None,
            before_last_set: MigState::Running,
            held: Held::default(),
        }
    }

    /// A reconfiguration in PRE_COPY: new initial data is queued on the saving stream; after the
    /// opt-in (or with reinit_without_opt_in) the next PRECOPY_INFO reports REINIT.
    fn reconfigure(&mut self) {
        let report =
            self.cfg.has_precopy_info_v2() && (self.precopy_v2 || self.has(Defect::ReinitWithoutOptIn));
        let as_initial = report && !self.has(Defect::ReinitZeroInitialBytes);
        if let Some(Session::Saving { saver, .. }) = &mut self.session {
            saver.reinit(as_initial);
            self.reinit_pending = report;
        }
    }

    fn has(&self, d: Defect) -> bool {
        self.cfg.defects.contains(&d)
    }

    fn flags(&self) -> MigFlags {
        self.cfg.flags
    }

    fn identity(&self) -> StreamIdentity {
        StreamIdentity {
            type_id: super::hw::type_id(&self.cfg.type_name),
            state_size: self.cfg.state_size,
            seed: self.cfg.seed,
        }
    }

    /// One unit of logical time.
    fn tick(&mut self) {
        self.ticks_in_state += 1;
        if self.state.is_running() && !self.held.quiesced {
            self.hw.advance();
            self.hw.irq_tick();
            self.hw.dma_step();
        } else {
            if self.held.late_ticks > 0 {
                self.held.late_ticks -= 1;
                self.hw.tick();
            }
            if self.has(Defect::StateAdvancesInStop) {
                self.hw.advance();
            }
            if self.has(Defect::IrqInStop) {
                self.hw.irq_tick();
            }
            if self.has(Defect::DmaInStop) {
                self.hw.dma_step();
            }
            if self.has(Defect::SpontaneousStateChange)
                && self.state == MigState::Stop
                && self.ticks_in_state >= 3
            {
                self.state = MigState::Running;
                self.ticks_in_state = 0;
            }
        }
    }

    fn check_open(&mut self) -> DevResult<()> {
        if self.open {
            self.tick();
            Ok(())
        } else {
            Err(Errno::EBADF)
        }
    }

    fn new_fd(&mut self, kind: FdKind, session: u64) -> i32 {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(fd, SimFd { kind, session });
        fd
    }

    fn session_id(&self) -> Option<u64> {
        match &self.session {
            Some(Session::Saving { id, .. } | Session::Resuming { id, .. }) => Some(*id),
            None => None,
        }
    }

    /// Ends the current session: its fds fail from now on.
    fn end_session(&mut self) {
        self.session = None;
    }

    fn open_saving(&mut self, finish: bool) -> i32 {
        self.end_session();
        let id = self.next_session;
        self.next_session += 1;
        self.held.session_reads = 0;
        self.reinit_pending = false;
        self.since_reinit = None;
        let mut saver = Saver::new(self.identity(), &self.hw);
        if finish {
            saver.finish(&self.hw);
            if self.has(Defect::EndlessStopCopy) {
                saver.make_endless();
            }
        }
        self.session = Some(Session::Saving { id, saver, stop_copy_reads: 0 });
        self.new_fd(FdKind::Saving, id)
    }

    /// One primitive arc of the driver's step function.
    fn step(&mut self, from: MigState, to: MigState) -> DevResult<Option<i32>> {
        use MigState::*;
        self.held.quiesced = false;
        if from == Stop
            && self.has(Defect::ResumeSessionSurvivesStop)
            && matches!(self.session, Some(Session::Resuming { .. }))
        {
            // The resume session ends only when the device leaves STOP.
            self.end_session();
        }
        match (from, to) {
            (Running, PreCopy) | (RunningP2p, PreCopyP2p) => {
                let fd = self.open_saving(false);
                if from == RunningP2p && self.has(Defect::NoFdOnPreCopyP2p) { Ok(None) } else { Ok(Some(fd)) }
            }
            (Stop, StopCopy) => {
                if self.has(Defect::HangOnSet) {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
                let fd = self.open_saving(true);
                if self.has(Defect::NoDataFdOnStopCopy) { Ok(None) } else { Ok(Some(fd)) }
            }
            (PreCopyP2p, StopCopy) if self.has(Defect::PreCopyP2pToStopCopyRefused) => Err(Errno::EINVAL),
            (PreCopy, StopCopy) | (PreCopyP2p, StopCopy) => {
                let restart = self.has(Defect::StopCopyRestartsStream).then(|| self.identity());
                if let Some(Session::Saving { saver, .. }) = &mut self.session {
                    if let Some(identity) = restart {
                        *saver = Saver::new(identity, &self.hw);
                    }
                    saver.finish(&self.hw);
                    if self.cfg.defects.contains(&Defect::EndlessStopCopy) {
                        saver.make_endless();
                    }
                }
                if self.has(Defect::DataFdOnNonSessionArc) {
                    let id = self.session_id().unwrap_or(0);
                    return Ok(Some(self.new_fd(FdKind::Saving, id)));
                }
                Ok(None)
            }
            (PreCopy, PreCopyP2p) | (PreCopyP2p, PreCopy) => {
                if self.has(Defect::PreCopyP2pEndsSession) {
                    self.end_session();
                }
                if from == PreCopyP2p && self.has(Defect::PreCopyP2pExitStaysQuiesced) {
                    self.held.quiesced = true;
                }
                Ok(None)
            }
            (PreCopy, Running) | (PreCopyP2p, RunningP2p) => {
                self.end_session();
                Ok(None)
            }
            (StopCopy, Stop) => {
                self.end_session();
                if self.has(Defect::LoggingStopsOnStopCopyExit) {
                    self.hw.dma_log = None;
                    self.logging = false;
                }
                if self.has(Defect::DataFdOnNonSessionArc) {
                    let id = self.next_session;
                    return Ok(Some(self.new_fd(FdKind::Saving, id)));
                }
                Ok(None)
            }
            (Stop, Resuming) => {
                if self.has(Defect::ResumeRequiresReset) && !self.reset_since_resume {
                    return Err(Errno::EBUSY);
                }
                self.end_session();
                let id = self.next_session;
                self.next_session += 1;
                let loader = Loader::new(
                    self.identity(),
                    !self.has(Defect::AcceptsForeignStream),
                    !self.has(Defect::AcceptsTruncatedStream),
                );
                self.session = Some(Session::Resuming { id, loader });
                Ok(Some(self.new_fd(FdKind::Resuming, id)))
            }
            (Resuming, Stop) => {
                if self.has(Defect::EmptyResumeAccepted)
                    && matches!(&self.session, Some(Session::Resuming { loader, .. }) if loader.bytes() == 0)
                {
                    self.end_session();
                    return Ok(None);
                }
                let restored = match &self.session {
                    Some(Session::Resuming { loader, .. }) => loader.finish(),
                    _ => Err(LoadError::Truncated("no resume session".to_string())),
                };
                match restored {
                    Ok(r) => {
                        if !self.has(Defect::ResumeDropsRegisters) {
                            self.hw.regs = r.regs;
                            self.hw.regs[3] = super::hw::type_id(&self.cfg.type_name);
                        }
                        self.hw.versions = r.versions;
                        if self.has(Defect::LoadOverwritesConfig) {
                            self.hw.config[PCI_COMMAND] = 0;
                            self.hw.config[PCI_COMMAND + 1] = 0;
                            self.hw.irqs = Default::default();
                        }
                        if !self.has(Defect::ResumeSessionSurvivesStop) {
                            self.end_session();
                        }
                        Ok(None)
                    }
                    Err(_) => {
                        if self.has(Defect::FailedSetLeavesOffPath) {
                            self.end_session();
                            self.state = MigState::Running;
                            return Err(Errno::EINVAL);
                        }
                        Err(Errno::EINVAL)
                    }
                }
            }
            // The device runs again: it is "used" (matters to the resume_requires_reset defect).
            (RunningP2p, Running) | (Stop, Running) => {
                self.reset_since_resume = false;
                Ok(None)
            }
            (Running | RunningP2p, Stop) if self.has(Defect::StopCompletesLate) => {
                self.held.late_ticks = 3;
                Ok(None)
            }
            (Stop, RunningP2p) if self.has(Defect::StopToRunningP2pStaysStopped) => {
                self.held.quiesced = true;
                Ok(None)
            }
            // Quiesce arcs: nothing to do for a device without real DMA.
            (Running, RunningP2p) | (RunningP2p, Stop) | (Stop, RunningP2p) | (Running, Stop) => Ok(None),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The driver's `migration_set_state` loop.
    fn set_state(&mut self, new: u32) -> DevResult<Option<i32>> {
        let cur = self.state;
        if cur.raw() == new {
            if self.has(Defect::SameStateSetRestartsSession) && cur.is_saving() {
                return Ok(Some(self.open_saving(cur == MigState::StopCopy)));
            }
            return Ok(None);
        }
        if new == MigState::Error.raw() && self.has(Defect::SetErrorAccepted) {
            self.end_session();
            self.state = MigState::Error;
            self.ticks_in_state = 0;
            return Ok(None);
        }
        if cur == MigState::Resuming
            && new == MigState::Running.raw()
            && self.has(Defect::ResumingToRunningSkipsValidation)
        {
            // Shortcut: load whatever validates, ignore the verdict, run.
            let _ = self.step(MigState::Resuming, MigState::Stop);
            self.end_session();
            self.reset_since_resume = false;
            self.state = MigState::Running;
            self.ticks_in_state = 0;
            return Ok(None);
        }
        if self.has(Defect::StopCopyToPreCopy)
            && cur == MigState::StopCopy
            && matches!(MigState::from_raw(new), Some(MigState::PreCopy | MigState::PreCopyP2p))
        {
            self.state = MigState::from_raw(new).unwrap_or(MigState::PreCopy);
            self.ticks_in_state = 0;
            return Ok(None);
        }
        if self.has(Defect::AcceptsUnsupportedState)
            && new != 0
            && MigState::from_raw(new).is_none_or(|s| !s.supported_by(self.flags()))
        {
            self.end_session();
            self.state = MigState::from_raw(new).unwrap_or(MigState::Stop);
            self.ticks_in_state = 0;
            return Ok(None);
        }
        let mut fd = None;
        while self.state.raw() != new {
            let next = fsm::next_state(self.flags(), self.state.raw(), new).map_err(|_| Errno::EINVAL)?;
            let from = self.state;
            fd = self.step(from, next)?;
            if self.state == from {
                self.state = next;
            }
            self.ticks_in_state = 0;
            if fd.is_some() && next.raw() != new {
                return Err(Errno::EINVAL);
            }
            if self.state.raw() != next.raw() {
                // A defect moved the device elsewhere: stop walking.
                break;
            }
        }
        Ok(fd)
    }

    fn feature_impl(&mut self, argsz: u32, flags: u32, payload: &mut [u8]) -> DevResult<()> {
        if self.cfg.api == crate::device::MigrationApi::None {
            // A device without mig_ops: the core answers ENOTTY for every migration feature.
            return Err(Errno::ENOTTY);
        }
        let minsz = 8u32;
        if argsz < minsz {
            return Err(Errno::EINVAL);
        }
        if flags & !(uapi::FEATURE_MASK | uapi::FEATURE_GET | uapi::FEATURE_SET | uapi::FEATURE_PROBE) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & uapi::FEATURE_PROBE == 0
            && flags & uapi::FEATURE_SET != 0
            && flags & uapi::FEATURE_GET != 0
        {
            return Err(Errno::EINVAL);
        }
        let avail = (argsz - minsz) as usize;
        let index = flags & uapi::FEATURE_MASK;
        match index {
            uapi::FEATURE_MIGRATION => {
                let supported = if self.has(Defect::FeatureSetOnMigrationAccepted) {
                    uapi::FEATURE_GET | uapi::FEATURE_SET
                } else {
                    uapi::FEATURE_GET
                };
                if !uapi::check_feature(flags, avail, supported, 8)? {
                    return Ok(());
                }
                let mut f = self.flags().0;
                if self.has(Defect::NoStopCopyFlag) {
                    f &= !1;
                }
                if self.has(Defect::UnknownFlagAdvertised) {
                    f |= 8;
                }
                if flags & uapi::FEATURE_SET != 0 {
                    return Ok(());
                }
                put(payload, 0, &f.to_le_bytes())
            }
            uapi::FEATURE_MIG_DEVICE_STATE => {
                if !uapi::check_feature(flags, avail, uapi::FEATURE_GET | uapi::FEATURE_SET, 8)? {
                    return Ok(());
                }
                let requested = get_u32(payload, 0)?;
                if flags & uapi::FEATURE_GET != 0 {
                    let mut s = self.held.reported.unwrap_or(self.state).raw();
                    if self.has(Defect::GetUnknownState) && self.state == MigState::Stop {
                        s = 9;
                    }
                    let fd: i32 = if self.has(Defect::GetReturnsDataFd) { 3 } else { -1 };
                    put(payload, 0, &s.to_le_bytes())?;
                    return put(payload, 4, &fd.to_le_bytes());
                }
                let before = self.state;
                let result = self.set_state(requested);
                if result.is_ok() && self.state != before {
                    self.before_last_set = before;
                }
                if self.has(Defect::GetReportsTargetAfterFailedSet) {
                    self.held.reported = if result.is_err() { MigState::from_raw(requested) } else { None };
                }
                let mut fd = match &result {
                    Ok(Some(fd)) => *fd,
                    _ => -1,
                };
                if self.has(Defect::InvalidDataFd) && requested == MigState::StopCopy.raw() && result.is_ok()
                {
                    fd = 987_654;
                }
                put(payload, 0, &requested.to_le_bytes())?;
                put(payload, 4, &fd.to_le_bytes())?;
                result.map(|_| ())
            }
            uapi::FEATURE_MIG_PRECOPY_INFO_V2 if self.cfg.has_precopy_info_v2() => {
                // vfio_ioctl_device_feature_migration_precopy_info_v2 (7.2 vfio_main.c l.985-998).
                if !self.flags().has_pre_copy() {
                    return Err(Errno::EINVAL);
                }
                let supported = if self.has(Defect::Piv2GetAccepted) {
                    uapi::FEATURE_GET | uapi::FEATURE_SET
                } else {
                    uapi::FEATURE_SET
                };
                if !uapi::check_feature(flags, avail, supported, 0)? {
                    return Ok(());
                }
                if flags & uapi::FEATURE_SET != 0 {
                    self.precopy_v2 = true;
                }
                Ok(())
            }
            uapi::FEATURE_MIG_DATA_SIZE => {
                if !uapi::check_feature(flags, avail, uapi::FEATURE_GET, 8)? {
                    return Ok(());
                }
                if self.has(Defect::DataSizeFailsInResuming) && self.state == MigState::Resuming {
                    return Err(Errno::EINVAL);
                }
                let size = if self.has(Defect::StreamExceedsDataSize) {
                    16
                } else if self.has(Defect::DataSizeReportsZero) {
                    0
                } else {
                    Saver::full_size(&self.identity())
                };
                put(payload, 0, &size.to_le_bytes())
            }
            uapi::FEATURE_DMA_LOGGING_START | uapi::FEATURE_DMA_LOGGING_REPORT => {
                if !self.cfg.dma_logging {
                    return Err(Errno::ENOTTY);
                }
                let (ops, min) = if index == uapi::FEATURE_DMA_LOGGING_START {
                    (uapi::FEATURE_SET, 24)
                } else {
                    (uapi::FEATURE_GET, 32)
                };
                if !uapi::check_feature(flags, avail, ops, min)? {
                    return Ok(());
                }
                // The payload carries user pointers; the raw path cannot follow them.
                Err(Errno::EFAULT)
            }
            uapi::FEATURE_DMA_LOGGING_STOP => {
                if !self.cfg.dma_logging {
                    return Err(Errno::ENOTTY);
                }
                if !uapi::check_feature(flags, avail, uapi::FEATURE_SET, 0)? {
                    return Ok(());
                }
                if !self.has(Defect::DmaStopLeavesLogging) {
                    self.logging = false;
                    self.hw.dma_log = None;
                }
                Ok(())
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn saving_read(&mut self, sess_id: u64, buf: &mut [u8]) -> DevResult<usize> {
        let state = self.state;
        let eof_at_precopy_end = self.has(Defect::EofAtPrecopyEnd);
        let no_eof = self.has(Defect::NoEofAfterStopCopy);
        let enomsg_mid = self.has(Defect::EnomsgInStopCopy);
        let enomsg_first = self.has(Defect::EnomsgBeforeFirstChunk);
        let premature_eof = self.has(Defect::PrematureEofInStopCopy);
        let drop_last = self.has(Defect::StopCopyDropsLastByte);
        self.held.session_reads += 1;
        let first_read = self.held.session_reads == 1;
        let hw = &self.hw;
        let Some(Session::Saving { id, saver, stop_copy_reads }) = &mut self.session else {
            return Err(Errno::ENODEV);
        };
        if *id != sess_id {
            return Err(Errno::ENODEV);
        }
        if state.is_saving() && state != MigState::StopCopy {
            if enomsg_first && first_read && !buf.is_empty() {
                return Err(Errno::ENOMSG);
            }
            saver.collect_dirty(hw);
            let n = saver.read(buf, hw);
            if n == 0 && !buf.is_empty() {
                return if eof_at_precopy_end { Ok(0) } else { Err(Errno::ENOMSG) };
            }
            return Ok(n);
        }
        *stop_copy_reads += 1;
        if enomsg_mid && *stop_copy_reads == 2 {
            return Err(Errno::ENOMSG);
        }
        if premature_eof && *stop_copy_reads == 2 && !saver.drained() {
            return Ok(0);
        }
        let n = saver.read(buf, hw);
        if drop_last && n > 0 && saver.drained() {
            return Ok(n - 1);
        }
        if n == 0 && no_eof && !buf.is_empty() {
            return Err(Errno::ENOMSG);
        }
        Ok(n)
    }
}

/// Writes `bytes` at `off` of `payload` (EFAULT if the user buffer is too short).
fn put(payload: &mut [u8], off: usize, bytes: &[u8]) -> DevResult<()> {
    payload.get_mut(off..off + bytes.len()).ok_or(Errno::EFAULT)?.copy_from_slice(bytes);
    Ok(())
}

fn get_u32(payload: &[u8], off: usize) -> DevResult<u32> {
    let b = payload.get(off..off + 4).ok_or(Errno::EFAULT)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Device for SimV2 {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn feature(&mut self, argsz: u32, flags: u32, payload: &mut [u8]) -> DevResult<()> {
        self.check_open()?;
        self.feature_impl(argsz, flags, payload)
    }

    fn dma_log_start(&mut self, page_size: u64, ranges: &[(u64, u64)]) -> DevResult<u64> {
        self.check_open()?;
        if !self.cfg.dma_logging {
            return Err(Errno::ENOTTY);
        }
        uapi::check_dma_ranges(page_size, ranges)?;
        if self.has(Defect::DmaRangesLimit16) && ranges.len() > 16 {
            return Err(Errno::E2BIG);
        }
        if self.logging && !self.has(Defect::SecondDmaStartAccepted) {
            return Err(Errno::EINVAL);
        }
        let chosen = if page_size >= 4096 && page_size.is_power_of_two() { page_size } else { 4096 };
        self.logging = true;
        self.hw.dma_log =
            Some(super::hw::DmaLog { page_size: chosen, ranges: ranges.to_vec(), ..Default::default() });
        Ok(chosen)
    }

    fn dma_log_report(
        &mut self,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &mut [u64],
    ) -> DevResult<()> {
        self.check_open()?;
        if !self.cfg.dma_logging {
            return Err(Errno::ENOTTY);
        }
        uapi::check_dma_report(iova, length, page_size)?;
        if self.cfg.report_stub {
            // A kernel without IOMMUFD: iova_bitmap_for_each() is a stub.
            return Err(Errno::EOPNOTSUPP);
        }
        let bits = length.div_ceil(page_size);
        if (bitmap.len() as u64) < bits.div_ceil(64) {
            return Err(Errno::EFAULT);
        }
        if !self.logging {
            return if self.has(Defect::ReportBeforeStartOk) { Ok(()) } else { Err(Errno::EINVAL) };
        }
        if self.has(Defect::ReportPageSizeMustMatch)
            && self.hw.dma_log.as_ref().is_some_and(|l| l.page_size != page_size)
        {
            return Err(Errno::EINVAL);
        }
        if self.has(Defect::ReportClearsPresetBits) {
            bitmap.fill(0);
        }
        let keep = self.has(Defect::ReportDoesNotClear);
        let off_by_one = u64::from(self.has(Defect::ReportBitOffByOne));
        let clear_all = self.has(Defect::ReportClearsWholeLog);
        if let Some(log) = &mut self.hw.dma_log {
            let end = iova.saturating_add(length);
            let mut reported = Vec::new();
            for &d in &log.dirty {
                let dend = d.saturating_add(log.page_size);
                if dend <= iova || d >= end {
                    continue;
                }
                let first = d.max(iova);
                // An empty report range (length 0) covers no page.
                let Some(last) = dend.min(end).checked_sub(1).filter(|l| *l >= first) else { continue };
                for bit in (first - iova) / page_size..=(last - iova) / page_size {
                    let bit = bit + off_by_one;
                    if bit < bits {
                        bitmap[(bit / 64) as usize] |= 1 << (bit % 64);
                    }
                }
                reported.push(d);
            }
            if clear_all && !keep {
                log.dirty.clear();
            } else if !keep {
                for d in reported {
                    log.dirty.remove(&d);
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) -> DevResult<()> {
        self.check_open()?;
        self.reset_since_resume = true;
        self.held = Held::default();
        if self.has(Defect::ResetKeepsState) {
            return Ok(());
        }
        if !self.has(Defect::ResetKeepsFd) {
            self.end_session();
        }
        self.state = MigState::Running;
        self.ticks_in_state = 0;
        self.hw.regs[1] = 0;
        self.hw.regs[2] = 0;
        Ok(())
    }

    fn data_read(&mut self, fd: i32, buf: &mut [u8]) -> DevResult<usize> {
        if self.open {
            self.tick();
        }
        let f = self.fds.get(&fd).cloned().ok_or(Errno::EBADF)?;
        if f.kind != FdKind::Saving {
            return Err(Errno::EBADF);
        }
        if self.session_id() != Some(f.session) {
            if self.has(Defect::StaleSavingFdReadable) && !buf.is_empty() {
                buf.fill(0x5a);
                return Ok(buf.len());
            }
            return Err(Errno::ENODEV);
        }
        self.saving_read(f.session, buf)
    }

    fn data_pread(&mut self, fd: i32, buf: &mut [u8], _offset: u64) -> DevResult<usize> {
        if !self.fds.contains_key(&fd) {
            return Err(Errno::EBADF);
        }
        if self.has(Defect::DataFdNotStream) {
            return self.data_read(fd, buf);
        }
        Err(Errno::ESPIPE)
    }

    fn data_write(&mut self, fd: i32, buf: &[u8]) -> DevResult<usize> {
        if self.open {
            self.tick();
        }
        let f = self.fds.get(&fd).cloned().ok_or(Errno::EBADF)?;
        if f.kind != FdKind::Resuming {
            return Err(Errno::EBADF);
        }
        if self.session_id() != Some(f.session) {
            if self.has(Defect::ResumeFdWritableAfterRunning) {
                return Ok(buf.len());
            }
            return Err(Errno::ENODEV);
        }
        if self.has(Defect::SegmentationDependent) && buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        // resume_write_truncates_large: only the first page of a write is consumed.
        let taken =
            if self.has(Defect::ResumeWriteTruncatesLarge) { &buf[..buf.len().min(4096)] } else { buf };
        let Some(Session::Resuming { loader, .. }) = &mut self.session else {
            return Err(Errno::ENODEV);
        };
        match loader.write(taken) {
            Ok(()) | Err(LoadError::Corrupt(_) | LoadError::Truncated(_)) => Ok(buf.len()),
            Err(LoadError::Foreign(_)) => Err(Errno::EINVAL),
        }
    }

    fn data_pwrite(&mut self, fd: i32, buf: &[u8], _offset: u64) -> DevResult<usize> {
        if !self.fds.contains_key(&fd) {
            return Err(Errno::EBADF);
        }
        if self.has(Defect::DataFdNotStream) {
            return self.data_write(fd, buf);
        }
        Err(Errno::ESPIPE)
    }

    fn data_poll(&mut self, fd: i32, _timeout_ms: i32) -> DevResult<i16> {
        let f = self.fds.get(&fd).cloned().ok_or(Errno::EBADF)?;
        if self.has(Defect::PollNeverReady) {
            return Ok(0);
        }
        Ok(match f.kind {
            FdKind::Resuming => libc::POLLOUT,
            FdKind::Saving => {
                let ready = match &self.session {
                    Some(Session::Saving { id, saver, .. }) if *id == f.session => {
                        !saver.drained() || saver.is_finished()
                    }
                    _ => true,
                };
                if ready { libc::POLLIN } else { 0 }
            }
        })
    }

    fn data_ioctl(&mut self, fd: i32, cmd: u64, arg: &mut [u8]) -> DevResult<i32> {
        if self.open {
            self.tick();
        }
        let f = self.fds.get(&fd).cloned().ok_or(Errno::EBADF)?;
        if f.kind == FdKind::Resuming
            && cmd == VFIO_MIG_GET_PRECOPY_INFO
            && self.has(Defect::PrecopyInfoOnResumeFd)
        {
            put(arg, 8, &0u64.to_le_bytes())?;
            put(arg, 16, &0u64.to_le_bytes())?;
            return Ok(0);
        }
        if f.kind != FdKind::Saving || cmd != VFIO_MIG_GET_PRECOPY_INFO {
            return Err(Errno::ENOTTY);
        }
        if self.has(Defect::PrecopyInfoUnsupported) {
            return Err(Errno::ENOTTY);
        }
        if arg.len() < 24 {
            return Err(Errno::EFAULT);
        }
        let argsz = get_u32(arg, 0)?;
        if argsz < 24 {
            return Err(Errno::EINVAL);
        }
        if !matches!(self.state, MigState::PreCopy | MigState::PreCopyP2p)
            && !self.has(Defect::PrecopyInfoOutsidePreCopy)
        {
            return Err(if self.has(Defect::PrecopyInfoEnottyOutsidePreCopy) {
                Errno::ENOTTY
            } else {
                Errno::EINVAL
            });
        }
        if self.session_id() != Some(f.session) {
            return Err(Errno::ENODEV);
        }
        self.precopy_queries += 1;
        let first = self.precopy_queries == 1;
        let grows = self.has(Defect::InitialBytesGrows);
        let dirty_nonzero = self.has(Defect::DirtyBytesStartsNonzero);
        let counts_up = self.has(Defect::InitialBytesCountsUp);
        let never_zero = self.has(Defect::InitialBytesNeverZero);
        let never_dirty = self.has(Defect::DirtyBytesNeverReported);
        let swapped = self.has(Defect::PrecopyInfoFieldsSwapped);
        let hw = &self.hw;
        let Some(Session::Saving { saver, .. }) = &mut self.session else {
            return Err(Errno::ENODEV);
        };
        if !saver.is_finished() {
            saver.collect_dirty(hw);
        }
        let mut initial = saver.initial_bytes();
        if grows {
            initial += u64::from(self.precopy_queries) << 20;
        }
        if counts_up {
            initial = saver.initial_total() - initial;
        }
        if never_zero {
            // The 40-byte HEADER record is never subtracted.
            initial += 40;
        }
        let mut dirty = saver.dirty_bytes();
        if first && dirty_nonzero {
            dirty += 4096;
        }
        if never_dirty {
            dirty = 0;
        }
        // Flags: echoed without the opt-in (bug-compatibility, V2-PIV2-006), an output after it.
        let mut out_flags = get_u32(arg, 4)?;
        if self.precopy_v2 && !self.has(Defect::Piv2FlagsEchoed) {
            out_flags = 0;
        }
        if std::mem::take(&mut self.reinit_pending) {
            out_flags |= uapi::PRECOPY_INFO_REINIT;
            self.since_reinit = Some(0);
            if self.has(Defect::ReinitKeepsDirtyBytes) {
                dirty += 4096;
            }
        } else if let Some(n) = self.since_reinit {
            self.since_reinit = Some(n + 1);
            if self.has(Defect::ReinitInitialBytesGrows) {
                initial += u64::from(n + 1) << 12;
            }
        }
        let (initial_at, dirty_at) = if swapped { (16, 8) } else { (8, 16) };
        put(arg, 4, &out_flags.to_le_bytes())?;
        put(arg, initial_at, &initial.to_le_bytes())?;
        put(arg, dirty_at, &dirty.to_le_bytes())?;
        Ok(0)
    }

    fn data_fd_flags(&mut self, fd: i32) -> DevResult<FdFlags> {
        let f = self.fds.get(&fd).ok_or(Errno::EBADF)?;
        Ok(FdFlags {
            cloexec: true,
            access_mode: match f.kind {
                FdKind::Saving => 0,
                FdKind::Resuming => 1,
            },
        })
    }

    fn data_close(&mut self, fd: i32) -> DevResult<()> {
        self.fds.remove(&fd).map(|_| ()).ok_or(Errno::EBADF)
    }

    fn close(&mut self) -> DevResult<()> {
        if !self.open {
            return Err(Errno::EBADF);
        }
        if !self.has(Defect::CloseKeepsFd) {
            self.end_session();
        }
        self.hw.irqs = Default::default();
        // Closing the device tears DMA logging down (as mlx5's close_device does): a reopened
        // device reports nothing until logging is started again.
        self.logging = false;
        self.hw.dma_log = None;
        // vfio_df_device_last_close clears the opt-in (7.2 vfio_main.c l.571).
        self.precopy_v2 = false;
        self.open = false;
        Ok(())
    }

    fn reopen(&mut self) -> DevResult<()> {
        if self.open {
            return Err(Errno::EBUSY);
        }
        // Like the in-tree PCI drivers, a fresh open starts in RUNNING.
        self.open = true;
        self.state = MigState::Running;
        Ok(())
    }

    fn device_info(&mut self) -> DevResult<DevInfoRaw> {
        self.check_open()?;
        Ok(DevInfoRaw { flags: 1 << 1 | 1 << 0, num_regions: 9, num_irqs: 5 })
    }

    fn region_info(&mut self, index: u32) -> DevResult<RegionInfo> {
        self.check_open()?;
        region_info(index)
    }

    fn region_read(&mut self, index: u32, offset: u64, buf: &mut [u8], via: Access) -> DevResult<usize> {
        self.check_open()?;
        region_rw(&mut self.hw, index, offset, Rw::Read(buf), via)
    }

    fn region_write(&mut self, index: u32, offset: u64, buf: &[u8], via: Access) -> DevResult<usize> {
        self.check_open()?;
        if index == REGION_CONFIG
            && self.state == MigState::Resuming
            && self.has(Defect::ConfigBlockedInResuming)
        {
            return Err(Errno::EBUSY);
        }
        if index == REGION_BAR0
            && matches!(self.state, MigState::RunningP2p | MigState::PreCopyP2p)
            && self.has(Defect::P2pBlocksMmio)
        {
            return Err(Errno::EBUSY);
        }
        if index == REGION_BAR0
            && matches!(self.state, MigState::PreCopy | MigState::PreCopyP2p)
            && self.has(Defect::PreCopyStopsDevice)
        {
            // The write "succeeds" but a stopped device ignores it.
            return Ok(buf.len());
        }
        let n = region_rw(&mut self.hw, index, offset, Rw::Write(buf), via)?;
        if index == REGION_BAR0
            && offset == super::hw::reg::RECONFIG
            && matches!(self.state, MigState::PreCopy | MigState::PreCopyP2p)
        {
            self.reconfigure();
        }
        Ok(n)
    }

    fn irq_info(&mut self, index: u32) -> DevResult<IrqInfo> {
        self.check_open()?;
        irq_info(index)
    }

    fn set_irqs(
        &mut self,
        index: u32,
        action: IrqAction,
        start: u32,
        count: u32,
        data: IrqData,
    ) -> DevResult<()> {
        self.check_open()?;
        if self.state == MigState::Resuming && self.has(Defect::ConfigBlockedInResuming) {
            return Err(Errno::EBUSY);
        }
        set_irqs(&mut self.hw, index, action, start, count, data)
    }

    fn irq_counts(&mut self) -> crate::device::IrqCounts {
        irq_counts(&self.hw)
    }

    fn wait(&mut self, ms: u64) {
        for _ in 0..ms.min(10_000) {
            self.tick();
        }
    }

    fn debugfs_state(&mut self) -> Option<DevResult<String>> {
        let shown = if self.has(Defect::DebugfsStateStale) { self.before_last_set } else { self.state };
        Some(if self.open { Ok(shown.name().to_string()) } else { Err(Errno::EBADF) })
    }

    fn restore(&mut self) -> DevResult<()> {
        self.fds.clear();
        if !self.open {
            self.reopen()?;
        }
        self.reset()?;
        if self.state != MigState::Running {
            // A reset that does not reach RUNNING (defect): a simulated device can always be
            // power-cycled, so the next check starts clean; the reset checks report the defect.
            self.end_session();
            self.state = MigState::Running;
        }
        Ok(())
    }
}

/// Region layout shared by the simulated devices: BAR0 registers and config space.
pub(super) fn region_info(index: u32) -> DevResult<RegionInfo> {
    let rw = RegionInfo::FLAG_READ | RegionInfo::FLAG_WRITE;
    match index {
        REGION_BAR0 => Ok(RegionInfo {
            index,
            flags: rw,
            size: (NUM_REGS * 4) as u64,
            offset: u64::from(index) << 40,
            ..Default::default()
        }),
        1..=6 | 8 => Ok(RegionInfo { index, offset: u64::from(index) << 40, ..Default::default() }),
        REGION_CONFIG => Ok(RegionInfo {
            index,
            flags: rw,
            size: CONFIG_SIZE as u64,
            offset: u64::from(index) << 40,
            ..Default::default()
        }),
        _ => Err(Errno::EINVAL),
    }
}

pub(super) enum Rw<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// BAR0 and config-space accesses.
pub(super) fn region_rw(hw: &mut Hw, index: u32, offset: u64, rw: Rw<'_>, via: Access) -> DevResult<usize> {
    if via == Access::Mmap {
        // Neither BAR0 nor config space is mmappable.
        return Err(Errno::EINVAL);
    }
    match index {
        REGION_BAR0 => match rw {
            Rw::Read(buf) => {
                if buf.len() != 4 {
                    return Err(Errno::EINVAL);
                }
                let v = hw.read_reg(offset).ok_or(Errno::EINVAL)?;
                buf.copy_from_slice(&v.to_le_bytes());
                Ok(4)
            }
            Rw::Write(buf) => {
                let b: [u8; 4] = buf.try_into().map_err(|_| Errno::EINVAL)?;
                if hw.write_reg(offset, u32::from_le_bytes(b)) { Ok(4) } else { Err(Errno::EINVAL) }
            }
        },
        REGION_CONFIG => {
            let off = usize::try_from(offset).map_err(|_| Errno::EINVAL)?;
            let len = match &rw {
                Rw::Read(b) => b.len(),
                Rw::Write(b) => b.len(),
            };
            // An offset near the top of the address space is out of range, not an overflow.
            let end = off.checked_add(len).ok_or(Errno::EINVAL)?;
            match rw {
                Rw::Read(buf) => {
                    let src = hw.config.get(off..end).ok_or(Errno::EINVAL)?;
                    buf.copy_from_slice(src);
                    Ok(buf.len())
                }
                Rw::Write(buf) => {
                    let dst = hw.config.get_mut(off..end).ok_or(Errno::EINVAL)?;
                    // Only the command register (and BARs, ignored) is writable.
                    let writable = off >= PCI_COMMAND && end <= PCI_COMMAND + 2;
                    if writable {
                        dst.copy_from_slice(buf);
                    }
                    Ok(buf.len())
                }
            }
        }
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn irq_info(index: u32) -> DevResult<IrqInfo> {
    match index {
        0 | 1 => Ok(IrqInfo { index, flags: 1, count: 1 }),
        2..=4 => Ok(IrqInfo { index, flags: 0, count: 0 }),
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn set_irqs(
    hw: &mut Hw,
    index: u32,
    action: IrqAction,
    start: u32,
    count: u32,
    data: IrqData,
) -> DevResult<()> {
    if index > 1 {
        return Err(Errno::EINVAL);
    }
    if start != 0 || count > 1 {
        return Err(Errno::EINVAL);
    }
    let line = &mut hw.irqs[index as usize];
    match (action, data, count) {
        (IrqAction::Trigger, IrqData::None, 0) => {
            *line = Default::default();
            Ok(())
        }
        (IrqAction::Trigger, IrqData::Eventfd, 1) => {
            *line = super::hw::IrqLine { armed: true, masked: false, count: 0 };
            Ok(())
        }
        (IrqAction::Trigger, IrqData::None | IrqData::Bool(true), 1) => {
            hw.raise_irq();
            Ok(())
        }
        (IrqAction::Mask, _, 1) => {
            line.masked = true;
            Ok(())
        }
        (IrqAction::Unmask, _, 1) => {
            line.masked = false;
            Ok(())
        }
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn irq_counts(hw: &Hw) -> crate::device::IrqCounts {
    hw.irqs.iter().enumerate().filter(|(_, l)| l.armed).map(|(i, l)| ((i as u32, 0), l.count)).collect()
}
