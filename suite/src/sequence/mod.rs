//! Sequences: YAML files of steps (`fixtures/**/*.yaml`, `--sequence FILE`, recordings and
//! fuzz reproducers). A sequence is one check: a header (what it models, the citation, what it
//! needs) and steps. A step is one operation key (`set_state: STOP_COPY`, `- get_state`) plus
//! optional keys: `expect`, `clauses`, `device`, `as`, `setup`, `note`. Every error names
//! file:line:col.
//!
//! - [`yaml`]: the YAML plumbing (bounded reads, parser budget, located and plain errors),
//!   shared with profiles.
//! - [`schema`]: the serde structs of a sequence file.
//! - [`load`]: validation into a [`Check`](crate::check::Check); files, directories and the
//!   built-in sequences.
//!
//! (`fixtures/` and the `--fixtures` flag keep their user-facing names: they hold sequences.)
//!
//! ```yaml
//! id: qemu.v2.save_precopy
//! title: QEMU 8.1+ live save with pre-copy
//! models: QEMU 8.1 - 9.0
//! citation: qemu-orderings.md V2-SAVE-PRECOPY; hw/vfio/migration.c vfio_save_setup
//! requires: {api: v2, flags: [pre_copy]}
//! steps:
//!   - set_state: PRE_COPY
//!     expect: oracle
//!   - precopy_info: {}
//!     expect: {ok: true, dirty_bytes: 0}
//!     clauses: [V2-PRECOPY-005]
//! ```

pub mod load;
pub mod schema;
pub mod yaml;

pub use load::{builtin, load_dir, load_file, load_str, valid_id};
pub use schema::{
    AccessName, ApiName, ExpectMap, ExpectYaml, FlagName, Masked, OneOrMany, RequiresYaml, SequenceYaml,
    StepYaml,
};
pub use yaml::{LoadError, MAX_FILE, parse_yaml, read_bounded, yaml_options};
