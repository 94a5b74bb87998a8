//! A step's explicit expectations (the `expect:` of a sequence step) judged against its
//! observation. The engine hands over what earlier steps kept ([`Memory`]); nothing here does
//! I/O.

use std::collections::BTreeMap;

use crate::check::{ExpectKind, Step};
use crate::device::IrqCounts;
use crate::oracle::Violation;
use crate::oracle::model::{Observation, StreamEnd};
use crate::state::state_name;

fn actual_errno(obs: &Observation) -> String {
    match obs.errno {
        None => "succeeded".to_string(),
        Some(e) => format!("failed with {e}"),
    }
}

/// What earlier steps of the check kept, for expectations that compare with it.
pub struct Memory<'a> {
    /// Values kept by `save:` steps.
    pub saved: &'a BTreeMap<String, u64>,
    /// Interrupt counters kept by `irq_mark` steps.
    pub marks: &'a BTreeMap<String, IrqCounts>,
    /// (length, hash) of a captured stream by name.
    pub stream: &'a dyn Fn(&str) -> Option<(u64, u64)>,
    /// The device's interrupt counters read right after the step (only when an expectation
    /// needs them).
    pub irq_now: &'a [((u32, u32), u64)],
}

impl std::fmt::Debug for Memory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("saved", self.saved).field("marks", self.marks).finish_non_exhaustive()
    }
}

/// The violations of `step`'s expectations.
pub fn evaluate(memory: &Memory<'_>, step: &Step, obs: &Observation) -> Vec<Violation> {
    let irq_now = memory.irq_now;
    let mut out = Vec::new();
    for e in &step.expect {
        let failed: Option<String> = match &e.kind {
            ExpectKind::Ok => obs.errno.map(|_| actual_errno(obs)),
            ExpectKind::Fails => obs.errno.is_none().then(|| obs.summary()),
            ExpectKind::Errno(list) => match obs.errno {
                Some(got) if list.contains(&got) => None,
                _ => Some(actual_errno(obs)),
            },
            ExpectKind::State(s) => match obs.state {
                Some(got) if got == s.raw() => None,
                Some(got) => Some(format!("state {}", state_name(got))),
                None => Some("the state could not be read".to_string()),
            },
            ExpectKind::StateIn(list) => match obs.state {
                Some(got) if list.iter().any(|s| s.raw() == got) => None,
                Some(got) => Some(format!("state {}", state_name(got))),
                None => Some("the state could not be read".to_string()),
            },
            ExpectKind::DataFd(want) => {
                let got = obs.data_fd.is_some_and(|fd| fd >= 0);
                (got != *want).then(|| format!("data_fd {}", obs.data_fd.unwrap_or(-1)))
            }
            ExpectKind::Bytes(c) => {
                let b = obs.bytes.unwrap_or(0);
                (!c.holds(b)).then(|| obs.summary())
            }
            ExpectKind::BytesAtMost { saved, factor } => match memory.saved.get(saved) {
                Some(v) if obs.bytes.unwrap_or(0) <= v.saturating_mul(u64::from(*factor)) => None,
                Some(v) => Some(format!("{} bytes, `{saved}` was {v}", obs.bytes.unwrap_or(0))),
                None => Some(format!("no saved value `{saved}`")),
            },
            ExpectKind::Eof(want) => {
                let got = obs.end == Some(StreamEnd::Eof);
                (got != *want).then(|| obs.summary())
            }
            ExpectKind::Equals(name) | ExpectKind::Differs(name) => {
                let want_equal = matches!(e.kind, ExpectKind::Equals(_));
                match (memory.stream)(&name.0) {
                    None => Some(format!("no captured stream `{name}` to compare with")),
                    Some((len, hash)) => {
                        let equal = obs.hash == Some(hash) && obs.bytes == Some(len);
                        (equal != want_equal).then(|| {
                            format!(
                                "{} bytes (hash {:#018x}) vs `{name}`: {} bytes (hash {:#018x})",
                                obs.bytes.unwrap_or(0),
                                obs.hash.unwrap_or(0),
                                len,
                                hash
                            )
                        })
                    }
                }
            }
            ExpectKind::Value(c) => match obs.value {
                Some(v) if c.holds(v) => None,
                Some(v) => Some(format!("value {v:#x}")),
                None => Some(obs.summary()),
            },
            ExpectKind::ValueMasked { mask, value } => match obs.value {
                Some(v) if v & mask == *value => None,
                Some(v) => Some(format!("value {v:#x} (masked {:#x})", v & mask)),
                None => Some(obs.summary()),
            },
            ExpectKind::EqualsSaved(name) => match (memory.saved.get(name), obs.value) {
                (Some(want), Some(v)) if *want == v => None,
                (Some(want), Some(v)) => Some(format!("value {v:#x}, saved `{name}` was {want:#x}")),
                (None, _) => Some(format!("no saved value `{name}`")),
                (_, None) => Some(obs.summary()),
            },
            ExpectKind::NoIrqsSince(mark) | ExpectKind::IrqsSince(mark) => {
                let none_wanted = matches!(e.kind, ExpectKind::NoIrqsSince(_));
                match memory.marks.get(mark) {
                    None => Some(format!("no irq_mark `{mark}`")),
                    Some(before) => {
                        let delta: u64 = irq_now
                            .iter()
                            .map(|(k, c)| {
                                c.saturating_sub(before.iter().find(|(bk, _)| bk == k).map_or(0, |(_, b)| *b))
                            })
                            .sum();
                        if none_wanted {
                            (delta > 0).then(|| format!("{delta} interrupts since `{mark}`"))
                        } else {
                            (delta == 0).then(|| format!("no interrupt since `{mark}`"))
                        }
                    }
                }
            }
            ExpectKind::Readable(want) => {
                let got = obs.value.is_some_and(|r| r & (libc::POLLIN as u64) != 0);
                (got != *want).then(|| format!("revents {:#x}", obs.value.unwrap_or(0)))
            }
            ExpectKind::Cloexec(want) => match obs.fd_flags {
                Some((c, _)) if c == *want => None,
                Some((c, _)) => Some(format!("FD_CLOEXEC {}", if c { "set" } else { "clear" })),
                None => Some(obs.summary()),
            },
            ExpectKind::AccessMode(want) => match obs.fd_flags {
                Some((_, m)) if m == *want => None,
                Some((_, m)) => Some(format!("access mode {m}")),
                None => Some(obs.summary()),
            },
            ExpectKind::InitialBytes(c) | ExpectKind::DirtyBytes(c) => {
                let initial = matches!(e.kind, ExpectKind::InitialBytes(_));
                match obs.precopy {
                    Some((i, d, _)) => {
                        let x = if initial { i } else { d };
                        (!c.holds(x)).then(|| obs.summary())
                    }
                    None => Some(obs.summary()),
                }
            }
            ExpectKind::BitsSet(c) => match obs.bitmap {
                Some((set, _)) if c.holds(set) => None,
                _ => Some(obs.summary()),
            },
            ExpectKind::PresetKept(_) => match obs.bitmap {
                Some((_, 0)) => None,
                _ => Some(obs.summary()),
            },
        };
        if let Some(actual) = failed {
            out.push(Violation { clauses: e.clauses.clone(), expected: e.kind.describe(), actual });
        }
    }
    out
}
