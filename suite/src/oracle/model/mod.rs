//! The behavioural spec model of a v2 device: it follows every operation the suite performs,
//! knows what the uAPI allows as a result, and judges each observation. `expect: oracle` in
//! a sequence and every step of the fuzzer go through the `Model::judge_*` methods
//! ([`Model::judge_set`], ...).
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

mod data;
mod dma;
mod observation;

pub use data::Piece;
use data::ResumeLog;
pub use observation::{Observation, StreamEnd};

/// What the suite learnt about the device before testing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub flags: MigFlags,
    /// PROBE(DMA_LOGGING_START, SET) succeeded.
    pub dma_logging: bool,
    /// Streams are compatible between devices of the same type (mdev type, PCI id, sim type).
    pub device_type: Option<String>,
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
                    if why.contains("type") {
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
                    if let Some(log) = &mut self.resume {
                        log.load_failed = true;
                    }
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
    fn a_start_page_size_of_zero_breaks_v2_log_004_and_one_report_cannot_take_is_only_info() {
        let start = |ps: u64| {
            let mut m = model(7);
            let v = m.judge_dma_start(None, &Observation { value: Some(ps), ..Default::default() });
            v.iter().flat_map(|v| v.clauses.iter().map(|c| c.as_str().to_string())).collect::<Vec<_>>()
        };
        assert_eq!(start(0), ["V2-LOG-004"]);
        assert_eq!(start(2048), ["V2-LOG-012"]);
        assert_eq!(start(12288), ["V2-LOG-012"]);
        assert!(start(4096).is_empty() && start(2 << 20).is_empty());
        let catalog = crate::clauses::catalog();
        assert_eq!(catalog.get("V2-LOG-012").map(|c| c.level), Some(crate::clauses::Level::Info));
    }

    #[test]
    fn after_a_failed_load_a_second_load_of_the_same_session_may_fail_either_way() {
        // Arrange: a resume session whose first load (nothing written) failed, then a complete
        // stream written to the same fd.
        let mut m = model(7);
        m.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop));
        m.judge_set(MigState::Resuming.raw(), &set_ok(101, MigState::Resuming));
        let refused = Observation { errno: Some(Errno::EINVAL), ..set_ok(-1, MigState::Resuming) };
        assert!(m.judge_set(MigState::Stop.raw(), &refused).is_empty());
        let whole = Piece::Stream {
            device_type: None,
            session: "s0".into(),
            start: 0,
            end: 24,
            eof: true,
            cut: false,
        };
        let wrote = Observation { bytes: Some(24), ..Default::default() };
        assert!(m.judge_write(101, Some(whole), &wrote).is_empty());
        // Act + Assert: the uAPI does not say whether the session goes on after a failed
        // load, so a second refusal is no violation (nor would a success be).
        let mut ok = m.clone();
        assert_eq!(m.judge_set(MigState::Stop.raw(), &refused), vec![]);
        assert_eq!(ok.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop)), vec![]);
    }

    #[test]
    fn a_stream_joined_from_two_saving_sessions_is_not_judged_but_a_foreign_type_still_is() {
        // Arrange: a resume session given bytes [0, 24) of saving stream A:100 and the rest,
        // [24, 96), of A:103. Two streams of an unchanged device hold the same bytes, so the
        // join can be a valid stream byte for byte: a driver that loads it breaks nothing.
        let piece = |session: &str, ty: Option<&str>, start, end, eof| Piece::Stream {
            device_type: ty.map(str::to_string),
            session: session.into(),
            start,
            end,
            eof,
            cut: false,
        };
        let resuming = |first: Piece, second: Piece| {
            let mut m = model(7);
            m.facts.device_type = Some("mtty".into());
            m.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop));
            m.judge_set(MigState::Resuming.raw(), &set_ok(104, MigState::Resuming));
            for (p, n) in [(first, 24), (second, 72)] {
                let wrote = Observation { bytes: Some(n), ..Default::default() };
                assert!(m.judge_write(104, Some(p), &wrote).is_empty());
            }
            m
        };
        let mut joined =
            resuming(piece("A:100", Some("mtty"), 0, 24, false), piece("A:103", Some("mtty"), 24, 96, true));
        // Act + Assert: loading it is no violation, and neither is refusing it.
        let mut refused = joined.clone();
        assert_eq!(joined.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop)), vec![]);
        let failed = Observation { errno: Some(Errno::EINVAL), ..set_ok(-1, MigState::Resuming) };
        assert_eq!(refused.judge_set(MigState::Stop.raw(), &failed), vec![]);
        // A join whose second part comes from another device type is still certainly invalid.
        let mut foreign =
            resuming(piece("A:100", Some("mtty"), 0, 24, false), piece("B:103", Some("other"), 24, 96, true));
        let v = foreign.judge_set(MigState::Stop.raw(), &set_ok(-1, MigState::Stop));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].clauses.contains(&V2_ARC_RES_001) && v[0].clauses.contains(&V2_RESUME_002), "{v:?}");
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
