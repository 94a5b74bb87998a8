//! The spec oracle: pure functions of the uAPI, no I/O.
//!
//! - [`fsm`]: the v2 next-state helper and SET predictions.
//! - [`v1`]: the v1 `device_state` encoding and the region save/resume protocol.
//! - [`debugfs`]: the debugfs migration state against GET and the oracle.
//! - [`kernels`]: which clauses exist on the kernel a device runs on.
//! - [`kmsg`]: kernel log reports (KASAN, lockdep, WARN, BUG, lockups) as findings.
//! - [`piv2`]: the 7.1+ PRECOPY_INFO opt-in and REINIT rules.

pub mod data_fd;
pub mod debugfs;
pub mod dma;
pub mod expect;
pub mod fault;
pub mod feature;
pub mod fsm;
pub mod kernels;
pub mod kmsg;
pub mod model;
pub mod outcome;
pub mod piv2;
pub mod reach;
pub mod v1;

use serde::{Deserialize, Serialize};

use crate::clauses::ClauseId;

/// One broken expectation: which clauses it checks, what the spec (or the sequence) expected
/// and what the device did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub clauses: Vec<ClauseId>,
    pub expected: String,
    pub actual: String,
}

impl Violation {
    pub fn new<const N: usize>(clauses: [ClauseId; N], expected: String, actual: String) -> Self {
        Violation { clauses: clauses.to_vec(), expected, actual }
    }
}
