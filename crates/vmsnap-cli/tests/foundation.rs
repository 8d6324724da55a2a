//! The binary's surface and the set-up script.

use std::process::Command;

fn vmsnap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmsnap")).args(args).output().expect("vmsnap runs")
}

#[test]
fn help_lists_the_subcommands_with_descriptions() {
    let out = vmsnap(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for (cmd, words) in [("serve", "embedded control plane"), ("guest-image", "test guest image")] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(cmd))
            .unwrap_or_else(|| panic!("{cmd} missing:\n{text}"));
        assert!(line.contains(words), "{line}");
    }
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let out = vmsnap(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'frobnicate'"));
}

#[test]
fn setup_finds_everything_installed_after_the_first_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("sh").arg("scripts/setup.sh").arg("--check").current_dir(&root).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "setup --check reports missing pieces: {text}");
    assert!(text.contains("everything is installed"), "{text}");
}
