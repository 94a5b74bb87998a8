//! The data path of a recording: reads of a saving fd become read steps with their byte spans,
//! writes of a resuming fd become write steps, and a write that is exactly (or one bit off, or
//! a cut of) what earlier reads returned replays that capture (`Builder::assign_captures`).

use super::*;

impl Builder {
    /// Reads from index `i` on: returns the index after the events consumed.
    pub(super) fn reads(&mut self, events: &[Event], i: usize) -> usize {
        let e = &events[i];
        let Kind::Read(t) = &e.kind else { return i + 1 };
        let Some(d) = self.fds.get(&(e.pid, t.fd)).cloned() else { return i + 1 };
        // The run of consecutive reads of this fd.
        let mut j = i;
        while j < events.len()
            && matches!(&events[j].kind, Kind::Read(x) if x.fd == t.fd && events[j].pid == e.pid)
        {
            j += 1;
        }
        let run: Vec<&Transfer> = events[i..j]
            .iter()
            .filter_map(|x| if let Kind::Read(t) = &x.kind { Some(t) } else { None })
            .collect();
        let eof_at = run.iter().position(|t| t.ret == Ret::Ok(0));
        let chunk = |count: u64| count.clamp(1, u64::from(u32::MAX)) as u32;
        let default_chunk = ReadArgs::default().chunk;
        let describe = |ts: &[&Transfer]| -> String {
            ts.iter()
                .map(|t| match t.ret {
                    Ret::Ok(n) => format!("{}({}) = {n}", t.call, t.count),
                    r => format!("{}({}) {}", t.call, t.count, r.describe()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut k = 0;
        let mut groups: Vec<(usize, usize, bool)> = Vec::new();
        // Only in STOP_COPY is a read() of 0 the end of the stream (in PRE_COPY it is a
        // temporary end, and QEMU reads once per iteration).
        let stop_copy = self.state.get(&t.dev) == Some(&MigState::StopCopy.raw());
        if let Some(eof) = eof_at.filter(|n| *n >= 1 && stop_copy) {
            // Reads up to and including the one that returned 0: one drain step.
            groups.push((0, eof + 1, true));
            k = eof + 1;
        }
        while k < run.len() {
            groups.push((k, k + 1, false));
            k += 1;
        }
        for (a, z, drain) in groups {
            let ts = &run[a..z];
            let moved: u64 =
                ts.iter().map(|t| if let Ret::Ok(n) = t.ret { n.max(0) as u64 } else { 0 }).sum();
            let c = chunk(ts[0].count);
            let args = ReadArgs {
                fd: FdRef::from(d.name.as_str()),
                chunk: if c == default_chunk { default_chunk } else { c },
                once: !drain,
                ..ReadArgs::default()
            };
            let note = format!("recorded ({}): {}", who(&events[i + a]), describe(ts));
            let dev = ts[0].dev.clone();
            let start = ts[0].pos;
            let st = self.step(Op::Read(args), &dev, true, note);
            st.read = Some(ReadSpan { stream: d.key, start, end: start + moved });
            if let Some((_, _, bytes)) = self.streams.get_mut(&d.key) {
                let kept_all = ts.iter().all(|t| t.bytes.is_some() || !t.ret.is_ok() || t.ret == Ret::Ok(0));
                match (bytes.as_mut(), kept_all) {
                    (Some(b), true) => {
                        for t in ts {
                            if let Some(x) = &t.bytes {
                                b.extend_from_slice(x);
                            }
                        }
                    }
                    _ => *bytes = None,
                }
            }
        }
        j
    }

    /// Writes from index `i` on (consecutive writes of one fd are one step).
    pub(super) fn writes(&mut self, events: &[Event], i: usize) -> usize {
        let e = &events[i];
        let Kind::Write(t) = &e.kind else { return i + 1 };
        let Some(d) = self.fds.get(&(e.pid, t.fd)).cloned() else { return i + 1 };
        let mut j = i;
        while j < events.len()
            && matches!(&events[j].kind, Kind::Write(x) if x.fd == t.fd && events[j].pid == e.pid && x.ret.is_ok())
        {
            j += 1;
        }
        // A failed write ends the step (it is part of it: the replay stops at the error too).
        if j < events.len()
            && matches!(&events[j].kind, Kind::Write(x) if x.fd == t.fd && events[j].pid == e.pid)
        {
            j += 1;
        }
        let run: Vec<&Transfer> = events[i..j]
            .iter()
            .filter_map(|x| if let Kind::Write(t) = &x.kind { Some(t) } else { None })
            .collect();
        let mut bytes = Some(Vec::new());
        let mut sizes = Vec::new();
        for t in &run {
            let n = match t.ret {
                Ret::Ok(n) => n.max(0) as u64,
                Ret::Err(_) => t.count,
            };
            sizes.push(n.min(u64::from(u32::MAX)) as u32);
            match (&mut bytes, &t.bytes) {
                (Some(b), Some(x)) => b.extend_from_slice(x),
                _ => bytes = None,
            }
        }
        let note = format!(
            "recorded ({}): {}",
            who(e),
            run.iter()
                .map(|t| match t.ret {
                    Ret::Ok(n) => format!("{}({}) = {n}", t.call, t.count),
                    r => format!("{}({}) {}", t.call, t.count, r.describe()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let dev = t.dev.clone();
        let args = WriteArgs {
            fd: FdRef::from(d.name.as_str()),
            data: Source::Zeros(0),
            mutate: None,
            segment: Segmentation::default(),
            offset: None,
            keep_going: false,
            from_thread: false,
        };
        let st = self.step(Op::Write(args), &dev, true, note);
        st.write = Some(WriteSpan { bytes, sizes });
        j
    }

    /// Matches writes to read steps and names the captures.
    ///
    /// QEMU forwards every byte it reads from a saving fd, in order, and each destination
    /// write carries what some source reads returned. So the read steps of a stream are cut
    /// into consecutive groups, each ending where a destination write's bytes end, and each
    /// group is one capture that the write replays. Empty reads (PRE_COPY iterations that
    /// found nothing) join the next group: on a device that has data there, the replay still
    /// forwards all of it, and the destination gets the whole stream.
    pub(super) fn assign_captures(&mut self) {
        // Read steps per stream, in order: (item index, start, end).
        #[allow(clippy::type_complexity)]
        let mut reads: BTreeMap<(i32, i32, u64), Vec<(usize, u64, u64)>> = BTreeMap::new();
        for (ix, it) in self.items.iter().enumerate() {
            if let Item::Step(Step { read: Some(r), .. }) = it {
                reads.entry(r.stream).or_default().push((ix, r.start, r.end));
            }
        }
        // Per stream: how many of its read steps are already grouped, and the byte offset
        // they reach.
        let mut done: BTreeMap<(i32, i32, u64), (usize, u64)> = BTreeMap::new();
        // Capture of each read step: (name, append).
        let mut capture: HashMap<usize, (String, bool)> = HashMap::new();
        let mut named = 0usize;
        let n_items = self.items.len();
        for wi in 0..n_items {
            let Item::Step(Step { write: Some(w), dev, .. }) = &self.items[wi] else { continue };
            let wdev = dev.clone();
            let Some(wb) = w.bytes.clone() else { continue };
            let sizes = w.sizes.clone();
            let mut found: Option<(String, Option<Mutation>, String)> = None;
            if !wb.is_empty() {
                for (key, steps) in &reads {
                    let Some((sdev, _, Some(all))) = self.streams.get(key) else { continue };
                    let (first, from) = done.get(key).copied().unwrap_or((0, 0));
                    // Read steps before the write, not yet grouped.
                    let avail: Vec<&(usize, u64, u64)> =
                        steps[first..].iter().take_while(|x| x.0 < wi).collect();
                    let from_u = from as usize;
                    if from_u >= all.len() || avail.is_empty() {
                        continue;
                    }
                    let rest = &all[from_u..];
                    // The group ends at the first step whose end matches the write's length.
                    let mut m: Option<(usize, Option<Mutation>)> = None;
                    for (k, st) in avail.iter().enumerate() {
                        if st.1 == st.2 {
                            continue;
                        }
                        let len = (st.2 - from) as usize;
                        if len > rest.len() {
                            break;
                        }
                        let src = &rest[..len];
                        if src == wb.as_slice() {
                            m = Some((k, None));
                            break;
                        }
                        if src.len() == wb.len() {
                            if let Some((o, b)) = one_bit(src, &wb) {
                                m = Some((k, Some(Mutation::FlipBit { offset: o as u64, bit: b })));
                            }
                            break;
                        }
                    }
                    // A write that is a proper prefix of everything left is a cut stream.
                    if m.is_none() && wb.len() < rest.len() && rest.starts_with(&wb) {
                        let last = avail.iter().rposition(|x| x.1 != x.2).unwrap_or(avail.len() - 1);
                        if avail[last].2 as usize == all.len() {
                            m = Some((last, Some(Mutation::Truncate(wb.len() as u64))));
                        }
                    }
                    let Some((k, mutation)) = m else { continue };
                    named += 1;
                    let name = format!("{}{named}", sdev.to_lowercase());
                    for (j, st) in avail[..=k].iter().enumerate() {
                        capture.insert(st.0, (name.clone(), j > 0));
                    }
                    done.insert(*key, (first + k + 1, avail[k].2));
                    found = Some((name, mutation, sdev.clone()));
                    break;
                }
            }
            let Item::Step(st) = &mut self.items[wi] else { continue };
            let Op::Write(args) = &mut st.op else { continue };
            if sizes.len() > 1 {
                let head = &sizes[..sizes.len() - 1];
                args.segment = if head.iter().all(|s| *s == sizes[0]) && sizes[sizes.len() - 1] <= sizes[0] {
                    Segmentation::Fixed(sizes[0].max(1))
                } else {
                    Segmentation::Cycle(sizes.iter().map(|s| (*s).max(1)).collect())
                };
            }
            match found {
                Some((name, m, sdev)) => {
                    args.data = Source::Stream(StreamName(name));
                    args.mutate = m;
                    if sdev != wdev {
                        self.uses.cross_device = true;
                    }
                }
                None if wb.is_empty() => args.data = Source::Zeros(0),
                None => {
                    args.data = Source::Hex(crate::record::event::hex(&wb));
                    st.note.push_str("; the bytes match no recorded read: written as literal bytes");
                }
            }
        }
        for (ix, (name, append)) in capture {
            if let Item::Step(Step { op: Op::Read(a), .. }) = &mut self.items[ix] {
                a.capture = Some(StreamName(name));
                a.append = append;
            }
        }
    }
}

/// The single bit by which `a` and `b` (same length) differ, if exactly one.
fn one_bit(a: &[u8], b: &[u8]) -> Option<(usize, u8)> {
    let mut found = None;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = x ^ y;
        if d == 0 {
            continue;
        }
        if found.is_some() || d.count_ones() != 1 {
            return None;
        }
        found = Some((i, d.trailing_zeros() as u8));
    }
    found
}
