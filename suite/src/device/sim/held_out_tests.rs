//! The held-out defects change what a device does: for each one, a probe drives the
//! [`Device`] trait directly and checks the uAPI sentence the defect breaks. The reference
//! device keeps the sentence, the defective one breaks it, so each probe fails if the
//! defect's hook is removed.
//!
//! Constants come from the uAPI text (include/uapi/linux/vfio.h of 6.12 for v2, the
//! `struct vfio_device_migration_info` of 5.8-5.17 for v1), not from the suite's own tables.

use super::{Defect, SimConfig};
use crate::device::{Device, MigrationApi, VFIO_MIG_GET_PRECOPY_INFO};
use crate::errno::Errno;
use crate::op::Access;
use crate::state::MigState;

/// `VFIO_DEVICE_FEATURE_SET`, `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` and friends (vfio.h 6.12).
const FEATURE_GET: u32 = 1 << 16;
const FEATURE_SET: u32 = 1 << 17;
const MIG_DEVICE_STATE: u32 = 2;
const DMA_LOGGING_STOP: u32 = 7;
const MIG_DATA_SIZE: u32 = 9;
/// BAR0 of the simulated device: a counter that advances while running, a scratch register.
const REG_COUNTER: u64 = 0;
const REG_SCRATCH: u64 = 4;
/// v1: the migration region's index in the simulator and the header field offsets of
/// `struct vfio_device_migration_info` (5.8-5.17).
const V1_REGION: u32 = super::REGION_MIGRATION;
const V1_DEVICE_STATE: u64 = 0;
const V1_RESERVED: u64 = 4;
const V1_PENDING_BYTES: u64 = 8;
const V1_DATA_OFFSET: u64 = 16;
const V1_DATA_SIZE: u64 = 24;
const V1_STOP: u64 = 0b000;
const V1_RUNNING: u64 = 0b001;
const V1_STOP_AND_COPY: u64 = 0b010;
const V1_PRE_COPY: u64 = 0b011;
const V1_RESUMING: u64 = 0b100;

/// `Ok` when the sentence held, `Err(what broke it)` otherwise.
type Outcome = Result<(), String>;
type Probe = fn(&mut dyn Device) -> Outcome;

fn e(what: &str, err: Errno) -> String {
    format!("{what}: {}", err.name())
}

fn set(dev: &mut dyn Device, s: MigState) -> Result<Option<i32>, Errno> {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&s.raw().to_le_bytes());
    p[4..].copy_from_slice(&(-1i32).to_le_bytes());
    dev.feature(16, FEATURE_SET | MIG_DEVICE_STATE, &mut p)?;
    let fd = i32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    Ok((fd >= 0).then_some(fd))
}

fn must_set(dev: &mut dyn Device, s: MigState) -> Result<Option<i32>, String> {
    set(dev, s).map_err(|err| e(&format!("SET {s}"), err))
}

fn must_set_fd(dev: &mut dyn Device, s: MigState) -> Result<i32, String> {
    must_set(dev, s)?.ok_or_else(|| format!("SET {s} returned no data fd"))
}

fn get(dev: &mut dyn Device) -> Result<u32, String> {
    let mut p = [0u8; 8];
    dev.feature(16, FEATURE_GET | MIG_DEVICE_STATE, &mut p).map_err(|err| e("GET", err))?;
    Ok(u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
}

fn reg(dev: &mut dyn Device, off: u64) -> Result<u32, String> {
    let mut b = [0u8; 4];
    dev.region_read(0, off, &mut b, Access::Rw).map_err(|err| e("BAR0 read", err))?;
    Ok(u32::from_le_bytes(b))
}

fn set_reg(dev: &mut dyn Device, off: u64, v: u32) -> Result<usize, Errno> {
    dev.region_write(0, off, &v.to_le_bytes(), Access::Rw)
}

/// Whether the device's internal state advances over `ms` of waiting.
fn advances(dev: &mut dyn Device, ms: u64) -> Result<bool, String> {
    let before = reg(dev, REG_COUNTER)?;
    dev.wait(ms);
    Ok(reg(dev, REG_COUNTER)? != before)
}

/// Reads until end of stream (read() returns 0).
fn read_to_eof(dev: &mut dyn Device, fd: i32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..100_000 {
        let n = dev.data_read(fd, &mut buf).map_err(|err| e("read", err))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
    Err("no end of stream".to_string())
}

/// Reads a PRE_COPY stream until its temporary end (ENOMSG).
fn read_to_enomsg(dev: &mut dyn Device, fd: i32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..100_000 {
        match dev.data_read(fd, &mut buf) {
            Ok(0) => return Err("read() returned 0 in PRE_COPY".to_string()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::ENOMSG) => return Ok(out),
            Err(err) => return Err(e("read", err)),
        }
    }
    Err("no temporary end of stream".to_string())
}

fn precopy_info(dev: &mut dyn Device, fd: i32) -> Result<(u64, u64), Errno> {
    let mut arg = [0u8; 24];
    arg[..4].copy_from_slice(&24u32.to_le_bytes());
    dev.data_ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut arg)?;
    let at = |o: usize| u64::from_le_bytes(arg[o..o + 8].try_into().unwrap_or([0; 8]));
    Ok((at(8), at(16)))
}

/// A complete STOP_COPY stream of the device, which is left in STOP.
fn save(dev: &mut dyn Device) -> Result<Vec<u8>, String> {
    let fd = must_set_fd(dev, MigState::StopCopy)?;
    let stream = read_to_eof(dev, fd)?;
    must_set(dev, MigState::Stop)?;
    Ok(stream)
}

/// STOP -> RESUMING, `stream` written in `segment`-byte writes, RESUMING -> STOP.
fn load(dev: &mut dyn Device, stream: &[u8], segment: usize) -> Result<i32, String> {
    let fd = must_set_fd(dev, MigState::Resuming)?;
    for piece in stream.chunks(segment) {
        let n = dev.data_write(fd, piece).map_err(|err| e("write", err))?;
        if n != piece.len() {
            return Err(format!("short write {n} of {}", piece.len()));
        }
    }
    must_set(dev, MigState::Stop).map_err(|m| format!("a complete stream was refused: {m}"))?;
    Ok(fd)
}

fn start_logging(dev: &mut dyn Device, ranges: &[(u64, u64)]) -> Result<(), String> {
    dev.dma_log_start(4096, ranges).map(|_| ()).map_err(|err| e("DMA_LOGGING_START", err))
}

/// The pages of `[iova, iova + len)` the device reports dirty.
fn report(dev: &mut dyn Device, iova: u64, len: u64, page: u64) -> Result<Vec<u64>, Errno> {
    let bits = len / page;
    let mut bitmap = vec![0u64; bits.div_ceil(64) as usize];
    dev.dma_log_report(iova, len, page, &mut bitmap)?;
    Ok((0..bits).filter(|b| bitmap[(b / 64) as usize] & (1 << (b % 64)) != 0).collect())
}

fn v1_read(dev: &mut dyn Device, off: u64, width: usize) -> Result<u64, String> {
    let mut b = [0u8; 8];
    dev.region_read(V1_REGION, off, &mut b[..width], Access::Rw).map_err(|err| e("header read", err))?;
    Ok(u64::from_le_bytes(b))
}

fn v1_write(dev: &mut dyn Device, off: u64, width: usize, v: u64) -> Result<(), Errno> {
    dev.region_write(V1_REGION, off, &v.to_le_bytes()[..width], Access::Rw).map(|_| ())
}

fn v1_state(dev: &mut dyn Device, s: u64) -> Result<(), String> {
    v1_write(dev, V1_DEVICE_STATE, 4, s).map_err(|err| e(&format!("device_state {s:03b}"), err))
}

/// The saving loop of the 5.8-5.17 header: pending_bytes, data_offset, data_size, data;
/// at most `iterations` chunks.
fn v1_save(dev: &mut dyn Device, iterations: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for _ in 0..iterations {
        if v1_read(dev, V1_PENDING_BYTES, 8)? == 0 {
            break;
        }
        let off = v1_read(dev, V1_DATA_OFFSET, 8)?;
        let size = v1_read(dev, V1_DATA_SIZE, 8)?;
        let mut chunk = vec![0u8; usize::try_from(size).map_err(|_| "huge data_size")?];
        dev.region_read(V1_REGION, off, &mut chunk, Access::Rw).map_err(|err| e("data read", err))?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// _RESUMING, the resume loop of the 5.8-5.17 header with `segment`-byte chunks, _RUNNING.
fn v1_load(dev: &mut dyn Device, stream: &[u8], segment: usize) -> Result<(), String> {
    v1_state(dev, V1_RESUMING)?;
    for piece in stream.chunks(segment) {
        let off = v1_read(dev, V1_DATA_OFFSET, 8)?;
        dev.region_write(V1_REGION, off, piece, Access::Rw).map_err(|err| e("data write", err))?;
        v1_write(dev, V1_DATA_SIZE, 8, piece.len() as u64).map_err(|err| e("data_size write", err))?;
    }
    v1_state(dev, V1_RUNNING).map_err(|m| format!("a complete stream was refused: {m}"))
}

const PROBES: &[(Defect, Probe)] = &[
    (Defect::GetReportsTargetAfterFailedSet, |dev| {
        must_set_fd(dev, MigState::StopCopy)?;
        if set(dev, MigState::PreCopy).is_ok() {
            return Err("STOP_COPY -> PRE_COPY accepted".to_string());
        }
        let now = get(dev)?;
        if now == MigState::StopCopy.raw() {
            Ok(())
        } else {
            Err(format!("GET reports {now} after a failed SET from STOP_COPY"))
        }
    }),
    (Defect::SetErrorAccepted, |dev| match set(dev, MigState::Error) {
        Ok(_) => Err(format!("SET ERROR succeeded, GET now {}", get(dev)?)),
        Err(_) if get(dev)? == MigState::Running.raw() => Ok(()),
        Err(_) => Err("a refused SET ERROR changed the state".to_string()),
    }),
    (Defect::SameStateSetRestartsSession, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        if let Some(again) = must_set(dev, MigState::PreCopy)? {
            return Err(format!("SET PRE_COPY in PRE_COPY returned a new data fd {again}"));
        }
        let mut buf = [0u8; 64];
        dev.data_read(fd, &mut buf).map(|_| ()).map_err(|err| e("read on the session's fd", err))
    }),
    (Defect::StopCompletesLate, |dev| {
        must_set(dev, MigState::Stop)?;
        if advances(dev, 10)? {
            Err("the device still runs after SET STOP returned".to_string())
        } else {
            Ok(())
        }
    }),
    (Defect::P2pBlocksMmio, |dev| {
        must_set(dev, MigState::RunningP2p)?;
        set_reg(dev, REG_SCRATCH, 0x5a5a).map_err(|err| e("BAR0 write in RUNNING_P2P", err))?;
        if reg(dev, REG_SCRATCH)? == 0x5a5a { Ok(()) } else { Err("BAR0 write lost".to_string()) }
    }),
    (Defect::StopToRunningP2pStaysStopped, |dev| {
        must_set(dev, MigState::Stop)?;
        must_set(dev, MigState::RunningP2p)?;
        if advances(dev, 20)? {
            Ok(())
        } else {
            Err("RUNNING_P2P entered from STOP does not run".to_string())
        }
    }),
    (Defect::PreCopyP2pExitStaysQuiesced, |dev| {
        must_set_fd(dev, MigState::PreCopyP2p)?;
        must_set(dev, MigState::PreCopy)?;
        if advances(dev, 20)? {
            Ok(())
        } else {
            Err("PRE_COPY entered from PRE_COPY_P2P does not run".to_string())
        }
    }),
    (Defect::NoFdOnPreCopyP2p, |dev| {
        must_set(dev, MigState::RunningP2p)?;
        must_set_fd(dev, MigState::PreCopyP2p).map(|_| ())
    }),
    (Defect::PreCopyP2pToStopCopyRefused, |dev| {
        must_set_fd(dev, MigState::PreCopyP2p)?;
        must_set(dev, MigState::StopCopy).map(|_| ())
    }),
    (Defect::StopCopyRestartsStream, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        let mut stream = read_to_enomsg(dev, fd)?;
        must_set(dev, MigState::StopCopy)?;
        stream.extend(read_to_eof(dev, fd)?);
        must_set(dev, MigState::Stop)?;
        load(dev, &stream, 4096).map(|_| ())
    }),
    (Defect::StopCopyDropsLastByte, |dev| {
        let stream = save(dev)?;
        load(dev, &stream, 4096).map(|_| ())
    }),
    (Defect::PrematureEofInStopCopy, |dev| {
        let fd = must_set_fd(dev, MigState::StopCopy)?;
        read_to_eof(dev, fd)?;
        let mut buf = [0u8; 4096];
        match dev.data_read(fd, &mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("read() returned {n} bytes after end of stream")),
            Err(err) => Err(e("read after end of stream", err)),
        }
    }),
    (Defect::ResumeWriteTruncatesLarge, |dev| {
        let stream = save(dev)?;
        load(dev, &stream, stream.len()).map(|_| ())
    }),
    (Defect::ResumeSessionSurvivesStop, |dev| {
        let stream = save(dev)?;
        let fd = load(dev, &stream, 4096)?;
        match dev.data_write(fd, &[0u8; 8]) {
            Ok(n) => Err(format!("the resume fd took {n} bytes after RESUMING -> STOP")),
            Err(_) => Ok(()),
        }
    }),
    (Defect::EmptyResumeAccepted, |dev| {
        must_set(dev, MigState::Stop)?;
        must_set_fd(dev, MigState::Resuming)?;
        match set(dev, MigState::Stop) {
            Ok(_) => Err("RESUMING -> STOP with no data succeeded".to_string()),
            Err(_) => Ok(()),
        }
    }),
    (Defect::ResumingToRunningSkipsValidation, |dev| {
        must_set(dev, MigState::Stop)?;
        let fd = must_set_fd(dev, MigState::Resuming)?;
        dev.data_write(fd, &[0u8; 100]).map_err(|err| e("write", err))?;
        match set(dev, MigState::Running) {
            Ok(_) => Err("RESUMING -> RUNNING with 100 zero bytes succeeded".to_string()),
            Err(_) => Ok(()),
        }
    }),
    (Defect::ResumeDropsRegisters, |dev| {
        set_reg(dev, REG_SCRATCH, 0x1234).map_err(|err| e("BAR0 write", err))?;
        let stream = save(dev)?;
        set_reg(dev, REG_SCRATCH, 0).map_err(|err| e("BAR0 write", err))?;
        load(dev, &stream, 4096)?;
        match reg(dev, REG_SCRATCH)? {
            0x1234 => Ok(()),
            v => Err(format!("scratch register {v:#x} after loading a stream saved with 0x1234")),
        }
    }),
    (Defect::InitialBytesCountsUp, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        let (first, _) = precopy_info(dev, fd).map_err(|err| e("PRECOPY_INFO", err))?;
        dev.data_read(fd, &mut [0u8; 4096]).map_err(|err| e("read", err))?;
        let (second, _) = precopy_info(dev, fd).map_err(|err| e("PRECOPY_INFO", err))?;
        if first > 0 && second < first {
            Ok(())
        } else {
            Err(format!("initial_bytes {first} then {second} after reading 4096 bytes"))
        }
    }),
    (Defect::InitialBytesNeverZero, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        read_to_enomsg(dev, fd)?;
        match precopy_info(dev, fd).map_err(|err| e("PRECOPY_INFO", err))? {
            (0, _) => Ok(()),
            (i, _) => Err(format!("read() gave ENOMSG but initial_bytes is {i}")),
        }
    }),
    (Defect::DirtyBytesNeverReported, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        read_to_enomsg(dev, fd)?;
        dev.wait(100);
        let info = precopy_info(dev, fd).map_err(|err| e("PRECOPY_INFO", err))?;
        match dev.data_read(fd, &mut [0u8; 4096]) {
            Ok(n) if n > 0 && info == (0, 0) => {
                Err(format!("PRECOPY_INFO says 0/0 but read() gave {n} bytes"))
            }
            _ => Ok(()),
        }
    }),
    (Defect::PrecopyInfoFieldsSwapped, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        match precopy_info(dev, fd).map_err(|err| e("PRECOPY_INFO", err))? {
            (i, 0) if i > 0 => Ok(()),
            (i, d) => Err(format!("first PRECOPY_INFO: initial_bytes {i}, dirty_bytes {d}")),
        }
    }),
    (Defect::EnomsgBeforeFirstChunk, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        let (initial, _) = precopy_info(dev, fd).map_err(|err| e("PRECOPY_INFO", err))?;
        match dev.data_read(fd, &mut [0u8; 4096]) {
            Err(Errno::ENOMSG) => Err(format!("ENOMSG with initial_bytes {initial}")),
            Err(err) => Err(e("read", err)),
            Ok(_) => Ok(()),
        }
    }),
    (Defect::PrecopyInfoEnottyOutsidePreCopy, |dev| {
        let fd = must_set_fd(dev, MigState::PreCopy)?;
        must_set(dev, MigState::StopCopy)?;
        match precopy_info(dev, fd) {
            Err(Errno::EINVAL) => Ok(()),
            Err(err) => Err(e("PRECOPY_INFO in STOP_COPY", err)),
            Ok(_) => Err("PRECOPY_INFO succeeded in STOP_COPY".to_string()),
        }
    }),
    (Defect::PrecopyInfoOnResumeFd, |dev| {
        must_set(dev, MigState::Stop)?;
        let fd = must_set_fd(dev, MigState::Resuming)?;
        match precopy_info(dev, fd) {
            Ok(info) => Err(format!("PRECOPY_INFO on the resume fd in RESUMING gave {info:?}")),
            Err(_) => Ok(()),
        }
    }),
    (Defect::DataSizeReportsZero, |dev| {
        let mut p = [0u8; 8];
        dev.feature(16, FEATURE_GET | MIG_DATA_SIZE, &mut p).map_err(|err| e("MIG_DATA_SIZE", err))?;
        let estimate = u64::from_le_bytes(p);
        let stream = save(dev)?;
        if estimate == 0 && !stream.is_empty() {
            Err(format!("stop_copy_length 0, then STOP_COPY streamed {} bytes", stream.len()))
        } else {
            Ok(())
        }
    }),
    (Defect::DmaStopLeavesLogging, |dev| {
        start_logging(dev, &[(0, 1 << 20)])?;
        dev.feature(8, FEATURE_SET | DMA_LOGGING_STOP, &mut []).map_err(|err| e("DMA_LOGGING_STOP", err))?;
        match report(dev, 0, 1 << 20, 4096) {
            Ok(_) => Err("DMA_LOGGING_REPORT succeeded after DMA_LOGGING_STOP".to_string()),
            Err(_) => Ok(()),
        }
    }),
    (Defect::DmaRangesLimit16, |dev| {
        let ranges: Vec<(u64, u64)> = (0..32).map(|i| (i << 20, 4096)).collect();
        start_logging(dev, &ranges)
    }),
    (Defect::ReportPageSizeMustMatch, |dev| {
        start_logging(dev, &[(0, 1 << 20)])?;
        dev.wait(50);
        report(dev, 0, 1 << 20, 8192).map(|_| ()).map_err(|err| e("REPORT with page_size 8192", err))
    }),
    (Defect::ReportBitOffByOne, |dev| {
        // Four logged pages; the report asks for eight. The device was stopped before it, so
        // only DMA into the logged pages can show up.
        start_logging(dev, &[(0, 4 * 4096)])?;
        dev.wait(64);
        must_set(dev, MigState::Stop)?;
        let dirty = report(dev, 0, 8 * 4096, 4096).map_err(|err| e("REPORT", err))?;
        match dirty.iter().find(|&&p| p >= 4) {
            None if !dirty.is_empty() => Ok(()),
            None => Err("nothing reported after 64 ticks of DMA".to_string()),
            Some(p) => Err(format!("page {p} reported dirty, outside the logged range (all: {dirty:?})")),
        }
    }),
    (Defect::ReportClearsWholeLog, |dev| {
        start_logging(dev, &[(0, 4 * 4096), (1 << 20, 4 * 4096)])?;
        dev.wait(64);
        must_set(dev, MigState::Stop)?;
        report(dev, 0, 4 * 4096, 4096).map_err(|err| e("REPORT of the first range", err))?;
        let second =
            report(dev, 1 << 20, 4 * 4096, 4096).map_err(|err| e("REPORT of the second range", err))?;
        if second.is_empty() {
            Err("the second range lost its dirty pages when the first was reported".to_string())
        } else {
            Ok(())
        }
    }),
    (Defect::V1PendingMissesFinalSection, |dev| {
        v1_state(dev, V1_STOP_AND_COPY)?;
        let stream = v1_save(dev, 1000)?;
        v1_state(dev, V1_STOP)?;
        v1_load(dev, &stream, 4096)
    }),
    (Defect::V1PendingReadStagesData, |dev| {
        v1_state(dev, V1_STOP_AND_COPY)?;
        let first = v1_read(dev, V1_PENDING_BYTES, 8)?;
        let second = v1_read(dev, V1_PENDING_BYTES, 8)?;
        if first == second { Ok(()) } else { Err(format!("pending_bytes {first} then {second}")) }
    }),
    (Defect::V1DataSizeOffByOne, |dev| {
        v1_state(dev, V1_STOP_AND_COPY)?;
        let stream = v1_save(dev, 1000)?;
        v1_state(dev, V1_STOP)?;
        v1_load(dev, &stream, 4096)
    }),
    (Defect::V1ResumeConsumesOnePage, |dev| {
        v1_state(dev, V1_STOP_AND_COPY)?;
        let stream = v1_save(dev, 1000)?;
        v1_state(dev, V1_STOP)?;
        v1_load(dev, &stream, 32 * 1024)
    }),
    (Defect::V1DataOffsetZeroInResuming, |dev| {
        v1_state(dev, V1_RESUMING)?;
        match v1_read(dev, V1_DATA_OFFSET, 8)? {
            0 => Err("data_offset 0 in _RESUMING".to_string()),
            _ => Ok(()),
        }
    }),
    (Defect::V1ReservedWriteRejected, |dev| {
        v1_write(dev, V1_RESERVED, 4, 0xffff).map_err(|err| e("reserved write", err))?;
        match v1_read(dev, V1_RESERVED, 4)? {
            0 => Ok(()),
            v => Err(format!("reserved reads {v:#x}")),
        }
    }),
    (Defect::V1StopCompletesLate, |dev| {
        v1_state(dev, V1_STOP)?;
        if advances(dev, 10)? {
            Err("the device runs after _RUNNING was cleared".to_string())
        } else {
            Ok(())
        }
    }),
    (Defect::V1StopCopyKeepsRunning, |dev| {
        v1_state(dev, V1_PRE_COPY)?;
        v1_state(dev, V1_STOP_AND_COPY)?;
        if advances(dev, 10)? { Err("the device runs in stop-and-copy".to_string()) } else { Ok(()) }
    }),
    (Defect::V1StopCopyRestartsStream, |dev| {
        v1_state(dev, V1_PRE_COPY)?;
        let mut stream = v1_save(dev, 1)?;
        v1_state(dev, V1_STOP_AND_COPY)?;
        stream.extend(v1_save(dev, 1000)?);
        v1_state(dev, V1_STOP)?;
        v1_load(dev, &stream, 4096)
    }),
];

fn device(defect: Option<Defect>, api: MigrationApi) -> Box<dyn Device> {
    let base = if api == MigrationApi::V1 { SimConfig::v1() } else { SimConfig::v2() };
    SimConfig { defects: defect.into_iter().collect(), ..base }.build()
}

#[test]
fn every_held_out_defect_has_exactly_one_probe() {
    for d in Defect::HELD_OUT {
        let n = PROBES.iter().filter(|(p, _)| p == d).count();
        assert_eq!(n, 1, "{} has {n} probes", d.name());
    }
    for (d, _) in PROBES {
        assert!(d.held_out(), "{} is not a held-out defect", d.name());
    }
}

#[test]
fn the_reference_device_keeps_every_probed_sentence() {
    let broken: Vec<String> = PROBES
        .iter()
        .filter_map(|(d, probe)| {
            let mut dev = device(None, d.api());
            probe(dev.as_mut()).err().map(|why| format!("{}: {why}", d.name()))
        })
        .collect();
    assert!(broken.is_empty(), "the reference device broke: {broken:#?}");
}

#[test]
fn each_held_out_defect_breaks_the_sentence_its_probe_checks() {
    let unbroken: Vec<&str> = PROBES
        .iter()
        .filter(|(d, probe)| {
            let mut dev = device(Some(*d), d.api());
            probe(dev.as_mut()).is_ok()
        })
        .map(|(d, _)| d.name())
        .collect();
    assert!(unbroken.is_empty(), "these defects changed nothing their probe sees: {unbroken:?}");
}

#[test]
fn each_held_out_defect_is_restored_to_a_clean_running_device() {
    // restore() must leave no residue of a held-out defect's driver state: after it, the
    // counter advances (RUNNING) and a full save still works.
    for (d, probe) in PROBES {
        let mut dev = device(Some(*d), d.api());
        let _ = probe(dev.as_mut());
        dev.restore().unwrap_or_else(|err| panic!("{}: restore failed: {}", d.name(), err.name()));
        assert!(advances(dev.as_mut(), 20).unwrap_or(false), "{}: not running after restore", d.name());
    }
}

#[test]
fn held_out_defects_carry_a_quote_and_the_others_do_not() {
    for d in Defect::ALL {
        assert_eq!(d.quote().is_some(), d.held_out(), "{}", d.name());
        assert_eq!(Defect::HELD_OUT.contains(d), d.held_out(), "{}", d.name());
    }
    assert!(Defect::HELD_OUT.len() >= 25);
    assert!(Defect::HELD_OUT.iter().any(|d| d.api() == MigrationApi::V1));
}
