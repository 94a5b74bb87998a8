//! Generated families: the same stream replayed in every segmentation (it must restore), and
//! negative streams (empty, truncated, bit flips, spliced, foreign, doubled) that must make
//! leaving RESUMING fail.

use super::build::{check, save_to, set, v2, write};
use super::probes::{Kind, region_write};
use crate::check::{Check, ExpectKind, Requires, Step};
use crate::clauses::id::*;
use crate::op::{Mutation, Op, ReadArgs, Segmentation, StreamName};
use crate::state::MigState;

const SEGMENTATIONS: &[(&str, &str)] = &[
    ("whole", "all at once"),
    ("one_byte", "1 byte per write (for the first MiB)"),
    ("primes", "writes of 2, 3, 5, ... 23 bytes in turn (for the first MiB)"),
    ("page_minus_1", "4095-byte writes"),
    ("page_plus_1", "4097-byte writes"),
    ("random", "pseudo-random sizes up to 9000 bytes"),
];

fn segmentation(name: &str) -> Segmentation {
    match name {
        "one_byte" => Segmentation::Head { sizes: vec![1], head: 1 << 20 },
        "primes" => Segmentation::Head { sizes: vec![2, 3, 5, 7, 11, 13, 17, 19, 23], head: 1 << 20 },
        "page_minus_1" => Segmentation::Fixed(4095),
        "page_plus_1" => Segmentation::Fixed(4097),
        "random" => Segmentation::Random { seed: 7, max: 9000 },
        _ => Segmentation::Whole,
    }
}

/// `stream.replay.<segmentation>`.
pub fn replay_checks() -> Vec<Check> {
    let mut out: Vec<Check> = SEGMENTATIONS
        .iter()
        .map(|(name, what)| {
            let mut steps = save_to("s");
            steps.push(set(MigState::Resuming));
            steps.push(write("s", None, segmentation(name)).expect(ExpectKind::Ok, &[V2_FD_001]));
            steps.push(set(MigState::Stop).expect(ExpectKind::Ok, &[V2_FD_001, V2_ARC_RES_001]));
            steps.push(set(MigState::Running));
            check(
                &format!("stream.replay.{name}"),
                &format!("a saved stream written {what} restores (segmentation need not be kept)"),
                v2(1),
                steps,
                &[V2_FD_001, V2_ARC_RES_001],
            )
        })
        .collect();
    // Pre-copy data and stop-copy data form one stream.
    let steps = vec![
        set(MigState::PreCopy),
        Step::new(Op::Read(ReadArgs { capture: Some(StreamName("s".into())), ..Default::default() })),
        set(MigState::StopCopy),
        super::build::capture_more("s"),
        Step::new(Op::Reset).setup(),
        set(MigState::Resuming),
        write("s", None, Segmentation::Fixed(4096)).expect(ExpectKind::Ok, &[V2_FD_001]),
        set(MigState::Running).expect(ExpectKind::Ok, &[V2_SAVE_001, V2_ARC_RES_001]),
    ];
    out.push(check(
        "stream.replay.with_pre_copy",
        "pre-copy data followed by stop-copy data restores as one stream",
        v2(5),
        steps,
        &[V2_SAVE_001, V2_ARC_RES_001],
    ));
    out
}

/// The negative mutations: (name, description, mutation).
fn negatives() -> Vec<(&'static str, &'static str, Option<Mutation>)> {
    let frac = |num, den| Some(Mutation::Fraction { num, den });
    let flip = |num, den| Some(Mutation::FlipAt { num, den, bit: 2 });
    vec![
        ("empty", "no data at all", Some(Mutation::Empty)),
        ("first_byte", "only the first byte", Some(Mutation::Truncate(1))),
        ("truncated_1_8", "the first eighth", frac(1, 8)),
        ("truncated_1_4", "the first quarter", frac(1, 4)),
        ("truncated_1_2", "the first half", frac(1, 2)),
        ("truncated_3_4", "three quarters", frac(3, 4)),
        ("truncated_7_8", "seven eighths", frac(7, 8)),
        ("minus_last_byte", "all but the last byte", Some(Mutation::DropTail(1))),
        ("flip_first_byte", "a bit flipped in the first byte", flip(0, 1)),
        ("flip_at_1_4", "a bit flipped a quarter in", flip(1, 4)),
        ("flip_at_1_2", "a bit flipped half way", flip(1, 2)),
        ("flip_at_3_4", "a bit flipped three quarters in", flip(3, 4)),
        ("flip_last_byte", "a bit flipped in the last byte", flip(999_999, 1_000_000)),
    ]
}

/// `stream.negative.*`.
pub fn negative_checks(kind: Kind) -> Vec<Check> {
    let mut out: Vec<Check> = negatives()
        .into_iter()
        .map(|(name, what, m)| {
            let mut steps = save_to("s");
            steps.push(set(MigState::Resuming));
            steps.push(write("s", m, Segmentation::Whole));
            // The oracle knows what the driver accepted: leaving RESUMING must fail unless the
            // driver refused the bad bytes and kept a valid stream.
            steps.push(set(MigState::Stop));
            check(
                &format!("stream.negative.{name}"),
                &format!("leaving RESUMING fails after {what} of a saved stream"),
                v2(1),
                steps,
                &[V2_ARC_RES_001],
            )
        })
        .collect();
    // The whole stream twice: data after the end of a complete stream.
    let mut steps = save_to("s");
    steps.push(set(MigState::Resuming));
    steps.push(write("s", None, Segmentation::Whole));
    steps.push(write("s", None, Segmentation::Whole));
    steps.push(set(MigState::Stop));
    out.push(check(
        "stream.negative.twice",
        "leaving RESUMING fails after a complete stream followed by a second copy",
        v2(1),
        steps,
        &[V2_ARC_RES_001],
    ));
    // Spliced: halves of two streams of different device states.
    let mut steps = Vec::new();
    let regs = kind.splice_registers();
    for (i, (r, o, w)) in regs.iter().enumerate() {
        steps.push(region_write(r.clone(), *o, *w, 0x11 + i as u64));
    }
    steps.extend(save_to("s1"));
    for (i, (r, o, w)) in regs.iter().enumerate() {
        steps.push(region_write(r.clone(), *o, *w, 0x66 + i as u64));
    }
    if kind == Kind::Sim {
        steps.push(Step::new(Op::Wait { ms: 50 }));
    }
    steps.extend(save_to("s2"));
    steps.push(set(MigState::Resuming));
    let splice = Mutation::SpliceAt { other: StreamName("s2".into()), num: 1, den: 2 };
    steps.push(write("s1", Some(splice), Segmentation::Whole));
    steps.push(set(MigState::Stop));
    let mut c = check(
        "stream.negative.spliced",
        "leaving RESUMING fails after the first half of one stream and the second half of another",
        v2(1),
        steps,
        &[V2_ARC_RES_001, V2_RESUME_002],
    );
    if regs.is_empty() && kind != Kind::Sim {
        c.requires.unavailable = Some(Kind::why_unknown());
    }
    out.push(c);
    // Foreign: a stream of another device type.
    let mut steps: Vec<Step> = save_to("f").into_iter().map(|s| s.on("B")).collect();
    steps.push(set(MigState::Resuming));
    steps.push(write("f", None, Segmentation::Whole));
    steps.push(set(MigState::Stop));
    let mut c = check(
        "stream.negative.foreign",
        "leaving RESUMING fails after a stream saved by a device of another type",
        Requires { devices: vec!["A".into(), "B".into()], other_type: true, ..v2(1) },
        steps,
        &[V2_ARC_RES_001, V2_RESUME_002],
    );
    c.models = Some("the spec; QEMU's migration compatibility check relies on it".to_string());
    out.push(c);
    out
}
