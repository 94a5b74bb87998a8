//! Vendor compliance profiles (`profiles/*.yaml`): which driver a profile matches, what it
//! advertises, which clause families apply, strictness, and the known deviations (expected
//! failures with a reason, a link and the evidence).
//!
//! ```yaml
//! name: mtty
//! description: Linux samples/vfio-mdev/mtty.c (6.7+)
//! match: {drivers: [vfio-mtty, mtty], models: [mtty-1, mtty-2]}
//! verified: on Debian 6.12.117 in QEMU
//! advertises: {flags: [stop_copy, p2p, pre_copy], dma_logging: true}
//! families: [v2-core, v2-precopy, v2-p2p, v2-dmalog]
//! deviations:
//!   - checks: [fsm.precopy.temporary_end_enomsg]
//!     clauses: [V2-PRECOPY-007]
//!     reason: read() returns 0, not ENOMSG, at the end of the initial data
//!     link: samples/vfio-mdev/mtty.c l.871-887
//!     evidence: "expected ENOMSG, actual read returned 0 after 24 bytes"
//! ```

use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::clauses::{Clause, Family, Feature, catalog};
use crate::outcome::Outcome;
use crate::sequence::{FlagName, LoadError, parse_yaml, read_bounded};
use crate::state::MigFlags;

/// A clause family (uapi-clauses.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClauseFamily {
    V2Core,
    V2Precopy,
    V2P2p,
    V2Dmalog,
    V2PrecopyV2,
    V1,
    V1Strict,
}

impl ClauseFamily {
    /// The name used in profiles (`v2-core`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ClauseFamily::V2Core => "v2-core",
            ClauseFamily::V2Precopy => "v2-precopy",
            ClauseFamily::V2P2p => "v2-p2p",
            ClauseFamily::V2Dmalog => "v2-dmalog",
            ClauseFamily::V2PrecopyV2 => "v2-precopy-v2",
            ClauseFamily::V1 => "v1",
            ClauseFamily::V1Strict => "v1-strict",
        }
    }

    /// The family a clause belongs to.
    pub fn of(c: &Clause) -> ClauseFamily {
        match (c.family, c.feature) {
            (Family::V1, _) if c.id.starts_with("V1-STRICT-") => ClauseFamily::V1Strict,
            (Family::V1, _) => ClauseFamily::V1,
            (Family::V2, Feature::P2p) => ClauseFamily::V2P2p,
            (Family::V2, Feature::Precopy) => ClauseFamily::V2Precopy,
            (Family::V2, Feature::DmaLogging) => ClauseFamily::V2Dmalog,
            (Family::V2, Feature::PrecopyInfoV2) => ClauseFamily::V2PrecopyV2,
            (Family::V2, Feature::None) => ClauseFamily::V2Core,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchYaml {
    #[serde(default)]
    drivers: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    kernel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvertisesYaml {
    #[serde(default)]
    flags: Vec<FlagName>,
    #[serde(default)]
    dma_logging: Option<bool>,
    #[serde(default)]
    precopy_info_v2: Option<bool>,
    #[serde(default)]
    api: Option<crate::sequence::ApiName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviationYaml {
    checks: Vec<Spanned<String>>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    clauses: Vec<Spanned<String>>,
    reason: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    evidence: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileYaml {
    name: String,
    description: String,
    #[serde(rename = "match", default)]
    matches: MatchYaml,
    verified: String,
    #[serde(default)]
    advertises: AdvertisesYaml,
    #[serde(default)]
    families: Vec<ClauseFamily>,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    deviations: Vec<DeviationYaml>,
}

/// A known deviation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deviation {
    /// Check-id globs (`*` matches any run of characters).
    pub checks: Vec<String>,
    /// When non-empty, the deviation covers a failure only if every broken clause is listed.
    pub clauses: Vec<String>,
    /// When non-empty, the deviation applies only to these device models.
    pub models: Vec<String>,
    pub reason: String,
    pub link: Option<String>,
    pub evidence: Option<String>,
    /// `file:line:col` of the entry.
    pub at: String,
    /// `file:line:col` of each of `checks`.
    pub checks_at: Vec<String>,
}

impl Deviation {
    fn matches_id(&self, id: &str) -> bool {
        self.checks.iter().any(|g| glob(g, id))
    }

    /// Whether it names `id` exactly (then a pass is XPASS).
    fn names(&self, id: &str) -> bool {
        self.checks.iter().any(|g| !g.contains('*') && g == id)
    }

    /// The check patterns that match none of `ids` (a misspelt check name would make the
    /// deviation never apply), each with its `file:line:col`.
    pub fn unmatched<'a>(&'a self, ids: &[&str]) -> Vec<(&'a str, &'a str)> {
        self.checks
            .iter()
            .zip(&self.checks_at)
            .filter(|(g, _)| !ids.iter().any(|id| glob(g, id)))
            .map(|(g, at)| (g.as_str(), at.as_str()))
            .collect()
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let mut s = self.reason.clone();
        if let Some(l) = &self.link {
            s.push_str(&format!(" ({l})"));
        }
        s
    }
}

/// `*` glob matching.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

/// A loaded profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub drivers: Vec<String>,
    pub models: Vec<String>,
    pub kernel: Option<String>,
    pub verified: String,
    pub flags: Option<MigFlags>,
    pub dma_logging: Option<bool>,
    pub precopy_info_v2: Option<bool>,
    pub api: Option<crate::device::MigrationApi>,
    pub families: Vec<ClauseFamily>,
    pub strict: bool,
    pub deviations: Vec<Deviation>,
    pub file: String,
}

impl Profile {
    /// Loads a profile from text; unknown clauses are errors with their position.
    pub fn load_str(name: &str, bytes: &[u8]) -> Result<Profile, LoadError> {
        let y: ProfileYaml = parse_yaml(name, bytes)?;
        let mut deviations = Vec::new();
        for d in y.deviations {
            let mut clauses = Vec::new();
            for c in &d.clauses {
                if !catalog().contains(&c.value) {
                    return Err(LoadError {
                        file: name.to_string(),
                        line: c.referenced.line() as usize,
                        col: c.referenced.column() as usize,
                        message: format!("unknown clause ID `{}` (see `vfio-mig-conform clauses`)", c.value),
                    });
                }
                clauses.push(c.value.clone());
            }
            let first = d.checks.first();
            if first.is_none() {
                return Err(LoadError {
                    file: name.to_string(),
                    line: 1,
                    col: 1,
                    message: format!("deviation `{}` names no checks", d.reason),
                });
            }
            let at = first
                .map(|c| format!("{name}:{}:{}", c.referenced.line(), c.referenced.column()))
                .unwrap_or_default();
            let checks_at = d
                .checks
                .iter()
                .map(|c| format!("{name}:{}:{}", c.referenced.line(), c.referenced.column()))
                .collect();
            deviations.push(Deviation {
                checks_at,
                checks: d.checks.into_iter().map(|c| c.value).collect(),
                clauses,
                models: d.models,
                reason: d.reason,
                link: d.link,
                evidence: d.evidence,
                at,
            });
        }
        let flags = (!y.advertises.flags.is_empty()).then(|| {
            MigFlags(y.advertises.flags.iter().fold(0, |acc, f| {
                acc | match f {
                    FlagName::StopCopy => 1,
                    FlagName::P2p => 2,
                    FlagName::PreCopy => 4,
                }
            }))
        });
        Ok(Profile {
            name: y.name,
            description: y.description,
            drivers: y.matches.drivers,
            models: y.matches.models,
            kernel: y.matches.kernel,
            verified: y.verified,
            flags,
            dma_logging: y.advertises.dma_logging,
            precopy_info_v2: y.advertises.precopy_info_v2,
            api: y.advertises.api.map(|a| match a {
                crate::sequence::ApiName::V1 => crate::device::MigrationApi::V1,
                crate::sequence::ApiName::V2 => crate::device::MigrationApi::V2,
            }),
            families: y.families,
            strict: y.strict,
            deviations,
            file: name.to_string(),
        })
    }

    /// Loads a profile file.
    pub fn load_file(path: &Path) -> Result<Profile, LoadError> {
        let name = path.display().to_string();
        let bytes =
            read_bounded(path).map_err(|m| LoadError { file: name.clone(), line: 1, col: 1, message: m })?;
        Profile::load_str(&name, &bytes)
    }

    /// Whether the profile matches a device's driver or model.
    pub fn matches(&self, driver: Option<&str>, model: Option<&str>) -> bool {
        let d = driver.is_some_and(|d| self.drivers.iter().any(|x| x == d));
        let m = self.models.is_empty() || model.is_some_and(|m| self.models.iter().any(|x| x == m));
        d && m
    }

    /// Whether a check with these clauses belongs to the profile's families (all families
    /// when the profile lists none).
    pub fn covers(&self, clauses: &[impl AsRef<str>]) -> bool {
        if self.families.is_empty() {
            return true;
        }
        clauses
            .iter()
            .filter_map(|c| catalog().get(c.as_ref()))
            .any(|c| self.families.contains(&ClauseFamily::of(c)))
    }

    /// Applies the deviations to an outcome: FAIL/NON-STRICT/INFO covered by a deviation become
    /// XFAIL; a PASS of a check a deviation names exactly becomes XPASS.
    pub fn apply(
        &self,
        id: &str,
        model: Option<&str>,
        outcome: Outcome,
        broken: &[impl AsRef<str>],
    ) -> (Outcome, Option<&Deviation>) {
        for d in &self.deviations {
            if !d.matches_id(id) {
                continue;
            }
            if !d.models.is_empty() && !model.is_some_and(|m| d.models.iter().any(|x| x == m)) {
                continue;
            }
            let covered =
                d.clauses.is_empty() || broken.iter().all(|c| d.clauses.iter().any(|x| x == c.as_ref()));
            match outcome {
                Outcome::Fail | Outcome::NonStrict | Outcome::Info if covered => {
                    return (Outcome::Xfail, Some(d));
                }
                Outcome::Pass if d.names(id) => return (Outcome::Xpass, Some(d)),
                _ => {}
            }
        }
        (outcome, None)
    }
}

impl Profile {
    /// Whether the profile declares every one of `clauses` as a known deviation of a device
    /// of `model`, for findings that come from no named check (the live fuzzer's): the
    /// deviations that list them, or None when a clause is not listed (or `clauses` is
    /// empty).
    pub fn declares(&self, clauses: &[impl AsRef<str>], model: Option<&str>) -> Option<Vec<&Deviation>> {
        if clauses.is_empty() {
            return None;
        }
        let applies =
            |d: &&Deviation| d.models.is_empty() || model.is_some_and(|m| d.models.iter().any(|x| x == m));
        let mut used: Vec<&Deviation> = Vec::new();
        for c in clauses {
            let d =
                self.deviations.iter().filter(applies).find(|d| d.clauses.iter().any(|x| x == c.as_ref()))?;
            if !used.iter().any(|u| std::ptr::eq(*u, d)) {
                used.push(d);
            }
        }
        Some(used)
    }
}

impl Profile {
    /// Differences between what the profile says the driver advertises and what the device
    /// reported when probed.
    pub fn claim_mismatches(&self, facts: &crate::engine::DeviceFacts) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(api) = self.api
            && api != facts.api
        {
            out.push(format!("profile says api {api}, device speaks {}", facts.api));
        }
        if let Some(f) = self.flags
            && f != facts.flags
        {
            out.push(format!("profile says flags {f}, device advertises {}", facts.flags));
        }
        if let Some(d) = self.dma_logging
            && d != facts.dma_logging
        {
            out.push(format!("profile says DMA logging {d}, device PROBE says {}", facts.dma_logging));
        }
        if let Some(p) = self.precopy_info_v2
            && p != facts.precopy_info_v2
        {
            out.push(format!("profile says PRECOPY_INFOv2 {p}, device PROBE says {}", facts.precopy_info_v2));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::id::*;

    const P: &str = "name: t\ndescription: d\nmatch: {drivers: [drv]}\nverified: no\nfamilies: [v2-core]\ndeviations:\n  - checks: [a.b.c, x.*]\n    clauses: [V2-STATE-007]\n    reason: r\n";

    #[test]
    fn globs_match_like_shells() {
        assert!(glob("fsm.*", "fsm.arc.x"));
        assert!(glob("*.pre_copy", "fsm.arc.stop_copy.pre_copy"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("exact", "exact"));
    }

    #[test]
    fn covered_failures_become_xfail_and_named_passes_xpass() {
        let p = Profile::load_str("p.yaml", P.as_bytes()).unwrap();
        assert_eq!(p.apply("a.b.c", None, Outcome::Fail, &[V2_STATE_007]).0, Outcome::Xfail);
        assert_eq!(p.apply("a.b.c", None, Outcome::Fail, &[V2_STATE_005]).0, Outcome::Fail);
        assert_eq!(
            p.apply("a.b.c", None, Outcome::Pass, &[] as &[crate::clauses::ClauseId]).0,
            Outcome::Xpass
        );
        assert_eq!(
            p.apply("x.y.z", None, Outcome::Pass, &[] as &[crate::clauses::ClauseId]).0,
            Outcome::Pass
        );
    }

    #[test]
    fn unknown_clauses_and_fields_are_located_errors() {
        let bad = P.replace("V2-STATE-007", "V2-NOPE-009");
        let e = Profile::load_str("p.yaml", bad.as_bytes()).unwrap_err();
        assert_eq!((e.line, e.col), (8, 15));
        assert!(e.message.contains("V2-NOPE-009"));
        let bad = P.replace("verified: no", "verified: no\nstrictness: high");
        let e = Profile::load_str("p.yaml", bad.as_bytes()).unwrap_err();
        assert!(e.message.contains("strictness"), "{e}");
    }

    #[test]
    fn clause_sets_are_declared_only_when_every_clause_is_listed() {
        let p = Profile::load_str("p.yaml", P.as_bytes()).unwrap();
        assert_eq!(p.declares(&[V2_STATE_007], None).map(|d| d.len()), Some(1));
        assert!(p.declares(&[V2_STATE_007, V2_STATE_005], None).is_none());
        assert!(p.declares(&[] as &[crate::clauses::ClauseId], None).is_none());
    }

    #[test]
    fn families_select_checks_by_their_clauses() {
        let p = Profile::load_str("p.yaml", P.as_bytes()).unwrap();
        assert!(p.covers(&[V2_STATE_005.to_string()]));
        assert!(!p.covers(&[V2_PRECOPY_007.to_string()]));
    }
}
