//! A small vocabulary for writing generators: steps and checks in one line each.

use crate::check::{Check, Cmp, CmpOp, ExpectKind, Origin, Requires, Step};
use crate::clauses::ClauseId;
use crate::clauses::Feature;
use crate::device::MigrationApi;
use crate::errno::Errno;
use crate::op::{FdRef, Mutation, Op, ReadArgs, Segmentation, Source, StreamName, WriteArgs};
use crate::state::{MigFlags, MigState, StateArg};

/// `set_state: S` judged by the oracle.
pub fn set(s: MigState) -> Step {
    Step::new(Op::SetState(StateArg::Named(s))).oracle()
}

/// `set_state: raw` judged by the oracle.
pub fn set_raw(raw: u32) -> Step {
    Step::new(Op::SetState(MigState::from_raw(raw).map_or(StateArg::Raw(raw), StateArg::Named))).oracle()
}

/// `get_state` judged by the oracle.
pub fn get() -> Step {
    Step::new(Op::GetState).oracle()
}

/// Reads the current data fd to its end (or an error), oracle-judged.
pub fn drain() -> Step {
    Step::new(Op::Read(ReadArgs::default())).oracle()
}

/// Reads the current data fd to its end into capture `name`.
pub fn capture(name: &str) -> Step {
    Step::new(Op::Read(ReadArgs { capture: Some(StreamName(name.into())), ..ReadArgs::default() })).oracle()
}

/// Appends the rest of the current stream to capture `name`.
pub fn capture_more(name: &str) -> Step {
    Step::new(Op::Read(ReadArgs {
        capture: Some(StreamName(name.into())),
        append: true,
        ..ReadArgs::default()
    }))
    .oracle()
}

/// One read() of at most `chunk` bytes from `fd`.
pub fn read_once(fd: FdRef, chunk: u32) -> Step {
    Step::new(Op::Read(ReadArgs { fd, once: true, chunk, ..ReadArgs::default() })).oracle()
}

/// Writes capture `name` (mutated, segmented) to the current fd, oracle-judged.
pub fn write(name: &str, mutate: Option<Mutation>, segment: Segmentation) -> Step {
    Step::new(Op::Write(WriteArgs {
        fd: FdRef::Current,
        data: Source::Stream(StreamName(name.into())),
        mutate,
        segment,
        offset: None,
        keep_going: false,
        from_thread: false,
    }))
    .oracle()
}

/// `>0`, `==n` ...
pub fn cmp(op: CmpOp, value: u64) -> Cmp {
    Cmp { op, value }
}

/// Expect failure with one of these errnos.
pub fn errno(e: &[Errno]) -> ExpectKind {
    ExpectKind::Errno(e.to_vec())
}

/// The steps that save the device's full state (STOP_COPY to end of stream) into `name`
/// and go back to RUNNING with a reset, as the source of a migration.
pub fn save_to(name: &str) -> Vec<Step> {
    vec![set(MigState::StopCopy).setup(), capture(name).setup(), Step::new(Op::Reset).setup()]
}

/// A generated check; clauses are collected from the steps plus `extra`.
pub fn check(id: &str, title: &str, requires: Requires, steps: Vec<Step>, extra: &[ClauseId]) -> Check {
    let mut c = Check {
        id: id.to_string(),
        title: title.to_string(),
        clauses: Vec::new(),
        requires,
        steps,
        origin: Origin::Generated(format!("checks::{}", id.split('.').next().unwrap_or(""))),
        models: Some("the spec".to_string()),
        citation: None,
        sequence_file: None,
    };
    c.collect_clauses(extra);
    c
}

/// v2 with these flags.
pub fn v2(flags: u64) -> Requires {
    Requires { api: Some(MigrationApi::V2), flags: MigFlags(flags | 1), ..Default::default() }
}

/// v2 with these flags and features.
pub fn v2f(flags: u64, features: &[Feature]) -> Requires {
    Requires { features: features.to_vec(), ..v2(flags) }
}

/// v1.
pub fn v1() -> Requires {
    Requires { api: Some(MigrationApi::V1), ..Default::default() }
}
