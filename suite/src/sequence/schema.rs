//! The serde schema of a sequence file: the header (`id`, `title`, `models`, `citation`,
//! `requires`, `clauses`, `provenance`) and its steps (one operation key plus `expect`,
//! `clauses`, `device`, `as`, `setup`, `note`), before validation (see [`super::load`]).

use std::fmt;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, VariantAccess, Visitor,
};
use serde_saphyr::Spanned;

use crate::check::Cmp;
use crate::clauses::Feature;
use crate::errno::Errno;
use crate::op::{Op, StreamName};
use crate::state::MigState;

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
    pub(super) fn into_vec(self) -> Vec<T> {
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
// The sequence file.

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

/// A sequence file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceYaml {
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
