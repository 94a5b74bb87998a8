//! Report writers. The JSON-lines [`record`] is the source of truth; [`ktap`], [`junit`],
//! [`html`] and the pretty output are rebuilt from it.

pub mod coverage;
pub mod html;
pub mod junit;
pub mod ktap;
pub mod notable;
pub mod record;
