//! The kernel's next-state table, read from the C source of `vfio_mig_get_next_state()`
//! (drivers/vfio/vfio_main.c, 5.18+; the PRE_COPY states since 6.2).
//!
//! [`extract`] parses the two tables the helper consults (`vfio_from_fsm_table` and
//! `state_flags_table`, C designated initializers) and recognises its control flow: the checks
//! of `cur_fsm` and `new_fsm`, the loop that skips states whose flags the device lacks and the
//! final return. The data is parsed; the control flow is matched, statement by statement,
//! against the variants the kernel has had (see [`SkipLoop`]), and anything else is an
//! [`ExtractError`] naming the line, never a guess. [`KernelTable::to_json`] then resolves
//! every `(flags, cur, new)` the way a driver's loop
//! `while (cur != new) { helper(cur, new, &next); step(next); cur = next; }` would, for the
//! four flag sets the uAPI defines. The checked-in results are under `suite/data/next_state/`
//! ([`CHECKED_IN`]); `cargo run -p vmc-suite --example extract_next_state` regenerates them.
//!
//! This module reads only the kernel's text: it shares no code with `oracle::fsm`, which
//! `suite/tests/oracle_vs_kernel_table.rs` compares with its output.
//!
//! The state and flag *values* are not in vfio_main.c; they are the uAPI's
//! (`enum vfio_device_mig_state` and `VFIO_MIGRATION_*` in include/uapi/linux/vfio.h, 6.12
//! l.1213-1223), taken from [`crate::state`]. A name the uAPI does not have is an error.

mod flow;
mod json;
mod lex;
mod parse;
mod resolve;

use std::fmt;

use crate::state::{MigFlags, MigState};

pub use resolve::{Resolved, Step};

/// The tables checked in under `suite/data/next_state/`: (kernel series, JSON document).
pub const CHECKED_IN: [(&str, &str); 2] = [
    ("6.12", include_str!("../../data/next_state/6.12.json")),
    ("7.2", include_str!("../../data/next_state/7.2.json")),
];

/// The checked-in table of a kernel series (`"6.12"`), as JSON text.
pub fn checked_in(series: &str) -> Option<&'static str> {
    CHECKED_IN.iter().find(|(s, _)| *s == series).map(|(_, text)| *text)
}

/// Number of uAPI states (ERROR .. PRE_COPY_P2P).
pub const NUM_STATES: usize = MigState::ALL.len();

/// What [`extract`] read from one vfio_main.c.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelTable {
    /// Where the text came from, as given to [`extract`] (also the prefix of its errors).
    pub origin: String,
    /// Source lines of what was read.
    pub lines: Lines,
    /// `vfio_from_fsm_table[cur][new]`, indexed by raw state.
    pub next: [[MigState; NUM_STATES]; NUM_STATES],
    /// `state_flags_table[state]`: the flags a device needs for the state to exist.
    pub required: [u32; NUM_STATES],
    /// The `VFIO_MIGRATION_*` flags the tables name, with their uAPI values, by value.
    pub flags_used: Vec<(String, u32)>,
    /// Entries the initializers leave out, which C sets to 0 (`vfio_from_fsm_table[..]`
    /// entries then read as ERROR, `state_flags_table[..]` ones as "no flag needed").
    pub implicit: Vec<String>,
    /// The control flow that was recognised.
    pub flow: Flow,
}

/// 1-based source lines of the parts of `vfio_mig_get_next_state()` that were read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    /// The function's name .. its closing brace.
    pub function: (u32, u32),
    pub num_states: u32,
    pub fsm_table: u32,
    pub flags_table: u32,
    pub cur_check: u32,
    pub new_check: u32,
    pub first_step: u32,
    pub skip_loop: u32,
    pub ret: u32,
}

/// The recognised control flow of the helper.
///
/// Every kernel since PRE_COPY (6.2) has the same argument checks and return: `cur_fsm` out of
/// range or needing flags the device lacks is `-EINVAL` with a WARN_ON, `new_fsm` likewise
/// without the WARN, and the helper returns `-EINVAL` when the walk ends on ERROR. They are
/// matched exactly; only the skip loop has had two shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub skip_loop: SkipLoop,
}

/// The loop that skips states whose flags the device lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipLoop {
    /// `while (*next_fsm != VFIO_DEVICE_STATE_ERROR && (flags of *next_fsm missing))`:
    /// commit a26b499b757c ("vfio: prevent infinite loop in vfio_mig_get_next_state() on
    /// blocked arc", v7.2-rc1; 6.12.96 and 7.1.4 in the stable series). A blocked arc
    /// (ERROR in the table) ends the loop and the helper returns -EINVAL.
    StopsAtError,
    /// `while ((flags of *next_fsm missing))`: 4db52602a607 (6.2) up to that fix.
    /// `state_flags_table[ERROR]` is ~0U, so once the walk reaches ERROR it never leaves:
    /// a blocked arc spins forever with the driver's state mutex held.
    Unguarded,
}

impl SkipLoop {
    /// The name used in the JSON document.
    pub fn name(self) -> &'static str {
        match self {
            SkipLoop::StopsAtError => "stops_at_error",
            SkipLoop::Unguarded => "unguarded",
        }
    }

    /// One sentence on what the variant does, for the JSON document.
    pub fn describe(self) -> &'static str {
        match self {
            SkipLoop::StopsAtError => {
                "while (*next_fsm != ERROR && flags of *next_fsm missing) step on: a blocked arc \
                 (ERROR in the table) ends the loop and the helper returns -EINVAL \
                 (a26b499b757c, v7.2-rc1, 6.12.96, 7.1.4)"
            }
            SkipLoop::Unguarded => {
                "while (flags of *next_fsm missing) step on: state_flags_table[ERROR] is ~0U, so a \
                 blocked arc (ERROR in the table) loops forever with the driver's state mutex held \
                 (before a26b499b757c)"
            }
        }
    }
}

/// Why [`extract`] refused a source text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{col}: {kind}")]
pub struct ExtractError {
    pub origin: String,
    pub line: u32,
    pub col: u32,
    pub kind: ErrorKind,
}

/// What was wrong, without the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    #[error("no definition of vfio_mig_get_next_state() in this file")]
    FunctionNotFound,
    #[error("unbalanced `{0}` in vfio_mig_get_next_state()")]
    Unbalanced(String),
    #[error("vfio_mig_get_next_state() ends before {0}")]
    Missing(&'static str),
    #[error("expected {expected}, found `{found}`")]
    Unexpected { expected: &'static str, found: String },
    #[error("`{0}` is not a uAPI state (VFIO_DEVICE_STATE_ERROR .. VFIO_DEVICE_STATE_PRE_COPY_P2P)")]
    UnknownState(String),
    #[error("`{0}` is not a uAPI migration flag (VFIO_MIGRATION_STOP_COPY, _P2P, _PRE_COPY)")]
    UnknownFlag(String),
    #[error("{0} is given twice (first on line {1})")]
    Duplicate(String, u32),
    #[error("VFIO_DEVICE_NUM_STATES is {0}, the uAPI has {NUM_STATES} states")]
    StateCount(usize),
    #[error("unrecognised {what}: `{found}`; the extractor knows {known}")]
    UnknownShape { what: &'static str, found: String, known: &'static str },
}

/// Reads `vfio_mig_get_next_state()` out of the text of a vfio_main.c. `origin` names the
/// text in errors and in the JSON document (e.g.
/// `linux-source-6.12_6.12.118-1~deb12u1/drivers/vfio/vfio_main.c`).
pub fn extract(vfio_main_c: &str, origin: &str) -> Result<KernelTable, ExtractError> {
    let at = |(line, col, kind): (u32, u32, ErrorKind)| ExtractError {
        origin: origin.to_string(),
        line,
        col,
        kind,
    };
    let tokens = lex::tokenize(vfio_main_c).map_err(at)?;
    let func = parse::find_function(&tokens).map_err(at)?;
    let mut stmts = parse::statements(func.body).map_err(at)?.into_iter();
    let end = (func.close.line, func.close.col);
    let mut next_stmt = |what: &'static str| stmts.next().ok_or((end.0, end.1, ErrorKind::Missing(what)));

    let num = next_stmt("the VFIO_DEVICE_NUM_STATES enum").map_err(at)?;
    parse::num_states(num).map_err(at)?;
    let fsm = next_stmt("vfio_from_fsm_table").map_err(at)?;
    let (next, mut implicit) = parse::fsm_table(fsm).map_err(at)?;
    let flags = next_stmt("state_flags_table").map_err(at)?;
    let (required, flags_used, implicit_flags) = parse::flags_table(flags).map_err(at)?;
    implicit.extend(implicit_flags);

    let mut lines = Lines {
        function: (func.name.line, func.close.line),
        num_states: num[0].line,
        fsm_table: fsm[0].line,
        flags_table: flags[0].line,
        ..Lines::default()
    };
    let flow = flow::recognise(&mut || stmts.next(), end, &mut lines).map_err(at)?;
    Ok(KernelTable { origin: origin.to_string(), lines, next, required, flags_used, implicit, flow })
}

impl KernelTable {
    /// Whether a device with `flags` has `state` (all of `state_flags_table[state]` set).
    pub fn supports(&self, flags: MigFlags, state: MigState) -> bool {
        let req = u64::from(self.required[state as usize]);
        flags.0 & req == req
    }
}

impl fmt::Display for KernelTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: vfio_mig_get_next_state() lines {}-{}, skip loop {}",
            self.origin,
            self.lines.function.0,
            self.lines.function.1,
            self.flow.skip_loop.name()
        )
    }
}

#[cfg(test)]
mod tests;
