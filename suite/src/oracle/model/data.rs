//! The data path of the model: what a resume session was given ([`Piece`], `ResumeLog`) and
//! the judges of reads, writes, positioned I/O, PRECOPY_INFO, poll and MIG_DATA_SIZE.

use super::*;

/// What one write step put into a resume session, as far as the suite knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Unmodified bytes `[start, end)` of the saving stream `session` of a device of
    /// `device_type`; `eof`: `end` is the end of that stream; `cut`: the stream is known to
    /// go on after `end` (a truncated capture or a short write). With neither, the suite has
    /// not seen where the stream ends.
    Stream { device_type: Option<String>, session: String, start: u64, end: u64, eof: bool, cut: bool },
    /// Anything else (mutated, literal bytes): why it cannot be a valid stream.
    Invalid(String),
    /// Bytes the suite cannot place in one saving stream but that may still be one (reads of
    /// several saving streams joined in one capture: streams of an unchanged device hold the
    /// same bytes, so the join can be a valid stream byte for byte): why it cannot tell.
    Unknown(String),
}

/// The data of the current resume session.
#[derive(Clone, Debug, Default)]
pub(super) struct ResumeLog {
    pieces: Vec<Piece>,
    /// A write of this session failed (the driver rejected some bytes).
    write_failed: bool,
    /// A SET leaving RESUMING failed in this session (the driver refused to load what it had):
    /// whether a driver takes more data and loads again after that, the uAPI does not say.
    pub(super) load_failed: bool,
}

impl ResumeLog {
    /// Whether `p` continues exactly what was written so far: bytes of the same saving stream
    /// from byte 0 on, without a gap or an overlap, before its end.
    pub(super) fn continued_by(&self, p: &Piece) -> bool {
        let Piece::Stream { session, start, .. } = p else { return false };
        let mut at = 0u64;
        for q in &self.pieces {
            match q {
                Piece::Stream { session: s, start: st, end, eof: false, .. } if s == session && *st == at => {
                    at = *end;
                }
                _ => return false,
            }
        }
        *start == at
    }

    /// Some(true): one complete compatible stream; Some(false): certainly not valid (with why);
    /// None: the suite cannot tell.
    pub(super) fn validity(&self, my_type: Option<&str>) -> (Option<bool>, String) {
        if self.pieces.is_empty() {
            return (Some(false), "the device accepted no data".to_string());
        }
        let mut expect_start = 0u64;
        let mut session: Option<&str> = None;
        let mut complete = false;
        let mut cut = false;
        for (i, p) in self.pieces.iter().enumerate() {
            match p {
                Piece::Invalid(why) => return (Some(false), why.clone()),
                Piece::Unknown(why) => {
                    // Where the stream stands after these bytes is unknown: only what is
                    // certainly invalid later on still decides.
                    return match self.pieces[i..].iter().find_map(|q| match q {
                        Piece::Invalid(w) => Some(w),
                        _ => None,
                    }) {
                        Some(w) => (Some(false), w.clone()),
                        None => (None, why.clone()),
                    };
                }
                Piece::Stream { device_type, session: s, start, end, eof, cut: c } => {
                    if let (Some(a), Some(b)) = (device_type.as_deref(), my_type)
                        && a != b
                    {
                        return (
                            Some(false),
                            format!("the stream comes from a device of type {a}, this one is {b}"),
                        );
                    }
                    match session {
                        // Two saving streams of the same device hold the same bytes while the
                        // device does not change: joined at the same offset they can be one
                        // valid stream byte for byte, which no driver can tell apart.
                        Some(prev) if prev != s => {
                            return (
                                None,
                                format!(
                                    "the data joins two saving streams ({prev} and {s}): valid only if they hold the same bytes there"
                                ),
                            );
                        }
                        _ => session = Some(s),
                    }
                    if complete {
                        return (Some(false), "data follows the end of a complete stream".to_string());
                    }
                    if *start != expect_start {
                        return (None, "the written pieces are not contiguous".to_string());
                    }
                    expect_start = *end;
                    complete = *eof;
                    cut = *c;
                }
            }
        }
        if !complete && cut {
            return (Some(false), format!("the stream is truncated after {expect_start} bytes"));
        }
        if !complete {
            return (None, format!("the suite did not see the stream end after {expect_start} bytes"));
        }
        if self.write_failed {
            return (None, "a write of the stream failed".to_string());
        }
        if self.load_failed {
            return (
                None,
                "an earlier load of this session failed (the uAPI does not say whether the session goes on after that)"
                    .to_string(),
            );
        }
        (Some(true), "one complete stream of a compatible device".to_string())
    }
}

impl Model {
    /// Judges a read loop on `fd` (`obs.bytes`, `obs.end`).
    pub fn judge_read(&mut self, fd: i32, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        let state = self.state;
        let Some(info) = self.fds.get_mut(&fd) else { return v };
        let bytes = obs.bytes.unwrap_or(0);
        info.read = info.read.saturating_add(bytes);
        if !info.saving {
            if bytes > 0 {
                v.push(Violation::new(
                    [V2_FD_003],
                    "read() on the resume fd fails (it is O_WRONLY)".to_string(),
                    format!("read returned {bytes} bytes"),
                ));
            }
            return v;
        }
        if let Some(cause) = info.ended {
            if bytes > 0 && cause != EndCause::Unknown {
                let clauses = cause.clauses();
                v.push(Violation {
                    clauses,
                    expected: format!(
                        "the old saving fd returns end of stream or an error after {}",
                        cause.describe()
                    ),
                    actual: format!("read returned {bytes} bytes"),
                });
            }
            return v;
        }
        match state {
            Some(MigState::PreCopy | MigState::PreCopyP2p) if obs.end == Some(StreamEnd::Eof) => {
                v.push(Violation::new(
                    [V2_PRECOPY_007],
                    "read() fails with ENOMSG at a temporary end of the PRE_COPY stream".to_string(),
                    format!("read returned 0 (end of stream) after {bytes} bytes"),
                ));
            }
            Some(MigState::StopCopy) => {
                if info.eof_seen && bytes > 0 {
                    v.push(Violation::new(
                        [V2_PRECOPY_008],
                        "after end of stream in STOP_COPY every read() returns 0".to_string(),
                        format!("read returned {bytes} more bytes"),
                    ));
                }
                match obs.end {
                    Some(StreamEnd::Errno(e)) if e != Errno::ENOMSG && e != Errno::EAGAIN => {
                        v.push(Violation::new(
                            [V2_SAVE_006],
                            "the STOP_COPY stream delivers the whole state and ends with read() returning 0"
                                .to_string(),
                            format!("read failed with {e} after {bytes} bytes"),
                        ));
                    }
                    Some(StreamEnd::Errno(Errno::ENOMSG)) => v.push(Violation::new(
                        [V2_PRECOPY_008],
                        "no ENOMSG in STOP_COPY: the end of stream is permanent (read returns 0)".to_string(),
                        format!("read failed with ENOMSG after {bytes} bytes"),
                    )),
                    Some(StreamEnd::Eof) => info.eof_seen = true,
                    Some(StreamEnd::Overflow) => v.push(Violation::new(
                        [V2_SAVE_006],
                        "the STOP_COPY stream reaches end of stream".to_string(),
                        format!("{bytes} bytes without end of stream (--max-stream)"),
                    )),
                    _ => {}
                }
            }
            _ => {}
        }
        v
    }

    /// Judges a write loop on `fd` that wrote `piece`.
    pub fn judge_write(&mut self, fd: i32, piece: Option<Piece>, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        let original = piece.clone();
        let Some(info) = self.fds.get(&fd) else { return v };
        if !info.saving
            && info.ended.is_none()
            && let Some(log) = &mut self.resume
        {
            // The device holds only what it accepted: a refused write adds nothing, a short
            // one a prefix.
            let accepted = obs.bytes.unwrap_or(0);
            let piece = match piece {
                Some(Piece::Stream { device_type, session, start, end, eof, cut }) if accepted > 0 => {
                    let kept = accepted.min(end - start);
                    Some(Piece::Stream {
                        device_type,
                        session,
                        start,
                        end: start + kept,
                        eof: eof && kept == end - start,
                        cut: cut || kept < end - start,
                    })
                }
                Some(Piece::Invalid(why)) if accepted > 0 => Some(Piece::Invalid(why)),
                Some(Piece::Unknown(why)) if accepted > 0 => Some(Piece::Unknown(why)),
                _ => None,
            };
            if obs.errno.is_some() {
                // After a refused write the driver may hold the session as broken: only a
                // refusal in a session without earlier failures says something about
                // segmentation.
                let continues = !log.write_failed && original.as_ref().is_some_and(|p| log.continued_by(p));
                log.write_failed = true;
                let was_valid = continues
                    && (log.pieces.is_empty()
                        || log.validity(self.facts.device_type.as_deref()).0 != Some(false));
                // Judge what the suite tried to write, not what the driver kept.
                let mut with = log.clone();
                with.pieces.extend(original.clone());
                // A valid stream of this device type that the driver refuses part of.
                if was_valid
                    && !matches!(with.validity(self.facts.device_type.as_deref()).0, Some(false))
                    && let Some(Piece::Stream { device_type, .. }) = &original
                    && device_type.as_deref() == self.facts.device_type.as_deref()
                {
                    v.push(Violation::new(
                        [V2_FD_001],
                        "writes of a valid stream of this device type are accepted in any segmentation"
                            .to_string(),
                        obs.summary(),
                    ));
                }
            }
            log.pieces.extend(piece);
        }
        let bytes = obs.bytes.unwrap_or(0);
        if info.saving {
            if bytes > 0 {
                v.push(Violation::new(
                    [V2_FD_003],
                    "write() on the saving fd fails (it is O_RDONLY)".to_string(),
                    format!("{bytes} bytes accepted"),
                ));
            }
        } else if let Some(cause) = info.ended
            && cause != EndCause::Unknown
            && bytes > 0
        {
            let mut clauses = cause.clauses();
            if matches!(cause, EndCause::Arc(_)) {
                clauses.push(DEBATE_POSTCOPY_003);
            }
            v.push(Violation {
                clauses,
                expected: format!("the old resume fd refuses data after {}", cause.describe()),
                actual: format!("{bytes} bytes accepted"),
            });
        }
        v
    }

    /// Judges a pread()/pwrite() at an offset on `fd`: data fds are streams (ESPIPE).
    pub fn judge_positioned(&mut self, fd: i32, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        let Some(info) = self.fds.get_mut(&fd) else { return v };
        let bytes = obs.bytes.unwrap_or(0);
        if obs.errno.is_none() && bytes > 0 {
            v.push(Violation::new(
                [V2_FD_003],
                "pread()/pwrite() at an offset fails with ESPIPE (data fds are streams)".to_string(),
                format!("{bytes} bytes transferred"),
            ));
            if info.saving {
                info.read = info.read.saturating_add(bytes);
            } else if info.ended.is_none()
                && let Some(log) = &mut self.resume
            {
                log.pieces.push(Piece::Invalid("bytes written with pwrite() at an offset".to_string()));
            }
        }
        v
    }

    /// Judges `VFIO_MIG_GET_PRECOPY_INFO` on `fd` with `argsz`.
    pub fn judge_precopy(&mut self, fd: i32, argsz: u32, in_flags: u32, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        let state = self.state;
        let opted_in = self.precopy_v2;
        let Some(info) = self.fds.get_mut(&fd) else { return v };
        if !info.saving || info.ended.is_some() {
            return v;
        }
        let in_precopy = matches!(state, Some(MigState::PreCopy | MigState::PreCopyP2p));
        if argsz < 24 {
            if obs.errno.is_none() {
                v.push(Violation::new(
                    [V2_PRECOPY_009],
                    format!("argsz {argsz} below sizeof(struct vfio_precopy_info) fails with EINVAL"),
                    obs.summary(),
                ));
            }
            return v;
        }
        match (in_precopy, obs.errno) {
            (true, Some(e)) => v.push(Violation::new(
                [V2_PRECOPY_001],
                "VFIO_MIG_GET_PRECOPY_INFO succeeds on the saving fd in PRE_COPY".to_string(),
                format!("failed with {e}"),
            )),
            (false, None) if state.is_some() => v.push(Violation::new(
                [V2_PRECOPY_002],
                format!("EINVAL outside PRE_COPY/PRE_COPY_P2P (state {})", state.map_or("?", |s| s.name())),
                obs.summary(),
            )),
            (true, None) => {
                if let Some((initial, dirty, out_flags)) = obs.precopy {
                    v.extend(crate::oracle::piv2::judge_answer(
                        opted_in, in_flags, out_flags, initial, dirty,
                    ));
                    if opted_in && out_flags & crate::uapi::PRECOPY_INFO_REINIT != 0 {
                        // V2-PIV2-008: initial_bytes may jump at a REINIT; tracking restarts.
                        info.last_initial = None;
                        info.reinit = true;
                    }
                    if info.read == 0 && dirty != 0 {
                        v.push(Violation::new(
                            [V2_PRECOPY_005],
                            "dirty_bytes is 0 while no data has been read from the saving fd".to_string(),
                            format!("dirty_bytes {dirty}"),
                        ));
                    }
                    if let Some(prev) = info.last_initial
                        && initial > prev
                    {
                        let mut grows = Violation::new(
                            [V2_PRECOPY_003],
                            format!("initial_bytes never grows (was {prev})"),
                            format!("initial_bytes {initial}"),
                        );
                        if info.reinit {
                            grows.clauses.push(V2_PIV2_009);
                            grows.expected =
                                format!("initial_bytes progresses towards 0 after the REINIT (was {prev})");
                        }
                        v.push(grows);
                    }
                    info.last_initial = Some(initial);
                    info.queries += 1;
                }
            }
            _ => {}
        }
        v
    }

    /// Judges GET `VFIO_DEVICE_FEATURE_MIGRATION`: STOP_COPY is always advertised
    /// (V2-MIG-002) and no undefined bit is (V2-MIG-004).
    pub fn judge_flags(&self, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        let Some(flags) = obs.value.filter(|_| obs.errno.is_none()) else { return v };
        if flags & MigFlags::STOP_COPY.0 == 0 {
            v.push(Violation::new(
                [V2_MIG_002],
                "the migration flags include VFIO_MIGRATION_STOP_COPY".to_string(),
                format!("flags {}", MigFlags(flags)),
            ));
        }
        if flags & !MigFlags::ALL.0 != 0 {
            v.push(Violation::new(
                [V2_MIG_004],
                "only defined migration flags are advertised".to_string(),
                format!("flags {}", MigFlags(flags)),
            ));
        }
        v
    }

    /// Judges poll() on `fd`: in STOP_COPY the end of stream is final and readable
    /// (V2-PRECOPY-008).
    pub fn judge_poll(&self, fd: i32, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        let Some(info) = self.fds.get(&fd) else { return v };
        if info.saving
            && info.ended.is_none()
            && info.eof_seen
            && self.state == Some(MigState::StopCopy)
            && obs.errno.is_none()
            && obs.value.is_some_and(|r| r & libc::POLLIN as u64 == 0)
        {
            v.push(Violation::new(
                [V2_PRECOPY_008],
                "poll() reports the saving fd readable after end of stream in STOP_COPY".to_string(),
                format!("revents {:#x}", obs.value.unwrap_or(0)),
            ));
        }
        v
    }

    /// Judges GET MIG_DATA_SIZE.
    pub fn judge_data_size(&self, obs: &Observation) -> Vec<Violation> {
        let mut v = self.judge_data_size_state(obs);
        if obs.errno == Some(Errno::ENOTTY) {
            // vfio-pci-core refuses to register a migration driver without
            // migration_get_data_size, so on a migration device the feature exists.
            v.push(Violation::new(
                [V2_DATASIZE_003],
                "MIG_DATA_SIZE is implemented on a device that supports migration".to_string(),
                "failed with ENOTTY".to_string(),
            ));
        }
        v
    }

    fn judge_data_size_state(&self, obs: &Observation) -> Vec<Violation> {
        match obs.errno {
            Some(e) => vec![Violation::new(
                [V2_DATASIZE_002],
                format!(
                    "MIG_DATA_SIZE succeeds in every state (state {})",
                    self.state.map_or("unknown", |s| s.name())
                ),
                format!("failed with {e}"),
            )],
            None => Vec::new(),
        }
    }
}
