//! The YAML schema of fixtures (`fixtures/**/*.yaml`) and their loader.
//!
//! A fixture is one check: a header (what it models, the citation, what it needs) and steps.
//! A step is one operation key (`set_state: STOP_COPY`, `- get_state`) plus optional keys:
//! `expect`, `clauses`, `device`, `as`, `setup`, `note`. Every error names file:line:col.
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

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, VariantAccess, Visitor,
};
use serde_saphyr::Spanned;

use crate::check::{Check, Cmp, ExpectKind, Expectation, Loc, Origin, Requires, Step};
use crate::clauses::{ClauseId, Feature};
use crate::device::MigrationApi;
use crate::errno::Errno;
use crate::op::{Op, Source, StreamName};
use crate::state::{MigFlags, MigState};

/// Largest fixture or profile file the loader reads.
pub const MAX_FILE: usize = 1 << 20;

/// A loader error: file:line:col and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    fn at(file: &str, line: usize, col: usize, message: impl Into<String>) -> LoadError {
        LoadError { file: file.to_string(), line: line.max(1), col: col.max(1), message: message.into() }
    }
}

/// serde-saphyr options with a tight budget for user files.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 24;
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o
}

/// Reads and parses a YAML user file into `T`, turning every problem (size, UTF-8, syntax,
/// schema, budget) into a located [`LoadError`].
pub fn parse_yaml<T: for<'de> Deserialize<'de>>(name: &str, bytes: &[u8]) -> Result<T, LoadError> {
    if bytes.len() > MAX_FILE {
        return Err(LoadError::at(
            name,
            1,
            1,
            format!("file is {} bytes; fixtures and profiles are limited to {MAX_FILE} bytes", bytes.len()),
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let col = good.len() - good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
            return Err(LoadError::at(
                name,
                line,
                col,
                format!("not valid UTF-8 (byte offset {})", e.valid_up_to()),
            ));
        }
    };
    if text.trim().is_empty() || text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(LoadError::at(name, 1, 1, "the file is empty"));
    }
    serde_saphyr::from_str_with_options::<T>(text, yaml_options()).map_err(|e| {
        let mut err = saphyr_error(name, &e);
        err.message = plain_message(&err.message, text, err.line, err.col);
        err
    })
}

/// Rewrites the YAML library's messages that speak of its own API or types (`set
/// DuplicateKeyPolicy in Options`, `budget breached: Aliases { aliases: 1001 }`, `invalid u64`)
/// into what the file's author needs: the key, the limit, the field and the range it takes.
fn plain_message(message: &str, text: &str, line: usize, col: usize) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest).trim();
        return format!("duplicate key `{key}`: each key may appear once in a map");
    }
    if message.starts_with("multiple YAML documents detected") {
        return "a second YAML document (after `---`): a sequence or profile file holds exactly one"
            .to_string();
    }
    if let Some(rest) = message.strip_prefix("budget breached: ") {
        // `Kind { field: N }`
        let kind = rest.split_whitespace().next().unwrap_or("");
        let n: String = rest.chars().filter(char::is_ascii_digit).collect();
        let budget = yaml_options().budget.unwrap_or_default();
        let (what, limit) = match kind {
            "Aliases" => ("aliases (*name)", budget.max_aliases.to_string()),
            "Anchors" => ("anchors (&name)", budget.max_anchors.to_string()),
            "Depth" => ("levels of nesting", budget.max_depth.to_string()),
            "Nodes" => ("nodes", budget.max_nodes.to_string()),
            "Events" => ("YAML events", budget.max_events.to_string()),
            "Documents" => ("documents", "1".to_string()),
            _ => ("YAML elements", "the loader's budget".to_string()),
        };
        return format!(
            "{n} {what} is beyond the loader's budget of {limit} (anchors, aliases or nesting beyond what a fixture needs)"
        );
    }
    if let Some(ty) = message.strip_prefix("invalid ").filter(|t| !t.contains(' ')) {
        let range = match ty {
            "u8" => "an integer from 0 to 255",
            "u16" => "an integer from 0 to 65535",
            "u32" => "an integer from 0 to 4294967295",
            "u64" | "usize" => "an integer from 0 to 18446744073709551615",
            "i32" => "an integer from -2147483648 to 2147483647",
            "i64" => "an integer from -9223372036854775808 to 9223372036854775807",
            "f32" | "f64" => "a number",
            "boolean" | "bool" => "true or false",
            _ => return message.to_string(),
        };
        let (field, token) = field_and_token(text, line, col);
        let numeric = token.parse::<i128>().is_ok()
            || token
                .strip_prefix("0x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
        let what = if numeric {
            "is out of range"
        } else if range.starts_with("an integer") {
            "is not an integer"
        } else {
            "is not valid"
        };
        return match field {
            Some(f) => format!("{f}: `{token}` {what}: {f} takes {range}"),
            None => format!("`{token}` {what}: this value takes {range}"),
        };
    }
    message.to_string()
}

/// The scalar at `line:col` and the key it is the value of (the last `key:` before it on its
/// line, else on the lines above).
fn field_and_token(text: &str, line: usize, col: usize) -> (Option<String>, String) {
    let lines: Vec<&str> = text.lines().collect();
    let Some(l) = lines.get(line.saturating_sub(1)) else { return (None, String::new()) };
    let at = l.char_indices().nth(col.saturating_sub(1)).map_or(l.len(), |(i, _)| i);
    let token: String = l[at..].chars().take_while(|c| !",}]#\n".contains(*c)).collect();
    let last_key = |s: &str| -> Option<String> {
        let mut found = None;
        for (i, _) in s.match_indices(':') {
            let key: String = s[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !key.is_empty() {
                found = Some(key);
            }
        }
        found
    };
    let field =
        last_key(&l[..at]).or_else(|| lines[..line.saturating_sub(1)].iter().rev().find_map(|p| last_key(p)));
    (field, token.trim().to_string())
}

/// Converts a serde-saphyr error (which prints `line L column C: message` and a snippet) into
/// a located error.
fn saphyr_error(name: &str, e: &serde_saphyr::Error) -> LoadError {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let mut line = 1;
    let mut col = 1;
    let mut message = first.to_string();
    if let Some(rest) = first.strip_prefix("line ") {
        let mut parts = rest.splitn(2, ' ');
        line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(1);
        let rest = parts.next().unwrap_or("");
        if let Some(r) = rest.strip_prefix("column ") {
            let mut p = r.splitn(2, ':');
            col = p.next().and_then(|c| c.trim().parse().ok()).unwrap_or(1);
            message = p.next().unwrap_or("").trim().to_string();
        }
    }
    LoadError::at(name, line, col, message)
}

// ---------------------------------------------------------------------------------------
// Steps: one operation key plus meta keys, parsed with the operation's own deserializer
// so that errors inside its arguments keep their position.

/// Presents `key: value` as the enum variant `key` with content `value`.
struct OneVariant<D> {
    key: String,
    de: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for OneVariant<D> {
    type Error = D::Error;
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        v.visit_enum(self)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        v.visit_enum(self)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Content<D>(D);

impl<'de, D: Deserializer<'de>> EnumAccess<'de> for OneVariant<D> {
    type Error = D::Error;
    type Variant = Content<D>;
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Content<D>), D::Error> {
        let k: de::value::StringDeserializer<D::Error> = self.key.into_deserializer();
        Ok((seed.deserialize(k)?, Content(self.de)))
    }
}

impl<'de, D: Deserializer<'de>> VariantAccess<'de> for Content<D> {
    type Error = D::Error;
    fn unit_variant(self) -> Result<(), D::Error> {
        de::IgnoredAny::deserialize(self.0).map(|_| ())
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, s: S) -> Result<S::Value, D::Error> {
        s.deserialize(self.0)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct("", fields, v)
    }
}

struct OpSeed(String);

impl<'de> DeserializeSeed<'de> for OpSeed {
    type Value = Op;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Op, D::Error> {
        let op = Op::deserialize(OneVariant { key: self.0, de: d })?;
        op.check_limits().map_err(de::Error::custom)?;
        Ok(op)
    }
}

/// Step-level keys besides the operation.
const STEP_KEYS: &[&str] = &["expect", "clauses", "device", "as", "setup", "note", "fail_nth"];

/// A parsed step before validation.
#[derive(Debug)]
pub struct StepYaml {
    pub op: Op,
    pub expect: Option<ExpectYaml>,
    pub clauses: Vec<Spanned<String>>,
    pub device: Option<Spanned<String>>,
    pub name_fd: Option<String>,
    pub setup: bool,
    pub note: Option<String>,
    pub fail_nth: Option<u32>,
}

impl<'de> Deserialize<'de> for StepYaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StepYaml, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StepYaml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a step: an operation name, or a map with one operation key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StepYaml, E> {
                let op = Op::deserialize(OneVariant { key: s.to_string(), de: ().into_deserializer() })?;
                Ok(StepYaml {
                    op,
                    expect: None,
                    clauses: Vec::new(),
                    device: None,
                    name_fd: None,
                    setup: false,
                    note: None,
                    fail_nth: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StepYaml, A::Error> {
                let mut op = None;
                let mut step = StepYaml {
                    op: Op::GetState,
                    expect: None,
                    clauses: Vec::new(),
                    device: None,
                    name_fd: None,
                    setup: false,
                    note: None,
                    fail_nth: None,
                };
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "expect" => step.expect = Some(m.next_value()?),
                        "clauses" => step.clauses = m.next_value()?,
                        "device" => step.device = Some(m.next_value()?),
                        "as" => step.name_fd = Some(m.next_value()?),
                        "setup" => step.setup = m.next_value()?,
                        "note" => step.note = Some(m.next_value()?),
                        "fail_nth" => step.fail_nth = Some(m.next_value()?),
                        name if Op::NAMES.contains(&name) => {
                            if op.is_some() {
                                return Err(de::Error::custom(format!(
                                    "second operation `{name}` in one step (one operation per step)"
                                )));
                            }
                            op = Some(m.next_value_seed(OpSeed(k))?);
                        }
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown step `{other}`: expected an operation ({}) or a step key ({})",
                                Op::NAMES.join(", "),
                                STEP_KEYS.join(", ")
                            )));
                        }
                    }
                }
                step.op = op.ok_or_else(|| {
                    de::Error::custom(format!("this step has no operation (one of {})", Op::NAMES.join(", ")))
                })?;
                Ok(step)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Expectations.

/// `expect: oracle`, a map of expectations, or a list of such maps.
#[derive(Debug)]
pub enum ExpectYaml {
    Oracle,
    Map(Box<ExpectMap>),
    List(Vec<ExpectYaml>),
}

/// The expectation keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectMap {
    #[serde(default)]
    pub oracle: bool,
    pub ok: Option<bool>,
    pub errno: Option<OneOrMany<Errno>>,
    pub state: Option<MigState>,
    pub state_in: Option<Vec<MigState>>,
    pub data_fd: Option<bool>,
    pub bytes: Option<Cmp>,
    pub eof: Option<bool>,
    pub equals: Option<StreamName>,
    pub differs: Option<StreamName>,
    pub value: Option<Cmp>,
    pub value_masked: Option<Masked>,
    pub equals_saved: Option<String>,
    pub no_irqs_since: Option<String>,
    pub irqs_since: Option<String>,
    pub readable: Option<bool>,
    pub cloexec: Option<bool>,
    pub access: Option<AccessName>,
    pub initial_bytes: Option<Cmp>,
    pub dirty_bytes: Option<Cmp>,
    pub bits_set: Option<Cmp>,
    pub preset_kept: Option<bool>,
    #[serde(default)]
    pub clauses: Vec<Spanned<String>>,
}

/// `value_masked: {mask: 0xff, value: 3}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Masked {
    pub mask: u64,
    pub value: u64,
}

/// `access: rdonly | wronly`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessName {
    Rdonly,
    Wronly,
}

/// One value or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for ExpectYaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ExpectYaml, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExpectYaml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`oracle`, a map of expectations, or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ExpectYaml, E> {
                if s == "oracle" {
                    Ok(ExpectYaml::Oracle)
                } else {
                    Err(E::custom(format!(
                        "`{s}`: the only word `expect` takes is `oracle`; otherwise give a map such as {{ok: true}}"
                    )))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<ExpectYaml, A::Error> {
                ExpectMap::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|x| ExpectYaml::Map(Box::new(x)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<ExpectYaml, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = s.next_element::<ExpectYaml>()? {
                    v.push(e);
                }
                Ok(ExpectYaml::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// The fixture file.

/// `requires:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiresYaml {
    pub api: Option<ApiName>,
    #[serde(default)]
    pub flags: Vec<FlagName>,
    #[serde(default)]
    pub features: Vec<Feature>,
    #[serde(default)]
    pub devices: Vec<Spanned<String>>,
    #[serde(default)]
    pub other_type: bool,
    #[serde(default)]
    pub same_type: bool,
}

/// `api: v1 | v2`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiName {
    V1,
    V2,
}

/// A migration flag by name.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagName {
    StopCopy,
    P2p,
    PreCopy,
}

/// A fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureYaml {
    pub id: Spanned<String>,
    pub title: String,
    #[serde(default)]
    pub models: Option<String>,
    #[serde(default)]
    pub citation: Option<String>,
    #[serde(default)]
    pub requires: RequiresYaml,
    /// Extra clauses the check observes besides those named by its steps.
    #[serde(default)]
    pub clauses: Vec<Spanned<String>>,
    /// Where a recorded sequence comes from (`vfio-mig-conform record`).
    #[serde(default)]
    pub provenance: Option<crate::provenance::Provenance>,
    pub steps: Vec<Spanned<StepYaml>>,
}

fn loc_of<T>(file: &Arc<str>, s: &Spanned<T>) -> Loc {
    Loc { file: Arc::clone(file), line: s.referenced.line() as usize, col: s.referenced.column() as usize }
}

fn check_clause(file: &Arc<str>, c: &Spanned<String>) -> Result<ClauseId, LoadError> {
    if let Some(id) = ClauseId::parse(&c.value) {
        Ok(id)
    } else {
        let l = loc_of(file, c);
        Err(LoadError::at(
            &l.file,
            l.line,
            l.col,
            format!("unknown clause ID `{}` (see `vfio-mig-conform clauses`)", c.value),
        ))
    }
}

fn expectations(
    file: &Arc<str>,
    e: ExpectYaml,
    step_clauses: &[ClauseId],
    oracle: &mut bool,
    out: &mut Vec<Expectation>,
) -> Result<(), LoadError> {
    match e {
        ExpectYaml::Oracle => *oracle = true,
        ExpectYaml::List(items) => {
            for i in items {
                expectations(file, i, step_clauses, oracle, out)?;
            }
        }
        ExpectYaml::Map(m) => {
            let m = *m;
            *oracle |= m.oracle;
            let mut clauses = Vec::new();
            for c in &m.clauses {
                clauses.push(check_clause(file, c)?);
            }
            if clauses.is_empty() {
                clauses = step_clauses.to_vec();
            }
            let mut push = |kind: ExpectKind| out.push(Expectation { kind, clauses: clauses.clone() });
            match m.ok {
                Some(true) => push(ExpectKind::Ok),
                Some(false) => push(ExpectKind::Fails),
                None => {}
            }
            if let Some(e) = m.errno {
                push(ExpectKind::Errno(e.into_vec()));
            }
            if let Some(s) = m.state {
                push(ExpectKind::State(s));
            }
            if let Some(s) = m.state_in {
                push(ExpectKind::StateIn(s));
            }
            if let Some(b) = m.data_fd {
                push(ExpectKind::DataFd(b));
            }
            if let Some(c) = m.bytes {
                push(ExpectKind::Bytes(c));
            }
            if let Some(b) = m.eof {
                push(ExpectKind::Eof(b));
            }
            if let Some(s) = m.equals {
                push(ExpectKind::Equals(s));
            }
            if let Some(s) = m.differs {
                push(ExpectKind::Differs(s));
            }
            if let Some(c) = m.value {
                push(ExpectKind::Value(c));
            }
            if let Some(mk) = m.value_masked {
                push(ExpectKind::ValueMasked { mask: mk.mask, value: mk.value });
            }
            if let Some(s) = m.equals_saved {
                push(ExpectKind::EqualsSaved(s));
            }
            if let Some(s) = m.no_irqs_since {
                push(ExpectKind::NoIrqsSince(s));
            }
            if let Some(s) = m.irqs_since {
                push(ExpectKind::IrqsSince(s));
            }
            if let Some(b) = m.readable {
                push(ExpectKind::Readable(b));
            }
            if let Some(b) = m.cloexec {
                push(ExpectKind::Cloexec(b));
            }
            if let Some(a) = m.access {
                push(ExpectKind::AccessMode(match a {
                    AccessName::Rdonly => 0,
                    AccessName::Wronly => 1,
                }));
            }
            if let Some(c) = m.initial_bytes {
                push(ExpectKind::InitialBytes(c));
            }
            if let Some(c) = m.dirty_bytes {
                push(ExpectKind::DirtyBytes(c));
            }
            if let Some(c) = m.bits_set {
                push(ExpectKind::BitsSet(c));
            }
            if let Some(b) = m.preset_kept {
                push(ExpectKind::PresetKept(b));
            }
        }
    }
    Ok(())
}

/// Checks a check id: lower-case dotted, at least three components.
pub fn valid_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// Loads a fixture from text. `name` is how errors and reports name the file.
pub fn load_str(name: &str, bytes: &[u8]) -> Result<Check, LoadError> {
    let y: FixtureYaml = parse_yaml(name, bytes)?;
    let file: Arc<str> = Arc::from(name);
    if !valid_id(&y.id.value) {
        let l = loc_of(&file, &y.id);
        return Err(LoadError::at(
            name,
            l.line,
            l.col,
            format!(
                "id `{}` must be lower-case words joined by dots, at least three (e.g. qemu.v2.save_precopy)",
                y.id.value
            ),
        ));
    }
    let mut devices: Vec<String> = y.requires.devices.iter().map(|d| d.value.clone()).collect();
    for (i, d) in y.requires.devices.iter().enumerate() {
        if devices[..i].contains(&d.value) {
            let l = loc_of(&file, d);
            return Err(LoadError::at(
                name,
                l.line,
                l.col,
                format!("device label `{}` listed twice", d.value),
            ));
        }
    }
    if devices.is_empty() {
        devices.push("A".to_string());
    }
    let mut steps = Vec::new();
    let mut captures: Vec<String> = Vec::new();
    let mut fd_names: Vec<String> = vec!["current".to_string(), "previous".to_string()];
    for s in y.steps {
        let loc = loc_of(&file, &s);
        let sy = s.value;
        let mut step_clauses = Vec::new();
        for c in &sy.clauses {
            step_clauses.push(check_clause(&file, c)?);
        }
        let device = match &sy.device {
            Some(d) if !devices.contains(&d.value) => {
                let l = loc_of(&file, d);
                return Err(LoadError::at(
                    name,
                    l.line,
                    l.col,
                    format!(
                        "unknown device label `{}` (requires.devices lists {})",
                        d.value,
                        devices.join(", ")
                    ),
                ));
            }
            Some(d) => Some(d.value.clone()),
            None => None,
        };
        // Names must be defined before they are used.
        let err = |m: String| LoadError::at(name, loc.line, loc.col, m);
        let need_capture = |n: &StreamName, captures: &Vec<String>| {
            if captures.contains(&n.0) {
                Ok(())
            } else {
                Err(err(format!("stream `{n}` is used before any step captures it (read: {{capture: {n}}})")))
            }
        };
        match &sy.op {
            Op::Read(a) => {
                if let Some(c) = &a.capture {
                    captures.push(c.0.clone());
                }
            }
            Op::V1Save(a) => {
                if let Some(c) = &a.capture {
                    captures.push(c.0.clone());
                }
            }
            Op::Write(a) => {
                if let Source::Stream(n) = &a.data {
                    need_capture(n, &captures)?;
                }
                if let Some(
                    crate::op::Mutation::Splice { other, .. } | crate::op::Mutation::SpliceAt { other, .. },
                ) = &a.mutate
                {
                    need_capture(other, &captures)?;
                }
            }
            Op::V1Resume(a) => {
                if let Source::Stream(n) = &a.data {
                    need_capture(n, &captures)?;
                }
            }
            _ => {}
        }
        let fd_ref = match &sy.op {
            Op::Read(a) => Some(&a.fd),
            Op::Write(a) => Some(&a.fd),
            Op::PrecopyInfo(a) => Some(&a.fd),
            Op::BadBuffer(a) => Some(&a.fd),
            Op::Poll { fd, .. } | Op::FdFlags { fd } | Op::CloseFd { fd } => Some(fd),
            _ => None,
        };
        if let Some(f) = fd_ref
            && !fd_names.contains(&f.as_str().to_string())
        {
            return Err(err(format!("data fd `{f}` is used before a step names it with `as: {f}`")));
        }
        if let Some(n) = &sy.name_fd {
            if !matches!(sy.op, Op::SetState(_)) {
                return Err(err(
                    "`as:` names the data fd a set_state step returns; this step is not set_state"
                        .to_string(),
                ));
            }
            fd_names.push(n.clone());
        }
        let mut oracle = false;
        let mut expect = Vec::new();
        if let Some(e) = sy.expect {
            expectations(&file, e, &step_clauses, &mut oracle, &mut expect)?;
        }
        if !step_clauses.is_empty() && expect.is_empty() && !oracle {
            return Err(err("`clauses:` without `expect:`: say what the step must do".to_string()));
        }
        steps.push(Step {
            op: sy.op,
            device,
            name_fd: sy.name_fd,
            expect,
            oracle: oracle || sy.setup,
            setup: sy.setup,
            loc: Some(loc),
            note: sy.note,
            fail_nth: sy.fail_nth,
            precondition: None,
        });
    }
    if steps.is_empty() {
        return Err(LoadError::at(name, 1, 1, "a fixture needs at least one step"));
    }
    let mut extra = Vec::new();
    for c in &y.clauses {
        extra.push(check_clause(&file, c)?);
    }
    let mut flags = MigFlags::STOP_COPY;
    for f in &y.requires.flags {
        flags = MigFlags(
            flags.0
                | match f {
                    FlagName::StopCopy => 1,
                    FlagName::P2p => 2,
                    FlagName::PreCopy => 4,
                },
        );
    }
    let api = y.requires.api.map(|a| match a {
        ApiName::V1 => MigrationApi::V1,
        ApiName::V2 => MigrationApi::V2,
    });
    if matches!(api, Some(MigrationApi::V1)) {
        flags = MigFlags(0);
    }
    let uses_v1 = steps.iter().any(|s| s.op.is_v1());
    let api = api.or(if uses_v1 { Some(MigrationApi::V1) } else { Some(MigrationApi::V2) });
    let mut check = Check {
        id: y.id.value,
        title: y.title,
        clauses: Vec::new(),
        requires: Requires {
            api,
            flags,
            features: y.requires.features,
            devices: if y.requires.devices.is_empty() { Vec::new() } else { devices },
            other_type: y.requires.other_type,
            same_type: y.requires.same_type,
            unavailable: None,
        },
        steps,
        origin: Origin::Fixture(Loc { file: Arc::clone(&file), line: 1, col: 1 }),
        models: y.models,
        citation: y.citation,
        sequence_file: Some(name.to_string()),
    };
    check.collect_clauses(&extra);
    Ok(check)
}

/// Loads a fixture file from disk.
pub fn load_file(path: &Path) -> Result<Check, LoadError> {
    let name = path.display().to_string();
    let bytes = read_bounded(path).map_err(|m| LoadError::at(&name, 1, 1, m))?;
    load_str(&name, &bytes)
}

/// What a path that is not a regular file is, for the error message.
fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Reads a user file, refusing anything larger than [`MAX_FILE`] before reading it whole.
/// The file's type is checked before it is opened (opening a FIFO blocks until a writer
/// comes), and again on the open file, which is opened non-blocking in case it changed.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = |ft: std::fs::FileType| {
        format!("{}, not a regular file: sequences, fixtures and profiles are read from files", file_kind(ft))
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot open: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE as u64 + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() > MAX_FILE {
        return Err(format!(
            "file is larger than {MAX_FILE} bytes; fixtures and profiles are limited to that"
        ));
    }
    Ok(buf)
}

/// Loads every `*.yaml` below `dir` (sorted), collecting all errors.
pub fn load_dir(dir: &Path) -> Result<Vec<Check>, Vec<LoadError>> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files);
    files.sort();
    let mut checks = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load_file(&f) {
            Ok(c) => checks.push(c),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(checks) } else { Err(errors) }
}

fn collect_yaml(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        // Real subdirectories only: a symlink to a parent directory would never end.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_yaml(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::id::*;

    fn err(text: &str) -> String {
        load_str("t.yaml", text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_fixture_loads_with_located_steps() {
        let c = load_str(
            "t.yaml",
            b"id: a.b.c\ntitle: t\nsteps:\n  - set_state: STOP\n    expect: oracle\n  - get_state\n  - reset:\n    expect: {ok: true}\n    clauses: [V2-RESET-001]\n",
        )
        .unwrap();
        assert_eq!(c.steps.len(), 3);
        assert!(c.steps[0].oracle);
        assert_eq!(c.steps[0].loc.as_ref().unwrap().line, 4);
        assert_eq!(c.steps[2].expect[0].clauses, vec![V2_RESET_001]);
        assert!(c.clauses.contains(&V2_STATE_002), "a judged SET can break V2-STATE-002");
        assert!(!c.clauses.contains(&V2_STATE_007), "RUNNING -> STOP cannot break V2-STATE-007");
    }

    #[test]
    fn an_unknown_step_names_its_line_and_column() {
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - set_state: STOP\n  - set_stat: STOP\n");
        assert!(e.starts_with("t.yaml:5:5: unknown step `set_stat`"), "{e}");
    }

    #[test]
    fn wrong_types_and_unknown_clauses_and_devices_are_located() {
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - read: {max: lots}\n");
        assert!(e.starts_with("t.yaml:4:"), "{e}");
        let e = err(
            "id: a.b.c\ntitle: t\nsteps:\n  - reset:\n    expect: {ok: true}\n    clauses: [V2-NOPE-001]\n",
        );
        assert!(e.starts_with("t.yaml:6:") && e.contains("unknown clause ID `V2-NOPE-001`"), "{e}");
        let e = err("id: a.b.c\ntitle: t\nrequires: {devices: [A, B]}\nsteps:\n  - reset:\n    device: C\n");
        assert!(e.starts_with("t.yaml:6:") && e.contains("unknown device label `C`"), "{e}");
    }

    #[test]
    fn streams_and_fds_must_be_defined_before_use() {
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - write: {data: {stream: s}}\n");
        assert!(e.contains("stream `s` is used before"), "{e}");
        let e = err("id: a.b.c\ntitle: t\nsteps:\n  - read: {fd: save}\n");
        assert!(e.contains("data fd `save` is used before"), "{e}");
    }

    #[test]
    fn hostile_files_fail_cleanly() {
        assert!(load_str("t.yaml", b"").unwrap_err().message.contains("empty"));
        assert!(load_str("t.yaml", b"# only a comment\n").unwrap_err().message.contains("empty"));
        let e = load_str("t.yaml", b"id: a.b.c\ntitle: \xff\xfe\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 8));
        assert!(e.message.contains("UTF-8"));
        let big = vec![b'#'; MAX_FILE + 1];
        assert!(load_str("t.yaml", &big).unwrap_err().message.contains("limited"));
        let deep = format!("id: a.b.c\ntitle: t\nsteps: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let e = load_str("t.yaml", deep.as_bytes()).unwrap_err();
        assert!(e.message.contains("recursion limit") && e.line == 3, "{e}");
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            laughs.push_str(&format!(
                "{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n",
                (b'b' + i) as char,
                (b'b' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i) as char
            ));
        }
        let e =
            parse_yaml::<std::collections::BTreeMap<String, serde_json::Value>>("t.yaml", laughs.as_bytes())
                .unwrap_err();
        assert!(e.message.contains("budget"), "{e}");
    }
}
