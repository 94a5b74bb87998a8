//! An operation as one line of YAML flow, the way a sequence author writes the step: used in
//! reports, traces and reproducers.

/// Renders an op as one line of YAML flow, as a sequence author would write the step, with only
/// the keys whose value differs from the default: `set_state: STOP`, `read: {capture: s}`,
/// `write: {data: {stream: s}, segment: {fixed: 1}}`. Keys are in alphabetical order.
///
/// Reads and plain writes (most steps) are rendered directly; the others go through their serde
/// form. Both give the same text (`render_op_matches_serde`).
pub fn render_op(op: &crate::op::Op) -> String {
    use crate::op::Op;
    use crate::state::StateArg;
    match op {
        Op::SetState(StateArg::Named(s)) => ["set_state: ", s.name()].concat(),
        Op::SetState(StateArg::Raw(n)) => format!("set_state: {n}"),
        Op::V1SetState(n) => format!("v1_set_state: {n}"),
        Op::GetState => "get_state".to_string(),
        Op::GetFlags => "get_flags".to_string(),
        Op::DataSize => "data_size".to_string(),
        Op::DmaLogStop => "dma_log_stop".to_string(),
        Op::Reset => "reset".to_string(),
        Op::CloseDevice => "close_device".to_string(),
        Op::Reopen => "reopen".to_string(),
        Op::DebugfsState => "debugfs_state".to_string(),
        Op::Read(a) => render_read(a),
        Op::Write(a) => render_write(a).unwrap_or_else(|| render_op_serde(op)),
        _ => render_op_serde(op),
    }
}

/// Appends a string as a YAML plain scalar when it reads back as the same string, else quoted.
fn flow_str(out: &mut String, s: &str) {
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
        && !s.starts_with(['-', '.'])
        && !matches!(s, "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n")
        && s.parse::<f64>().is_err();
    if plain {
        out.push_str(s);
        return;
    }
    // Double-quoted, with every character YAML does not accept as printable escaped.
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control()
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a JSON value in YAML flow style.
fn flow_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => flow_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                flow_value(out, x);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Builds `{k: v, ...}` from the keys that are present, in the order given (alphabetical).
struct FlowMap {
    out: String,
    first: bool,
}

impl FlowMap {
    fn new(name: &str) -> FlowMap {
        let mut out = String::with_capacity(64);
        out.push_str(name);
        out.push_str(": {");
        FlowMap { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push_str(", ");
        }
        self.first = false;
        self.out.push_str(k);
        self.out.push_str(": ");
        &mut self.out
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// `read: {...}` without the defaults of [`crate::op::ReadArgs`].
fn render_read(a: &crate::op::ReadArgs) -> String {
    use std::fmt::Write;
    let d = crate::op::ReadArgs::default();
    let mut m = FlowMap::new("read");
    if a.append {
        m.key("append").push_str("true");
    }
    if let Some(c) = &a.capture {
        flow_str(m.key("capture"), &c.0);
    }
    if a.chunk != d.chunk {
        let _ = write!(m.key("chunk"), "{}", a.chunk);
    }
    if a.fd != d.fd {
        flow_str(m.key("fd"), a.fd.as_str());
    }
    if let Some(n) = a.max {
        let _ = write!(m.key("max"), "{n}");
    }
    if let Some(n) = a.offset {
        let _ = write!(m.key("offset"), "{n}");
    }
    if a.once {
        m.key("once").push_str("true");
    }
    m.finish()
}

/// `write: {...}` for writes without a mutation (the others go through serde).
fn render_write(a: &crate::op::WriteArgs) -> Option<String> {
    use std::fmt::Write;

    use crate::op::{FdRef, Segmentation, Source};
    if a.mutate.is_some() {
        return None;
    }
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let mut m = FlowMap::new("write");
    let o = m.key("data");
    match &a.data {
        Source::Stream(n) => {
            o.push_str("{stream: ");
            flow_str(o, &n.0);
            o.push('}');
        }
        Source::Zeros(n) => {
            let _ = write!(o, "{{zeros: {n}}}");
        }
        Source::Hex(h) => {
            o.push_str("{hex: ");
            flow_str(o, h);
            o.push('}');
        }
    }
    if a.fd != FdRef::default() {
        flow_str(m.key("fd"), a.fd.as_str());
    }
    if a.from_thread {
        m.key("from_thread").push_str("true");
    }
    if a.keep_going {
        m.key("keep_going").push_str("true");
    }
    if let Some(n) = a.offset {
        let _ = write!(m.key("offset"), "{n}");
    }
    if a.segment != Segmentation::default() {
        let o = m.key("segment");
        match &a.segment {
            Segmentation::Whole => o.push_str("whole"),
            Segmentation::Fixed(n) => {
                let _ = write!(o, "{{fixed: {n}}}");
            }
            Segmentation::Cycle(v) => {
                let _ = write!(o, "{{cycle: [{}]}}", list(v));
            }
            Segmentation::Random { seed, max } => {
                let _ = write!(o, "{{random: {{max: {max}, seed: {seed}}}}}");
            }
            Segmentation::Head { sizes, head } => {
                let _ = write!(o, "{{head: {{head: {head}, sizes: [{}]}}}}", list(sizes));
            }
        }
    }
    Some(m.finish())
}

/// [`render_op`] through the op's serde form: each argument whose removal reads back as the
/// same op is a default and is left out.
fn render_op_serde(op: &crate::op::Op) -> String {
    use serde_json::{Map, Value};
    match serde_json::to_value(op) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(m)) if m.len() == 1 => {
            let Some((k, v)) = m.into_iter().next() else { return op.name().to_string() };
            let v = match v {
                Value::Object(mut args) => {
                    let keys: Vec<String> = args.keys().cloned().collect();
                    for key in keys {
                        let Some(val) = args.remove(&key) else { continue };
                        let mut probe = Map::new();
                        probe.insert(k.clone(), Value::Object(args.clone()));
                        let same = serde_json::from_value::<crate::op::Op>(Value::Object(probe))
                            .is_ok_and(|back| back == *op);
                        if !same {
                            args.insert(key, val);
                        }
                    }
                    Value::Object(args)
                }
                other => other,
            };
            let mut out = format!("{k}: ");
            flow_value(&mut out, &v);
            out
        }
        Ok(other) => other.to_string(),
        Err(_) => op.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{render_op, render_op_serde};
    use crate::op::Op;

    fn ops() -> Vec<Op> {
        let mut ops: Vec<Op> = Vec::new();
        for kind in [crate::checks::Kind::Sim, crate::checks::Kind::Mtty, crate::checks::Kind::Other] {
            for c in crate::checks::generated_for(kind) {
                ops.extend(c.steps.into_iter().map(|s| s.op));
            }
        }
        for c in crate::sequence::builtin().unwrap_or_default() {
            ops.extend(c.steps.into_iter().map(|s| s.op));
        }
        for raw in [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 255, u32::MAX] {
            ops.push(Op::SetState(crate::state::StateArg::Raw(raw)));
            ops.push(Op::V1SetState(raw));
        }
        // Names that YAML would read as something else unless quoted.
        for name in ["null", "0123", "1e5", "-x", "", "a\"b\\c", "\u{7f}\u{85}\t", "ü ñ", "yes", ".5", "a: b"]
        {
            let v = serde_json::json!({"read": {"fd": name, "capture": name}});
            ops.push(serde_json::from_value(v).expect("read op"));
            let v = serde_json::json!({"config_read": {"offset": 4, "save_as": name}});
            ops.push(serde_json::from_value(v).expect("config_read op"));
        }
        // Arbitrary ops from pseudo-random bytes.
        let mut rng = crate::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..64).map(|_| rng.next_u64() as u8).collect();
            if let Ok(op) = arbitrary::Arbitrary::arbitrary(&mut arbitrary::Unstructured::new(&bytes)) {
                ops.push(op);
            }
        }
        ops
    }

    #[test]
    fn a_rendered_step_reads_back_as_yaml_into_the_same_operation() {
        let ops = ops();
        for op in &ops {
            let text = render_op(op);
            let back: Result<Op, _> = crate::sequence::parse_yaml("render.yaml", text.as_bytes());
            assert_eq!(back.as_ref().ok(), Some(op), "`{text}`: {back:?}");
        }
    }

    #[test]
    fn reads_and_writes_show_only_what_differs_from_the_defaults() {
        let read: Op = serde_json::from_str(r#"{"read":{"capture":"s"}}"#).expect("read");
        let write: Op = serde_json::from_str(r#"{"write":{"data":{"stream":"s"},"segment":{"fixed":1}}}"#)
            .expect("write");

        assert_eq!(render_op(&read), "read: {capture: s}");
        assert_eq!(render_op(&write), "write: {data: {stream: s}, segment: {fixed: 1}}");
    }

    #[test]
    fn render_op_matches_serde() {
        let ops = ops();
        assert!(ops.len() > 1000);
        let count = |f: fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count();
        assert!(count(|o| matches!(o, Op::Read(_))) > 100);
        assert!(count(|o| matches!(o, Op::Write(w) if w.mutate.is_none())) > 50);
        assert!(count(|o| matches!(o, Op::Write(w) if matches!(w.data, crate::op::Source::Hex(_)))) > 5);
        for op in ops {
            assert_eq!(render_op(&op), render_op_serde(&op), "{op:?}");
        }
    }
}
