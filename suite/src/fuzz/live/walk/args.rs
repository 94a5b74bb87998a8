//! The arguments of a walk's steps: target states (biased towards uncovered (cur, new)
//! pairs), data-fd references, read and write arguments, stream mutations and segmentations,
//! and the save/restore macros that capture a stream and replay it into a device.

use super::*;

impl Walker {
    pub(super) fn target(
        &mut self,
        cur: Option<MigState>,
        flags: MigFlags,
        covered: Option<&BTreeSet<(MigState, MigState)>>,
    ) -> StateArg {
        let mut states = flags.states();
        if states.is_empty() {
            // Flags without STOP_COPY define no state: try them all.
            states = MigState::ALL.to_vec();
        }
        if let (Some(c), Some(cov)) = (cur, covered)
            && self.rng.chance(1, 3)
        {
            let missing: Vec<MigState> = states.iter().copied().filter(|n| !cov.contains(&(c, *n))).collect();
            if !missing.is_empty() {
                return StateArg::Named(*self.rng.pick(&missing));
            }
        }
        match self.rng.below(20) {
            0 => StateArg::Raw(*self.rng.pick(&[8u32, 9, 255, 0xffff_ffff])),
            1 => StateArg::Named(MigState::Error),
            2 => {
                let unsupported: Vec<MigState> =
                    MigState::ALL.iter().copied().filter(|s| !s.supported_by(flags)).collect();
                StateArg::Named(
                    unsupported
                        .get(self.rng.below(unsupported.len() as u64) as usize)
                        .copied()
                        .unwrap_or(MigState::Error),
                )
            }
            _ => StateArg::Named(*self.rng.pick(&states)),
        }
    }

    /// The device under test two times in three, else a peer.
    pub(in crate::fuzz::live) fn pick_dev(&mut self) -> usize {
        if self.devs.len() < 2 || self.rng.chance(2, 3) {
            0
        } else {
            1 + self.rng.below(self.devs.len() as u64 - 1) as usize
        }
    }

    pub(super) fn fd_ref(&mut self) -> FdRef {
        if self.rng.chance(1, 10) { FdRef::Previous } else { FdRef::Current }
    }

    pub(super) fn read_args(&mut self, state: Option<MigState>) -> ReadArgs {
        let whole = state == Some(MigState::StopCopy) && self.rng.chance(2, 3);
        let capture = if self.rng.chance(1, 2) {
            let i = self.rng.below(CAPTURES.len() as u64) as usize;
            Some(StreamName(CAPTURES[i].to_string()))
        } else {
            None
        };
        // Only a STOP_COPY read goes to the end of the stream: a PRE_COPY stream read in small
        // pieces may never reach a temporary end (the device dirties state faster).
        let once = !whole && self.rng.chance(1, 2);
        let fd = self.fd_ref();
        let mut max = if whole || once { None } else { Some(self.rng.range(1, 64 << 10)) };
        let chunk = *self.rng.pick(&[1u32 << 20, 4096, 4096, 64, 24, 7, 4095, 4097]);
        if whole && chunk < 4095 {
            // A read to the end in small pieces is bounded to ~1000 read() calls: a stream that
            // never ends (a stale fd that stays readable) would otherwise take --max-stream / 7
            // calls, minutes; large pieces still find a stream without an end (--max-stream).
            max = Some(u64::from(chunk) * 1024);
        }
        ReadArgs {
            fd,
            max,
            chunk,
            once,
            offset: if self.rng.chance(1, 30) { Some(0) } else { None },
            append: capture.is_some() && self.rng.chance(1, 3),
            capture,
        }
    }

    pub(super) fn mutation(&mut self) -> Option<Mutation> {
        if !self.rng.chance(1, 4) {
            return None;
        }
        Some(self.stream_mutation())
    }

    /// A change to a stream before it is written: truncations, bit flips, splices with the
    /// other capture, nothing at all.
    pub(in crate::fuzz::live) fn stream_mutation(&mut self) -> Mutation {
        match self.rng.below(8) {
            6 => Mutation::Splice {
                other: StreamName((*self.rng.pick(&CAPTURES)).to_string()),
                at: self.rng.below(1 << 12),
            },
            7 => Mutation::SpliceAt {
                other: StreamName((*self.rng.pick(&CAPTURES)).to_string()),
                num: self.rng.range(1, 4) as u32,
                den: 4,
            },
            _ => self.simple_mutation(),
        }
    }

    pub(super) fn simple_mutation(&mut self) -> Mutation {
        match self.rng.below(6) {
            0 => Mutation::DropTail(self.rng.range(1, 16)),
            1 => Mutation::Fraction { num: 1, den: self.rng.range(2, 4) as u32 },
            2 => Mutation::FlipAt { num: self.rng.below(4) as u32, den: 4, bit: self.rng.below(8) as u8 },
            3 => Mutation::FlipBit { offset: self.rng.below(1 << 16), bit: self.rng.below(8) as u8 },
            4 => Mutation::Truncate(self.rng.below(64)),
            _ => Mutation::Empty,
        }
    }

    pub(super) fn write_args(&mut self, captured: &[Option<String>]) -> WriteArgs {
        let have: Vec<&String> = captured.iter().flatten().collect();
        let data = if have.is_empty() || self.rng.chance(1, 10) {
            Source::Zeros(self.rng.range(1, 64) as u32)
        } else {
            Source::Stream(StreamName((*self.rng.pick(&have)).clone()))
        };
        WriteArgs {
            fd: self.fd_ref(),
            data,
            mutate: self.mutation(),
            segment: self.segmentation(),
            offset: if self.rng.chance(1, 30) { Some(0) } else { None },
            keep_going: false,
            from_thread: false,
        }
    }

    pub(in crate::fuzz::live) fn segmentation(&mut self) -> Segmentation {
        match self.rng.below(6) {
            0 => Segmentation::Fixed(*self.rng.pick(&[1u32, 7, 8, 24, 4095, 4096])),
            1 => Segmentation::Cycle(vec![1, 7, 4095]),
            2 => Segmentation::Random { seed: self.rng.next_u64(), max: 512 },
            _ => Segmentation::Whole,
        }
    }

    /// STOP, STOP_COPY, read the stream to its end into a capture, STOP, on device `d`.
    pub(in crate::fuzz::live) fn save_macro(&mut self, d: usize, draft: &mut Draft) {
        let i = self.rng.below(CAPTURES.len() as u64) as usize;
        let label = if d == 0 { None } else { Some(self.devs[d].label.clone()) };
        let on = |s: Step| match &label {
            Some(l) => s.on(l),
            None => s,
        };
        let set = |s: MigState| Step::new(Op::SetState(StateArg::Named(s))).oracle();
        let devs = self.devs.clone();
        draft.push(&devs, on(set(MigState::Stop)));
        draft.push(&devs, on(set(MigState::StopCopy)));
        draft.push(
            &devs,
            on(Step::new(Op::Read(ReadArgs {
                capture: Some(StreamName(CAPTURES[i].to_string())),
                ..ReadArgs::default()
            }))
            .oracle()),
        );
        draft.push(&devs, on(set(MigState::Stop)));
    }

    /// Reset, RESUMING, write a capture (sometimes mutated), then leave RESUMING, on device
    /// `d`.
    pub(in crate::fuzz::live) fn restore_macro(&mut self, d: usize, draft: &mut Draft) {
        let have: Vec<&String> = draft.captured.iter().flatten().collect();
        let Some(name) = have.first().map(|s| (*s).clone()) else { return };
        let name = if have.len() > 1 && self.rng.chance(1, 2) { have[1].clone() } else { name };
        let label = if d == 0 { None } else { Some(self.devs[d].label.clone()) };
        let on = |s: Step| match &label {
            Some(l) => s.on(l),
            None => s,
        };
        let set = |s: MigState| Step::new(Op::SetState(StateArg::Named(s))).oracle();
        let devs = self.devs.clone();
        if self.rng.chance(1, 2) {
            draft.push(&devs, on(Step::new(Op::Reset).oracle()));
        }
        draft.push(&devs, on(set(MigState::Stop)));
        draft.push(&devs, on(set(MigState::Resuming)));
        let write = WriteArgs {
            fd: FdRef::Current,
            data: Source::Stream(StreamName(name)),
            mutate: self.mutation(),
            segment: self.segmentation(),
            offset: None,
            keep_going: false,
            from_thread: false,
        };
        draft.push(&devs, on(Step::new(Op::Write(write)).oracle()));
        let to = *self.rng.pick(&[MigState::Stop, MigState::Running, MigState::Running]);
        draft.push(&devs, on(set(to)));
        if self.rng.chance(1, 3) {
            draft.push(&devs, on(Step::new(Op::GetState).oracle()));
        }
    }
}
