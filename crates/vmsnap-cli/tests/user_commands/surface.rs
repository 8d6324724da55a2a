//! The command line itself: help with examples, completions, exit codes for usage and connection
//! errors, kubeconfig resolution.

use std::process::Stdio;

use crate::support::{Env, Out};

async fn vmsnap(args: &[&str], envs: &[(&str, &str)]) -> Out {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmsnap"))
        .args(args)
        .env_remove("KUBECONFIG")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("vmsnap runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn the_help_of_every_user_command_has_an_example() {
    let commands: &[&[&str]] = &[
        &[],
        &["vm", "list"],
        &["vm", "start"],
        &["vm", "stop"],
        &["vm", "restart"],
        &["vm", "pause"],
        &["vm", "unpause"],
        &["snapshot", "create"],
        &["snapshot", "list"],
        &["snapshot", "describe"],
        &["snapshot", "delete"],
        &["restore"],
        &["repo", "add"],
        &["repo", "list"],
        &["repo", "describe"],
        &["repo", "set"],
        &["repo", "verify"],
        &["repo", "prune"],
        &["repo", "delete"],
        &["backup", "create"],
        &["backup", "list"],
        &["backup", "describe"],
        &["backup", "verify"],
        &["backup", "delete"],
        &["backup", "restore"],
        &["exec"],
        &["console"],
        &["completions"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = vmsnap(&args, &[]).await;
        out.expect(0);
        assert!(
            out.stdout.contains("Example"),
            "vmsnap {}: no example in:\n{}",
            command.join(" "),
            out.stdout
        );
    }
    let top = vmsnap(&["--help"], &[]).await;
    assert!(top.stdout.contains("Exit codes of the user commands:"), "{}", top.stdout);
    assert!(top.stdout.contains("--namespace"), "{}", top.stdout);
}

#[tokio::test]
async fn completions_are_generated_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = vmsnap(&["completions", shell], &[]).await;
        out.expect(0);
        assert!(out.stdout.contains("vmsnap") && out.stdout.contains("snapshot"), "{shell}: {}", out.stdout);
    }
    vmsnap(&["completions", "tcsh"], &[]).await.expect(2);
}

#[tokio::test]
async fn a_wrong_command_line_is_exit_2() {
    let out = vmsnap(&["snapshot", "create"], &[]).await;
    out.expect(2);
    let bad = vmsnap(&["snapshot", "create", "db", "--failure-deadline", "soon"], &[]).await;
    bad.expect(2);
    assert!(bad.stderr.contains("invalid duration"), "{}", bad.stderr);
    vmsnap(&["restore", "db", "--snapshot", "s1", "--stop-target", "--fail-if-running"], &[]).await.expect(2);
}

#[tokio::test]
async fn an_unreachable_server_is_exit_7_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let out = vmsnap(&["--kubeconfig", kubeconfig.to_str().unwrap(), "vm", "list"], &[]).await;
    out.expect(7);
    assert!(
        out.stderr.starts_with(&format!(
            "error: cannot reach the API server at https://127.0.0.1:{port}: is vmsnap serve running? ("
        )),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_missing_kubeconfig_is_exit_7_and_names_the_file() {
    let out = vmsnap(&["--kubeconfig", "/nonexistent/kubeconfig", "snapshot", "list"], &[]).await;
    out.expect(7);
    assert!(out.stderr.contains("cannot read the kubeconfig /nonexistent/kubeconfig"), "{}", out.stderr);
    let nowhere =
        vmsnap(&["vm", "list"], &[("HOME", "/nonexistent"), ("VMSNAP_DATA_DIR", "/nonexistent")]).await;
    nowhere.expect(7);
    assert!(
        nowhere.stderr.contains("no kubeconfig found") && nowhere.stderr.contains("vmsnap serve"),
        "{}",
        nowhere.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_comes_from_the_environment_or_the_data_dir_and_a_bad_token_is_exit_7() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    let kubeconfig = env.server.kubeconfig();
    let path = kubeconfig.to_str().unwrap();
    let from_env = vmsnap(&["vm", "list", "-o", "name"], &[("KUBECONFIG", path)]).await;
    from_env.expect(0);
    assert_eq!(from_env.stdout, "virtualmachine.kubevirt.io/db\n");

    let data_dir = env.server.data_dir.path().to_str().unwrap();
    let from_data_dir = vmsnap(&["vm", "list", "-o", "name"], &[("VMSNAP_DATA_DIR", data_dir)]).await;
    from_data_dir.expect(0);

    let other_ns = vmsnap(&["-n", "elsewhere", "vm", "list"], &[("KUBECONFIG", path)]).await;
    other_ns.expect(0);
    assert_eq!(other_ns.stderr, "No VMs in namespace \"elsewhere\".\n");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("kubeconfig");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&kubeconfig).unwrap().replace(&env.server.api.token, "wrong-token"),
    )
    .unwrap();
    let refused = vmsnap(&["--kubeconfig", wrong.to_str().unwrap(), "vm", "list"], &[]).await;
    refused.expect(7);
    assert!(refused.stderr.contains("refused the credentials"), "{}", refused.stderr);
}
