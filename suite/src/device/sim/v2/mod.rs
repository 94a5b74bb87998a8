//! `sim:v2`: a reference v2 migration device. It emulates the vfio core's feature plumbing
//! (argsz, flags, PROBE, ENOTTY, the DMA-logging argument checks) and a well-behaved driver
//! on top (a `vfio_mig_get_next_state()` loop, sessions, stream validation), with defects that
//! can be switched on one by one.
//!
//! - this module: the device's state, sessions and data fds, reset, close/reopen, regions and
//!   interrupts (through `sim::regions`), and the `Device` implementation;
//! - [`next_state`]: the core's `vfio_mig_get_next_state()` on the kernel's table data;
//! - `fsm`: the driver's SET loop and step function (one primitive arc);
//! - `features`: `VFIO_DEVICE_FEATURE` as the core dispatches it and the driver answers;
//! - `dmalog`: DMA dirty-page logging (START / REPORT);
//! - `data`: the data fds (saving and resuming streams, poll, PRECOPY_INFO).
//!
//! The simulator never calls the oracle (`crate::oracle`) or the argument checks of
//! `crate::uapi`: what the core and the driver do is written here from the kernel source, so
//! the suite's verdicts on it are a comparison of two independent descriptions of the uAPI
//! (`suite/tests/sim_independence.rs` keeps it so).

mod data;
mod dmalog;
mod features;
mod fsm;
pub mod next_state;

use std::collections::BTreeMap;

use super::defects::Defect;
use super::hw::Hw;
use super::regions::{Rw, irq_counts, irq_info, region_info, region_rw, set_irqs};
use super::stream::{Loader, Saver, StreamIdentity};
use super::{REGION_BAR0, REGION_CONFIG, SimConfig};
use crate::device::{DevInfoRaw, DevResult, Device, DeviceInfo, FdFlags, IrqInfo, RegionInfo};
use crate::errno::Errno;
use crate::op::{Access, IrqAction, IrqData};
use crate::state::{MigFlags, MigState};

/// Whether the device runs in `state` (6.12 include/uapi/linux/vfio.h, the comment on
/// `enum vfio_device_mig_state`: "RUNNING - The device is running normally", RUNNING_P2P
/// "RUNNING, except the device cannot do peer to peer DMA", PRE_COPY "running normally but
/// tracking internal state changes", PRE_COPY_P2P "PRE_COPY, except ..."); STOP, STOP_COPY
/// and RESUMING are stopped and ERROR does not run.
fn runs(state: MigState) -> bool {
    matches!(state, MigState::Running | MigState::RunningP2p | MigState::PreCopy | MigState::PreCopyP2p)
}

/// Whether `state` belongs to the saving session that RUNNING -> PRE_COPY (or STOP ->
/// STOP_COPY) opens: "Entering PRE_COPY_P2P continues all the behaviors of PRE_COPY", and in
/// STOP_COPY "the data transfers session continues to stream the migration state" (same
/// header, the PRE_COPY -> PRE_COPY_P2P and PRE_COPY_P2P -> STOP_COPY arcs).
fn in_saving_session(state: MigState) -> bool {
    matches!(state, MigState::PreCopy | MigState::PreCopyP2p | MigState::StopCopy)
}

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
        let info = cfg.device_info(spec, "sim-v2");
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

    /// The driver's `migration_flags` as the core holds them: what GET MIGRATION returns and
    /// debugfs prints (the flag defects change them here, for both).
    fn migration_flags(&self) -> u64 {
        let mut f = self.flags().0;
        if self.has(Defect::NoStopCopyFlag) {
            f &= !1;
        }
        if self.has(Defect::UnknownFlagAdvertised) {
            f |= 8;
        }
        f
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
        if runs(self.state) && !self.held.quiesced {
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
        self.dma_log_start_impl(page_size, ranges)
    }

    fn dma_log_report(
        &mut self,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &mut [u64],
    ) -> DevResult<()> {
        self.check_open()?;
        self.dma_log_report_impl(iova, length, page_size, bitmap)
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
        self.data_read_impl(fd, buf)
    }

    fn data_pread(&mut self, fd: i32, buf: &mut [u8], offset: u64) -> DevResult<usize> {
        self.data_pread_impl(fd, buf, offset)
    }

    fn data_write(&mut self, fd: i32, buf: &[u8]) -> DevResult<usize> {
        self.data_write_impl(fd, buf)
    }

    fn data_pwrite(&mut self, fd: i32, buf: &[u8], offset: u64) -> DevResult<usize> {
        self.data_pwrite_impl(fd, buf, offset)
    }

    fn data_poll(&mut self, fd: i32, timeout_ms: i32) -> DevResult<i16> {
        self.data_poll_impl(fd, timeout_ms)
    }

    fn data_ioctl(&mut self, fd: i32, cmd: u64, arg: &mut [u8]) -> DevResult<i32> {
        self.data_ioctl_impl(fd, cmd, arg)
    }

    fn data_fd_flags(&mut self, fd: i32) -> DevResult<FdFlags> {
        self.data_fd_flags_impl(fd)
    }

    fn data_close(&mut self, fd: i32) -> DevResult<()> {
        self.data_close_impl(fd)
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

    fn debugfs_features(&mut self) -> Option<DevResult<String>> {
        // What drivers/vfio/debugfs.c prints (7.2): the migration flags, then dirty-tracking
        // for a device with DMA logging ops; the file exists from 6.18.
        if self.cfg.kernel.is_some_and(|k| k < (6, 18)) {
            return None;
        }
        let mut text = String::new();
        let flags = MigFlags(self.migration_flags());
        for (flag, name) in
            [(MigFlags::STOP_COPY, "stop-copy"), (MigFlags::P2P, "p2p"), (MigFlags::PRE_COPY, "pre-copy")]
        {
            if flags.contains(flag) {
                text.push_str(name);
                text.push('\n');
            }
        }
        if self.cfg.dma_logging {
            text.push_str("dirty-tracking\n");
        }
        Some(if self.open { Ok(text) } else { Err(Errno::EBADF) })
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
