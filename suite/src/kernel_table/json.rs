//! The JSON document of a [`KernelTable`], keys in kernel order (states by value, flag sets
//! as the uAPI lists them), as checked in under `suite/data/next_state/`.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::{KernelTable, Resolved};
use crate::state::{MigFlags, MigState};

/// A JSON value whose objects keep their key order.
enum J {
    Str(String),
    Num(u64),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Str(v) => s.serialize_str(v),
            J::Num(v) => s.serialize_u64(*v),
            J::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            J::Obj(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn obj<K: Into<String>>(entries: impl IntoIterator<Item = (K, J)>) -> J {
    J::Obj(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn s(text: impl Into<String>) -> J {
    J::Str(text.into())
}

/// The uAPI's migration flags in bit order, by their short names.
const FLAG_NAMES: [(&str, MigFlags); 3] =
    [("STOP_COPY", MigFlags::STOP_COPY), ("P2P", MigFlags::P2P), ("PRE_COPY", MigFlags::PRE_COPY)];

/// `STOP_COPY|P2P` for a flag set.
fn flag_set_name(flags: MigFlags) -> String {
    FLAG_NAMES.iter().filter(|(_, f)| flags.contains(*f)).map(|(n, _)| *n).collect::<Vec<_>>().join("|")
}

/// The text of a resolved `(flags, cur, new)` in the document. The first four are the ones
/// the kernels so far produce; `oracle_vs_kernel_table.rs` reads them by these prefixes.
fn resolved_text(r: &Resolved) -> J {
    let walk = |p: &[MigState]| p.iter().map(|s| s.name()).collect::<Vec<_>>().join(" -> ");
    match r {
        Resolved::Path(p) => J::Arr(p.iter().map(|st| s(st.name())).collect()),
        Resolved::Noop => {
            s("no-op (drivers exit their loop before calling the helper; SET returns 0, data_fd=-1)")
        }
        Resolved::CurInvalid(MigState::Error) => {
            s("EINVAL with WARN_ON (helper must not be called from ERROR; pds returns -EIO instead)")
        }
        Resolved::CurInvalid(_) => s("EINVAL+WARN"),
        Resolved::Einval => s("EINVAL"),
        Resolved::Hang => {
            s("HANG (the helper's skip loop never ends: a soft lockup with the driver's state mutex held)")
        }
        Resolved::EinvalAfter(p) => s(format!("EINVAL after {} (a later helper call failed)", walk(p))),
        Resolved::HangAfter(p) => s(format!("HANG after {} (a later helper call never returns)", walk(p))),
        Resolved::NeverArrives(p) => s(format!("NEVER ARRIVES: {} ... (the driver loop cycles)", walk(p))),
    }
}

impl KernelTable {
    fn document(&self) -> J {
        let l = &self.lines;
        let all_flags = FLAG_NAMES.iter().fold(0u64, |a, (_, f)| a | f.0);
        let required = MigState::ALL.map(|st| {
            let req = self.required[st as usize];
            let v = if u64::from(req) & !all_flags != 0 {
                s(format!("{req:#010x} (never satisfiable: {st} is never a valid cur/new for the helper)"))
            } else {
                J::Num(req.into())
            };
            (st.name(), v)
        });
        let raw = MigState::ALL.map(|cur| {
            (
                cur.name(),
                obj(MigState::ALL.map(|new| (new.name(), s(self.next[cur as usize][new as usize].name())))),
            )
        });
        let resolved = MigFlags::DEFINED_SETS.map(|flags| {
            let mut pairs = Vec::new();
            for cur in MigState::ALL {
                for new in MigState::ALL {
                    pairs.push((format!("{cur}->{new}"), resolved_text(&self.resolve(flags, cur, new))));
                }
            }
            (flag_set_name(flags), J::Obj(pairs))
        });
        obj([
            (
                "source",
                s(format!(
                    "{} vfio_mig_get_next_state() lines {}-{}",
                    self.origin, l.function.0, l.function.1
                )),
            ),
            ("origin", s(&self.origin)),
            (
                "generator",
                s(format!(
                    "cargo run -p vmc-suite --example extract_next_state -- <vfio_main.c> --origin '{}'",
                    self.origin
                )),
            ),
            (
                "lines",
                obj([
                    ("function", J::Arr(vec![J::Num(l.function.0.into()), J::Num(l.function.1.into())])),
                    ("num_states", J::Num(l.num_states.into())),
                    ("vfio_from_fsm_table", J::Num(l.fsm_table.into())),
                    ("state_flags_table", J::Num(l.flags_table.into())),
                    ("cur_check", J::Num(l.cur_check.into())),
                    ("new_check", J::Num(l.new_check.into())),
                    ("first_step", J::Num(l.first_step.into())),
                    ("skip_loop", J::Num(l.skip_loop.into())),
                    ("return", J::Num(l.ret.into())),
                ]),
            ),
            (
                "control_flow",
                obj([
                    (
                        "checks",
                        s("cur_fsm >= 8 or lacking its flags: -EINVAL with WARN_ON; new_fsm likewise: \
                           -EINVAL; a walk ending on ERROR: -EINVAL"),
                    ),
                    ("skip_loop", s(self.flow.skip_loop.name())),
                    ("skip_loop_means", s(self.flow.skip_loop.describe())),
                    (
                        "driver_loop",
                        s(
                            "resolved assumes the drivers' loop: while (cur != new) { helper(cur, new, &next); \
                           step to next }; cur == new never calls the helper",
                        ),
                    ),
                ]),
            ),
            ("state_enum", obj(MigState::ALL.map(|st| (st.name(), J::Num(st.raw().into()))))),
            ("flag_bits", obj(self.flags_used.iter().map(|(n, v)| (n.clone(), J::Num((*v).into()))))),
            ("state_required_flags", obj(required)),
            ("raw_next_step", obj(raw)),
            ("implicit_entries", J::Arr(self.implicit.iter().map(s).collect())),
            ("resolved", obj(resolved)),
        ])
    }

    /// The document as a JSON value (key order is lost in a `Value`; see
    /// [`KernelTable::to_json_text`]).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.document()).unwrap_or(serde_json::Value::Null)
    }

    /// The document as checked in: keys in kernel order, one-space indent, final newline.
    pub fn to_json_text(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serialising strings and numbers into a Vec cannot fail.
        let _ = self.document().serialize(&mut ser);
        let mut text = String::from_utf8(out).unwrap_or_default();
        text.push('\n');
        text
    }
}
