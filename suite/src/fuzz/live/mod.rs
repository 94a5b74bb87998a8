//! Live fuzzing of a device: seeded random walks of operations, run as checks (the runner runs
//! them in a child process under the watchdog and restores the device after each), every step
//! judged by the oracle. A discrepancy is shrunk by delta debugging into a minimal YAML
//! reproducer naming the clause.
//!
//! - [`walk`]: writing walks (the walker follows each device with the oracle's model);
//! - [`mutate`]: mutating corpus walks (coverage-guided mode);
//! - [`shrink`]: delta debugging of a walk that showed a problem;
//! - [`neighbours`]: variants of new data-file calls, each run once (coverage-guided mode);
//! - [`sweep`]: fault sweeps of new code paths (coverage-guided mode with `fail_nth`);
//! - [`session`]: the session: runs walks, collects coverage and kernel reports
//!   (`fuzz::coverage`), keeps the corpus (`fuzz::corpus`), turns what walks show into
//!   findings, accounts (cur, new) pairs and error paths.

pub mod mutate;
pub mod neighbours;
pub mod session;
pub mod shrink;
pub mod sweep;
pub mod walk;

pub use session::{Exec, LiveFinding, Session, WalkOutcome};
pub use walk::{V1_KINDS, V2_KINDS, Walker, kind_is_disruptive, unknown_kinds};

/// Live fuzzing settings.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub seed: u64,
    /// Only these operation kinds (`--ops`); None: all that apply.
    pub kinds: Option<Vec<String>>,
    pub allow_disruptive: bool,
    /// Longest walk in steps.
    pub max_walk: usize,
    /// Most candidate runs one shrink may take.
    pub shrink_budget: usize,
    /// With a coverage source: draw most walks from the corpus (false: blind walks, coverage
    /// only measured).
    pub guided: bool,
    /// Guided: sweep new code paths with injected faults (`sweep`).
    pub fault_sweep: bool,
    /// Guided: run the variants of new data-file calls (`neighbours`).
    pub neighbours: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            seed: 1,
            kinds: None,
            allow_disruptive: false,
            max_walk: 48,
            shrink_budget: 150,
            guided: true,
            fault_sweep: false,
            neighbours: true,
        }
    }
}
