//! The sequences (`fixtures/`) and profiles compiled into the binary (see `suite/build.rs`);
//! [`crate::sequence::builtin`] loads the sequences.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// A built-in profile by name (`mtty` for `profiles/mtty.yaml`).
pub fn profile(name: &str) -> Option<Result<crate::profile::Profile, crate::sequence::LoadError>> {
    PROFILES
        .iter()
        .find(|(path, _)| std::path::Path::new(path).file_stem().is_some_and(|s| s == name))
        .map(|(path, bytes)| crate::profile::Profile::load_str(path, bytes))
}

/// Every built-in profile.
pub fn profiles() -> Vec<Result<crate::profile::Profile, crate::sequence::LoadError>> {
    PROFILES.iter().map(|(path, bytes)| crate::profile::Profile::load_str(path, bytes)).collect()
}
