//! Operations from fuzzer bytes, weighted towards meaningful sequences (state changes, reads
//! and writes on the current fd, captures and replays) while every variant stays reachable,
//! and the bounds that keep one case fast.

use arbitrary::{Arbitrary, Unstructured};

use crate::op::{
    ConfigArgs, DmaReportArgs, DmaStartArgs, FdRef, Mutation, Op, PrecopyArgs, ReadArgs, Segmentation,
    Source, StreamName, V1FieldArgs, V1ResumeArgs, V1SaveArgs, WriteArgs,
};
use crate::state::StateArg;

type R<T> = arbitrary::Result<T>;

fn stream(u: &mut Unstructured<'_>) -> R<StreamName> {
    StreamName::arbitrary(u)
}

fn small_chunk(u: &mut Unstructured<'_>) -> R<u32> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 => 1,
        1 => 7,
        2 => 24,
        3 => 4095,
        4 => 4096,
        5 => 4097,
        6 => 1 << 16,
        _ => u32::from(u.arbitrary::<u16>()?),
    })
}

fn read_args(u: &mut Unstructured<'_>) -> R<ReadArgs> {
    Ok(ReadArgs {
        fd: FdRef::arbitrary(u)?,
        max: if u.ratio(1u8, 4)? { Some(u64::from(u.arbitrary::<u16>()?)) } else { None },
        chunk: small_chunk(u)?,
        once: u.arbitrary()?,
        offset: if u.ratio(1u8, 16)? { Some(u.arbitrary()?) } else { None },
        capture: if u.arbitrary()? { Some(stream(u)?) } else { None },
        append: u.arbitrary()?,
    })
}

fn source(u: &mut Unstructured<'_>) -> R<Source> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 => Source::Zeros(u32::from(u.arbitrary::<u16>()?)),
        1 => Source::Hex(String::arbitrary(u)?),
        _ => Source::Stream(stream(u)?),
    })
}

fn write_args(u: &mut Unstructured<'_>) -> R<WriteArgs> {
    Ok(WriteArgs {
        fd: FdRef::arbitrary(u)?,
        data: source(u)?,
        mutate: if u.arbitrary()? { Some(Mutation::arbitrary(u)?) } else { None },
        segment: Segmentation::arbitrary(u)?,
        offset: if u.ratio(1u8, 16)? { Some(u.arbitrary()?) } else { None },
        keep_going: u.arbitrary()?,
        from_thread: false,
    })
}

fn state(u: &mut Unstructured<'_>) -> R<StateArg> {
    StateArg::arbitrary(u)
}

fn fd(u: &mut Unstructured<'_>) -> R<FdRef> {
    FdRef::arbitrary(u)
}

/// One operation for a v2 device.
pub(super) fn v2_op(u: &mut Unstructured<'_>) -> R<Op> {
    Ok(match u.int_in_range(0u8..=99)? {
        0..=29 => Op::SetState(state(u)?),
        30..=34 => Op::GetState,
        35..=47 => Op::Read(read_args(u)?),
        48..=56 => Op::Write(write_args(u)?),
        57..=62 => Op::PrecopyInfo(PrecopyArgs {
            fd: fd(u)?,
            argsz: if u.ratio(1u8, 4)? { Some(u.arbitrary()?) } else { None },
            flags: if u.ratio(1u8, 4)? { u.arbitrary()? } else { 0 },
        }),
        63..=65 => Op::DataSize,
        66 => Op::GetFlags,
        67..=70 => Op::Reset,
        71..=72 => Op::CloseFd { fd: fd(u)? },
        73 => Op::Poll { fd: fd(u)?, timeout_ms: 0 },
        74 => Op::FdFlags { fd: fd(u)? },
        75..=77 => Op::DmaLogStart(DmaStartArgs::arbitrary(u)?),
        78..=79 => Op::DmaLogStop,
        80..=82 => Op::DmaLogReport(DmaReportArgs::arbitrary(u)?),
        83..=84 => Op::CloseDevice,
        85..=86 => Op::Reopen,
        87..=89 => Op::Feature(crate::op::FeatureArgs::arbitrary(u)?),
        90..=91 => Op::Wait { ms: u.int_in_range(0..=16)? },
        92 => Op::DebugfsState,
        93 => Op::ConfigRead(ConfigArgs::arbitrary(u)?),
        94 => Op::ConfigWrite(ConfigArgs::arbitrary(u)?),
        95 => Op::RegionRead(crate::op::RegionArgs::arbitrary(u)?),
        96 => Op::RegionWrite(crate::op::RegionArgs::arbitrary(u)?),
        97 => Op::SetIrqs(crate::op::IrqArgs::arbitrary(u)?),
        98 => Op::IrqMark("m".to_string()),
        _ => Op::arbitrary(u)?,
    })
}

fn v1_field(u: &mut Unstructured<'_>, write: bool) -> R<V1FieldArgs> {
    let natural = u.ratio(2u8, 3)?;
    Ok(V1FieldArgs {
        field: crate::op::V1Field::arbitrary(u)?,
        value: if write { Some(u.arbitrary()?) } else { None },
        width: if natural { None } else { Some(u.int_in_range(1..=8)?) },
        misalign: if natural { 0 } else { u.int_in_range(0..=40)? },
    })
}

/// One operation for a v1 device.
pub(super) fn v1_op(u: &mut Unstructured<'_>) -> R<Op> {
    Ok(match u.int_in_range(0u8..=99)? {
        0..=29 => Op::V1SetState(if u.ratio(7u8, 8)? { u.int_in_range(0..=7)? } else { u.arbitrary()? }),
        30..=44 => Op::V1Save(V1SaveArgs {
            capture: if u.arbitrary()? { Some(stream(u)?) } else { None },
            append: u.arbitrary()?,
            via: crate::op::Access::arbitrary(u)?,
            max_iterations: Some(u.int_in_range(16..=64)?),
            once: u.arbitrary()?,
            extra_pending_reads: u.int_in_range(0..=2)?,
        }),
        45..=56 => Op::V1Resume(V1ResumeArgs {
            data: source(u)?,
            mutate: if u.arbitrary()? { Some(Mutation::arbitrary(u)?) } else { None },
            via: crate::op::Access::arbitrary(u)?,
            scribble: u.arbitrary()?,
        }),
        57..=69 => Op::V1Read(v1_field(u, false)?),
        70..=79 => Op::V1Write(v1_field(u, true)?),
        80..=84 => Op::Reset,
        85..=86 => Op::CloseDevice,
        87..=88 => Op::Reopen,
        89..=90 => Op::Wait { ms: u.int_in_range(0..=16)? },
        91..=92 => Op::RegionRead(crate::op::RegionArgs::arbitrary(u)?),
        93..=94 => Op::RegionWrite(crate::op::RegionArgs::arbitrary(u)?),
        95 => Op::ConfigRead(ConfigArgs::arbitrary(u)?),
        96 => Op::ConfigWrite(ConfigArgs::arbitrary(u)?),
        97 => Op::SetIrqs(crate::op::IrqArgs::arbitrary(u)?),
        _ => Op::arbitrary(u)?,
    })
}

/// Operations the v1 target runs (v1 region ops and device-level ops).
pub(super) fn is_v1_relevant(op: &Op) -> bool {
    op.is_v1()
        || matches!(
            op,
            Op::Reset
                | Op::CloseDevice
                | Op::Reopen
                | Op::Wait { .. }
                | Op::RegionRead(_)
                | Op::RegionWrite(_)
                | Op::ConfigRead(_)
                | Op::ConfigWrite(_)
                | Op::SetIrqs(_)
                | Op::IrqMark(_)
        )
}

fn clamp_mutation(m: &mut Mutation) {
    if let Mutation::Fraction { den, .. } | Mutation::FlipAt { den, .. } | Mutation::SpliceAt { den, .. } = m
    {
        *den = (*den).max(1);
    }
    if let Mutation::FlipBit { bit, .. } | Mutation::FlipAt { bit, .. } = m {
        *bit %= 8;
    }
}

fn clamp_segmentation(s: &mut Segmentation) {
    match s {
        Segmentation::Cycle(v) | Segmentation::Head { sizes: v, .. } => {
            v.truncate(8);
            for x in v.iter_mut() {
                *x = (*x).clamp(1, 1 << 16);
            }
            if v.is_empty() {
                v.push(4096);
            }
        }
        Segmentation::Fixed(n) => *n = (*n).clamp(1, 1 << 20),
        Segmentation::Random { max, .. } => *max = (*max).clamp(1, 1 << 16),
        Segmentation::Whole => {}
    }
    // Tiny writes over a whole stream make a case slow: keep them above 16 bytes on average.
    match s {
        Segmentation::Fixed(n) if *n < 16 => *s = Segmentation::Head { sizes: vec![*n], head: 256 },
        Segmentation::Cycle(v) if v.iter().map(|x| u64::from(*x)).sum::<u64>() < 16 * v.len() as u64 => {
            *s = Segmentation::Head { sizes: std::mem::take(v), head: 256 }
        }
        Segmentation::Random { max, .. } if *max < 32 => *max = 32,
        Segmentation::Head { head, .. } => *head = (*head).min(1024),
        _ => {}
    }
}

fn clamp_source(s: &mut Source) {
    match s {
        Source::Zeros(n) => *n = (*n).min(1 << 16),
        Source::Hex(h) => {
            let mut clean: String = h.chars().filter(char::is_ascii_hexdigit).take(512).collect();
            if clean.len() % 2 == 1 {
                clean.pop();
            }
            *h = clean.to_ascii_lowercase();
        }
        Source::Stream(_) => {}
    }
}

fn truncate_chars(s: &mut String, n: usize) {
    if let Some((i, _)) = s.char_indices().nth(n) {
        s.truncate(i);
    }
}

fn clamp_width(w: &mut u8) {
    if !(1..=8).contains(w) {
        *w = 1 + *w % 8;
    }
}

/// Bounds the sizes of one operation (so a case runs in well under a millisecond) and fills
/// in what a step needs to run at all (a value for a write).
pub(super) fn clamp(op: &mut Op) {
    match op {
        Op::Read(a) => {
            a.chunk = a.chunk.clamp(1, 1 << 16);
            if !a.once && a.max.is_none_or(|m| m > 1024) && a.chunk < 64 {
                a.chunk = 64;
            }
            // At most ~1000 read() calls per step.
            let bound = (u64::from(a.chunk) * 1024).min(1 << 20);
            a.max = match a.max {
                Some(m) => Some(m.clamp(1, bound)),
                None if a.chunk < 1024 && !a.once => Some(bound),
                None => None,
            };
        }
        Op::Write(a) => {
            clamp_source(&mut a.data);
            if let Some(m) = &mut a.mutate {
                clamp_mutation(m);
            }
            clamp_segmentation(&mut a.segment);
            a.from_thread = false;
        }
        Op::V1Resume(a) => {
            clamp_source(&mut a.data);
            if let Some(m) = &mut a.mutate {
                clamp_mutation(m);
            }
        }
        Op::V1Save(a) => {
            a.max_iterations = Some(a.max_iterations.unwrap_or(64).clamp(16, 64));
            a.extra_pending_reads = a.extra_pending_reads.min(2);
        }
        Op::V1Read(a) => {
            if let Some(w) = &mut a.width {
                clamp_width(w);
            }
        }
        Op::V1Write(a) => {
            if let Some(w) = &mut a.width {
                clamp_width(w);
            }
            a.value = Some(a.value.unwrap_or(0));
        }
        Op::RegionRead(a) => {
            clamp_width(&mut a.width);
            if let Some(n) = &mut a.save_as {
                truncate_chars(n, 16);
            }
        }
        Op::RegionWrite(a) => {
            clamp_width(&mut a.width);
            a.value = Some(a.value.unwrap_or(0));
        }
        Op::ConfigRead(a) => {
            clamp_width(&mut a.width);
            if let Some(n) = &mut a.save_as {
                truncate_chars(n, 16);
            }
        }
        Op::ConfigWrite(a) => {
            clamp_width(&mut a.width);
            a.value = Some(a.value.unwrap_or(0));
        }
        Op::RaceReset(a) => a.calls = 1 + a.calls % a.during.max_calls(),
        Op::DmaLogStart(a) => {
            a.ranges.truncate(32);
            a.count = a.count.map(|c| c.min(32));
        }
        Op::DmaLogReport(a) if a.page_size != 0 && a.length / a.page_size > 1 << 16 => {
            a.length = a.page_size.saturating_mul(1 << 16);
        }
        Op::Feature(a) => {
            a.payload = a.payload.min(256);
            a.argsz = a.argsz.map(|n| n.min(crate::op::limits::FEATURE_ARGSZ as u32));
        }
        Op::Wait { ms } => *ms = (*ms).min(16),
        Op::Poll { timeout_ms, .. } => *timeout_ms = (*timeout_ms).min(10),
        Op::IrqMark(n) => truncate_chars(n, 16),
        _ => {}
    }
}
