//! YAML plumbing for user files (sequences and profiles): reading a file with a size bound,
//! parsing it under a tight budget, and turning every problem (size, UTF-8, syntax, schema,
//! budget) into a [`LoadError`] that names file:line:col in words the file's author needs.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// Largest sequence or profile file the loader reads.
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
    pub(crate) fn at(file: &str, line: usize, col: usize, message: impl Into<String>) -> LoadError {
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
