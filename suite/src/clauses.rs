//! The clause catalog: every normative clause of both uAPIs and the debate checks, as data
//! (`suite/clauses/*.yaml`, compiled in), loaded and validated once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The catalog files, embedded at build time.
pub const FILES: &[(&str, &str)] = &[
    ("suite/clauses/v1.yaml", include_str!("../clauses/v1.yaml")),
    ("suite/clauses/v2.yaml", include_str!("../clauses/v2.yaml")),
    ("suite/clauses/debates.yaml", include_str!("../clauses/debates.yaml")),
];

/// Normative level of a clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "SHOULD")]
    Should,
    #[serde(rename = "MAY")]
    May,
    /// An obligation on userspace (the suite obeys it).
    #[serde(rename = "USER")]
    User,
    /// A definition or de-facto convention.
    #[serde(rename = "INFO")]
    Info,
    /// Enforced by the vfio core for every driver.
    #[serde(rename = "CORE")]
    Core,
    /// From the in-kernel driver API documentation.
    #[serde(rename = "DRV-DOC")]
    DrvDoc,
    /// The uAPI is silent, but QEMU depends on the behaviour (a migration with QEMU breaks
    /// without it). Never a FAIL: no sentence of the uAPI is broken.
    #[serde(rename = "QEMU")]
    Qemu,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
            Level::User => "USER",
            Level::Info => "INFO",
            Level::Core => "CORE",
            Level::DrvDoc => "DRV-DOC",
            Level::Qemu => "QEMU",
        }
    }

    /// Whether breaking it makes a device non-conformant (FAIL).
    pub fn is_mandatory(self) -> bool {
        matches!(self, Level::Must | Level::Core | Level::DrvDoc)
    }

    const ALL: [Level; 8] = [
        Level::Must,
        Level::Should,
        Level::May,
        Level::User,
        Level::Info,
        Level::Core,
        Level::DrvDoc,
        Level::Qemu,
    ];

    /// The first level named in free text such as `level_as_written` ("SHOULD (... ) / MUST (...)"),
    /// as a whole upper-case word.
    pub fn first_in(text: &str) -> Option<Level> {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        Level::ALL
            .iter()
            .filter_map(|&level| {
                text.match_indices(level.as_str())
                    .find(|&(at, name)| {
                        let before = text[..at].chars().next_back();
                        let after = text[at + name.len()..].chars().next();
                        !before.is_some_and(word) && !after.is_some_and(word)
                    })
                    .map(|(at, _)| (at, level))
            })
            .min_by_key(|&(at, _)| at)
            .map(|(_, level)| level)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which uAPI a clause belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V1,
    V2,
}

/// The optional device capability a clause needs to be testable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    None,
    P2p,
    Precopy,
    DmaLogging,
    PrecopyInfoV2,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::None => "none",
            Feature::P2p => "p2p",
            Feature::Precopy => "precopy",
            Feature::DmaLogging => "dma-logging",
            Feature::PrecopyInfoV2 => "precopy-info-v2",
        }
    }
}

/// Where a clause comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub file: String,
    pub kernel: String,
    pub lines: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kernel = if self.kernel == "n/a" { String::new() } else { format!(" ({})", self.kernel) };
        if self.lines.is_empty() {
            write!(f, "{}{kernel}", self.file)
        } else {
            write!(f, "{}{kernel} l.{}", self.file, self.lines)
        }
    }
}

/// The sentence a clause comes from, verbatim, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quote {
    /// The words of the source, verbatim (whitespace joined); `[...]` marks an elision.
    pub text: String,
    /// A repository path in a kernel or QEMU source, or the URL of a public thread.
    pub file: String,
    /// The kernel (or QEMU) version the lines refer to; `n/a` for a URL.
    pub kernel: String,
    #[serde(default)]
    pub lines: String,
}

/// The kernels a clause holds on: `since` the first release whose uAPI or core has it,
/// `until` the last one (absent: still in force).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernels {
    pub since: String,
    #[serde(default)]
    pub until: Option<String>,
}

/// A kernel release `major.minor` (`"6.12"` -> `(6, 12)`).
pub fn parse_release(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.until {
            Some(until) => write!(f, "{}-{until}", self.since),
            None => write!(f, "{}+", self.since),
        }
    }
}

/// One clause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    pub id: String,
    pub family: Family,
    pub level: Level,
    pub level_as_written: String,
    pub section: String,
    pub title: String,
    pub statement: String,
    pub source: Vec<Source>,
    pub feature: Feature,
    pub observe: String,
    #[serde(default)]
    pub see_also: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// The sentence the clause and its level come from.
    #[serde(default)]
    pub quote: Option<Quote>,
    /// Why the level is what it is where the text is ambiguous, and the debate that settled it.
    #[serde(default)]
    pub level_note: Option<String>,
    /// The kernels the clause applies to.
    #[serde(default)]
    pub kernels: Option<Kernels>,
}

impl Clause {
    /// `include/uapi/linux/vfio.h (6.12) l.1037-1039; ...`
    pub fn sources(&self) -> String {
        self.source.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    clauses: Vec<Clause>,
}

/// The loaded catalog.
#[derive(Debug)]
pub struct Catalog {
    clauses: Vec<Clause>,
    index: BTreeMap<String, usize>,
}

impl Catalog {
    /// Parses and validates catalog files; every problem is reported, with its file.
    pub fn load(files: &[(&str, &str)]) -> Result<Catalog, Vec<String>> {
        let mut errors = Vec::new();
        let mut clauses = Vec::new();
        for (name, text) in files {
            match serde_saphyr::from_str::<CatalogFile>(text) {
                Ok(f) => clauses.extend(f.clauses),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        let mut index = BTreeMap::new();
        for (i, c) in clauses.iter().enumerate() {
            if index.insert(c.id.clone(), i).is_some() {
                errors.push(format!("duplicate clause id {}", c.id));
            }
            let prefix_ok = match c.family {
                Family::V1 => c.id.starts_with("V1-") || c.id.starts_with("DEBATE-"),
                Family::V2 => c.id.starts_with("V2-") || c.id.starts_with("DEBATE-"),
            };
            if !prefix_ok {
                errors.push(format!("{}: id does not match family {:?}", c.id, c.family));
            }
            if c.statement.trim().is_empty() || c.statement.contains('\n') {
                errors.push(format!("{}: statement must be one non-empty line", c.id));
            }
            if c.observe.trim().is_empty() {
                errors.push(format!("{}: observe is empty", c.id));
            }
            if c.source.is_empty() {
                errors.push(format!("{}: no source", c.id));
            }
            for s in &c.source {
                if s.file.trim().is_empty() || s.kernel.trim().is_empty() {
                    errors.push(format!("{}: source without file or kernel version", c.id));
                }
            }
            errors.extend(check_quote_level_kernels(c));
        }
        for c in &clauses {
            for s in &c.see_also {
                if !index.contains_key(s) {
                    errors.push(format!("{}: see_also names unknown clause {s}", c.id));
                }
            }
        }
        if errors.is_empty() { Ok(Catalog { clauses, index }) } else { Err(errors) }
    }

    pub fn get(&self, id: &str) -> Option<&Clause> {
        self.index.get(id).map(|&i| &self.clauses[i])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// All clauses in file order.
    pub fn all(&self) -> &[Clause] {
        &self.clauses
    }

    /// Renders the catalog as Markdown (docs/clauses.md).
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "# Clause catalog\n\n\
             Generated from `suite/clauses/*.yaml` by `vfio-mig-conform clauses --format md`; \
             do not edit by hand (a snapshot test keeps it current).\n\n\
             Levels: MUST/CORE/DRV-DOC broken = FAIL, SHOULD broken = NON-STRICT (FAIL with `--strict`), \
             MAY/INFO = INFO, USER = an obligation the suite itself obeys, QEMU = the uAPI is silent but QEMU \
             depends on it (a warning, even with `--strict`; never FAIL).\n\n\
             Every clause quotes the words it comes from (kernel or QEMU file and lines, or a public thread); \
             its level follows those words, and a level note says why wherever it does not or the reading is \
             debatable. Kernels: the releases the clause holds on (`6.2+` = from 6.2 on, `5.8-5.17` = those only).\n\n",
        );
        let mut counts: BTreeMap<Level, usize> = BTreeMap::new();
        for c in &self.clauses {
            *counts.entry(c.level).or_default() += 1;
        }
        out.push_str(&format!("{} clauses: ", self.clauses.len()));
        out.push_str(&counts.iter().map(|(l, n)| format!("{n} {l}")).collect::<Vec<_>>().join(", "));
        out.push_str(".\n");
        let mut section = String::new();
        for c in &self.clauses {
            let fam_section = format!("{} §{}", if c.family == Family::V1 { "v1" } else { "v2" }, c.section);
            let heading =
                if c.id.starts_with("DEBATE-") { format!("Debates §{}", c.section) } else { fam_section };
            if heading != section {
                out.push_str(&format!(
                    "\n## {heading}\n\n| ID | Level | Kernels | Feature | Clause | Source |\n|---|---|---|---|---|---|\n"
                ));
                section = heading;
            }
            let esc = |s: &str| s.replace('|', "\\|");
            let mut clause = format!("**{}.** {}", esc(&c.title), esc(&c.statement));
            if let Some(q) = &c.quote {
                let at = Source { file: q.file.clone(), kernel: q.kernel.clone(), lines: q.lines.clone() };
                clause.push_str(&format!("<br>Quote: “{}” ({})", esc(&q.text), esc(&at.to_string())));
            }
            if let Some(note) = &c.level_note {
                clause.push_str(&format!("<br>Level note: {}", esc(note)));
            }
            let kernels = c.kernels.as_ref().map(ToString::to_string).unwrap_or_default();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                c.id,
                c.level,
                kernels,
                c.feature.as_str(),
                clause,
                esc(&c.sources())
            ));
        }
        out
    }
}

/// The required provenance of a clause: the quote it comes from, a level that follows the words
/// (or a note saying why not), and the kernels it holds on.
fn check_quote_level_kernels(c: &Clause) -> Vec<String> {
    let mut errors = Vec::new();
    match &c.quote {
        None => errors.push(format!("{}: no quote (the sentence the clause comes from)", c.id)),
        Some(q) => {
            if q.text.trim().is_empty() {
                errors.push(format!("{}: quote has no text", c.id));
            }
            if q.file.trim().is_empty() {
                errors.push(format!("{}: quote has no file", c.id));
            }
            if q.kernel.trim().is_empty() {
                errors.push(format!("{}: quote has no kernel version (n/a for a URL)", c.id));
            }
        }
    }
    let note = c.level_note.as_deref().is_some_and(|n| !n.trim().is_empty());
    match Level::first_in(&c.level_as_written) {
        None => errors.push(format!(
            "{}: level_as_written {:?} names no level (MUST, SHOULD, MAY, USER, INFO, CORE, DRV-DOC, QEMU)",
            c.id, c.level_as_written
        )),
        Some(written) if written != c.level && !note => errors.push(format!(
            "{}: level {} differs from level_as_written {written} without a level_note",
            c.id, c.level
        )),
        Some(_) => {}
    }
    match &c.kernels {
        None => errors.push(format!("{}: no kernels (since/until)", c.id)),
        Some(k) => match (parse_release(&k.since), k.until.as_deref().map(parse_release)) {
            (None, _) => {
                errors.push(format!("{}: kernels.since {:?} is not a release like 6.12", c.id, k.since));
            }
            (_, Some(None)) => {
                errors.push(format!("{}: kernels.until {:?} is not a release like 6.12", c.id, k.until));
            }
            (Some(since), Some(Some(until))) if until < since => errors.push(format!(
                "{}: kernels.until {} is before kernels.since {}",
                c.id,
                k.until.as_deref().unwrap_or(""),
                k.since
            )),
            _ => {}
        },
    }
    errors
}

/// The compiled-in catalog. Its validity is a build invariant checked by the test suite.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| match Catalog::load(FILES) {
        Ok(c) => c,
        Err(errors) => panic!("the built-in clause catalog is invalid:\n{}", errors.join("\n")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_without_errors() {
        let c = Catalog::load(FILES).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        assert!(c.all().len() >= 140);
        assert!(c.contains("V2-STATE-005"));
        assert!(c.contains("V1-STATE-010"));
        assert!(c.contains("DEBATE-RESET-001"));
    }

    #[test]
    fn duplicate_ids_and_unknown_references_are_reported() {
        let file = "clauses:\n  - {id: V2-X-001, family: v2, level: MUST, level_as_written: MUST, section: '1', title: t, statement: s, source: [{file: f, kernel: '6.12', lines: '1'}], feature: none, observe: o, see_also: [V2-NOPE-001]}\n  - {id: V2-X-001, family: v2, level: MUST, level_as_written: MUST, section: '1', title: t, statement: s, source: [{file: f, kernel: '6.12', lines: '1'}], feature: none, observe: o}\n";
        let errors = Catalog::load(&[("t.yaml", file)]).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("duplicate clause id V2-X-001")));
        assert!(errors.iter().any(|e| e.contains("unknown clause V2-NOPE-001")));
    }

    #[test]
    fn unknown_levels_and_features_are_rejected_with_a_location() {
        let file = "clauses:\n  - {id: V2-X-001, family: v2, level: MUSTNT, level_as_written: x, section: '1', title: t, statement: s, source: [], feature: none, observe: o}\n";
        let errors = Catalog::load(&[("t.yaml", file)]).unwrap_err();
        assert!(errors[0].contains("t.yaml") && errors[0].contains("MUSTNT"), "{errors:?}");
        let file = file.replace("MUSTNT", "MUST").replace("feature: none", "feature: warp");
        let errors = Catalog::load(&[("t.yaml", &file)]).unwrap_err();
        assert!(errors[0].contains("warp"), "{errors:?}");
    }

    /// One clause in block YAML with every field; `edit` rewrites it before loading.
    fn one_clause(edit: impl Fn(String) -> String) -> Result<Catalog, Vec<String>> {
        let base = "clauses:\n  - id: V2-X-001\n    family: v2\n    level: MUST\n    level_as_written: \"MUST (will)\"\n    section: '1'\n    title: t\n    statement: s\n    source: [{file: f, kernel: '6.12', lines: '1'}]\n    feature: none\n    observe: o\n    quote: {text: \"The device will do it.\", file: include/uapi/linux/vfio.h, kernel: '6.12', lines: '1'}\n    kernels: {since: '5.18'}\n".to_string();
        let text = edit(base);
        Catalog::load(&[("t.yaml", &text)])
    }

    fn rejected(edit: impl Fn(String) -> String, expect: &str) {
        let errors = one_clause(edit).expect_err("the clause should be rejected");
        assert!(
            errors.iter().any(|e| e.starts_with("V2-X-001: ") && e.contains(expect)),
            "expected an error naming V2-X-001 with {expect:?}, got {errors:?}"
        );
    }

    #[test]
    fn a_clause_with_quote_level_and_kernels_loads() {
        let c = one_clause(|t| t).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        let clause = c.get("V2-X-001").expect("loaded");
        assert_eq!(clause.kernels.as_ref().map(ToString::to_string).as_deref(), Some("5.18+"));
        assert!(
            c.to_markdown()
                .contains("Quote: “The device will do it.” (include/uapi/linux/vfio.h (6.12) l.1)")
        );
    }

    #[test]
    fn a_clause_without_a_quote_is_rejected_with_its_id() {
        rejected(
            |t| t.lines().filter(|l| !l.starts_with("    quote:")).collect::<Vec<_>>().join("\n"),
            "no quote",
        );
        rejected(|t| t.replace("text: \"The device will do it.\"", "text: \"  \""), "quote has no text");
        rejected(|t| t.replace("file: include/uapi/linux/vfio.h", "file: ''"), "quote has no file");
    }

    #[test]
    fn a_clause_without_kernels_is_rejected_with_its_id() {
        rejected(|t| t.replace("    kernels: {since: '5.18'}\n", ""), "no kernels");
        rejected(|t| t.replace("since: '5.18'", "since: 'recent'"), "kernels.since");
        rejected(|t| t.replace("since: '5.18'", "since: '6.2', until: '5.17'"), "before kernels.since");
    }

    #[test]
    fn a_level_that_differs_from_the_words_needs_a_level_note() {
        rejected(
            |t| t.replace("level: MUST\n", "level: SHOULD\n"),
            "differs from level_as_written MUST without a level_note",
        );
        rejected(|t| t.replace("\"MUST (will)\"", "\"n/a (debate check)\""), "names no level");
        let noted = one_clause(|t| {
            t.replace("level: MUST\n", "level: SHOULD\n").replace(
                "    kernels:",
                "    level_note: \"Softened by the flexibility sentence.\"\n    kernels:",
            )
        });
        assert!(noted.is_ok(), "{noted:?}");
    }

    #[test]
    fn the_first_level_named_in_free_text_is_found() {
        assert_eq!(Level::first_in("SHOULD (checking) / MUST (failing)"), Some(Level::Should));
        assert_eq!(Level::first_in("MAY (for the user: 'Can be called')"), Some(Level::May));
        assert_eq!(Level::first_in("DRV-DOC"), Some(Level::DrvDoc));
        assert_eq!(Level::first_in("QEMU (no v2 sentence)"), Some(Level::Qemu));
        assert_eq!(Level::first_in("MUSTARD and MAYBE"), None);
        assert_eq!(Level::first_in("n/a (RFC-AW)"), None);
    }

    #[test]
    fn every_builtin_clause_quotes_its_source_and_names_its_kernels() {
        for c in catalog().all() {
            let q = c.quote.as_ref().unwrap_or_else(|| panic!("{} has no quote", c.id));
            assert!(!q.text.trim().is_empty() && !q.file.trim().is_empty(), "{}", c.id);
            assert!(
                !q.file.contains("shared/") && !q.file.starts_with('/'),
                "{}: quote cites a path outside the repo",
                c.id
            );
            let k = c.kernels.as_ref().unwrap_or_else(|| panic!("{} has no kernels", c.id));
            assert!(parse_release(&k.since).is_some(), "{}", c.id);
        }
        assert!(catalog().contains("V2-PIV2-009"), "the 7.1 REINIT clauses are in the catalog");
    }

    #[test]
    fn every_defect_names_existing_clauses() {
        for d in crate::device::sim::Defect::ALL {
            for c in d.clauses() {
                assert!(catalog().contains(c), "defect {} names unknown clause {c}", d.name());
            }
        }
    }
}
