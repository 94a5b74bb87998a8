//! Embeds `fixtures/**/*.yaml` and `profiles/*.yaml` into the library so the binary is
//! self-contained (it runs the built-in suite from anywhere, e.g. inside the test VM, or from
//! `cargo install`).

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

fn table(root: &Path, sub: &str) -> String {
    let dir = root.join(sub);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    collect(&dir, &mut files);
    files.sort();
    let mut s = String::from("&[\n");
    for f in files {
        if let Some(parent) = f.parent() {
            println!("cargo:rerun-if-changed={}", parent.display());
        }
        let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        s.push_str(&format!("    ({rel:?}, include_bytes!({:?})),\n", f.display().to_string()));
    }
    s.push(']');
    s
}

fn main() {
    // suite/fixtures and suite/profiles are symlinks to the repository's fixtures/ and
    // profiles/ (cargo package copies what they point to, so the published crate holds the
    // files themselves): the build reads them from inside the crate either way.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = root.canonicalize().unwrap_or(root);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    let code = format!(
        "/// Built-in fixtures: (path relative to the repository, contents).\npub const FIXTURES: &[(&str, &[u8])] = {};\n/// Built-in vendor profiles.\npub const PROFILES: &[(&str, &[u8])] = {};\n",
        table(&root, "fixtures"),
        table(&root, "profiles")
    );
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}
