//! Neighbour runs of the coverage-guided mode: a data-file call (read, write, PRECOPY_INFO, a
//! call with a bad buffer) that reached kernel code no earlier run had reached is run again in
//! a few fixed variants, each as the last steps of its walk's prefix:
//!
//! - **again**: the same call a second time on the same file. A migration file is a stream
//!   whose position the driver keeps; a second call starts where the first left off (a second
//!   write into a resume file after its header has been counted, a read after a short one);
//! - **other fd**: the call on the other data fd (`previous` for `current` and back): the file
//!   of an earlier migration, which the driver has disabled, while the device is in the state
//!   the call was new in;
//! - **pieces** (writes): the start of the stream cut into 8-byte writes, so that all but the
//!   first writes start inside or past the header the driver parses;
//! - **stale** (a call on `current`): the device taken back to the state it was in before the
//!   SET that opened the file, the steps from that SET to the call made again (which open a
//!   new file of the same kind), and the call made on the first file, now `previous`: a call
//!   on the disabled file of an earlier migration while the device is in the state in which
//!   the call is valid.
//!
//! This is AFL's deterministic stage reduced to what a data file has: a few variants of a new
//! input, tried once each, in order, before random mutation gets to them; random mutation
//! (`mutate::Operator::Stream`, `Insert`) reaches the same variants only when it happens to
//! draw that step and that change.

use std::collections::{BTreeSet, HashSet, VecDeque};

use super::sweep::code_path;
use crate::check::Step;
use crate::op::{FdRef, Op, Segmentation};
use crate::state::{MigState, StateArg};

/// The most neighbour runs waiting at once.
pub const MAX_QUEUED: usize = 64;
/// The size of each write of the `pieces` variant, and how many bytes of the stream are cut so.
pub const PIECE: u32 = 8;
pub const PIECES_HEAD: u64 = 4096;

/// Which variant a neighbour run tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Again,
    OtherFd,
    Pieces,
    Stale,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Again => "again",
            Variant::OtherFd => "other fd",
            Variant::Pieces => "pieces",
            Variant::Stale => "stale",
        }
    }
}

/// One neighbour run: the prefix of a walk up to a step that reached new PCs, changed by
/// `variant`.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbour {
    pub steps: Vec<Step>,
    pub variant: Variant,
    /// The index (in `steps`) of the step the variant is about.
    pub at: usize,
}

/// The neighbour runs waiting, the code paths already offered, and what the runs did.
#[derive(Clone, Debug, Default)]
pub struct Neighbours {
    queue: VecDeque<Neighbour>,
    /// [`code_path`]s of the steps offered.
    seen: HashSet<u64>,
    /// Runs made, and how many of them reached a new PC.
    pub runs: u64,
    pub finds: u64,
}

/// The data fd a step's call is made on, for the calls that have variants.
fn data_fd(op: &mut Op) -> Option<&mut FdRef> {
    match op {
        Op::Read(r) => Some(&mut r.fd),
        Op::Write(w) if w.offset.is_none() => Some(&mut w.fd),
        Op::PrecopyInfo(p) => Some(&mut p.fd),
        Op::BadBuffer(b) => Some(&mut b.fd),
        _ => None,
    }
}

/// The steps of the `stale` variant of `steps[at]` (a call on `current`): `opened[j]`, whether
/// step `j` returned a data fd. None when no SET before the call on its device opened one.
fn stale(steps: &[Step], opened: &[bool], at: usize) -> Option<Vec<Step>> {
    let step = &steps[at];
    let mut call = step.clone();
    match data_fd(&mut call.op)? {
        fd @ FdRef::Current => *fd = FdRef::Previous,
        _ => return None,
    }
    let dev = step.device.as_deref();
    let same = |s: &Step| s.device.as_deref() == dev;
    let j = (0..at).rev().find(|j| opened.get(*j).copied().unwrap_or(false) && same(&steps[*j]))?;
    // The state the device was in before that SET: the target of the SET before it on the same
    // device, or RUNNING (a walk starts from the restored, running device).
    let origin = steps[..j]
        .iter()
        .rev()
        .filter(|s| same(s))
        .find_map(|s| match &s.op {
            Op::SetState(arg) => arg.state(),
            _ => None,
        })
        .unwrap_or(MigState::Running);
    let mut back = Step::new(Op::SetState(StateArg::Named(origin))).oracle();
    back.device = step.device.clone();
    let mut out = steps[..at].to_vec();
    out.push(back);
    out.extend(steps[j..at].iter().cloned().map(|s| Step { fail_nth: None, ..s }));
    out.push(call);
    Some(out)
}

/// The variants of `step` (a data-file call; none for any other step).
pub fn variants(step: &Step) -> Vec<(Variant, Vec<Step>)> {
    let mut s = step.clone();
    let Some(fd) = data_fd(&mut s.op) else { return Vec::new() };
    let other = match fd {
        FdRef::Current => Some(FdRef::Previous),
        FdRef::Previous => Some(FdRef::Current),
        FdRef::Named(_) => None,
    };
    let mut out = Vec::new();
    // The same call again: a read that captured the stream reads on without capturing.
    let mut again = step.clone();
    again.fail_nth = None;
    if let Op::Read(r) = &mut again.op {
        r.capture = None;
        r.append = false;
    }
    out.push((Variant::Again, vec![step.clone(), again]));
    if let Some(other) = other {
        let mut o = step.clone();
        if let Some(fd) = data_fd(&mut o.op) {
            *fd = other;
        }
        out.push((Variant::OtherFd, vec![o]));
    }
    if let Op::Write(w) = &step.op {
        let small = match &w.segment {
            Segmentation::Fixed(n) => *n <= PIECE,
            Segmentation::Head { sizes, .. } | Segmentation::Cycle(sizes) => {
                sizes.iter().all(|n| *n <= PIECE)
            }
            Segmentation::Random { max, .. } => *max <= PIECE,
            Segmentation::Whole => false,
        };
        if !small {
            let mut p = step.clone();
            if let Op::Write(w) = &mut p.op {
                w.segment = Segmentation::Head { sizes: vec![PIECE], head: PIECES_HEAD };
            }
            out.push((Variant::Pieces, vec![p]));
        }
    }
    out
}

impl Neighbours {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues the variants of every data-file call of a run (`per_step[i]`: the PCs step `i`
    /// reached; `opened[i]`: whether it returned a data fd) that reached one of the `new` PCs,
    /// unless a call of the same kind on the same device that reached the same PCs was offered
    /// before (the same code path).
    pub fn offer(&mut self, steps: &[Step], per_step: &[Vec<u64>], opened: &[bool], new: &BTreeSet<u64>) {
        for (i, pcs) in per_step.iter().enumerate().take(steps.len()) {
            if !pcs.iter().any(|pc| new.contains(pc)) {
                continue;
            }
            let vs = variants(&steps[i]);
            if vs.is_empty() {
                continue;
            }
            if !self.seen.insert(code_path(&steps[i], pcs)) {
                continue;
            }
            let mut runs: Vec<(Variant, Vec<Step>)> = vs
                .into_iter()
                .map(|(variant, tail)| {
                    let mut run = steps[..i].to_vec();
                    run.extend(tail);
                    (variant, run)
                })
                .collect();
            runs.extend(stale(steps, opened, i).map(|run| (Variant::Stale, run)));
            for (variant, run) in runs {
                if self.queue.len() >= MAX_QUEUED {
                    return;
                }
                self.queue.push_back(Neighbour { steps: run, variant, at: i });
            }
        }
    }

    /// The next neighbour run.
    pub fn take_next(&mut self) -> Option<Neighbour> {
        self.queue.pop_front()
    }

    /// Records a neighbour run and whether it reached a new PC.
    pub fn done(&mut self, found: bool) {
        self.runs += 1;
        self.finds += u64::from(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{PrecopyArgs, Source, StreamName, WriteArgs};

    fn set(s: MigState) -> Step {
        Step::new(Op::SetState(StateArg::Named(s))).oracle()
    }

    fn write() -> Step {
        Step::new(Op::Write(WriteArgs {
            fd: FdRef::Current,
            data: Source::Stream(StreamName("s".into())),
            mutate: None,
            segment: Segmentation::default(),
            offset: None,
            keep_going: false,
            from_thread: false,
        }))
    }

    #[test]
    fn a_write_that_reached_new_pcs_is_tried_again_on_the_other_fd_and_in_pieces() {
        // Arrange: SET RESUMING, then a write that reached a new PC.
        let mut nb = Neighbours::default();
        let steps = vec![set(MigState::Resuming), write(), set(MigState::Running)];
        // Act
        nb.offer(&steps, &[vec![1], vec![2, 3], vec![4]], &[true, false, false], &BTreeSet::from([3]));
        // Assert: four runs, each the prefix up to the write and the variant; nothing after.
        let runs: Vec<Neighbour> = std::iter::from_fn(|| nb.take_next()).collect();
        let names: Vec<&str> = runs.iter().map(|n| n.variant.name()).collect();
        assert_eq!(names, ["again", "other fd", "pieces", "stale"]);
        assert_eq!(runs[0].steps, vec![steps[0].clone(), steps[1].clone(), steps[1].clone()]);
        let Op::Write(w) = &runs[1].steps[1].op else { panic!("a write: {:?}", runs[1].steps) };
        assert_eq!((runs[1].steps.len(), &w.fd), (2, &FdRef::Previous));
        let Op::Write(w) = &runs[2].steps[1].op else { panic!("a write: {:?}", runs[2].steps) };
        assert_eq!(w.segment, Segmentation::Head { sizes: vec![PIECE], head: PIECES_HEAD });
        assert!(runs.iter().all(|n| n.at == 1));
    }

    #[test]
    fn the_same_code_path_is_offered_once_and_only_data_file_calls_have_neighbours() {
        let mut nb = Neighbours::default();
        let info = Step::new(Op::PrecopyInfo(PrecopyArgs { fd: FdRef::Previous, argsz: None, flags: 0 }));
        let steps = vec![set(MigState::PreCopy), info];
        // The SET reached new PCs too: it has no variants.
        nb.offer(&steps, &[vec![1], vec![2]], &[true, false], &BTreeSet::from([1, 2]));
        assert_eq!(nb.len(), 2, "again and other fd of the PRECOPY_INFO (on previous: not stale)");
        nb.offer(&steps, &[vec![1], vec![2]], &[true, false], &BTreeSet::from([2]));
        assert_eq!(nb.len(), 2, "the same path is not offered twice");
        let first = nb.take_next().expect("queued");
        let second = nb.take_next().expect("queued");
        assert_eq!(first.steps.len(), 3);
        let Op::PrecopyInfo(p) = &second.steps[1].op else { panic!("{:?}", second.steps) };
        assert_eq!(p.fd, FdRef::Current);
        nb.done(true);
        nb.done(false);
        assert_eq!((nb.runs, nb.finds), (2, 1));
    }

    #[test]
    fn the_stale_variant_reopens_the_file_and_makes_the_call_on_the_first_one() {
        // Arrange: STOP_COPY from STOP opened a file on device B; a PRECOPY_INFO on it was new.
        let info = |fd| Step::new(Op::PrecopyInfo(PrecopyArgs { fd, argsz: None, flags: 0 })).on("B");
        let steps = vec![
            set(MigState::Stop).on("B"),
            set(MigState::Running),
            set(MigState::StopCopy).on("B"),
            Step::new(Op::GetState).on("B"),
            info(FdRef::Current),
        ];
        let mut nb = Neighbours::default();
        // Act
        nb.offer(
            &steps,
            &[vec![], vec![], vec![1], vec![], vec![2]],
            &[false, false, true, false, false],
            &BTreeSet::from([2]),
        );
        // Assert: back to STOP on B, the SET and the GET again, the call on `previous`.
        let stale =
            std::iter::from_fn(|| nb.take_next()).find(|n| n.variant == Variant::Stale).expect("a stale run");
        let mut want = steps[..4].to_vec();
        want.push(set(MigState::Stop).on("B"));
        want.extend_from_slice(&steps[2..4]);
        want.push(info(FdRef::Previous));
        assert_eq!(stale.steps, want);
        // Without a SET that opened a file on the call's device: no stale run.
        let mut nb = Neighbours::default();
        nb.offer(
            &steps,
            &[vec![], vec![], vec![1], vec![], vec![2]],
            &[false, true, false, false, false],
            &BTreeSet::from([2]),
        );
        assert!(std::iter::from_fn(|| nb.take_next()).all(|n| n.variant != Variant::Stale));
    }
}
