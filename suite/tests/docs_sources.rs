//! Documentation, profiles, sequences and clauses cite only files in the repository or public
//! sources: no path of a machine or of research notes outside the checkout.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &["shared/reference", "/work/", "/home/", "/root/"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "md" || x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn docs_profiles_sequences_and_clauses_cite_no_path_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = Vec::new();
    for d in ["docs", "profiles", "fixtures", "suite/clauses", "fuzz/corpus", "vm"] {
        files(&root.join(d), &mut all);
    }
    all.push(root.join("README.md"));
    assert!(all.len() > 20, "found only {} files: wrong root?", all.len());
    let mut bad = Vec::new();
    for f in &all {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if let Some(w) = FORBIDDEN.iter().find(|w| line.contains(*w)) {
                bad.push(format!("{}:{}: cites `{w}`: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "paths outside the repository:\n{}", bad.join("\n"));
}
