//! The data of `vfio_mig_get_next_state()`: finding the function, splitting its body into
//! statements, and reading the two tables' designated initializers.

use super::lex::{Kind, Token};
use super::{ErrorKind, NUM_STATES};
use crate::state::{MigFlags, MigState};

/// An error at a token's position.
pub(super) type Located = (u32, u32, ErrorKind);

fn at(t: &Token<'_>, kind: ErrorKind) -> Located {
    (t.line, t.col, kind)
}

fn unexpected(t: &Token<'_>, expected: &'static str) -> Located {
    at(t, ErrorKind::Unexpected { expected, found: t.text.to_string() })
}

/// The located function.
pub(super) struct Function<'t, 'a> {
    pub name: Token<'a>,
    /// The tokens between the braces of the body.
    pub body: &'t [Token<'a>],
    pub close: Token<'a>,
}

const FUNCTION: &str = "vfio_mig_get_next_state";

/// The definition of `vfio_mig_get_next_state()`: its name followed by a parameter list and a
/// body (a prototype, a call or `EXPORT_SYMBOL_GPL(...)` are skipped).
pub(super) fn find_function<'t, 'a>(toks: &'t [Token<'a>]) -> Result<Function<'t, 'a>, Located> {
    for (i, t) in toks.iter().enumerate() {
        if t.text != FUNCTION || toks.get(i + 1).is_none_or(|n| n.text != "(") {
            continue;
        }
        let close_paren = matching(toks, i + 1)?;
        if toks.get(close_paren + 1).is_none_or(|n| n.text != "{") {
            continue;
        }
        let open = close_paren + 1;
        let close = matching(toks, open)?;
        return Ok(Function { name: *t, body: &toks[open + 1..close], close: toks[close] });
    }
    Err((1, 1, ErrorKind::FunctionNotFound))
}

/// Index of the bracket closing the one at `open` (which is `(`, `[` or `{`).
fn matching(toks: &[Token<'_>], open: usize) -> Result<usize, Located> {
    let mut stack: Vec<&str> = Vec::new();
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.text {
            "(" => stack.push(")"),
            "[" => stack.push("]"),
            "{" => stack.push("}"),
            ")" | "]" | "}" => {
                if stack.pop() != Some(t.text) {
                    return Err(at(t, ErrorKind::Unbalanced(t.text.to_string())));
                }
                if stack.is_empty() {
                    return Ok(j);
                }
            }
            _ => {}
        }
    }
    let o = &toks[open];
    Err(at(o, ErrorKind::Unbalanced(o.text.to_string())))
}

/// Splits a function body into top-level statements: declarations and simple statements end
/// at a `;` outside brackets; `if`/`while`/`for` end after their body (a `;`-terminated
/// statement or a `{...}` block, with any `else`).
pub(super) fn statements<'t, 'a>(body: &'t [Token<'a>]) -> Result<Vec<&'t [Token<'a>]>, Located> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let end = statement_end(body, i)?;
        out.push(&body[i..=end]);
        i = end + 1;
    }
    Ok(out)
}

/// Index of the last token of the statement starting at `i`.
fn statement_end(body: &[Token<'_>], i: usize) -> Result<usize, Located> {
    let t = &body[i];
    if matches!(t.text, "if" | "while" | "for" | "switch") && body.get(i + 1).is_some_and(|n| n.text == "(") {
        let cond_end = matching(body, i + 1)?;
        let Some(next) = body.get(cond_end + 1) else {
            return Err(at(t, ErrorKind::Missing("the body of this statement")));
        };
        let end =
            if next.text == "{" { matching(body, cond_end + 1)? } else { statement_end(body, cond_end + 1)? };
        if t.text == "if" && body.get(end + 1).is_some_and(|n| n.text == "else") {
            return statement_end(body, end + 2)
                .map_err(|_| at(&body[end + 1], ErrorKind::Missing("the else branch")));
        }
        return Ok(end);
    }
    if t.text == "{" {
        return matching(body, i);
    }
    let mut j = i;
    while j < body.len() {
        match body[j].text {
            ";" => return Ok(j),
            "(" | "[" | "{" => j = matching(body, j)?,
            _ => {}
        }
        j += 1;
    }
    Err(at(t, ErrorKind::Missing("the `;` ending the statement that starts here")))
}

/// A uAPI state by its C name (`VFIO_DEVICE_STATE_STOP`).
fn state_named(t: &Token<'_>) -> Result<MigState, Located> {
    if t.kind != Kind::Ident {
        return Err(unexpected(t, "a VFIO_DEVICE_STATE_* name"));
    }
    MigState::ALL
        .into_iter()
        .find(|s| t.text.strip_prefix("VFIO_DEVICE_STATE_") == Some(s.name()))
        .ok_or_else(|| at(t, ErrorKind::UnknownState(t.text.to_string())))
}

/// A uAPI migration flag by its C name, with its value.
fn flag_named(name: &str) -> Option<u32> {
    let flags =
        [("STOP_COPY", MigFlags::STOP_COPY), ("P2P", MigFlags::P2P), ("PRE_COPY", MigFlags::PRE_COPY)];
    let short = name.strip_prefix("VFIO_MIGRATION_")?;
    flags.iter().find(|(n, _)| *n == short).and_then(|(_, f)| u32::try_from(f.0).ok())
}

/// Checks `tokens` against a fixed sequence; `None` in `want` matches any identifier, which
/// is returned.
fn expect_seq<'a>(
    tokens: &[Token<'a>],
    want: &[Option<&str>],
    what: &'static str,
) -> Result<Vec<Token<'a>>, Located> {
    let mut captured = Vec::new();
    for (k, w) in want.iter().enumerate() {
        let Some(t) = tokens.get(k) else {
            let last = tokens.last().map_or((1, 1), |t| (t.line, t.col));
            return Err((last.0, last.1, ErrorKind::Missing(what)));
        };
        match w {
            Some(text) if t.text != *text => return Err(unexpected(t, what)),
            None if t.kind != Kind::Ident => return Err(unexpected(t, what)),
            None => captured.push(*t),
            Some(_) => {}
        }
    }
    Ok(captured)
}

/// `enum { VFIO_DEVICE_NUM_STATES = VFIO_DEVICE_STATE_<LAST> + 1 };` with LAST the last uAPI
/// state.
pub(super) fn num_states(stmt: &[Token<'_>]) -> Result<(), Located> {
    const WHAT: &str = "`enum { VFIO_DEVICE_NUM_STATES = VFIO_DEVICE_STATE_<last> + 1 };`";
    let want =
        [Some("enum"), Some("{"), Some("VFIO_DEVICE_NUM_STATES"), Some("="), None, Some("+"), Some("1")];
    let cap = expect_seq(stmt, &want, WHAT)?;
    expect_seq(&stmt[want.len()..], &[Some("}"), Some(";")], WHAT)?;
    if stmt.len() != want.len() + 2 {
        return Err(unexpected(&stmt[want.len() + 2], WHAT));
    }
    let last = state_named(&cap[0])?;
    let count = last as usize + 1;
    if count != NUM_STATES {
        return Err(at(&cap[0], ErrorKind::StateCount(count)));
    }
    Ok(())
}

/// The declaration head before `= {`: `static const <type...> NAME [DIM]...`.
fn table_head<'t, 'a>(
    stmt: &'t [Token<'a>],
    name: &'static str,
    dims: usize,
    what: &'static str,
) -> Result<&'t [Token<'a>], Located> {
    let eq = stmt.iter().position(|t| t.text == "=").ok_or_else(|| unexpected(&stmt[0], what))?;
    let head = &stmt[..eq];
    let n = head.iter().position(|t| t.text == name).ok_or_else(|| unexpected(&stmt[0], what))?;
    if head[0].text != "static" || !head[..n].iter().all(|t| t.kind == Kind::Ident) {
        return Err(unexpected(&head[0], what));
    }
    let mut want = Vec::new();
    for _ in 0..dims {
        want.extend([Some("["), Some("VFIO_DEVICE_NUM_STATES"), Some("]")]);
    }
    expect_seq(&head[n + 1..], &want, what)?;
    if head.len() != n + 1 + want.len() {
        return Err(unexpected(&head[n + 1 + want.len()], what));
    }
    let rest = &stmt[eq + 1..];
    if rest.first().is_none_or(|t| t.text != "{") || rest.last().is_none_or(|t| t.text != ";") {
        return Err(unexpected(rest.first().unwrap_or(&stmt[eq]), what));
    }
    let close = matching(rest, 0)?;
    if close + 2 != rest.len() {
        return Err(unexpected(&rest[close + 1], what));
    }
    Ok(&rest[1..close])
}

/// One designated initializer `[STATE] = value`: the state token and the value's tokens.
struct Designated<'t, 'a> {
    index: Token<'a>,
    state: MigState,
    value: &'t [Token<'a>],
}

/// Splits `{ [A] = x, [B] = y, }` (the inside of the braces) into designated entries.
fn designated<'t, 'a>(
    items: &'t [Token<'a>],
    what: &'static str,
) -> Result<Vec<Designated<'t, 'a>>, Located> {
    let mut out: Vec<Designated<'t, 'a>> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let cap = expect_seq(&items[i..], &[Some("["), None, Some("]"), Some("=")], what)?;
        let state = state_named(&cap[0])?;
        if let Some(first) = out.iter().find(|d| d.state == state) {
            return Err(at(&cap[0], ErrorKind::Duplicate(format!("[{}]", cap[0].text), first.index.line)));
        }
        let start = i + 4;
        let mut j = start;
        while j < items.len() && items[j].text != "," {
            if matches!(items[j].text, "(" | "[" | "{") {
                j = matching(items, j)?;
            }
            j += 1;
        }
        if j == start {
            return Err(unexpected(items.get(start).unwrap_or(&items[i + 3]), what));
        }
        out.push(Designated { index: cap[0], state, value: &items[start..j] });
        i = j + 1;
    }
    Ok(out)
}

/// `vfio_from_fsm_table[N][N] = { [CUR] = { [NEW] = NEXT, ... }, ... }`: the table, and the
/// entries left to C's zero-initialisation (which read as ERROR, value 0).
pub(super) fn fsm_table(
    stmt: &[Token<'_>],
) -> Result<([[MigState; NUM_STATES]; NUM_STATES], Vec<String>), Located> {
    const WHAT: &str = "`static const u8 vfio_from_fsm_table[VFIO_DEVICE_NUM_STATES][VFIO_DEVICE_NUM_STATES] = { [VFIO_DEVICE_STATE_X] = { [VFIO_DEVICE_STATE_Y] = VFIO_DEVICE_STATE_Z, ... }, ... };`";
    let items = table_head(stmt, "vfio_from_fsm_table", 2, WHAT)?;
    let mut table = [[MigState::Error; NUM_STATES]; NUM_STATES];
    let mut given = [[false; NUM_STATES]; NUM_STATES];
    for row in designated(items, WHAT)? {
        let v = row.value;
        if v[0].text != "{" || matching(v, 0)? + 1 != v.len() {
            return Err(unexpected(&v[0], WHAT));
        }
        for cell in designated(&v[1..v.len() - 1], WHAT)? {
            let [t] = cell.value else {
                return Err(unexpected(&cell.value[1], "one VFIO_DEVICE_STATE_* name"));
            };
            table[row.state as usize][cell.state as usize] = state_named(t)?;
            given[row.state as usize][cell.state as usize] = true;
        }
    }
    let mut implicit = Vec::new();
    for cur in MigState::ALL {
        for new in MigState::ALL {
            if !given[cur as usize][new as usize] {
                implicit.push(format!("vfio_from_fsm_table[{cur}][{new}]"));
            }
        }
    }
    Ok((table, implicit))
}

/// The flags table: per-state values, the flags named (with values, by value) and the entries
/// left to zero-initialisation.
pub(super) type FlagsTable = ([u32; NUM_STATES], Vec<(String, u32)>, Vec<String>);

/// `state_flags_table[N] = { [STATE] = FLAG | FLAG ..., [ERROR] = ~0U, ... }`.
pub(super) fn flags_table(stmt: &[Token<'_>]) -> Result<FlagsTable, Located> {
    const WHAT: &str = "`static const unsigned int state_flags_table[VFIO_DEVICE_NUM_STATES] = { [VFIO_DEVICE_STATE_X] = VFIO_MIGRATION_A | VFIO_MIGRATION_B, ... };`";
    let items = table_head(stmt, "state_flags_table", 1, WHAT)?;
    let mut values = [0u32; NUM_STATES];
    let mut given = [false; NUM_STATES];
    let mut used: Vec<(String, u32)> = Vec::new();
    for entry in designated(items, WHAT)? {
        let mut p = ConstExpr { toks: entry.value, pos: 0, used: &mut used };
        let v = p.or()?;
        if let Some(t) = entry.value.get(p.pos) {
            return Err(unexpected(t, "`|` or the end of the entry"));
        }
        values[entry.state as usize] = v;
        given[entry.state as usize] = true;
    }
    used.sort_by_key(|(_, v)| *v);
    let implicit = MigState::ALL
        .into_iter()
        .filter(|s| !given[*s as usize])
        .map(|s| format!("state_flags_table[{s}]"))
        .collect();
    Ok((values, used, implicit))
}

/// A constant expression of `unsigned int` over `VFIO_MIGRATION_*` names and integer literals
/// with `|`, `~` and parentheses: all the flags table uses. Anything else is an error.
struct ConstExpr<'t, 'a, 'u> {
    toks: &'t [Token<'a>],
    pos: usize,
    used: &'u mut Vec<(String, u32)>,
}

impl ConstExpr<'_, '_, '_> {
    fn or(&mut self) -> Result<u32, Located> {
        let mut v = self.unary()?;
        while self.toks.get(self.pos).is_some_and(|t| t.text == "|") {
            self.pos += 1;
            v |= self.unary()?;
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<u32, Located> {
        const WHAT: &str = "a VFIO_MIGRATION_* name, an integer, `~` or `(`";
        let Some(t) = self.toks.get(self.pos).copied() else {
            let last = self.toks[self.toks.len() - 1];
            return Err(at(&last, ErrorKind::Missing("the end of this flags expression")));
        };
        self.pos += 1;
        match t.kind {
            Kind::Punct if t.text == "~" => Ok(!self.unary()?),
            Kind::Punct if t.text == "(" => {
                let v = self.or()?;
                match self.toks.get(self.pos) {
                    Some(c) if c.text == ")" => {
                        self.pos += 1;
                        Ok(v)
                    }
                    Some(c) => Err(unexpected(c, "`)`")),
                    None => Err(at(&t, ErrorKind::Unbalanced("(".into()))),
                }
            }
            Kind::Number => int_literal(t.text).ok_or_else(|| unexpected(&t, "an unsigned int literal")),
            Kind::Ident => {
                let v =
                    flag_named(t.text).ok_or_else(|| at(&t, ErrorKind::UnknownFlag(t.text.to_string())))?;
                if !self.used.iter().any(|(n, _)| n == t.text) {
                    self.used.push((t.text.to_string(), v));
                }
                Ok(v)
            }
            _ => Err(unexpected(&t, WHAT)),
        }
    }
}

/// A C integer literal (decimal, hex or octal, `u`/`l` suffixes) that fits `unsigned int`.
fn int_literal(text: &str) -> Option<u32> {
    let digits = text.trim_end_matches(['u', 'U', 'l', 'L']);
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        (16, h)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    u32::from_str_radix(body, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_table::lex::tokenize;

    #[test]
    fn integer_literals_follow_c() {
        assert_eq!(int_literal("0U"), Some(0));
        assert_eq!(int_literal("0x10"), Some(16));
        assert_eq!(int_literal("010"), Some(8));
        assert_eq!(int_literal("4294967295UL"), Some(u32::MAX));
        assert_eq!(int_literal("4294967296"), None);
    }

    #[test]
    fn statements_split_declarations_blocks_and_if_else() {
        let src = "enum { A = 1 }; if (x) { y(); } else z(); while (a) b = c[d]; return (e) ? 0 : -1;";
        let toks = tokenize(src).unwrap();
        let stmts = statements(&toks).unwrap();
        let firsts: Vec<&str> = stmts.iter().map(|s| s[0].text).collect();
        assert_eq!(firsts, ["enum", "if", "while", "return"]);
        assert_eq!(stmts[1].last().unwrap().text, ";");
    }
}
