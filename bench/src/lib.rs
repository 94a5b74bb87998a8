//! Benchmarks of vfio-mig-conform (issue 8, `docs/performance.md`).
//!
//! - [`overhead`]: the suite's execution against a raw-ioctl loop doing the same ioctls, on
//!   the real `mtty` driver in the VM (`bench-overhead`, run by `cargo bench --bench overhead`).
//! - [`stream`]: draining and replaying GiB-sized simulated streams through the engine's data
//!   path against plain read/write loops, with peak RSS (`bench-stream`).
//! - [`simrun`]: the whole default suite on `sim:v2`, end to end (`bench-simrun`).
//!
//! Every figure is printed, never asserted; every ratio compares samples taken alternately in
//! the same run, so a machine that is busy with someone else's build slows both sides alike.
//! [`raw`] is the benchmark's own VFIO layer (libc only, no suite code).

pub mod overhead;
pub mod raw;
pub mod simrun;
pub mod stats;
pub mod stream;
pub mod sys;
