//! The behavioural spec model of a v2 device: it follows every operation the suite performs,
//! knows what the uAPI allows as a result, and judges each observation. `expect: oracle` in
//! a sequence and every step of the fuzzer go through [`Model::judge`].
//!
//! The model tracks the FSM state (via [`super::fsm`]), which data fds belong to which
//! session and whether that session has ended (and by what), end-of-stream in STOP_COPY,
//! pre-copy counters and DMA-logging state.

use crate::clauses::ClauseId;
use crate::clauses::id::*;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Violation;
use super::fsm::{SetPrediction, predict_set};
use crate::errno::Errno;
use crate::state::{MigFlags, MigState, state_name};

/// What the suite learnt about the device before testing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub flags: MigFlags,
    /// PROBE(DMA_LOGGING_START, SET) succeeded.
    pub dma_logging: bool,
    /// Streams are compatible between devices of the same type (mdev type, PCI id, sim type).
    pub device_type: Option<String>,
}

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
}

/// The data of the current resume session.
#[derive(Clone, Debug, Default)]
struct ResumeLog {
    pieces: Vec<Piece>,
    /// A write of this session failed (the driver rejected some bytes).
    write_failed: bool,
}

impl ResumeLog {
    /// Whether `p` continues exactly what was written so far: bytes of the same saving stream
    /// from byte 0 on, without a gap or an overlap, before its end.
    fn continued_by(&self, p: &Piece) -> bool {
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
    fn validity(&self, my_type: Option<&str>) -> (Option<bool>, String) {
        if self.pieces.is_empty() {
            return (Some(false), "the device accepted no data".to_string());
        }
        let mut expect_start = 0u64;
        let mut session: Option<&str> = None;
        let mut complete = false;
        let mut cut = false;
        for p in &self.pieces {
            match p {
                Piece::Invalid(why) => return (Some(false), why.clone()),
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
                        Some(prev) if prev != s => {
                            return (
                                Some(false),
                                "the data splices two different saving streams".to_string(),
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
        (Some(true), "one complete stream of a compatible device".to_string())
    }
}

/// How a read loop on a data fd ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// read() returned 0.
    Eof,
    /// read() failed.
    Errno(Errno),
    /// The requested byte count was reached.
    Limit,
    /// One read() was asked for and returned data.
    Once,
    /// The `--max-stream` bound was hit without end of stream.
    Overflow,
}

/// Everything an operation returned that expectations and the oracle may look at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// None: the call succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<Errno>,
    /// SET: the data_fd returned (-1 when none); GET: the data_fd field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_fd: Option<i32>,
    /// GET MIG_DEVICE_STATE result; for SET, the GET the engine issues right after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<u32>,
    /// Scalar results: flags, MIG_DATA_SIZE, register and header values, poll revents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Bytes moved by a read or write loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<StreamEnd>,
    /// Hash of the bytes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<u64>,
    /// PRECOPY_INFO (initial_bytes, dirty_bytes, flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precopy: Option<(u64, u64, u32)>,
    /// DMA report: (bits set, preset bits lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitmap: Option<(u64, u64)>,
    /// fcntl: (close-on-exec, access mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_flags: Option<(bool, u32)>,
    /// Offset into a write where the first error happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_at: Option<u64>,
    /// Human-readable detail for reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Observation {
    pub fn ok() -> Observation {
        Observation::default()
    }

    pub fn err(e: Errno) -> Observation {
        Observation { errno: Some(e), ..Default::default() }
    }

    /// `ok`, `EINVAL`, `ok, 96 bytes, EOF` for Expected/Actual lines.
    pub fn summary(&self) -> String {
        let mut parts = vec![match self.errno {
            None => "ok".to_string(),
            Some(e) => format!("failed with {e}"),
        }];
        if let Some(fd) = self.data_fd {
            parts.push(if fd >= 0 { format!("data_fd {fd}") } else { "data_fd -1".to_string() });
        }
        if let Some(s) = self.state {
            parts.push(format!("state {}", state_name(s)));
        }
        if let Some(v) = self.value {
            parts.push(format!("value {v:#x}"));
        }
        if let Some(b) = self.bytes {
            parts.push(format!("{b} bytes"));
        }
        if let Some(e) = self.end {
            parts.push(match e {
                StreamEnd::Eof => "then end of stream (read returned 0)".to_string(),
                StreamEnd::Errno(e) => format!("then read failed with {e}"),
                StreamEnd::Limit => "limit reached".to_string(),
                StreamEnd::Once => "one read".to_string(),
                StreamEnd::Overflow => "no end of stream within --max-stream".to_string(),
            });
        }
        if let Some((i, d, f)) = self.precopy {
            parts.push(format!("initial_bytes {i}, dirty_bytes {d}, flags {f:#x}"));
        }
        if let Some((set, lost)) = self.bitmap {
            parts.push(format!("{set} bits set, {lost} preset bits cleared"));
        }
        parts.join(", ")
    }
}

/// Why a data session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCause {
    /// An FSM arc out of the transfer state (the arc's clause).
    Arc(ClauseId),
    Reset,
    Close,
    /// A failed SET left the session's fate unknown.
    Unknown,
}

impl EndCause {
    fn clauses(self) -> Vec<ClauseId> {
        match self {
            EndCause::Arc(c) => vec![V2_ARC_STOP_004, c],
            EndCause::Reset => vec![V2_RESET_001],
            EndCause::Close => vec![V2_FD_002],
            EndCause::Unknown => vec![],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            EndCause::Arc(_) => "the FSM left the transfer state",
            EndCause::Reset => "VFIO_DEVICE_RESET",
            EndCause::Close => "the device fd was closed",
            EndCause::Unknown => "a failed SET",
        }
    }
}

/// What the model knows about one data fd.
#[derive(Clone, Debug)]
struct FdInfo {
    saving: bool,
    ended: Option<EndCause>,
    eof_seen: bool,
    last_initial: Option<u64>,
    queries: u32,
    /// Bytes read from the fd so far: dirty_bytes counts changes relative to data already
    /// retrieved, so it must be 0 while nothing has been read.
    read: u64,
    /// An answer on this fd carried VFIO_PRECOPY_INFO_REINIT after the opt-in (7.1+):
    /// initial_bytes restarted there and progresses towards zero again (V2-PIV2-009).
    reinit: bool,
}

/// The behavioural model of one v2 device.
#[derive(Clone, Debug)]
pub struct Model {
    pub facts: Facts,
    /// The state the device must be in; None when a failed SET or a reopen left it open.
    pub state: Option<MigState>,
    fds: BTreeMap<i32, FdInfo>,
    logging: bool,
    /// Set when DMA_LOGGING_REPORT failed with EOPNOTSUPP after a successful START:
    /// the kernel's iova_bitmap is a stub (no IOMMUFD), not a driver decision.
    pub report_stub: bool,
    /// The last state was reached by a reopen (V2-OPEN-001 is judged at the next GET).
    reopened: bool,
    /// What the current resume session received.
    resume: Option<ResumeLog>,
    /// The suite closed the device fd: device-fd operations fail with EBADF (it is the
    /// suite's fd that is gone, not a driver decision) until a reopen succeeds.
    closed: bool,
    /// A SET of VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 went through since the device was
    /// opened (7.1+; the core clears it on the last close).
    pub precopy_v2: bool,
}

impl Model {
    pub fn new(facts: Facts, state: Option<MigState>) -> Model {
        Model {
            facts,
            state,
            fds: BTreeMap::new(),
            logging: false,
            report_stub: false,
            reopened: false,
            resume: None,
            closed: false,
            precopy_v2: false,
        }
    }

    /// Whether the device fd is closed (between `close_device` and a successful `reopen`).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the model expects logging to be running.
    pub fn logging(&self) -> bool {
        self.logging
    }

    fn end_sessions(&mut self, saving: bool, resuming: bool, cause: EndCause) {
        for f in self.fds.values_mut() {
            if f.ended.is_none() && ((f.saving && saving) || (!f.saving && resuming)) {
                f.ended = Some(cause);
            }
        }
    }

    fn live_fd(&self, saving: bool) -> Option<i32> {
        self.fds.iter().find(|(_, f)| f.ended.is_none() && f.saving == saving).map(|(fd, _)| *fd)
    }

    /// Judges `SET(req)`; `obs.state` must hold the GET issued right after.
    pub fn judge_set(&mut self, req: u32, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        // V2-OPEN-001 can only be judged by a GET before anything changes the state.
        self.reopened = false;
        let Some(cur) = self.state else {
            // Unknown starting point: learn from the GET.
            self.adopt(obs.state);
            if obs.errno.is_none()
                && let Some(fd) = obs.data_fd.filter(|fd| *fd >= 0)
            {
                if req == MigState::Resuming.raw() {
                    self.resume = Some(ResumeLog::default());
                }
                self.fds.insert(
                    fd,
                    FdInfo {
                        saving: req != MigState::Resuming.raw(),
                        ended: None,
                        eof_seen: false,
                        last_initial: None,
                        queries: 0,
                        read: 0,
                        reinit: false,
                    },
                );
            }
            return v;
        };
        let pred = predict_set(self.facts.flags, cur, req);
        let after = obs.state;
        let req_name = state_name(req);
        // Leaving RESUMING loads the stream: its validity decides the outcome.
        if cur == MigState::Resuming
            && let SetPrediction::Walk(_) = pred
        {
            // No log: the session began while the model did not follow the device (its state
            // was learned afterwards, e.g. after `forget`): what it was given is unknown.
            let (valid, why) = match &self.resume {
                Some(log) => log.validity(self.facts.device_type.as_deref()),
                None => (None, "the suite does not know what this resume session was given".to_string()),
            };
            match (valid, obs.errno) {
                (Some(false), None) => {
                    let mut clauses = vec![V2_ARC_RES_001];
                    if why.contains("type") || why.contains("splices") {
                        clauses.push(V2_RESUME_002);
                    }
                    if req != MigState::Stop.raw() {
                        clauses.push(DEBATE_POSTCOPY_001);
                    }
                    v.push(Violation {
                        clauses,
                        expected: format!("SET {req_name} from RESUMING fails: {why}"),
                        actual: format!(
                            "succeeded{}",
                            after.map(|s| format!(", state now {}", state_name(s))).unwrap_or_default()
                        ),
                    });
                    self.end_sessions(false, true, EndCause::Arc(DEBATE_POSTCOPY_002));
                    self.resume = None;
                    self.adopt(after);
                    return v;
                }
                (Some(false) | None, Some(_)) => {
                    if let Some(s) = after
                        && s != MigState::Resuming.raw()
                        && s != MigState::Error.raw()
                    {
                        v.push(Violation::new(
                            [V2_STATE_004],
                            "a failed load leaves RESUMING (or ERROR)".to_string(),
                            format!("state {}", state_name(s)),
                        ));
                    }
                    self.adopt(after);
                    return v;
                }
                (None, None) => {}
                (Some(true), _) => {}
            }
        }
        match (&pred, obs.errno) {
            (SetPrediction::Refuse(r), None) => {
                v.push(Violation::new(
                    [r.clause()],
                    format!("SET {req_name} from {cur} fails with EINVAL ({})", r.reason()),
                    format!(
                        "succeeded{}",
                        after.map(|s| format!(", state now {}", state_name(s))).unwrap_or_default()
                    ),
                ));
            }
            (SetPrediction::Refuse(r), Some(_)) => {
                if after.is_some_and(|s| s != cur.raw()) {
                    v.push(Violation::new(
                        [r.clause(), V2_STATE_004],
                        format!("state stays {cur} after the refused SET {req_name}"),
                        format!("state {}", state_name(after.unwrap_or(0))),
                    ));
                }
            }
            (SetPrediction::Noop | SetPrediction::Walk(_), Some(e)) => {
                v.push(Violation::new(
                    [V2_MIG_003, V2_STATE_008],
                    format!("SET {req_name} from {cur} succeeds via {}", pred.render(cur)),
                    format!("failed with {e}"),
                ));
                let allowed = pred.allowed_after_failure(cur);
                if let Some(s) = after
                    && !allowed.iter().any(|a| a.raw() == s)
                {
                    v.push(Violation::new(
                        [V2_STATE_004],
                        format!(
                            "after the failed SET the state is one of {}",
                            allowed.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
                        ),
                        format!("state {}", state_name(s)),
                    ));
                }
            }
            (SetPrediction::Noop | SetPrediction::Walk(_), None) => {
                let want_fd = pred.returns_data_fd();
                let got_fd = obs.data_fd.is_some_and(|fd| fd >= 0);
                if want_fd != got_fd {
                    v.push(Violation::new(
                        [V2_STATE_005],
                        if want_fd {
                            format!(
                                "a new data_fd from SET {req_name} (the arc {} opens a session)",
                                pred.render(cur)
                            )
                        } else {
                            format!(
                                "data_fd -1 from SET {req_name} (path {} opens no session)",
                                pred.render(cur)
                            )
                        },
                        format!("data_fd {}", obs.data_fd.unwrap_or(-1)),
                    ));
                }
                if let Some(s) = after
                    && MigState::from_raw(s).is_none()
                {
                    v.push(Violation::new(
                        [V2_STATE_001, V2_STATE_009],
                        format!("GET after SET {req_name} returns a uAPI state value"),
                        format!("state value {s}"),
                    ));
                } else if let Some(s) = after
                    && s != req
                {
                    v.push(Violation::new(
                        [V2_STATE_002],
                        format!("GET returns {req_name} once SET returned"),
                        format!("GET returns {}", state_name(s)),
                    ));
                }
            }
        }
        // Update the model.
        match (&pred, obs.errno) {
            (SetPrediction::Walk(arcs), None) => {
                for a in arcs {
                    if a.ends_saving() {
                        let clause = match (a.from, a.to) {
                            (MigState::PreCopy, MigState::Running) => V2_ARC_RUN_002,
                            (MigState::PreCopyP2p, MigState::RunningP2p) => V2_ARC_P2P_001,
                            _ => V2_ARC_STOP_004,
                        };
                        self.end_sessions(true, false, EndCause::Arc(clause));
                    }
                    if a.ends_resuming() {
                        self.end_sessions(false, true, EndCause::Arc(DEBATE_POSTCOPY_002));
                        self.resume = None;
                    }
                }
                if pred.returns_data_fd()
                    && let Some(fd) = obs.data_fd.filter(|fd| *fd >= 0)
                {
                    let saving = req != MigState::Resuming.raw();
                    if !saving {
                        self.resume = Some(ResumeLog::default());
                    }
                    self.fds.insert(
                        fd,
                        FdInfo {
                            saving,
                            ended: None,
                            eof_seen: false,
                            last_initial: None,
                            queries: 0,
                            read: 0,
                            reinit: false,
                        },
                    );
                }
                self.state = MigState::from_raw(req);
            }
            (SetPrediction::Walk(_), Some(_)) => {
                // Somewhere on the path: sessions may or may not have ended.
                self.end_sessions(true, true, EndCause::Unknown);
                self.adopt(after);
            }
            _ => {
                if obs.errno.is_some() || !matches!(pred, SetPrediction::Noop) {
                    self.adopt(after.or(Some(cur.raw())));
                }
            }
        }
        v
    }

    fn adopt(&mut self, state: Option<u32>) {
        self.state = state.and_then(MigState::from_raw);
    }

    /// Judges GET MIG_DEVICE_STATE.
    pub fn judge_get(&mut self, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        if obs.errno.is_some() {
            v.push(Violation::new(
                [V2_STATE_001],
                "GET MIG_DEVICE_STATE succeeds".to_string(),
                obs.summary(),
            ));
            return v;
        }
        if let Some(fd) = obs.data_fd
            && fd != -1
        {
            v.push(Violation::new(
                [V2_STATE_001],
                "GET returns data_fd -1".to_string(),
                format!("data_fd {fd}"),
            ));
        }
        let got = obs.state.unwrap_or(u32::MAX);
        if MigState::from_raw(got).is_none() {
            v.push(Violation::new(
                [V2_STATE_001, V2_STATE_009],
                "GET returns a uAPI state value (0-7)".to_string(),
                format!("state value {got}"),
            ));
            self.state = None;
            return v;
        }
        if self.reopened {
            self.reopened = false;
            if got != MigState::Running.raw() {
                v.push(Violation::new(
                    [V2_OPEN_001],
                    "RUNNING right after the device is opened".to_string(),
                    format!("state {}", state_name(got)),
                ));
            }
            self.adopt(Some(got));
            return v;
        }
        match self.state {
            Some(s) if s.raw() != got => {
                v.push(Violation::new(
                    [V2_STATE_003],
                    format!("state {s} (nothing but SET and reset changes it)"),
                    format!("state {}", state_name(got)),
                ));
                self.adopt(Some(got));
            }
            None => self.adopt(Some(got)),
            _ => {}
        }
        v
    }

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
                    v.extend(super::piv2::judge_answer(opted_in, in_flags, out_flags, initial, dirty));
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

    /// Records `VFIO_DEVICE_RESET`.
    pub fn judge_reset(&mut self, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        self.reopened = false;
        self.resume = None;
        if let Some(e) = obs.errno {
            v.push(Violation::new(
                [V2_RESET_001],
                "VFIO_DEVICE_RESET succeeds".to_string(),
                format!("failed with {e}"),
            ));
            self.state = None;
            return v;
        }
        self.end_sessions(true, true, EndCause::Reset);
        self.state = Some(MigState::Running);
        v
    }

    /// Records closing the device fd.
    /// Records a successful SET of VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 (the opt-in).
    pub fn on_precopy_v2_opt_in(&mut self) {
        self.precopy_v2 = true;
    }

    pub fn on_close(&mut self) {
        self.precopy_v2 = false;
        self.resume = None;
        self.end_sessions(true, true, EndCause::Close);
        self.state = None;
        self.closed = true;
    }

    /// Records reopening the device: V2-OPEN-001 is judged at the next GET. A reopen that
    /// failed (the device was still open: EBUSY) changes nothing.
    pub fn on_reopen(&mut self, obs: &Observation) {
        if obs.errno.is_some() {
            return;
        }
        self.reopened = true;
        self.closed = false;
        self.state = None;
        self.logging = false;
    }

    /// Forgets what an unjudged step may have changed (a SET racing a read, a step whose
    /// injected fault fired): the state is learned again from the next GET or SET, the data
    /// fds open so far are no longer judged, the resume log is dropped.
    pub fn forget(&mut self) {
        self.state = None;
        self.resume = None;
        self.reopened = false;
        self.fds.clear();
    }

    /// Records that the suite closed a data fd.
    pub fn on_close_fd(&mut self, fd: i32) {
        self.fds.remove(&fd);
    }

    /// Judges DMA_LOGGING_START.
    pub fn judge_dma_start(&mut self, core_err: Option<Errno>, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        if !self.facts.dma_logging {
            if obs.errno.is_none() {
                v.push(Violation::new(
                    [V2_FEAT_004],
                    "ENOTTY without DMA logging".to_string(),
                    obs.summary(),
                ));
            }
            return v;
        }
        if let Some(want) = core_err {
            if obs.errno != Some(want) {
                v.push(Violation::new(
                    [V2_LOG_002],
                    format!("the core rejects these ranges with {want}"),
                    obs.summary(),
                ));
            }
            return v;
        }
        if self.logging {
            if obs.errno.is_none() {
                v.push(Violation::new(
                    [V2_LOG_005],
                    "a second DMA_LOGGING_START before STOP is rejected".to_string(),
                    "succeeded".to_string(),
                ));
            }
        } else if obs.errno.is_none() {
            self.logging = true;
            if let Some(ps) = obs.value
                && (ps < 4096 || !ps.is_power_of_two())
            {
                v.push(Violation::new(
                    [V2_LOG_004],
                    "the chosen page size is a power of 2 and >= 4096".to_string(),
                    format!("page_size {ps}"),
                ));
            }
        }
        v
    }

    /// Judges DMA_LOGGING_STOP.
    pub fn judge_dma_stop(&mut self, _obs: &Observation) -> Vec<Violation> {
        self.logging = false;
        Vec::new()
    }

    /// Judges DMA_LOGGING_REPORT (`core_err`: what the core's own checks must return).
    pub fn judge_dma_report(&mut self, core_err: Option<Errno>, obs: &Observation) -> Vec<Violation> {
        let mut v = Vec::new();
        if !self.facts.dma_logging {
            return v;
        }
        if let Some(want) = core_err {
            if obs.errno != Some(want) {
                v.push(Violation::new(
                    [V2_LOG_007],
                    format!("the core rejects this report with {want}"),
                    obs.summary(),
                ));
            }
            return v;
        }
        if obs.errno == Some(Errno::EOPNOTSUPP) {
            // A kernel without IOMMUFD: iova_bitmap_for_each() is a stub that always fails.
            self.report_stub = true;
            return v;
        }
        if !self.logging {
            if obs.errno.is_none() {
                v.push(Violation::new(
                    [V2_LOG_006],
                    "DMA_LOGGING_REPORT fails while logging is off".to_string(),
                    "succeeded".to_string(),
                ));
            }
            return v;
        }
        if let Some((_, lost)) = obs.bitmap
            && lost > 0
        {
            v.push(Violation::new(
                [V2_LOG_008],
                "REPORT only sets bits; pre-set bits stay set".to_string(),
                format!("{lost} pre-set bits cleared"),
            ));
        }
        v
    }

    /// The live saving fd, if any.
    pub fn saving_fd(&self) -> Option<i32> {
        self.live_fd(true)
    }

    /// The live resume fd, if any.
    pub fn resuming_fd(&self) -> Option<i32> {
        self.live_fd(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(flags: u64) -> Model {
        Model::new(
            Facts { flags: MigFlags(flags), dma_logging: true, device_type: None },
            Some(MigState::Running),
        )
    }

    fn set_ok(fd: i32, state: MigState) -> Observation {
        Observation { data_fd: Some(fd), state: Some(state.raw()), ..Default::default() }
    }

    #[test]
    fn leaving_a_resume_session_the_model_did_not_see_begin_is_not_judged_on_its_data() {
        let mut m = model(7);
        assert!(m.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop)).is_empty());
        assert!(m.judge_set(MigState::Resuming.raw(), &set_ok(101, MigState::Resuming)).is_empty());
        // Followed from the start: leaving with nothing written breaks V2-ARC-RES-001.
        let mut seen = m.clone();
        let v = seen.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].clauses[0], V2_ARC_RES_001);
        // After `forget` (a racing SET, an injected fault), the state is learned again but
        // the session's data is unknown: no verdict on it.
        m.forget();
        let failed = Observation { errno: Some(Errno::EINVAL), ..set_ok(-1, MigState::Resuming) };
        assert!(m.judge_set(MigState::RunningP2p.raw(), &failed).is_empty());
        assert!(m.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop)).is_empty());
    }

    #[test]
    fn a_correct_stop_copy_set_raises_nothing() {
        let mut m = model(7);
        assert!(m.judge_set(MigState::StopCopy.raw(), &set_ok(100, MigState::StopCopy)).is_empty());
        assert_eq!(m.saving_fd(), Some(100));
    }

    #[test]
    fn a_missing_data_fd_is_a_state_005_violation() {
        let mut m = model(7);
        let v = m.judge_set(MigState::StopCopy.raw(), &set_ok(-1, MigState::StopCopy));
        assert_eq!(v[0].clauses, vec![V2_STATE_005]);
    }

    #[test]
    fn accepting_stop_copy_to_pre_copy_is_a_state_007_violation() {
        let mut m = model(7);
        m.judge_set(MigState::StopCopy.raw(), &set_ok(100, MigState::StopCopy));
        let v = m.judge_set(MigState::PreCopy.raw(), &set_ok(-1, MigState::PreCopy));
        assert_eq!(v[0].clauses, vec![V2_STATE_007]);
    }

    #[test]
    fn data_from_an_ended_session_is_a_violation() {
        let mut m = model(7);
        m.judge_set(MigState::StopCopy.raw(), &set_ok(100, MigState::StopCopy));
        m.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop));
        let obs = Observation { bytes: Some(10), end: Some(StreamEnd::Once), ..Default::default() };
        let v = m.judge_read(100, &obs);
        assert!(v[0].clauses.contains(&V2_ARC_STOP_004));
        let obs =
            Observation { bytes: Some(0), end: Some(StreamEnd::Errno(Errno::ENODEV)), ..Default::default() };
        assert!(m.judge_read(100, &obs).is_empty());
    }

    #[test]
    fn enomsg_in_stop_copy_and_eof_in_pre_copy_are_reported() {
        let mut m = model(7);
        m.judge_set(MigState::PreCopy.raw(), &set_ok(100, MigState::PreCopy));
        let eof = Observation { bytes: Some(24), end: Some(StreamEnd::Eof), ..Default::default() };
        assert_eq!(m.judge_read(100, &eof)[0].clauses, vec![V2_PRECOPY_007]);
        m.judge_set(MigState::StopCopy.raw(), &set_ok(-1, MigState::StopCopy));
        let enomsg =
            Observation { bytes: Some(0), end: Some(StreamEnd::Errno(Errno::ENOMSG)), ..Default::default() };
        assert_eq!(m.judge_read(100, &enomsg)[0].clauses, vec![V2_PRECOPY_008]);
    }

    #[test]
    fn a_state_change_nobody_asked_for_is_state_003() {
        let mut m = model(7);
        let obs = Observation { state: Some(MigState::Stop.raw()), data_fd: Some(-1), ..Default::default() };
        assert_eq!(m.judge_get(&obs)[0].clauses, vec![V2_STATE_003]);
    }
}
