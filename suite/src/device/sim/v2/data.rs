//! The data fds: the saving stream (read), the resuming stream (write), poll, and
//! `VFIO_MIG_GET_PRECOPY_INFO`.

use super::{FdKind, Session, SimV2, get_u32, in_saving_session, put};
use crate::device::sim::defects::Defect;
use crate::device::sim::stream::LoadError;
use crate::device::{DevResult, FdFlags, VFIO_MIG_GET_PRECOPY_INFO};
use crate::errno::Errno;
use crate::state::MigState;

impl SimV2 {
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
        if in_saving_session(state) && state != MigState::StopCopy {
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

    pub(super) fn data_read_impl(&mut self, fd: i32, buf: &mut [u8]) -> DevResult<usize> {
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

    pub(super) fn data_pread_impl(&mut self, fd: i32, buf: &mut [u8], _offset: u64) -> DevResult<usize> {
        if !self.fds.contains_key(&fd) {
            return Err(Errno::EBADF);
        }
        if self.has(Defect::DataFdNotStream) {
            return self.data_read_impl(fd, buf);
        }
        Err(Errno::ESPIPE)
    }

    pub(super) fn data_write_impl(&mut self, fd: i32, buf: &[u8]) -> DevResult<usize> {
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

    pub(super) fn data_pwrite_impl(&mut self, fd: i32, buf: &[u8], _offset: u64) -> DevResult<usize> {
        if !self.fds.contains_key(&fd) {
            return Err(Errno::EBADF);
        }
        if self.has(Defect::DataFdNotStream) {
            return self.data_write_impl(fd, buf);
        }
        Err(Errno::ESPIPE)
    }

    pub(super) fn data_poll_impl(&mut self, fd: i32, _timeout_ms: i32) -> DevResult<i16> {
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

    pub(super) fn data_ioctl_impl(&mut self, fd: i32, cmd: u64, arg: &mut [u8]) -> DevResult<i32> {
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
            out_flags |= crate::uapi::PRECOPY_INFO_REINIT;
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

    pub(super) fn data_fd_flags_impl(&mut self, fd: i32) -> DevResult<FdFlags> {
        let f = self.fds.get(&fd).ok_or(Errno::EBADF)?;
        Ok(FdFlags {
            cloexec: true,
            access_mode: match f.kind {
                FdKind::Saving => 0,
                FdKind::Resuming => 1,
            },
        })
    }

    pub(super) fn data_close_impl(&mut self, fd: i32) -> DevResult<()> {
        self.fds.remove(&fd).map(|_| ()).ok_or(Errno::EBADF)
    }
}
