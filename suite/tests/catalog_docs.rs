//! docs/clauses.md is generated from the catalog data and must stay current.

use vmc::checks::observers;
use vmc::clauses::catalog;

#[test]
fn clause_catalog_markdown_matches_the_snapshot() {
    insta::assert_snapshot!("clauses_md", catalog().to_markdown(&observers()));
}

#[test]
fn docs_clauses_md_is_the_generated_catalog() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/clauses.md");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == catalog().to_markdown(&observers()),
        "docs/clauses.md is stale: regenerate it with\n  cargo run -q -p vfio-mig-conform -- clauses --format md > docs/clauses.md"
    );
}
