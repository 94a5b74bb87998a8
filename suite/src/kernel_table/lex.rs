//! A C tokenizer just good enough for one function of vfio_main.c: identifiers, numbers,
//! punctuators, string and character literals, each with its 1-based line and column.
//! Comments and preprocessor lines are dropped, so the shapes the extractor recognises do
//! not depend on layout, comments or whitespace.

use super::ErrorKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Ident,
    Number,
    Punct,
    Literal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub text: &'a str,
    pub kind: Kind,
    pub line: u32,
    pub col: u32,
}

/// Punctuators longest first, so `->` is not read as `-` `>`.
const PUNCTS: [&str; 24] = [
    "<<=", ">>=", "...", "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "+=", "-=", "*=",
    "/=", "%=", "&=", "|=", "^=", "##", "::",
];

/// Splits `src` into tokens; the only error is a comment or literal left open at the end.
pub(super) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, (u32, u32, ErrorKind)> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    // Whether only whitespace has been seen on this line (a `#` there starts a directive).
    let mut line_start = true;
    let advance = |i: &mut usize, line: &mut u32, col: &mut u32, n: usize| {
        for &b in &bytes[*i..*i + n] {
            if b == b'\n' {
                *line += 1;
                *col = 1;
            } else if b & 0xc0 != 0x80 {
                // Columns count characters, not UTF-8 continuation bytes.
                *col += 1;
            }
        }
        *i += n;
    };
    while i < bytes.len() {
        let b = bytes[i];
        let rest = &src[i..];
        if b == b'\n' {
            line_start = true;
            advance(&mut i, &mut line, &mut col, 1);
        } else if b.is_ascii_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
        } else if let Some(inside) = rest.strip_prefix("/*") {
            let (l0, c0) = (line, col);
            let Some(end) = inside.find("*/") else {
                return Err((l0, c0, ErrorKind::Unterminated("comment")));
            };
            advance(&mut i, &mut line, &mut col, end + 4);
        } else if rest.starts_with("//") {
            let n = rest.find('\n').unwrap_or(rest.len());
            advance(&mut i, &mut line, &mut col, n);
        } else if b == b'#' && line_start {
            // A directive runs to the end of the line, continued by a trailing backslash.
            let mut n = 0;
            let r = rest.as_bytes();
            while n < r.len() && r[n] != b'\n' {
                if r[n] == b'\\' && r.get(n + 1) == Some(&b'\n') {
                    n += 1;
                }
                n += 1;
            }
            advance(&mut i, &mut line, &mut col, n);
        } else {
            line_start = false;
            let (l0, c0) = (line, col);
            let (n, kind) = if b.is_ascii_alphabetic() || b == b'_' {
                (rest.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count(), Kind::Ident)
            } else if b.is_ascii_digit() {
                (
                    rest.bytes()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                        .count(),
                    Kind::Number,
                )
            } else if b == b'"' || b == b'\'' {
                let Some(n) = literal_len(rest.as_bytes()) else {
                    return Err((l0, c0, ErrorKind::Unterminated("literal")));
                };
                (n, Kind::Literal)
            } else if let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(*p)) {
                (p.len(), Kind::Punct)
            } else {
                (rest.chars().next().map_or(1, char::len_utf8), Kind::Punct)
            };
            out.push(Token { text: &src[i..i + n], kind, line: l0, col: c0 });
            advance(&mut i, &mut line, &mut col, n);
        }
    }
    Ok(out)
}

/// Length of the string or character literal at the start of `r` (quotes included).
fn literal_len(r: &[u8]) -> Option<usize> {
    let quote = r[0];
    let mut n = 1;
    while n < r.len() {
        match r[n] {
            b'\\' => n += 2,
            b'\n' => return None,
            c if c == quote => return Some(n + 1),
            _ => n += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<&str> {
        tokenize(src).unwrap().into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn comments_and_directives_vanish_and_punctuators_are_read_longest_first() {
        let src = "#include <x.h>\n/* a\n b */ x->y != ~0U; // end\n#define A \\\n  B\nz";
        assert_eq!(texts(src), ["x", "->", "y", "!=", "~", "0U", ";", "z"]);
    }

    #[test]
    fn tokens_carry_line_and_column() {
        let toks = tokenize("a\n\t/* c */ bb").unwrap();
        assert_eq!((toks[1].line, toks[1].col), (2, 10));
    }

    #[test]
    fn an_unterminated_comment_is_an_error_at_its_start() {
        assert_eq!(tokenize("x\n  /* open").unwrap_err(), (2, 3, ErrorKind::Unterminated("comment")));
    }
}
