//! The guest's serial console through `vmsnap console` (KubeVirt's `console.SafeExpectBatch`),
//! for what KubeVirt checks in guests that have no agent to run commands.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};

use super::{Cluster, TEST_NAMESPACE};

/// The test guest's shell prompt.
const PROMPT: &str = "vmsnap-guest# ";

/// An open console: what is typed goes to the guest's shell, what it prints is collected.
pub struct Console {
    _child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<String>>,
    /// How much of the output earlier commands consumed.
    consumed: usize,
    commands: usize,
}

impl Console {
    /// `console.LoginTo...`: attaches to the console of `vm` and waits for a shell prompt.
    pub async fn login(cluster: &Cluster, vm: &str) -> Console {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmsnap"))
            .args(["-n", TEST_NAMESPACE, "console", vm])
            .env("KUBECONFIG", cluster.vmsnap.kubeconfig())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start vmsnap console");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let output = Arc::new(Mutex::new(String::new()));
        let sink = output.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().expect("output").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut console = Console { _child: child, stdin, output, consumed: 0, commands: 0 };
        // The shell prints a prompt for each empty line: one after the attach proves it listens.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            console.type_line("").await;
            if console
                .wait_for(&Regex::new(&regex::escape(PROMPT)).expect("regex"), Duration::from_secs(3))
                .await
                .is_ok()
            {
                return console;
            }
            assert!(Instant::now() < deadline, "no shell prompt on the console of {vm}: {}", console.all());
        }
    }

    async fn type_line(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("type on the console");
        self.stdin.flush().await.expect("flush the console");
    }

    fn all(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    /// Waits until the output after what was consumed matches `pattern`; consumes up to the match
    /// and returns the text before it and the match's first group (or whole match).
    async fn wait_for(&mut self, pattern: &Regex, timeout: Duration) -> Result<(String, String), String> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let text = self.output.lock().expect("output");
                let fresh = &text[self.consumed..];
                if let Some(found) = pattern.captures(fresh) {
                    let whole = found.get(0).expect("a match");
                    let value = found.get(1).unwrap_or(whole).as_str().to_owned();
                    let before = fresh[..whole.start()].to_owned();
                    self.consumed += whole.end();
                    return Ok((before, value));
                }
            }
            if Instant::now() > deadline {
                return Err(self.all()[self.consumed..].to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `command` in the guest's shell and returns what it printed and its exit status
    /// (`BSnd` of the command, then `console.EchoLastReturnValue`).
    pub async fn run(&mut self, command: &str) -> (String, i32) {
        self.commands += 1;
        let n = self.commands;
        // The echo of the typed line shows `$?`, not digits, so only the shell's answer matches.
        self.type_line(&format!("{command}; echo \"@@{n}@@$?@@\"")).await;
        let pattern = Regex::new(&format!("@@{n}@@([0-9]+)@@")).expect("regex");
        let (before, status) = self
            .wait_for(&pattern, Duration::from_secs(30))
            .await
            .unwrap_or_else(|seen| panic!("`{command}` did not finish on the console: {seen}"));
        // What follows the echo of the typed line.
        let echoed = format!("@@{n}@@$?@@\"");
        let printed = before
            .find(&echoed)
            .and_then(|at| before[at..].split_once('\n'))
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        (printed.replace('\r', ""), status.parse().expect("a status"))
    }
}
