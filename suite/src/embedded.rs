//! The fixtures and profiles compiled into the binary (see `suite/build.rs`).

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Loads every built-in fixture; errors name the file as it is in the repository.
pub fn fixtures() -> Result<Vec<crate::check::Check>, Vec<crate::fixture::LoadError>> {
    let mut checks = Vec::new();
    let mut errors = Vec::new();
    for (name, bytes) in FIXTURES {
        match crate::fixture::load_str(name, bytes) {
            Ok(mut c) => {
                // Built-in fixtures run with the suite: `--exact ID` reproduces them.
                c.sequence_file = None;
                checks.push(c);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(checks) } else { Err(errors) }
}

/// A built-in profile by name (`mtty` for `profiles/mtty.yaml`).
pub fn profile(name: &str) -> Option<Result<crate::profile::Profile, crate::fixture::LoadError>> {
    PROFILES
        .iter()
        .find(|(path, _)| std::path::Path::new(path).file_stem().is_some_and(|s| s == name))
        .map(|(path, bytes)| crate::profile::Profile::load_str(path, bytes))
}

/// Every built-in profile.
pub fn profiles() -> Vec<Result<crate::profile::Profile, crate::fixture::LoadError>> {
    PROFILES.iter().map(|(path, bytes)| crate::profile::Profile::load_str(path, bytes)).collect()
}
