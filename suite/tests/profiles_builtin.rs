//! The built-in vendor profiles: they load, name real checks and clauses, and turn declared
//! failures (and only those) into XFAIL.

use vmc::checks::generated;
use vmc::outcome::Outcome;
use vmc::profile::{Profile, glob};

fn builtin() -> Vec<Profile> {
    vmc::embedded::profiles().into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

#[test]
fn every_builtin_profile_loads_with_a_unique_name_equal_to_its_file_stem() {
    let profiles = builtin();
    assert!(profiles.len() >= 9, "{} profiles", profiles.len());
    let mut names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    for p in &profiles {
        let stem = std::path::Path::new(&p.file).file_stem().and_then(|s| s.to_str()).unwrap_or("");
        assert_eq!(p.name, stem, "{}", p.file);
        assert!(!p.verified.trim().is_empty(), "{} says nothing about verification", p.name);
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), profiles.len());
}

#[test]
fn every_deviation_names_checks_that_exist() {
    let ids: Vec<String> = generated().into_iter().map(|c| c.id).collect();
    let fixture_ids: Vec<String> =
        vmc::sequence::builtin().unwrap_or_default().into_iter().map(|c| c.id).collect();
    for p in builtin() {
        for d in &p.deviations {
            for g in &d.checks {
                let known = ids.iter().chain(&fixture_ids).any(|id| glob(g, id))
                    || ["qemu.", "ch.", "debate."].iter().any(|pre| g.starts_with(pre));
                assert!(known, "profile {}: `{g}` ({}) matches no check", p.name, d.at);
            }
            assert!(!d.reason.trim().is_empty(), "profile {}: deviation at {} has no reason", p.name, d.at);
        }
    }
}

#[test]
fn a_declared_failure_becomes_xfail_and_an_undeclared_clause_stays_fail() {
    // Arrange
    let mtty = vmc::embedded::profile("mtty").expect("mtty profile").expect("loads");
    let declared = vec!["V2-LOG-005".to_string()];
    let other = vec!["V2-STATE-005".to_string()];
    // Act
    let (xfail, dev) = mtty.apply("dmalog.start.twice", Some("mtty-2"), Outcome::Fail, &declared);
    let (fail, none) = mtty.apply("dmalog.start.twice", Some("mtty-2"), Outcome::Fail, &other);
    let (xpass, _) = mtty.apply("dmalog.start.twice", Some("mtty-2"), Outcome::Pass, &[] as &[String]);
    // Assert
    assert_eq!(xfail, Outcome::Xfail);
    assert!(dev.is_some_and(|d| d.reason.contains("stub")));
    assert_eq!(fail, Outcome::Fail);
    assert!(none.is_none());
    assert_eq!(xpass, Outcome::Xpass);
}

#[test]
fn the_mtty_profile_is_chosen_for_the_mtty_driver_only() {
    let matching: Vec<String> =
        builtin().into_iter().filter(|p| p.matches(Some("mtty"), Some("mtty-2"))).map(|p| p.name).collect();
    assert_eq!(matching, vec!["mtty".to_string()]);
    assert!(builtin().iter().all(|p| !p.matches(Some("sim-v2"), Some("sim"))));
}

#[test]
fn the_table_of_built_in_profiles_in_the_docs_counts_their_deviations() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/profiles.md")).expect("docs");
    let table = doc.split("## The built-in profiles").nth(1).expect("a section `The built-in profiles`");
    let mut listed = Vec::new();
    for row in table.lines().skip_while(|l| !l.starts_with("|---")).skip(1).take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let shown: usize = cells[3].parse().unwrap_or_else(|_| panic!("no deviation count in `{row}`"));
        for name in cells[1].split(',').map(|n| n.trim().trim_matches('`')) {
            let p = builtin().into_iter().find(|p| p.name == name);
            let p = p.unwrap_or_else(|| {
                panic!("docs/profiles.md lists `{name}`, which is not a built-in profile")
            });
            assert_eq!(shown, p.deviations.len(), "docs/profiles.md: deviations of `{name}`");
            listed.push(name.to_string());
        }
    }
    for p in builtin() {
        assert!(listed.contains(&p.name), "docs/profiles.md does not list the built-in profile `{}`", p.name);
    }
}
