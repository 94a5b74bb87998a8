//! Assembling the checks of a run: the generated families and the YAML fixtures, or the
//! sequences given with `--sequence`.

use vmc::check::Check;
use vmc::engine::Engine;

use crate::cli::RunArgs;
use crate::run::Exit;

/// The checks to offer for this run, in a stable order grouped by family.
pub fn checks(_args: &RunArgs, _engine: &Engine) -> Result<Vec<Check>, Exit> {
    Ok(vmc::checks::generated())
}
