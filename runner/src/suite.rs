//! Assembling a run: the YAML inputs (sequences: built-in, `--fixtures` directories, `--sequence` files, the profile) are loaded
//! and validated before any device is opened, so bad input never touches a device; then the
//! generated families for the device's kind are added.

use std::collections::BTreeSet;

use vmc::check::Check;
use vmc::engine::Engine;
use vmc::profile::Profile;

use crate::cli::{RunArgs, exit};
use crate::run::Exit;

/// Everything read from files, validated.
#[derive(Debug)]
pub struct Inputs {
    /// Sequence checks (built-in or `--fixtures`), or the `--sequence` checks.
    pub sequences: Vec<Check>,
    /// `--sequence` given: run only those.
    pub only_sequences: bool,
    /// `--profile` given explicitly (None: automatic; Some(None): `none`).
    pub profile: Option<Option<Profile>>,
}

fn load_errors(errors: &[vmc::sequence::LoadError]) -> Exit {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Exit::new(exit::USAGE, lines.join("\n"))
}

impl Inputs {
    /// Loads and validates every input file.
    pub fn load(args: &RunArgs) -> Result<Inputs, Exit> {
        let mut sequences = Vec::new();
        if args.sequence.is_empty() {
            if args.fixtures.is_empty() {
                sequences.extend(vmc::sequence::builtin().map_err(|e| load_errors(&e))?);
            } else {
                for dir in &args.fixtures {
                    if !dir.is_dir() {
                        return Err(Exit::new(
                            exit::USAGE,
                            format!("{}: not a directory of fixtures", dir.display()),
                        ));
                    }
                    sequences.extend(vmc::sequence::load_dir(dir).map_err(|e| load_errors(&e))?);
                }
            }
        } else {
            let mut errors = Vec::new();
            for f in &args.sequence {
                match vmc::sequence::load_file(f) {
                    Ok(c) => sequences.push(c),
                    Err(e) => errors.push(e),
                }
            }
            if !errors.is_empty() {
                return Err(load_errors(&errors));
            }
        }
        let profile = match args.profile.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some(p) => Some(Some(explicit_profile(p)?)),
        };
        if let Some(Some(p)) = &profile {
            names_known_checks(p, &sequences)?;
        }
        Ok(Inputs { sequences, only_sequences: !args.sequence.is_empty(), profile })
    }
}

/// Refuses a profile whose deviation names a check that does not exist (a typo would make
/// the deviation never apply): every pattern must match a generated check, a built-in
/// sequence or one of `sequences` (the run's `--fixtures`/`--sequence` checks).
pub fn names_known_checks(p: &Profile, sequences: &[Check]) -> Result<(), Exit> {
    let builtin = vmc::sequence::builtin().unwrap_or_default();
    let generated = vmc::checks::generated();
    let ids: Vec<&str> = generated.iter().chain(&builtin).chain(sequences).map(|c| c.id.as_str()).collect();
    let errors: Vec<String> = p
        .deviations
        .iter()
        .flat_map(|d| d.unmatched(&ids))
        .map(|(pattern, at)| {
            format!(
                "{at}: `{pattern}` matches no check (a deviation that names no existing check never applies; \
                 `vfio-mig-conform DEVICE --list` lists the checks)"
            )
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(Exit::new(exit::USAGE, errors.join("\n"))) }
}

pub fn explicit_profile(p: &str) -> Result<Profile, Exit> {
    let bad = |e: vmc::sequence::LoadError| Exit::new(exit::USAGE, e.to_string());
    let path = std::path::Path::new(p);
    if path.exists() || p.contains('/') || p.ends_with(".yaml") {
        return Profile::load_file(path).map_err(bad);
    }
    match vmc::embedded::profile(p) {
        Some(r) => r.map_err(bad),
        None => {
            let names: Vec<String> =
                vmc::embedded::profiles().into_iter().filter_map(Result::ok).map(|p| p.name).collect();
            Err(Exit::new(
                exit::USAGE,
                format!("no profile `{p}`: not a file, and the built-in profiles are {}", names.join(", ")),
            ))
        }
    }
}

/// The checks to offer for this run, in a stable order grouped by family.
pub fn checks(inputs: &Inputs, engine: &Engine) -> Result<Vec<Check>, Exit> {
    let mut checks = Vec::new();
    if !inputs.only_sequences {
        checks.extend(vmc::checks::generated_for(vmc::checks::Kind::of(engine.slots[0].dev.info())));
    }
    checks.extend(inputs.sequences.iter().cloned());
    let mut seen = BTreeSet::new();
    for c in &checks {
        if !seen.insert(c.id.clone()) {
            return Err(Exit::new(exit::USAGE, format!("{}: check id `{}` is used twice", c.origin, c.id)));
        }
    }
    // Group by family (first two components) keeping the first-seen order of families.
    let mut order: Vec<String> = Vec::new();
    for c in &checks {
        let fam = vmc::report::ktap::suite_of(&c.id).to_string();
        if !order.contains(&fam) {
            order.push(fam);
        }
    }
    checks.sort_by_key(|c| order.iter().position(|f| f == vmc::report::ktap::suite_of(&c.id)));
    Ok(checks)
}

/// The profile to apply: the explicit one, else the one built-in profile whose `match` names
/// the device's driver (and model).
pub fn profile(inputs: &Inputs, engine: &Engine) -> Option<Profile> {
    match &inputs.profile {
        Some(p) => p.clone(),
        None => {
            let info = engine.slots[0].dev.info();
            let matching: Vec<Profile> = vmc::embedded::profiles()
                .into_iter()
                .filter_map(Result::ok)
                .filter(|p| p.matches(info.driver.as_deref(), info.model.as_deref()))
                .collect();
            if matching.len() == 1 { matching.into_iter().next() } else { None }
        }
    }
}
