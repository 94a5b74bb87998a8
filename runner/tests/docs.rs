//! Generated documentation stays current: docs/vfio-mig-conform.1 is what `vfio-mig-conform man`
//! prints, and the shell completions know every subcommand and option.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-mig-conform")).args(args).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn docs_man_page_is_the_generated_one() {
    let generated = run(&["man"]);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vfio-mig-conform.1");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/vfio-mig-conform.1 is stale: regenerate it with\n  cargo run -q -p vfio-mig-conform -- man > docs/vfio-mig-conform.1"
    );
}

#[test]
fn the_man_page_documents_every_subcommand_and_the_exit_codes() {
    let man = run(&["man"]);
    for want in [
        ".TH vfio-mig-conform 1",
        ".SS vfio\\-mig\\-conform report",
        "\\fB\\-\\-html\\fR",
        "Exit codes: 0 conformant",
    ] {
        assert!(man.contains(want), "missing `{want}`");
    }
    assert!(!man.contains("vfio\\-mig\\-conform\\-report(1)"), "no references to pages that do not exist");
}

#[test]
fn completions_know_subcommands_and_options() {
    let bash = run(&["completions", "bash"]);
    for want in ["vfio-mig-conform", "report", "--html", "--profile", "completions"] {
        assert!(bash.contains(want), "bash completions lack `{want}`");
    }
    assert!(run(&["completions", "zsh"]).contains("--html"));
    assert!(run(&["completions", "fish"]).contains("-l html"));
}
