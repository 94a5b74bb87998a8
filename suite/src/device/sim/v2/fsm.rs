//! The driver's side of a SET: the `migration_set_state` loop a vfio-pci-core variant driver
//! runs around the core's next-state helper ([`super::next_state`], the kernel's table data),
//! and its step function (one primitive arc).

use super::{FdKind, Session, SimV2, in_saving_session, next_state};
use crate::device::DevResult;
use crate::device::sim::defects::Defect;
use crate::device::sim::hw::PCI_COMMAND;
use crate::device::sim::stream::{LoadError, Loader, Saver};
use crate::errno::Errno;
use crate::state::MigState;

impl SimV2 {
    /// One primitive arc of the driver's step function.
    pub(super) fn step(&mut self, from: MigState, to: MigState) -> DevResult<Option<i32>> {
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
                            self.hw.regs[3] = crate::device::sim::hw::type_id(&self.cfg.type_name);
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

    /// The driver's `migration_set_state` loop, as the in-tree variant drivers write it
    /// (e.g. 6.12 samples/vfio-mdev/mtty.c `mtty_set_state()`):
    /// `while (cur != new) { ret = vfio_mig_get_next_state(vdev, cur, new, &next); if (ret)
    /// return ERR_PTR(ret); res = step(cur, next); ...; cur = next; }`, where a data fd returned
    /// before the target is reached is an error.
    pub(super) fn set_state(&mut self, new: u32) -> DevResult<Option<i32>> {
        let cur = self.state;
        if cur.raw() == new {
            if self.has(Defect::SameStateSetRestartsSession) && in_saving_session(cur) {
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
        if self.has(Defect::AcceptsUnsupportedState) && new != 0 && !next_state::supports(self.flags(), new) {
            self.end_session();
            self.state = MigState::from_raw(new).unwrap_or(MigState::Stop);
            self.ticks_in_state = 0;
            return Ok(None);
        }
        let mut fd = None;
        while self.state.raw() != new {
            let next =
                next_state::next_state(self.flags(), self.state.raw(), new).map_err(|_| Errno::EINVAL)?;
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
}
