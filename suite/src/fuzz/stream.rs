//! The `resume_stream` target: bytes (raw, or genuine streams edited byte- and record-wise,
//! optionally re-sealed with a matching END record) written in some segmentation into a
//! RESUMING session of `sim:v2`, then a SET that leaves RESUMING. The SET must succeed exactly
//! when an independent parser of the stream format ([`validate`]) calls the accepted bytes a
//! valid stream of the device, and a successful load must restore the stream's registers.
//!
//! The stream format (see `device/sim/stream.rs`): records `tag u32, len u32, payload`;
//! HEADER first (magic, version 1, device type id, state size, page seed), then PAGES records
//! (`first u64, count u32, 0u32, count versions, page bytes`) covering every page of the state
//! at least once (later records re-send hot pages), exactly one REGS record, and an END record
//! (`record count u32, 0u32, hash u64` of every byte before the END payload) last.

use std::cell::RefCell;
use std::collections::BTreeMap;

use arbitrary::Unstructured;

use crate::device::Device;
use crate::device::sim::SimConfig;
use crate::device::sim::hw::{HOT_PAGES, NUM_REGS, PAGE, type_id};
use crate::device::sim::stream::fill_page;
use crate::errno::Errno;
use crate::hash::StreamHash;
use crate::op::{Access, Segmentation};
use crate::state::{MigFlags, MigState};
use crate::uapi;

const MAGIC: u64 = u64::from_le_bytes(*b"VMCSIM01");
const TAG_HEADER: u32 = 0x5244_4801;
const TAG_PAGES: u32 = 0x4547_5002;
const TAG_REGS: u32 = 0x4745_5203;
const TAG_END: u32 = 0x444e_4504;
/// Largest input the target writes.
const MAX_BYTES: usize = 64 << 10;
const SIZES: [u64; 5] = [1, 96, 4096, 4097, 2 * 4096 + 123];

/// Who the stream must belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub type_id: u32,
    pub state_size: u64,
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    let x = b.get(o..o + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(x);
    Some(u64::from_le_bytes(a))
}

/// Checks that `b` is one complete valid stream for `id`; returns the registers it carries.
pub fn validate(b: &[u8], id: Identity) -> Result<[u32; NUM_REGS], String> {
    let npages = id.state_size.div_ceil(PAGE);
    let page_len = |p: u64| (id.state_size - p * PAGE).min(PAGE);
    let mut covered = vec![false; usize::try_from(npages).map_err(|_| "state too large")?];
    let mut pos = 0usize;
    let mut records = 0u32;
    let mut seed = None;
    let mut regs: Option<[u32; NUM_REGS]> = None;
    loop {
        let (Some(tag), Some(len)) = (u32_at(b, pos), u32_at(b, pos + 4)) else {
            return Err(format!("truncated: no record header at byte {pos}"));
        };
        let start = pos + 8;
        let end = start.checked_add(len as usize).ok_or("record length overflows")?;
        let payload =
            b.get(start..end).ok_or_else(|| format!("truncated inside the record at byte {pos}"))?;
        records += 1;
        if seed.is_none() && tag != TAG_HEADER {
            return Err(format!("first record has tag {tag:#x}"));
        }
        if regs.is_some() && tag != TAG_END {
            return Err(format!("record {tag:#x} after REGS (REGS comes right before END)"));
        }
        match tag {
            TAG_HEADER if seed.is_none() && len == 32 => {
                let magic = u64_at(payload, 0).unwrap_or(0);
                let version = u32_at(payload, 8).unwrap_or(0);
                let got = Identity {
                    type_id: u32_at(payload, 12).unwrap_or(0),
                    state_size: u64_at(payload, 16).unwrap_or(0),
                };
                if magic != MAGIC || version != 1 {
                    return Err(format!("magic {magic:#x} version {version}"));
                }
                if got != id {
                    return Err(format!("foreign: {got:?}, device {id:?}"));
                }
                seed = u64_at(payload, 24);
            }
            TAG_PAGES if len >= 16 => {
                let first = u64_at(payload, 0).unwrap_or(0);
                let count = u64::from(u32_at(payload, 8).unwrap_or(0));
                if u32_at(payload, 12) != Some(0) {
                    return Err("PAGES reserved word not 0".to_string());
                }
                if count == 0 || first.checked_add(count).is_none_or(|e| e > npages) {
                    return Err(format!("PAGES {first}+{count} outside {npages} pages"));
                }
                let data: u64 = (first..first + count).map(page_len).sum();
                if u64::from(len) != 16 + 4 * count + data {
                    return Err(format!("PAGES length {len} for {count} pages"));
                }
                let mut at = 16 + 4 * count as usize;
                for i in 0..count {
                    let p = first + i;
                    let version = u32_at(payload, 16 + 4 * i as usize).unwrap_or(0);
                    if p >= HOT_PAGES as u64 && version != 0 {
                        return Err(format!("cold page {p} with version {version}"));
                    }
                    let n = page_len(p) as usize;
                    let mut want = vec![0u8; n];
                    fill_page(seed.unwrap_or(0), p, version, 0, &mut want);
                    if payload.get(at..at + n) != Some(&want[..]) {
                        return Err(format!("page {p} content differs"));
                    }
                    at += n;
                    covered[p as usize] = true;
                }
            }
            TAG_REGS if len == (NUM_REGS * 4) as u32 => {
                let mut r = [0u32; NUM_REGS];
                for (i, x) in r.iter_mut().enumerate() {
                    *x = u32_at(payload, 4 * i).unwrap_or(0);
                }
                regs = Some(r);
            }
            TAG_END if len == 16 => {
                let mut h = StreamHash::default();
                h.update(&b[..start]);
                let (n, pad, hash) =
                    (u32_at(payload, 0).unwrap_or(0), u32_at(payload, 4), u64_at(payload, 8).unwrap_or(0));
                if n != records || pad != Some(0) || hash != h.value() {
                    return Err(format!("END does not match ({n} vs {records} records, hash {hash:#x})"));
                }
                if end != b.len() {
                    return Err(format!("{} bytes after END", b.len() - end));
                }
                if let Some(p) = covered.iter().position(|c| !c) {
                    return Err(format!("page {p} never sent"));
                }
                return regs.ok_or_else(|| "no REGS record".to_string());
            }
            _ => return Err(format!("unexpected record {tag:#x} length {len} at byte {pos}")),
        }
        pos = end;
    }
}

/// A decoded `resume_stream` case.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub spec: String,
    pub state_size: u64,
    pub bytes: Vec<u8>,
    /// Write sizes (they add up to `bytes.len()`).
    pub segments: Vec<usize>,
    /// The state requested to leave RESUMING.
    pub leave_to: MigState,
}

fn set(dev: &mut dyn Device, s: MigState) -> Result<i32, Errno> {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&s.raw().to_le_bytes());
    p[4..].copy_from_slice(&(-1i32).to_le_bytes());
    dev.feature(16, uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE, &mut p)?;
    Ok(i32::from_le_bytes([p[4], p[5], p[6], p[7]]))
}

fn config(state_size: u64, type_name: &str) -> SimConfig {
    SimConfig {
        flags: MigFlags::ALL,
        dma_logging: false,
        state_size,
        type_name: type_name.to_string(),
        ..SimConfig::v2()
    }
}

fn read_all(dev: &mut dyn Device, fd: i32, out: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = dev.data_read(fd, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A genuine stream of a fresh `sim:v2` (kind 0: STOP_COPY only; 1: pre-copy with dirty
/// pages, then STOP_COPY).
fn genuine(state_size: u64, type_name: &str, kind: u8) -> Vec<u8> {
    thread_local! {
        static CACHE: RefCell<BTreeMap<(u64, String, u8), Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    }
    let key = (state_size, type_name.to_string(), kind);
    if let Some(v) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return v;
    }
    let mut dev = config(state_size, type_name).build();
    let mut out = Vec::new();
    let fd = if kind == 0 {
        let _ = set(dev.as_mut(), MigState::Stop);
        set(dev.as_mut(), MigState::StopCopy).unwrap_or(-1)
    } else {
        let fd = set(dev.as_mut(), MigState::PreCopy).unwrap_or(-1);
        read_all(dev.as_mut(), fd, &mut out);
        dev.wait(40);
        read_all(dev.as_mut(), fd, &mut out);
        let _ = set(dev.as_mut(), MigState::StopCopy);
        fd
    };
    read_all(dev.as_mut(), fd, &mut out);
    CACHE.with(|c| c.borrow_mut().insert(key, out.clone()));
    out
}

/// Splits a stream at its record boundaries (a last piece may be partial).
fn records(b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let len = u32_at(b, pos + 4).map_or(usize::MAX, |l| l as usize);
        let end = pos.saturating_add(8).saturating_add(len).min(b.len());
        out.push(b[pos..end].to_vec());
        pos = end;
    }
    out
}

/// Replaces a trailing END record by one that matches the bytes before it.
fn reseal(b: &mut Vec<u8>) {
    let recs = records(b);
    let mut kept: Vec<Vec<u8>> = recs;
    if kept.last().is_some_and(|r| u32_at(r, 0) == Some(TAG_END)) {
        kept.pop();
    }
    let mut out: Vec<u8> = kept.concat();
    let count = kept.len() as u32 + 1;
    out.extend_from_slice(&TAG_END.to_le_bytes());
    out.extend_from_slice(&16u32.to_le_bytes());
    let mut h = StreamHash::default();
    h.update(&out);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&h.value().to_le_bytes());
    *b = out;
}

fn edit(u: &mut Unstructured<'_>, b: &mut Vec<u8>) -> arbitrary::Result<()> {
    let pos = |u: &mut Unstructured<'_>, n: usize| -> arbitrary::Result<usize> {
        Ok(if n == 0 { 0 } else { u.int_in_range(0..=n - 1)? })
    };
    match u.int_in_range(0u8..=8)? {
        0 => {
            let at = pos(u, b.len())?;
            if let Some(x) = b.get_mut(at) {
                *x ^= 1 << u.int_in_range(0..=7)?;
            }
        }
        1 => {
            let at = pos(u, b.len())?;
            let v: u8 = u.arbitrary()?;
            if let Some(x) = b.get_mut(at) {
                *x = v;
            }
        }
        2 => {
            let at = pos(u, b.len() + 1)?;
            b.truncate(at);
        }
        3 => {
            let at = pos(u, b.len())?;
            let n = usize::from(u.arbitrary::<u8>()?);
            b.drain(at..(at + n).min(b.len()));
        }
        4 => {
            let at = pos(u, b.len() + 1)?;
            let n = usize::from(u.int_in_range(0u8..=32)?);
            let bytes = u.bytes(n.min(u.len()))?.to_vec();
            b.splice(at..at, bytes);
        }
        // Record-level edits: delete, duplicate, swap.
        5..=7 => {
            let mut recs = records(b);
            if recs.is_empty() {
                return Ok(());
            }
            let i = pos(u, recs.len())?;
            let j = pos(u, recs.len())?;
            match u.int_in_range(5u8..=7)? {
                5 => {
                    recs.remove(i);
                }
                6 => {
                    let r = recs[i].clone();
                    recs.insert(j, r);
                }
                _ => recs.swap(i, j),
            }
            *b = recs.concat();
        }
        _ => reseal(b),
    }
    Ok(())
}

/// Decodes a `resume_stream` input.
pub fn decode(data: &[u8]) -> Option<Case> {
    let mut u = Unstructured::new(data);
    let state_size = *u.choose(&SIZES).ok()?;
    let mode = u.int_in_range(0u8..=4).ok()?;
    let mut bytes = match mode {
        0 => {
            let n = u.arbitrary_len::<u8>().ok()?.min(MAX_BYTES);
            u.bytes(n).ok()?.to_vec()
        }
        1 | 2 => genuine(state_size, "sim", mode - 1),
        3 => genuine(state_size, "other", 0),
        _ => genuine(*u.choose(&SIZES).ok()?, "sim", 0),
    };
    if mode != 0 {
        let edits = u.int_in_range(0u8..=4).ok()?;
        for _ in 0..edits {
            edit(&mut u, &mut bytes).ok()?;
        }
        if u.ratio(1u8, 3).ok()? {
            reseal(&mut bytes);
        }
    }
    bytes.truncate(MAX_BYTES);
    let segment = match u.int_in_range(0u8..=4).ok()? {
        0 => Segmentation::Whole,
        1 => Segmentation::Fixed(u32::from(u.arbitrary::<u16>().ok()?).max(1)),
        2 => Segmentation::Cycle(
            (0..u.int_in_range(1u8..=4).ok()?)
                .map(|_| u.int_in_range(1u32..=5000))
                .collect::<Result<_, _>>()
                .ok()?,
        ),
        3 => Segmentation::Random { seed: u.arbitrary().ok()?, max: u.int_in_range(1u32..=4097).ok()? },
        _ => Segmentation::Fixed(*u.choose(&[1u32, 7, 8, 4095, 4096, 4097]).ok()?),
    };
    let segments: Vec<usize> = crate::engine::capture::Segments::new(&segment, bytes.len() as u64).collect();
    let leave_to = *u
        .choose(&[
            MigState::Stop,
            MigState::Running,
            MigState::StopCopy,
            MigState::RunningP2p,
            MigState::PreCopy,
        ])
        .ok()?;
    Some(Case { spec: config(state_size, "sim").spec(), state_size, bytes, segments, leave_to })
}

/// Runs one `resume_stream` input: Err describes a disagreement.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some(case) = decode(data) else { return Ok(()) };
    run_case(&case)
}

/// Writes the case into a RESUMING session and judges the SET that leaves it.
pub fn run_case(case: &Case) -> Result<(), String> {
    let cfg = config(case.state_size, "sim");
    let mut dev = cfg.build();
    let dev = dev.as_mut();
    set(dev, MigState::Stop).map_err(|e| format!("SET STOP failed with {e}"))?;
    let fd = set(dev, MigState::Resuming).map_err(|e| format!("SET RESUMING failed with {e}"))?;
    let mut accepted = 0usize;
    for &n in &case.segments {
        let piece = &case.bytes[accepted..accepted + n];
        match dev.data_write(fd, piece) {
            Ok(w) if w == n => accepted += n,
            Ok(w) => return Err(format!("short write: {w} of {n} bytes at {accepted}")),
            Err(_) => break,
        }
    }
    let left = set(dev, case.leave_to);
    let id = Identity { type_id: type_id(&cfg.type_name), state_size: cfg.state_size };
    let verdict = validate(&case.bytes[..accepted], id);
    let head = || {
        format!(
            "{} bytes accepted of {} in {} writes, SET {} from RESUMING",
            accepted,
            case.bytes.len(),
            case.segments.len(),
            case.leave_to
        )
    };
    match (left, verdict) {
        (Ok(_), Err(why)) => {
            Err(format!("{}: succeeded, but the bytes are not a valid stream: {why}", head()))
        }
        (Err(e), Ok(_)) => Err(format!("{}: failed with {e}, but the bytes are a valid stream", head())),
        (Err(_), Err(_)) => Ok(()),
        (Ok(_), Ok(regs)) => {
            for (i, want) in
                regs.iter().enumerate().filter(|(i, _)| *i != 3 && case.leave_to == MigState::Stop)
            {
                let mut buf = [0u8; 4];
                dev.region_read(0, 4 * i as u64, &mut buf, Access::Rw)
                    .map_err(|e| format!("{}: BAR0 read failed with {e}", head()))?;
                let got = u32::from_le_bytes(buf);
                if got != *want {
                    return Err(format!(
                        "{}: register {i} is {got:#x} after the load, the stream has {want:#x}",
                        head()
                    ));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genuine_streams_are_valid_and_edited_ones_are_not() {
        for size in SIZES {
            let id = Identity { type_id: type_id("sim"), state_size: size };
            for kind in [0, 1] {
                let g = genuine(size, "sim", kind);
                validate(&g, id).unwrap_or_else(|e| panic!("size {size} kind {kind}: {e}"));
                let mut resealed = g.clone();
                reseal(&mut resealed);
                assert_eq!(resealed, g, "resealing a genuine stream changes nothing");
                let mut cut = g.clone();
                cut.pop();
                validate(&cut, id).unwrap_err();
            }
            validate(&genuine(size, "other", 0), id).unwrap_err();
            // A stream without its PAGES records but with a matching END.
            let mut recs = records(&genuine(size, "sim", 0));
            recs.remove(1);
            let mut b = recs.concat();
            reseal(&mut b);
            assert!(validate(&b, id).unwrap_err().contains("never sent"));
        }
    }
}
