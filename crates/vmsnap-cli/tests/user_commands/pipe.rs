//! A reader that goes away (`vmsnap ... | head -1`) ends the command quietly with status 0, as it
//! ends `ls`, instead of a panic on the broken pipe.

use std::process::Stdio;

use crate::support::Env;

/// Waits for `child`, whose stdout was closed by its reader, and checks it ended quietly.
async fn ends_quietly(mut child: tokio::process::Child, what: &str) {
    drop(child.stdout.take());
    let out = child.wait_with_output().await.expect("vmsnap runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
    assert!(stderr.is_empty(), "{what} said on stderr: {stderr}");
}

#[tokio::test]
async fn a_completion_script_larger_than_the_pipe_stops_quietly_when_the_reader_leaves() {
    // The bash script (over 100 KiB) fills the pipe (64 KiB), so the write after the reader left
    // fails whatever the timing.
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmsnap"))
        .args(["completions", "bash"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("vmsnap runs");
    ends_quietly(child, "vmsnap completions bash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_printed_to_a_closed_pipe_ends_the_command_quietly() {
    let env = Env::start().await;
    env.run(&["schedule", "create", "db-hourly", "--vm", "db", "--every", "1h"]).await.expect(0);
    // The pipe is closed as soon as the command starts: it connects to the API server before it
    // prints anything, so its first line already meets the closed pipe.
    ends_quietly(env.spawn(&["schedule", "list"]), "vmsnap schedule list").await;
    ends_quietly(env.spawn(&["schedule", "describe", "db-hourly"]), "vmsnap schedule describe").await;
    ends_quietly(env.spawn(&["schedule", "list", "-o", "yaml"]), "vmsnap schedule list -o yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_written_to_a_closed_stderr_still_ends_with_its_exit_code() {
    let env = Env::start().await;
    // A missing VM: exit code 3, and its one line goes to stderr, whose reader is gone.
    let mut child = env.spawn(&["vm", "start", "missing"]);
    drop(child.stderr.take());
    let out = child.wait_with_output().await.expect("vmsnap runs");
    assert_eq!(out.status.code(), Some(3), "stdout: {}", String::from_utf8_lossy(&out.stdout));
}
