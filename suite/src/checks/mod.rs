//! Generated check families. A new check is a YAML fixture or a generator here, never a new
//! code path in the engine.

pub mod arcs;

use crate::check::Check;

/// Every generated check, in a stable order.
pub fn generated() -> Vec<Check> {
    arcs::checks()
}
