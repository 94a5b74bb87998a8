//! `sim:v1`: a reference v1 device. Its migration region (index 9, type 3 / subtype 1) has the
//! 32-byte header at offset 0 and a 64 KiB data window at 4096 that is also a sparse-mmap
//! area, and implements the pending_bytes / data_offset / data_size protocol of 5.8-5.17.
//! The header's encoding (`header`) is written from the v1 uAPI text, not taken from the
//! oracle.

mod header;

use self::header::{self as o, field};
use super::defects::Defect;
use super::hw::Hw;
use super::regions::{Rw, irq_counts, irq_info, region_info, region_rw, set_irqs};
use super::stream::{FINAL_BYTES, LoadError, Loader, Saver, StreamIdentity};
use super::{REGION_MIGRATION, SimConfig};
use crate::device::{DevInfoRaw, DevResult, Device, DeviceInfo, FdFlags, IrqInfo, RegionInfo};
use crate::errno::Errno;
use crate::op::{Access, IrqAction, IrqData};

/// Offset of the data window in the migration region.
pub const DATA_OFFSET: u64 = 4096;
/// Size of the data window.
pub const DATA_WINDOW: u64 = 64 * 1024;
/// Size of the migration region.
pub const REGION_SIZE: u64 = DATA_OFFSET + DATA_WINDOW;

#[derive(Debug)]
enum V1Session {
    None,
    Saving { saver: Saver, staged: Option<(u64, u64)>, offset_reads: u32 },
    Resuming { loader: Loader },
}

/// Driver state that only held-out defects use (`Defect::held_out`).
#[derive(Debug, Default)]
struct Held {
    /// v1_stop_completes_late: accesses the device still runs after _RUNNING was cleared.
    late_ticks: u32,
    /// v1_stop_copy_from_pre_copy_keeps_running: runs although _RUNNING is clear.
    still_running: bool,
}

/// A simulated v1 device.
#[derive(Debug)]
pub struct SimV1 {
    cfg: SimConfig,
    info: DeviceInfo,
    hw: Hw,
    state: u32,
    open: bool,
    session: V1Session,
    window: Vec<u8>,
    /// A value written to pending_bytes (v1_pending_bytes_writable defect).
    pending_override: Option<u64>,
    /// v1_state_reads_previous_after_write: the state the next device_state read returns.
    stale_state: Option<u32>,
    held: Held,
}

impl SimV1 {
    pub fn new(cfg: SimConfig, spec: &str) -> SimV1 {
        let hw = Hw::new(&cfg.type_name, cfg.state_size);
        let info = cfg.device_info(spec, "sim-v1");
        SimV1 {
            cfg,
            info,
            hw,
            state: o::RUNNING,
            open: true,
            session: V1Session::None,
            window: vec![0; DATA_WINDOW as usize],
            pending_override: None,
            stale_state: None,
            held: Held::default(),
        }
    }

    fn has(&self, d: Defect) -> bool {
        self.cfg.defects.contains(&d)
    }

    fn identity(&self) -> StreamIdentity {
        StreamIdentity {
            type_id: super::hw::type_id(&self.cfg.type_name),
            state_size: self.cfg.state_size,
            seed: self.cfg.seed,
        }
    }

    fn check_open(&mut self) -> DevResult<()> {
        if !self.open {
            return Err(Errno::EBADF);
        }
        self.time_passes();
        Ok(())
    }

    /// One unit of time: the hardware runs while _RUNNING is set.
    fn time_passes(&mut self) {
        if self.state & o::RUNNING != 0 || self.held.still_running {
            self.hw.tick();
        } else if self.held.late_ticks > 0 {
            self.held.late_ticks -= 1;
            self.hw.tick();
        }
    }

    fn refuse(&mut self, e: Errno) -> DevResult<()> {
        if self.has(Defect::V1StateNotRestored) {
            self.state = 0;
            self.session = V1Session::None;
        }
        Err(e)
    }

    /// A write of device_state.
    fn write_state(&mut self, new: u32) -> DevResult<()> {
        let new = new & o::MASK;
        let cur = self.state & o::MASK;
        if !(o::valid(new) || self.has(Defect::V1Accepts101) && new == 0b101) {
            return self.refuse(Errno::EINVAL);
        }
        if new == 0b011 && self.has(Defect::V1NoPreCopy) {
            return self.refuse(Errno::EINVAL);
        }
        if cur == new {
            return Ok(());
        }
        self.held.still_running = false;
        if cur & o::RUNNING != 0 && new & o::RUNNING == 0 && self.has(Defect::V1StopCompletesLate) {
            self.held.late_ticks = 3;
        }
        let saving_before = cur & o::SAVING != 0 && cur & o::RESUMING == 0;
        let saving_after = new & o::SAVING != 0 && new & o::RESUMING == 0;
        // Leaving RESUMING: load and validate.
        if cur == o::RESUMING {
            let res = match &self.session {
                V1Session::Resuming { loader } => loader.finish(),
                _ => Err(LoadError::Truncated("no resume session".to_string())),
            };
            match res {
                Ok(r) => {
                    self.hw.regs = r.regs;
                    self.hw.regs[3] = super::hw::type_id(&self.cfg.type_name);
                    self.hw.versions = r.versions;
                    self.session = V1Session::None;
                }
                Err(_) => return self.refuse(Errno::EINVAL),
            }
        }
        if saving_before && saving_after {
            // pre-copy -> stop-and-copy (or back): the same stream continues.
            if new & o::RUNNING == 0 {
                let pending = self.pending();
                if self.has(Defect::V1RequiresDrain) && pending > 0 {
                    return self.refuse(Errno::EBUSY);
                }
                let restart = self.has(Defect::V1StopCopyRestartsStream).then(|| self.identity());
                if let V1Session::Saving { saver, .. } = &mut self.session {
                    if let Some(identity) = restart {
                        *saver = Saver::new(identity, &self.hw);
                    }
                    saver.finish(&self.hw);
                }
                self.held.still_running = self.has(Defect::V1StopCopyKeepsRunning);
            }
        } else if saving_after {
            let mut saver = Saver::new(self.identity(), &self.hw);
            if new & o::RUNNING == 0 {
                saver.finish(&self.hw);
            }
            self.session = V1Session::Saving { saver, staged: None, offset_reads: 0 };
        } else if new == o::RESUMING {
            let loader = Loader::new(self.identity(), true, true);
            self.session = V1Session::Resuming { loader };
        } else if cur != o::RESUMING {
            self.session = V1Session::None;
        }
        if self.has(Defect::V1StateReadsStale) {
            self.stale_state = Some(self.state);
        }
        self.state = new;
        Ok(())
    }

    fn pending(&mut self) -> u64 {
        if self.has(Defect::V1SavingGathersNothing) {
            return 0;
        }
        let hw = &self.hw;
        match &mut self.session {
            V1Session::Saving { saver, .. } => {
                if !saver.is_finished() {
                    saver.collect_dirty(hw);
                }
                saver.initial_bytes() + saver.dirty_bytes()
            }
            _ => 0,
        }
    }

    fn read_field(&mut self, offset: u64) -> DevResult<u64> {
        match offset {
            field::DEVICE_STATE => {
                let state = self.stale_state.take().unwrap_or(self.state);
                let reserved = if self.has(Defect::V1ReservedStateBits) { 0x8 } else { 0 };
                Ok(u64::from(state | reserved))
            }
            field::RESERVED => Ok(if self.has(Defect::V1ReservedNonzero) { 0xdead } else { 0 }),
            field::PENDING_BYTES => {
                if self.has(Defect::V1PendingMax) && matches!(self.session, V1Session::Saving { .. }) {
                    return Ok(u64::MAX);
                }
                // Reading pending_bytes acknowledges the previous chunk.
                if let V1Session::Saving { staged, offset_reads, .. } = &mut self.session {
                    *staged = None;
                    *offset_reads = 0;
                }
                if let Some(p) = self.pending_override {
                    return Ok(p);
                }
                let p = self.pending();
                let finished =
                    matches!(&self.session, V1Session::Saving { saver, .. } if saver.is_finished());
                if p == 0 && finished && self.has(Defect::V1PendingNeverZero) {
                    return Ok(4096);
                }
                if p > 0 && self.has(Defect::V1PendingReadStagesData) {
                    // Stages the next chunk now; the next pending_bytes read acknowledges it.
                    let hw = &self.hw;
                    if let V1Session::Saving { saver, staged, .. } = &mut self.session {
                        let n = saver.read(&mut self.window, hw) as u64;
                        *staged = Some((DATA_OFFSET, n));
                    }
                }
                if finished && self.has(Defect::V1PendingMissesFinalSection) {
                    return Ok(p.saturating_sub(FINAL_BYTES));
                }
                Ok(p)
            }
            field::DATA_OFFSET => {
                // v1_pending_misses_final_section: chunks are sized by the same short count.
                let finished =
                    matches!(&self.session, V1Session::Saving { saver, .. } if saver.is_finished());
                let cap = if finished && self.has(Defect::V1PendingMissesFinalSection) {
                    self.pending().saturating_sub(FINAL_BYTES)
                } else {
                    u64::MAX
                };
                let unaligned = self.has(Defect::V1UnalignedDataOffset);
                let in_header = self.has(Defect::V1DataOffsetInHeader);
                let changes = self.has(Defect::V1OffsetChangesInIteration);
                let zero_in_resuming = self.has(Defect::V1DataOffsetZeroInResuming);
                let hw = &self.hw;
                let window = &mut self.window;
                match &mut self.session {
                    V1Session::Saving { saver, staged, offset_reads } => {
                        *offset_reads += 1;
                        let shift = if unaligned { 8 } else { 0 };
                        if staged.is_none() {
                            if !saver.is_finished() {
                                saver.collect_dirty(hw);
                            }
                            let end = window.len().min((shift + cap.min(DATA_WINDOW)) as usize);
                            let n = saver.read(&mut window[shift as usize..end], hw) as u64;
                            *staged = Some((DATA_OFFSET + shift, n));
                        }
                        let (mut off, _) = staged.unwrap_or((DATA_OFFSET, 0));
                        if in_header {
                            off = 8;
                        }
                        if changes && *offset_reads > 1 {
                            off += 16;
                        }
                        Ok(off)
                    }
                    V1Session::Resuming { .. } => Ok(if zero_in_resuming { 0 } else { DATA_OFFSET }),
                    V1Session::None => Ok(DATA_OFFSET),
                }
            }
            field::DATA_SIZE => {
                let beyond = self.has(Defect::V1ChunkBeyondRegion);
                let extra = u64::from(self.has(Defect::V1DataSizeOffByOne));
                match &self.session {
                    V1Session::Saving { staged, .. } => {
                        let n = staged.map_or(0, |(_, n)| n);
                        Ok(if beyond && n > 0 {
                            n + REGION_SIZE
                        } else if n > 0 {
                            n + extra
                        } else {
                            n
                        })
                    }
                    _ => Ok(0),
                }
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn write_field(&mut self, offset: u64, value: u64) -> DevResult<()> {
        match offset {
            field::DEVICE_STATE => self.write_state(value as u32),
            field::RESERVED if self.has(Defect::V1ReservedWriteRejected) => Err(Errno::EINVAL),
            field::RESERVED => Ok(()),
            field::PENDING_BYTES if self.has(Defect::V1PendingWritable) => {
                self.pending_override = Some(value);
                Ok(())
            }
            field::DATA_SIZE => {
                let one_page = self.has(Defect::V1ResumeConsumesOnePage);
                let V1Session::Resuming { loader } = &mut self.session else {
                    return Err(Errno::EINVAL);
                };
                if value > DATA_WINDOW {
                    return Err(Errno::EINVAL);
                }
                let taken = if one_page { value.min(4096) } else { value };
                match loader.write(&self.window[..taken as usize]) {
                    Ok(()) | Err(LoadError::Corrupt(_) | LoadError::Truncated(_)) => Ok(()),
                    Err(LoadError::Foreign(_)) => Err(Errno::EINVAL),
                }
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn header_access(&mut self, offset: u64, rw: Rw<'_>) -> DevResult<usize> {
        let len = match &rw {
            Rw::Read(b) => b.len(),
            Rw::Write(b) => b.len(),
        };
        let natural = field::width_at(offset).filter(|w| *w == len);
        let Some(width) = natural else {
            if self.has(Defect::V1NarrowAccessAccepted)
                && offset.checked_add(len as u64).is_some_and(|end| end <= o::HEADER_SIZE)
            {
                // Serve the bytes out of the containing fields.
                if let Rw::Read(buf) = rw {
                    let mut hdr = [0u8; 32];
                    for (o, w) in field::ALL {
                        let v = self.read_field(o).unwrap_or(0);
                        hdr[o as usize..o as usize + w].copy_from_slice(&v.to_le_bytes()[..w]);
                    }
                    buf.copy_from_slice(&hdr[offset as usize..offset as usize + len]);
                }
                return Ok(len);
            }
            return Err(Errno::EINVAL);
        };
        match rw {
            Rw::Read(buf) => {
                let v = self.read_field(offset)?;
                buf.copy_from_slice(&v.to_le_bytes()[..width]);
            }
            Rw::Write(buf) => {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(buf);
                self.write_field(offset, u64::from_le_bytes(b))?;
            }
        }
        Ok(len)
    }

    fn sparse(&self) -> Vec<(u64, u64)> {
        if self.has(Defect::V1OverlappingSparse) {
            vec![(DATA_OFFSET, DATA_WINDOW), (DATA_OFFSET + 4096, 4096)]
        } else {
            vec![(DATA_OFFSET, DATA_WINDOW)]
        }
    }

    fn migration_rw(&mut self, offset: u64, rw: Rw<'_>, via: Access) -> DevResult<usize> {
        let len = match &rw {
            Rw::Read(b) => b.len() as u64,
            Rw::Write(b) => b.len() as u64,
        };
        let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
        if end > REGION_SIZE {
            return Err(Errno::EINVAL);
        }
        if offset < o::HEADER_SIZE {
            if via == Access::Mmap {
                return Err(Errno::EINVAL);
            }
            return self.header_access(offset, rw);
        }
        if offset < DATA_OFFSET {
            return Err(Errno::EINVAL);
        }
        match via {
            Access::Mmap => {
                let inside = self.sparse().iter().any(|&(o, s)| offset >= o && end <= o + s);
                if !inside {
                    return Err(Errno::EINVAL);
                }
            }
            Access::Rw => {
                if self.has(Defect::V1MmapOnly) {
                    return Err(Errno::EINVAL);
                }
            }
        }
        let w = (offset - DATA_OFFSET) as usize;
        match rw {
            Rw::Read(buf) => buf.copy_from_slice(&self.window[w..w + buf.len()]),
            Rw::Write(buf) => self.window[w..w + buf.len()].copy_from_slice(buf),
        }
        Ok(len as usize)
    }
}

impl Device for SimV1 {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn feature(&mut self, _argsz: u32, _flags: u32, _payload: &mut [u8]) -> DevResult<()> {
        self.check_open()?;
        // A 5.8-5.17 kernel has no migration features.
        Err(Errno::ENOTTY)
    }

    fn dma_log_start(&mut self, _page_size: u64, _ranges: &[(u64, u64)]) -> DevResult<u64> {
        self.check_open()?;
        Err(Errno::ENOTTY)
    }

    fn dma_log_report(&mut self, _i: u64, _l: u64, _p: u64, _b: &mut [u64]) -> DevResult<()> {
        self.check_open()?;
        Err(Errno::ENOTTY)
    }

    fn reset(&mut self) -> DevResult<()> {
        self.check_open()?;
        self.session = V1Session::None;
        self.pending_override = None;
        self.held = Held::default();
        self.state = if self.has(Defect::V1ResetNotRunning) { 0 } else { o::RUNNING };
        Ok(())
    }

    fn data_read(&mut self, _fd: i32, _buf: &mut [u8]) -> DevResult<usize> {
        Err(Errno::EBADF)
    }
    fn data_pread(&mut self, _fd: i32, _buf: &mut [u8], _o: u64) -> DevResult<usize> {
        Err(Errno::EBADF)
    }
    fn data_write(&mut self, _fd: i32, _buf: &[u8]) -> DevResult<usize> {
        Err(Errno::EBADF)
    }
    fn data_pwrite(&mut self, _fd: i32, _buf: &[u8], _o: u64) -> DevResult<usize> {
        Err(Errno::EBADF)
    }
    fn data_poll(&mut self, _fd: i32, _t: i32) -> DevResult<i16> {
        Err(Errno::EBADF)
    }
    fn data_ioctl(&mut self, _fd: i32, _cmd: u64, _arg: &mut [u8]) -> DevResult<i32> {
        Err(Errno::EBADF)
    }
    fn data_fd_flags(&mut self, _fd: i32) -> DevResult<FdFlags> {
        Err(Errno::EBADF)
    }
    fn data_close(&mut self, _fd: i32) -> DevResult<()> {
        Err(Errno::EBADF)
    }

    fn close(&mut self) -> DevResult<()> {
        if !self.open {
            return Err(Errno::EBADF);
        }
        self.open = false;
        self.hw.irqs = Default::default();
        Ok(())
    }

    fn reopen(&mut self) -> DevResult<()> {
        if self.open {
            return Err(Errno::EBUSY);
        }
        self.open = true;
        Ok(())
    }

    fn device_info(&mut self) -> DevResult<DevInfoRaw> {
        self.check_open()?;
        Ok(DevInfoRaw { flags: 1 << 1 | 1 << 0 | 1 << 3, num_regions: 10, num_irqs: 5 })
    }

    fn region_info(&mut self, index: u32) -> DevResult<RegionInfo> {
        self.check_open()?;
        if index == REGION_MIGRATION {
            return Ok(RegionInfo {
                index,
                flags: RegionInfo::FLAG_READ
                    | if self.has(Defect::V1RegionNotWritable) { 0 } else { RegionInfo::FLAG_WRITE }
                    | RegionInfo::FLAG_MMAP
                    | RegionInfo::FLAG_CAPS,
                size: REGION_SIZE,
                offset: u64::from(index) << 40,
                cap_type: Some(crate::uapi::REGION_TYPE_MIGRATION),
                sparse: self.sparse(),
            });
        }
        region_info(index)
    }

    fn region_read(&mut self, index: u32, offset: u64, buf: &mut [u8], via: Access) -> DevResult<usize> {
        self.check_open()?;
        if index == REGION_MIGRATION {
            return self.migration_rw(offset, Rw::Read(buf), via);
        }
        region_rw(&mut self.hw, index, offset, Rw::Read(buf), via)
    }

    fn region_write(&mut self, index: u32, offset: u64, buf: &[u8], via: Access) -> DevResult<usize> {
        self.check_open()?;
        if index == REGION_MIGRATION {
            return self.migration_rw(offset, Rw::Write(buf), via);
        }
        region_rw(&mut self.hw, index, offset, Rw::Write(buf), via)
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
        set_irqs(&mut self.hw, index, action, start, count, data)
    }

    fn irq_counts(&mut self) -> crate::device::IrqCounts {
        irq_counts(&self.hw)
    }

    fn wait(&mut self, ms: u64) {
        for _ in 0..ms.min(10_000) {
            self.time_passes();
        }
    }

    fn debugfs_state(&mut self) -> Option<DevResult<String>> {
        None
    }

    fn restore(&mut self) -> DevResult<()> {
        if !self.open {
            self.reopen()?;
        }
        self.reset()?;
        if self.state != o::RUNNING {
            // Power-cycle: the reset checks report the defect.
            self.state = o::RUNNING;
        }
        Ok(())
    }
}
