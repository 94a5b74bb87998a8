//! The terminal sessions shown in README.md and docs/*.md are what the tool prints: every
//! block of `$ command` lines and their output is run in a scratch directory (one per
//! document, blocks in order, so a later block sees the files of an earlier one) and its
//! output compared with the one shown.
//!
//! Conventions in the Markdown (HTML comments, invisible when rendered):
//! - `<!-- file: PATH -->` on the line before a fenced block: the block is written to PATH
//!   in the document's scratch directory before the sessions after it run.
//! - `<!-- not checked: REASON -->` on the line before a session: it is not run (it needs the
//!   VM, real hardware, a network); every session that runs something other than the tool
//!   and a few shell utilities must carry one, so nothing is left out silently.
//!
//! In the shown output a line `...` stands for any number of lines, a line ending in ` ...`
//! for any line that starts with what precedes it, and every decimal number (a duration) for
//! any decimal number.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Programs a checked session may run.
const RUNNABLE: &[&str] = &["vfio-mig-conform", "echo", "cat", "ls", "head", "grep", "printf"];

/// One `$ ` block of a document.
#[derive(Debug)]
struct Session {
    /// `file:line` of the block's first command.
    at: String,
    commands: Vec<String>,
    /// The output shown after each command.
    shown: Vec<Vec<String>>,
    skip: Option<String>,
}

#[derive(Debug)]
enum Item {
    File(PathBuf, String),
    Session(Session),
}

fn parse(name: &str, doc: &str) -> Vec<Item> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let before = if i > 0 { lines[i - 1].trim() } else { "" };
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && !lines[end].starts_with("```") {
            end += 1;
        }
        let body = &lines[start..end.min(lines.len())];
        i = end + 1;
        let marker = |key: &str| {
            before
                .strip_prefix("<!-- ")
                .and_then(|b| b.strip_suffix(" -->"))
                .and_then(|b| b.strip_prefix(key))
        };
        if let Some(path) = marker("file: ") {
            items.push(Item::File(PathBuf::from(path.trim()), body.join("\n") + "\n"));
            continue;
        }
        if !info.trim().is_empty() || !body.first().is_some_and(|l| l.starts_with("$ ")) {
            continue;
        }
        let mut s = Session {
            at: format!("{name}:{start}"),
            commands: Vec::new(),
            shown: Vec::new(),
            skip: marker("not checked: ").map(str::to_string),
        };
        let mut k = 0;
        while k < body.len() {
            if let Some(cmd) = body[k].strip_prefix("$ ") {
                let mut cmd = cmd.to_string();
                while cmd.ends_with('\\') && k + 1 < body.len() {
                    k += 1;
                    cmd.push('\n');
                    cmd.push_str(body[k]);
                }
                s.commands.push(cmd);
                s.shown.push(Vec::new());
            } else if let Some(out) = s.shown.last_mut() {
                out.push(body[k].to_string());
            }
            k += 1;
        }
        items.push(Item::Session(s));
    }
    items
}

/// Every decimal number replaced (durations), trailing blanks dropped.
fn normalize(line: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = line.trim_end().chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            if j + 1 < chars.len() && chars[j] == '.' && chars[j + 1].is_ascii_digit() {
                j += 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                out.push_str("<n.n>");
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn line_matches(shown: &str, actual: &str) -> bool {
    match shown.strip_suffix(" ...") {
        Some(prefix) => actual.starts_with(prefix),
        None => shown == actual,
    }
}

/// Whether `actual` is `shown` with the `...` lines standing for any lines. Err: the first
/// shown line that could not be placed.
fn output_matches(shown: &[String], actual: &[String]) -> Result<(), String> {
    // Trailing blank lines are not visible in a code block: they do not count.
    let trim = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|l| normalize(l)).collect();
        while v.last().is_some_and(String::is_empty) {
            v.pop();
        }
        v
    };
    let (shown, actual) = (trim(shown), trim(actual));
    let segments: Vec<&[String]> = shown.split(|l| l.trim() == "...").collect();
    let mut pos = 0;
    for (n, seg) in segments.iter().enumerate() {
        let first = n == 0;
        let last = n + 1 == segments.len();
        let fits = |at: usize| {
            at + seg.len() <= actual.len()
                && seg.iter().zip(&actual[at..]).all(|(s, a)| line_matches(s, a))
                && (!last || at + seg.len() == actual.len())
        };
        let found = if first {
            fits(0).then_some(0)
        } else if last {
            actual.len().checked_sub(seg.len()).filter(|at| *at >= pos && fits(*at))
        } else {
            (pos..=actual.len()).find(|at| fits(*at))
        };
        match found {
            Some(at) => pos = at + seg.len(),
            None => {
                let what = seg.first().map_or("the end of the output", String::as_str);
                return Err(format!("cannot place `{what}` (segment {} of {})", n + 1, segments.len()));
            }
        }
    }
    Ok(())
}

/// The programs a command line runs (quoted text left out, continuations joined).
fn program(cmd: &str) -> Vec<String> {
    let unquoted: String = cmd.split('\'').step_by(2).collect::<Vec<_>>().join("''");
    unquoted
        .replace("\\\n", " ")
        .replace("&&", ";")
        .split(['|', ';', '\n'])
        .filter_map(|part| part.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Runs a session's commands in `dir` through one shell, returning each command's output
/// (stdout and stderr together, as a terminal shows them).
fn run_session(s: &Session, dir: &Path) -> Vec<Vec<String>> {
    const SEP: &str = "\u{1e}vmc-doc-command";
    // The separator keeps `$?` for an `echo $?` that follows.
    let mut script = format!("exec 2>&1\nsep() {{ rc=$?; printf '%s\\n' '{SEP}'; return $rc; }}\n");
    for c in &s.commands {
        script.push_str(&format!("sep\n{c}\n"));
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vfio-mig-conform")).parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("VFIO_MIG_CONFORM_DEVICE")
        .env_remove("VMC_BDF")
        .env_remove("NO_COLOR")
        .output()
        .expect("sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(&format!("{SEP}\n")).skip(1).map(|o| o.lines().map(str::to_string).collect()).collect()
}

fn check_document(rel: &str) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let dir = std::env::temp_dir().join(format!("vmc-doc-{}-{}", std::process::id(), rel.replace('/', "_")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut ran = 0;
    let mut problems = Vec::new();
    for item in parse(rel, &doc) {
        match item {
            Item::File(path, text) => {
                let p = dir.join(&path);
                std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
                std::fs::write(&p, text).expect("write file");
            }
            Item::Session(s) if s.skip.is_some() => {}
            Item::Session(s) => {
                let foreign: Vec<String> = s
                    .commands
                    .iter()
                    .flat_map(|c| program(c))
                    .filter(|p| !RUNNABLE.contains(&p.as_str()))
                    .collect();
                if !foreign.is_empty() {
                    problems.push(format!(
                        "{}: runs {} (not run by this test): add `<!-- not checked: WHY -->` before the block",
                        s.at,
                        foreign.join(", ")
                    ));
                    continue;
                }
                let outputs = run_session(&s, &dir);
                ran += 1;
                for (k, cmd) in s.commands.iter().enumerate() {
                    let actual = outputs.get(k).cloned().unwrap_or_default();
                    if let Err(e) = output_matches(&s.shown[k], &actual) {
                        problems.push(format!(
                            "{}: `$ {cmd}`: {e}\n--- shown:\n{}\n--- actual:\n{}\n",
                            s.at,
                            s.shown[k].join("\n"),
                            actual.join("\n")
                        ));
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (ran, problems)
}

fn assert_document(rel: &str, at_least: usize) {
    let (ran, problems) = check_document(rel);
    assert!(problems.is_empty(), "{rel} shows output the tool does not print:\n\n{}", problems.join("\n"));
    assert!(ran >= at_least, "{rel}: only {ran} sessions were run (expected at least {at_least})");
}

#[test]
fn the_sessions_in_the_readme_are_what_the_tool_prints() {
    assert_document("README.md", 1);
}

#[test]
fn the_sessions_in_the_user_guide_are_what_the_tool_prints() {
    assert_document("docs/guide.md", 14);
}

#[test]
fn the_sessions_in_the_profiles_guide_are_what_the_tool_prints() {
    assert_document("docs/profiles.md", 3);
}

#[test]
fn the_sessions_in_the_other_documents_are_what_the_tool_prints_or_are_marked() {
    for rel in
        ["docs/binding.md", "docs/sequences.md", "docs/fuzzing.md", "docs/performance.md", "vm/README.md"]
    {
        assert_document(rel, 0);
    }
}

#[test]
fn elided_lines_match_any_lines_and_nothing_else_does() {
    let v = |s: &[&str]| s.iter().map(|l| (*l).to_string()).collect::<Vec<_>>();
    let actual = v(&["a", "b 0.13s", "c", "d"]);
    assert_eq!(output_matches(&v(&["a", "...", "d"]), &actual), Ok(()));
    assert_eq!(output_matches(&v(&["a", "b 9.99s", "c", "d"]), &actual), Ok(()));
    assert_eq!(output_matches(&v(&["a", "b ...", "...", "d"]), &actual), Ok(()));
    assert!(output_matches(&v(&["a", "c", "d"]), &actual).is_err(), "a missing line is not skipped");
    assert!(output_matches(&v(&["a", "b 1s", "c", "d"]), &actual).is_err(), "integers are compared");
    assert!(output_matches(&v(&["a", "..."]), &v(&[])).is_err());
    assert!(output_matches(&v(&["...", "c"]), &actual).is_err(), "the end is the end");
}

#[test]
fn the_programs_of_a_command_line_are_found_outside_quotes() {
    assert_eq!(
        program("vfio-mig-conform 'sim:v2?a=1&b=2' x | head -3; echo $?"),
        ["vfio-mig-conform", "head", "echo"]
    );
    assert_eq!(
        program("vfio-mig-conform a \\\n      --junit d.xml && cat d.xml"),
        ["vfio-mig-conform", "cat"]
    );
    assert_eq!(program("vm/run.sh -- sh -c 'x'"), ["vm/run.sh"]);
}
