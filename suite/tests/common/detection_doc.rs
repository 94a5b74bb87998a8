//! docs/detection.md holds two generated sections, each owned by one test: the defects written
//! together with the checks (suite/tests/detection.rs), then, from [`HELD_OUT_HEADING`] on,
//! the held-out defects (suite/tests/detection_heldout.rs). Each test rewrites or compares its
//! own section only.

/// The heading that starts the held-out section.
pub const HELD_OUT_HEADING: &str = "## Held-out defects\n";

/// docs/detection.md.
pub fn path() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/detection.md")
}

/// The document as it is now (empty if it does not exist yet).
pub fn read() -> String {
    std::fs::read_to_string(path()).unwrap_or_default()
}

/// (section of the defects written with the checks, held-out section if present).
pub fn split(doc: &str) -> (&str, Option<&str>) {
    match doc.find(&format!("\n{HELD_OUT_HEADING}")) {
        Some(i) => (&doc[..i], Some(&doc[i + 1..])),
        None => (doc, None),
    }
}

/// The document made of both sections (a blank line between them).
pub fn join(seen: &str, held_out: Option<&str>) -> String {
    match held_out {
        Some(h) => format!("{seen}\n{h}"),
        None => seen.to_string(),
    }
}

/// Rewrites the document with `VMC_WRITE_DOCS=1`.
pub fn write_if_asked(doc: &str) {
    if std::env::var_os("VMC_WRITE_DOCS").is_some() {
        std::fs::write(path(), doc).expect("write docs/detection.md");
    }
}
