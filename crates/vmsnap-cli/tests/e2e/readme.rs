//! The README's walkthroughs, run as written against a fresh `vmsnap serve`: every ```sh block
//! between `<!-- walkthrough: NAME -->` and `<!-- /walkthrough -->` runs with `sh -e` from the
//! repository root, with `KUBECONFIG` set and the `vmsnap` under test first in `PATH`; the ```text
//! block after it, if any, is its expected output (stdout and stderr together). Values that differ
//! from run to run (UIDs, times, ages, durations) are masked, runs of spaces count as one, and a
//! line `...` in the expected output stands for any number of lines.

use std::path::Path;
use std::process::Stdio;

use regex::Regex;

use crate::support::*;

/// One step of a walkthrough: a shell script and what it prints.
#[derive(Debug)]
struct Step {
    script: String,
    expected: Option<String>,
}

/// The steps of walkthrough `name` in `markdown`.
fn walkthrough(markdown: &str, name: &str) -> Vec<Step> {
    let start = format!("<!-- walkthrough: {name} -->");
    let body = markdown.split_once(&start).unwrap_or_else(|| panic!("README has no {start}")).1;
    let body = body.split_once("<!-- /walkthrough -->").expect("the walkthrough is closed").0;
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        let fence = line.trim_start();
        let Some(lang) = fence.strip_prefix("```") else { continue };
        let block: Vec<&str> = lines.by_ref().take_while(|l| !l.trim_start().starts_with("```")).collect();
        let block = block.join("\n");
        match lang {
            "sh" => steps.push(Step { script: block, expected: None }),
            "text" => {
                let step = steps.last_mut().expect("an output block follows a command block");
                assert!(step.expected.is_none(), "two output blocks after `{}`", step.script);
                step.expected = Some(block);
            }
            other => panic!("unexpected block language {other:?} in walkthrough {name}"),
        }
    }
    assert!(!steps.is_empty(), "walkthrough {name} has no steps");
    steps
}

/// Masks what differs from run to run and collapses spaces.
fn normalize(text: &str) -> Vec<String> {
    let masks = [
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uid>"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "<time>"),
        (r"\b\d{8}-\d{6}\b", "<stamp>"),
        (r"\b(\d+(\.\d+)?(ms|s|m|h|d))+\b", "<t>"),
    ];
    let masks: Vec<(Regex, &str)> = masks.iter().map(|(re, to)| (Regex::new(re).unwrap(), *to)).collect();
    text.lines()
        .map(|line| {
            let mut line = line.to_owned();
            for (re, to) in &masks {
                line = re.replace_all(&line, *to).into_owned();
            }
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .filter(|line| !line.is_empty())
        .collect()
}

/// Whether the expected lines appear in `actual` in order, `...` matching any lines between.
fn matches(expected: &[String], actual: &[String]) -> Result<(), String> {
    let mut at = 0;
    let mut gap_allowed = false;
    for want in expected {
        if want == "..." {
            gap_allowed = true;
            continue;
        }
        let found = if gap_allowed {
            actual[at..].iter().position(|line| line == want).map(|i| at + i)
        } else {
            (actual.get(at) == Some(want)).then_some(at)
        };
        match found {
            Some(i) => at = i + 1,
            None => return Err(format!("expected line {want:?} at line {} of the output", at + 1)),
        }
        gap_allowed = false;
    }
    if !gap_allowed && at != actual.len() {
        return Err(format!("unexpected output from line {}: {:?}", at + 1, actual[at]));
    }
    Ok(())
}

async fn run_step(vmsnap: &Vmsnap, step: &Step) -> (i32, String) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vmsnap")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = tokio::process::Command::new("sh")
        .arg("-ec")
        .arg(format!("exec 2>&1\n{}", step.script))
        .current_dir(repository_root())
        .env("KUBECONFIG", vmsnap.kubeconfig())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run sh");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn run_walkthrough(vmsnap: &Vmsnap, name: &str, steps: &[Step]) {
    for (i, step) in steps.iter().enumerate() {
        let (code, output) = run_step(vmsnap, step).await;
        println!("--- {name} step {}:\n{}\n--- printed:\n{output}", i + 1, step.script);
        assert_eq!(code, 0, "walkthrough {name}, step {}:\n{}\nexited {code}:\n{output}", i + 1, step.script);
        if let Some(expected) = &step.expected
            && let Err(why) = matches(&normalize(expected), &normalize(&output))
        {
            panic!(
                "walkthrough {name}, step {}:\n{}\nprinted:\n{output}\nwhich differs from the README ({why}):\n{expected}",
                i + 1,
                step.script
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthroughs_work_as_written() {
    let readme = std::fs::read_to_string(repository_root().join("README.md")).unwrap();
    let (with_kubectl, with_vmsnap) = (walkthrough(&readme, "kubectl"), walkthrough(&readme, "vmsnap"));
    let Some(vmsnap) = start("tcg") else { return };
    run_walkthrough(&vmsnap, "kubectl", &with_kubectl).await;
    run_walkthrough(&vmsnap, "vmsnap", &with_vmsnap).await;
}

#[test]
fn output_matching_masks_what_changes_and_allows_elided_lines() {
    let expected = normalize("NAME   AGE\ndemo   5m0s\n...\nready (0.205s)");
    let actual = normalize("NAME AGE\ndemo 12s\nline\nother\nready (1.5s)");
    assert_eq!(matches(&expected, &actual), Ok(()));
    assert!(matches(&normalize("a\nb"), &normalize("a\nc")).is_err());
    assert!(matches(&normalize("a"), &normalize("a\nextra")).is_err());
    assert_eq!(
        normalize("uid 0a1b2c3d-0000-4000-8000-00000000abcd at 2026-12-02T02:43:17Z"),
        ["uid <uid> at <time>"]
    );
}
