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

/// The keys the simulator's spec parser accepts, as its error for an unknown key lists them.
fn sim_keys(kind: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-mig-conform"))
        .arg(format!("sim:{kind}?no_such_key=1"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let keys = err.split("(known: ").nth(1).and_then(|k| k.split(')').next());
    let keys = keys.unwrap_or_else(|| panic!("no list of keys in `{err}`"));
    keys.split(", ").map(str::to_string).collect()
}

#[test]
fn help_names_every_simulated_device_with_its_keys_and_the_xpass_rule_of_exit_1() {
    let help = run(&["--help"]);
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-mig-conform")).arg("sim:v9").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let kinds = err.split("(expected ").nth(1).and_then(|k| k.split(')').next()).expect("the device kinds");
    for kind in kinds.split([',', ' ']).filter(|k| !k.is_empty() && *k != "or") {
        let line = help.lines().find(|l| l.trim_start().starts_with(&format!("sim:{kind}")));
        let line = line.unwrap_or_else(|| panic!("--help has no line for sim:{kind}"));
        if kind == "plain" {
            continue;
        }
        let block: String = help
            .lines()
            .skip_while(|l| *l != line)
            .take_while(|l| *l == line || l.starts_with("   "))
            .collect::<Vec<_>>()
            .join("\n");
        for key in sim_keys(kind) {
            assert!(
                block.contains(&format!("{key}=")),
                "--help does not give the key {key}= of sim:{kind}:\n{block}"
            );
        }
    }
    let exit = help.split("Exit codes:").nth(1).expect("exit codes in --help");
    let one = exit.split(", 2 ").next().unwrap_or("");
    assert!(one.contains("XPASS with --strict-profile"), "exit 1 without the XPASS rule: {one}");
}
