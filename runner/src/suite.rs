//! Assembling the checks of a run: the generated families and the YAML fixtures, or the
//! sequences given with `--sequence`; and choosing the vendor profile.

use std::collections::BTreeSet;

use vmc::check::Check;
use vmc::engine::Engine;
use vmc::profile::Profile;

use crate::cli::{RunArgs, exit};
use crate::run::Exit;

fn load_errors(errors: &[vmc::fixture::LoadError]) -> Exit {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Exit::new(exit::USAGE, lines.join("\n"))
}

/// The checks to offer for this run, in a stable order grouped by family.
pub fn checks(args: &RunArgs, engine: &Engine) -> Result<Vec<Check>, Exit> {
    let mut checks = Vec::new();
    if args.sequence.is_empty() {
        checks.extend(vmc::checks::generated_for(vmc::checks::Kind::of(engine.slots[0].dev.info())));
        if args.fixtures.is_empty() {
            checks.extend(vmc::embedded::fixtures().map_err(|e| load_errors(&e))?);
        } else {
            for dir in &args.fixtures {
                if !dir.is_dir() {
                    return Err(Exit::new(
                        exit::USAGE,
                        format!("{}: not a directory of fixtures", dir.display()),
                    ));
                }
                checks.extend(vmc::fixture::load_dir(dir).map_err(|e| load_errors(&e))?);
            }
        }
    } else {
        let mut errors = Vec::new();
        for f in &args.sequence {
            match vmc::fixture::load_file(f) {
                Ok(c) => checks.push(c),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(load_errors(&errors));
        }
    }
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

/// The profile to apply: `--profile NAME|FILE|none`, else the one built-in profile whose
/// `match` names the device's driver (and model).
pub fn profile(args: &RunArgs, engine: &Engine) -> Result<Option<Profile>, Exit> {
    let bad = |e: vmc::fixture::LoadError| Exit::new(exit::USAGE, e.to_string());
    match args.profile.as_deref() {
        Some("none") => Ok(None),
        Some(p) => {
            let path = std::path::Path::new(p);
            if path.exists() || p.contains('/') || p.ends_with(".yaml") {
                return Profile::load_file(path).map(Some).map_err(bad);
            }
            match vmc::embedded::profile(p) {
                Some(r) => r.map(Some).map_err(bad),
                None => {
                    let names: Vec<String> = vmc::embedded::profiles()
                        .into_iter()
                        .filter_map(Result::ok)
                        .map(|p| p.name)
                        .collect();
                    Err(Exit::new(
                        exit::USAGE,
                        format!(
                            "no profile `{p}`: not a file, and the built-in profiles are {}",
                            names.join(", ")
                        ),
                    ))
                }
            }
        }
        None => {
            let info = engine.slots[0].dev.info();
            let matching: Vec<Profile> = vmc::embedded::profiles()
                .into_iter()
                .filter_map(Result::ok)
                .filter(|p| p.matches(info.driver.as_deref(), info.model.as_deref()))
                .collect();
            Ok(if matching.len() == 1 { matching.into_iter().next() } else { None })
        }
    }
}
