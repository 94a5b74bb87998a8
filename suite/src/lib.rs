//! vfio-mig-conform: a conformance suite and fuzz harness for Linux VFIO live-migration
//! drivers.
//!
//! Where things are:
//! - [`state`]: states and flags of both uAPIs; [`uapi`]: constants and core argument checks.
//! - [`oracle`]: the spec oracle (v2 FSM in [`oracle::fsm`], v1 protocol in [`oracle::v1`]).
//! - [`kernel_table`]: the kernel's next-state table, extracted from vfio_main.c (checked in
//!   under `suite/data/next_state/`), which the v2 FSM oracle is compared with.
//! - [`op`]: the operation vocabulary shared by sequences, fuzzing and reproducers.
//! - [`device`]: the device abstraction, the simulators ([`device::sim`]) and the kernel
//!   ioctl layer.
//! - [`fuzz`]: the fuzz harness (cargo-fuzz targets, YAML reproducers) and the live fuzzer.

pub mod check;
pub mod checks;
pub mod clauses;
pub mod device;
pub mod embedded;
pub mod engine;
pub mod errno;
pub mod fuzz;
pub mod hash;
pub mod kernel_table;
pub mod kmsg;
pub mod op;
pub mod oracle;
/// Outcomes of checks; lives with the other verdicts in [`oracle`].
pub use oracle::outcome;
pub mod profile;
pub mod provenance;
pub mod report;
pub mod rng;
pub mod sequence;
pub mod state;
pub mod uapi;
pub mod units;
