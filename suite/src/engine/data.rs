//! The data path: reads and writes on data fds, with the stream captures, views and mutations
//! of sequences, and `bad_buffer` (a read or write whose user buffer is partly unmapped).

use super::capture::{Capture, MAX_WRITE, Provenance, Segments, View};
use super::exec::{READ_BUF, obs_of};
use super::{Engine, HarnessError};
use crate::device::Device;
use crate::hash::StreamHash;
use crate::op::{BadBufferArgs, BadCall, ReadArgs, Source, WriteArgs};
use crate::oracle::Violation;
use crate::oracle::model::{Observation, Piece, StreamEnd};

impl Engine {
    pub(super) fn read_loop(
        &mut self,
        si: usize,
        fd: i32,
        a: &ReadArgs,
    ) -> Result<Observation, HarnessError> {
        let chunk = (a.chunk.max(1) as usize).min(READ_BUF);
        let mut buf = self.take_buf(chunk);
        if let Some(offset) = a.offset {
            let r = self.slots[si].dev.data_pread(fd, &mut buf[..chunk], offset);
            self.give_buf(buf);
            let mut obs = obs_of(&r);
            obs.bytes = Some(r.unwrap_or(0) as u64);
            // A driver that serves pread() consumes stream bytes: keep the position right.
            if let Some(n) = obs.bytes.filter(|n| *n > 0) {
                *self.slots[si].fds.pos.entry(fd).or_default() += n;
            }
            return Ok(obs);
        }
        let mut capture = match &a.capture {
            Some(name) if a.append => Some(self.streams.remove(&name.0).unwrap_or_default()),
            Some(_) => Some(Capture::default()),
            None => None,
        };
        // A capture that already holds bytes keeps its own running hash; a new one ends
        // with the hash of what this loop reads.
        let mut cap_hash = capture.as_mut().filter(|c| !c.is_empty()).map(Capture::take_hash);
        let mut hash = StreamHash::default();
        let want_hash = self.hash_reads || (capture.is_some() && cap_hash.is_none());
        let start_pos = self.slots[si].fds.pos.get(&fd).copied().unwrap_or(0);
        let device_type = self.slots[si].dev.info().model.clone();
        let session = format!("{}:{fd}", self.slots[si].label);
        let in_stop_copy = self.slots[si].model.state == Some(crate::state::MigState::StopCopy);
        let limit = a.max.unwrap_or(self.opts.max_stream);
        let mut total = 0u64;
        let end;
        let mut errno = None;
        let mut pacer = Pacer::default();
        loop {
            if pacer.due()
                && let Some(p) = &mut self.progress
            {
                p(self.current_step, "");
            }
            let dev = self.slots[si].dev.as_mut();
            if total >= limit {
                end = if a.max.is_some() { StreamEnd::Limit } else { StreamEnd::Overflow };
                break;
            }
            let want = ((limit - total) as usize).min(chunk);
            match dev.data_read(fd, &mut buf[..want]) {
                Ok(0) => {
                    end = StreamEnd::Eof;
                    break;
                }
                Ok(n) => {
                    let n = n.min(want);
                    if want_hash {
                        hash.update(&buf[..n]);
                    }
                    if let Some(c) = &mut capture {
                        if let Some(h) = &mut cap_hash {
                            h.update(&buf[..n]);
                        }
                        c.append_unhashed(&buf[..n]).map_err(HarnessError::KeepCapture)?;
                    }
                    total += n as u64;
                    if a.once {
                        end = StreamEnd::Once;
                        break;
                    }
                }
                Err(e) => {
                    end = StreamEnd::Errno(e);
                    if total == 0 {
                        errno = Some(e);
                    }
                    break;
                }
            }
        }
        self.give_buf(buf);
        let end_pos = start_pos + total;
        self.slots[si].fds.pos.insert(fd, end_pos);
        let eof = end == StreamEnd::Eof && in_stop_copy;
        if eof {
            // End of stream at `end_pos`: a capture that stopped exactly there (a read that
            // got the last bytes without seeing the 0 yet) holds the whole rest of the stream.
            for c in self.streams.values_mut() {
                if let Provenance::Stream { session: s, end: e, eof: ceof, .. } = &mut c.provenance
                    && *s == session
                    && *e == end_pos
                {
                    *ceof = true;
                }
            }
        }
        if let (Some(name), Some(mut c)) = (&a.capture, capture) {
            c.set_hash(cap_hash.unwrap_or_else(|| hash.clone()));
            c.provenance = match c.provenance {
                // Nothing appended (the read failed or hit the end): the capture is unchanged.
                Provenance::Stream { session: s, start, end: e, eof: ceof, device_type: t }
                    if total == 0 && !c.is_empty() =>
                {
                    let ceof = ceof || (eof && s == session && e == end_pos);
                    Provenance::Stream { device_type: t, session: s, start, end: e, eof: ceof }
                }
                p @ (Provenance::Mixed | Provenance::Literal) if total == 0 && !c.is_empty() => p,
                _ if c.len() == total => {
                    Provenance::Stream { device_type, session, start: start_pos, end: end_pos, eof }
                }
                Provenance::Stream { device_type: t, session: s, start, end, .. }
                    if s == session && end == start_pos =>
                {
                    Provenance::Stream { device_type: t, session: s, start, end: end_pos, eof }
                }
                _ => Provenance::Mixed,
            };
            self.streams.insert(name.0.clone(), c);
        }
        Ok(Observation {
            errno,
            bytes: Some(total),
            end: Some(end),
            hash: want_hash.then(|| hash.value()),
            ..Default::default()
        })
    }

    /// What a write puts into a resume session, for the oracle.
    pub(super) fn piece(&self, src: &Source, mutation: Option<&crate::op::Mutation>) -> Option<Piece> {
        use crate::op::Mutation;
        if let Some(Mutation::Splice { other, .. } | Mutation::SpliceAt { other, .. }) = mutation {
            return self.spliced_piece(src, mutation, other);
        }
        let Source::Stream(name) = src else {
            return Some(Piece::Invalid("literal bytes, not a saved stream".to_string()));
        };
        let c = self.streams.get(&name.0)?;
        let Provenance::Stream { device_type, session, start, end, eof } = c.provenance.clone() else {
            let flipped = matches!(mutation, Some(Mutation::FlipBit { .. } | Mutation::FlipAt { .. }));
            return match mutation.map(|m| m.kept_prefix(c.len())) {
                Some(Some(0)) => None,
                _ if flipped && !c.is_empty() => Some(Piece::Invalid(format!(
                    "capture `{name}` (reads of several saving streams) with a bit flipped"
                ))),
                _ => Some(Piece::Unknown(mixed(&name.0))),
            };
        };
        let len = end - start;
        // Unmutated, or a prefix of it: that part of the saving stream (a mutation that keeps
        // nothing: no piece).
        let kept = match mutation {
            None => Some(len),
            Some(m) => m.kept_prefix(len),
        };
        if let Some(keep) = kept {
            return (keep > 0 || mutation.is_none()).then(|| Piece::Stream {
                device_type,
                session,
                start,
                end: start + keep,
                eof: eof && keep == len,
                cut: keep < len,
            });
        }
        let at = match mutation {
            Some(Mutation::FlipBit { offset, .. }) => *offset,
            Some(Mutation::FlipAt { num, den, .. }) => crate::op::fraction_of(len, *num, *den),
            _ => return None,
        };
        (len > 0).then(|| Piece::Invalid(format!("a bit of byte {} is flipped", at % len)))
    }

    /// A splice (of a capture or of literal bytes) with another capture: only corrupt if the
    /// result differs from both sources (captures of an unchanged device are identical, and so
    /// is their splice); otherwise it is whichever source it equals.
    pub(super) fn spliced_piece(
        &self,
        src: &Source,
        mutation: Option<&crate::op::Mutation>,
        other: &crate::op::StreamName,
    ) -> Option<Piece> {
        let literal = self.source_capture(src).ok()?;
        let (base, base_name) = match (src, &literal) {
            (Source::Stream(n), _) => (self.streams.get(&n.0)?, n.0.as_str()),
            (_, Some(c)) => (c, "literal"),
            _ => return None,
        };
        let o = self.streams.get(&other.0)?;
        let view = View::new(base, mutation, Some(o));
        if view.is_empty() {
            return None;
        }
        let h = view_hash(&view);
        let as_piece = |c: &Capture, name: &str| match c.provenance.clone() {
            Provenance::Stream { device_type, session, start, end, eof } => {
                Piece::Stream { device_type, session, start, end, eof, cut: false }
            }
            Provenance::Literal => Piece::Invalid("literal bytes, not a saved stream".to_string()),
            Provenance::Mixed => Piece::Unknown(mixed(name)),
        };
        Some(if view.len() == base.len() && h == Some(base.hash()) {
            as_piece(base, base_name)
        } else if view.len() == o.len() && h == Some(o.hash()) {
            as_piece(o, &other.0)
        } else {
            Piece::Invalid(format!("`{base_name}` and stream `{other}` are spliced and differ from both"))
        })
    }

    /// Bytes for a write: a captured stream (through a mutation) or literal bytes.
    pub(super) fn source_capture(&self, src: &Source) -> Result<Option<Capture>, HarnessError> {
        match src {
            Source::Stream(_) => Ok(None),
            Source::Zeros(n) => {
                Capture::from_bytes(&vec![0u8; *n as usize]).map(Some).map_err(HarnessError::WriteData)
            }
            Source::Hex(h) => {
                let clean: String = h.chars().filter(|c| !c.is_whitespace()).collect();
                if !clean.len().is_multiple_of(2) {
                    return Err(HarnessError::OddHexDigits(h.clone()));
                }
                let bytes: Result<Vec<u8>, _> =
                    (0..clean.len()).step_by(2).map(|i| u8::from_str_radix(&clean[i..i + 2], 16)).collect();
                let bytes = bytes.map_err(|_| HarnessError::NotHex(h.clone()))?;
                Capture::from_bytes(&bytes).map(Some).map_err(HarnessError::WriteData)
            }
        }
    }

    pub(super) fn write_loop(
        &mut self,
        si: usize,
        fd: i32,
        a: &WriteArgs,
    ) -> Result<Observation, HarnessError> {
        let mut buf = std::mem::take(&mut self.buf);
        let obs = self.write_with(si, fd, a, &mut buf);
        self.give_buf(buf);
        obs
    }

    pub(super) fn write_with(
        &mut self,
        si: usize,
        fd: i32,
        a: &WriteArgs,
        buf: &mut Vec<u8>,
    ) -> Result<Observation, HarnessError> {
        let literal = self.source_capture(&a.data)?;
        let base = match (&a.data, &literal) {
            (Source::Stream(name), _) => self
                .streams
                .get(&name.0)
                .ok_or_else(|| HarnessError::NoCapture { name: name.to_string(), by: "read" })?,
            (_, Some(c)) => c,
            _ => return Err(HarnessError::NoData),
        };
        let other = match &a.mutate {
            Some(crate::op::Mutation::Splice { other, .. } | crate::op::Mutation::SpliceAt { other, .. }) => {
                Some(
                    self.streams
                        .get(&other.0)
                        .ok_or_else(|| HarnessError::NoSpliceStream(other.to_string()))?,
                )
            }
            _ => None,
        };
        let view = View::new(base, a.mutate.as_ref(), other);
        let dev = self.slots[si].dev.as_mut();
        let step = self.current_step;
        let progress = &mut self.progress;
        if let Some(offset) = a.offset {
            let mut buf = vec![0u8; view.len().min(4096) as usize];
            let n = view.read_at(0, &mut buf).map_err(HarnessError::WriteData)?;
            let r = dev.data_pwrite(fd, &buf[..n], offset);
            let mut obs = obs_of(&r);
            obs.bytes = Some(r.unwrap_or(0) as u64);
            return Ok(obs);
        }
        // Unmutated bytes (or a prefix of them) go to the device straight from the capture;
        // others are read through the view into `buf`.
        let direct = if a.mutate.as_ref().is_none_or(|m| m.kept_prefix(0).is_some()) {
            base.contiguous().ok().filter(|c| c.bytes().len() as u64 >= view.len())
        } else {
            None
        };
        let need = if direct.is_some() { 0 } else { view.len().min(MAX_WRITE) as usize };
        if buf.len() < need {
            *buf = vec![0u8; need];
        }
        let buf = &mut buf[..need];
        let mut run = |dev: &mut dyn Device| -> Result<Observation, HarnessError> {
            let mut pos = 0u64;
            let mut accepted = 0u64;
            let mut obs = Observation::ok();
            let mut pacer = Pacer::default();
            // `buf[..held]` holds the view's bytes from `held_at`: read a buffer-full at a
            // time, so small segments of a spilled capture cost no read each.
            let (mut held_at, mut held) = (0u64, 0usize);
            let direct_bytes = direct.as_ref().map(|d| d.bytes());
            let mapped = matches!(direct, Some(super::capture::Contiguous::Mapped { .. }));
            for size in Segments::new(&a.segment, view.len()) {
                if pacer.due()
                    && let Some(p) = progress.as_mut()
                {
                    p(step, "");
                }
                let piece: &[u8] = match direct_bytes {
                    Some(d) => &d[pos as usize..pos as usize + size],
                    None => {
                        if pos + size as u64 > held_at + held as u64 {
                            let want = ((view.len() - pos) as usize).min(buf.len());
                            held = view.read_at(pos, &mut buf[..want]).map_err(HarnessError::ReadCapture)?;
                            held_at = pos;
                        }
                        let from = (pos - held_at) as usize;
                        &buf[from..from + size.min(held - from)]
                    }
                };
                let n = piece.len();
                let mut off = 0;
                while off < n {
                    match dev.data_write(fd, &piece[off..n]) {
                        Ok(0) => {
                            obs.notes.push(format!("write() returned 0 at byte {}", pos + off as u64));
                            off = n;
                        }
                        Ok(w) => {
                            let w = w.min(n - off);
                            off += w;
                            accepted += w as u64;
                        }
                        Err(e) => {
                            if obs.errno.is_none() {
                                obs.errno = Some(e);
                                obs.error_at = Some(pos + off as u64);
                            }
                            if !a.keep_going {
                                obs.bytes = Some(accepted);
                                return Ok(obs);
                            }
                            off = n;
                        }
                    }
                }
                pos += n as u64;
                if mapped && let Some(d) = &direct {
                    d.release_before(pos);
                }
            }
            obs.bytes = Some(accepted);
            Ok(obs)
        };
        if a.from_thread {
            std::thread::scope(|s| s.spawn(move || run(dev)).join())
                .map_err(|_| HarnessError::WriterPanicked)?
        } else {
            run(dev)
        }
    }

    /// `bad_buffer`: a data-fd call with a user buffer the kernel cannot use entirely. The
    /// engine observes what came back and lets the model follow it: bytes a read returned count
    /// as read (their content unknown), bytes a write got accepted are a piece that cannot be a
    /// valid stream, a refused write marks the resume session as having had a failed write. The
    /// failure itself (EFAULT) is the caller's error and is not judged.
    pub(super) fn bad_buffer(
        &mut self,
        si: usize,
        a: &BadBufferArgs,
    ) -> Result<(Observation, Vec<Violation>), HarnessError> {
        let fd = self.fd(si, &a.fd)?;
        let (len, valid) = (a.len as usize, (a.valid as usize).min(a.len as usize));
        let slot = &mut self.slots[si];
        let r = slot.dev.data_bad_buffer(fd, a.call, len, valid);
        let mut obs = match r {
            Ok(n) => Observation { bytes: Some(n as u64), ..Observation::ok() },
            Err(e) => Observation::err(e),
        };
        obs.notes.push(format!("{len}-byte buffer, {valid} bytes of it mapped"));
        let n = obs.bytes.unwrap_or(0);
        let v = match a.call {
            BadCall::Read if n > 0 => {
                *slot.fds.pos.entry(fd).or_default() += n;
                let seen = Observation { bytes: Some(n), end: Some(StreamEnd::Once), ..Observation::ok() };
                slot.model.judge_read(fd, &seen)
            }
            BadCall::Write => {
                if n > 0 {
                    *slot.fds.pos.entry(fd).or_default() += n;
                }
                let piece = Piece::Invalid(
                    "bytes written from a buffer the kernel could not read entirely".to_string(),
                );
                slot.model.judge_write(fd, Some(piece), &obs)
            }
            _ => Vec::new(),
        };
        Ok((obs, v))
    }
}

/// Decides when a long loop sends a watchdog heartbeat: at most every 100 ms, looking at
/// the clock only every 256 iterations.
#[derive(Debug)]
pub(super) struct Pacer {
    n: u32,
    last: std::time::Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer { n: 0, last: std::time::Instant::now() }
    }
}

impl Pacer {
    pub(super) fn due(&mut self) -> bool {
        self.n = self.n.wrapping_add(1);
        if !self.n.is_multiple_of(256) {
            return false;
        }
        let now = std::time::Instant::now();
        if now.duration_since(self.last) >= std::time::Duration::from_millis(100) {
            self.last = now;
            true
        } else {
            false
        }
    }
}

/// The hash of a view's bytes (None if the capture cannot be read back).
pub(super) fn view_hash(view: &View<'_>) -> Option<u64> {
    let mut h = StreamHash::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = 0u64;
    while pos < view.len() {
        let n = view.read_at(pos, &mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Some(h.value())
}

/// Why a capture of reads from several saving streams cannot be judged.
fn mixed(name: &str) -> String {
    format!(
        "capture `{name}` joins reads of several saving streams: a valid stream only if they hold the same bytes, which the suite does not know"
    )
}
