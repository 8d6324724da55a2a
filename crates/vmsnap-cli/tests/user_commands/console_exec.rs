//! `vmsnap exec` and `vmsnap console`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_prints_the_output_and_exits_with_the_guest_commands_status() {
    let env = Env::start().await;
    env.running_vm("db").await;
    let echo = env.run(&["exec", "db", "--", "echo", "hello", "guest"]).await;
    echo.expect(0);
    assert_eq!(echo.stdout, "hello guest\n");
    env.run(&["exec", "db", "--", "false"]).await.expect(1);
    let missing = env.run(&["exec", "db", "--", "nosuch"]).await;
    missing.expect(127);
    assert_eq!(missing.stderr, "sh: nosuch: not found\n");
    let cat = env.run_stdin(&["exec", "db", "--stdin", "--", "cat"], "from stdin").await;
    cat.expect(0);
    assert_eq!(cat.stdout, "from stdin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_in_a_stopped_vm_is_exit_4_and_in_an_unknown_vm_exit_3() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    let stopped = env.run(&["exec", "db", "--", "echo", "x"]).await;
    stopped.expect(4);
    assert_eq!(stopped.stderr, "error: VM \"db\" is not running: start it with: vmsnap vm start db\n");
    env.run(&["exec", "nope", "--", "echo", "x"]).await.expect(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_relays_both_ways_and_ctrl_bracket_leaves() {
    let env = Env::start().await;
    env.running_vm("db").await;
    let mut child = env.spawn(&["console", "db"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"hello console\n").await.unwrap();
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("hello console") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "stdout closed before the echo");
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the echo arrives");
    stdin.write_all(&[0x1d]).await.unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("Ctrl-] ends it").unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_of_a_stopped_vm_is_exit_4() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    let out = env.run(&["console", "db"]).await;
    out.expect(4);
    assert_eq!(out.stderr, "error: VM \"db\" is not running: start it with: vmsnap vm start db\n");
}
