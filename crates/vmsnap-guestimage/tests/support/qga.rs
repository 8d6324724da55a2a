//! A minimal guest agent client: one JSON command at a time over the chardev socket.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};

/// The output of a process run with `guest-exec`.
#[derive(Debug)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

pub struct Qga {
    stream: UnixStream,
    buffer: Vec<u8>,
    next_id: u64,
}

impl Qga {
    /// Connects and waits until the agent answers `guest-sync-delimited`.
    /// Until qemu-ga opens its port, what is sent waits in the socket, so the
    /// sync is repeated with fresh ids and stale answers are skipped.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                // QEMU creates the socket shortly after it starts.
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(e).context("connecting to the guest agent socket"),
            }
        };
        let mut qga = Self { stream, buffer: Vec::new(), next_id: 1 };
        while Instant::now() < deadline {
            let id = qga.next_id;
            qga.next_id += 1;
            qga.send(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))?;
            let answered_until = Instant::now() + Duration::from_secs(1);
            while let Some(reply) = qga.read_reply(answered_until)? {
                if reply["return"] == json!(id) {
                    return Ok(qga);
                }
            }
        }
        bail!("the guest agent did not answer guest-sync-delimited within {timeout:?}")
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        self.send(&json!({"execute": command, "arguments": arguments}))?;
        let reply = self
            .read_reply(Instant::now() + Duration::from_secs(20))?
            .with_context(|| format!("no reply to {command}"))?;
        match reply.get("return") {
            Some(value) => Ok(value.clone()),
            None => bail!("{command} failed: {reply}"),
        }
    }

    /// Sends a command that has no reply on success (guest-shutdown).
    pub fn send_only(&mut self, command: &str, arguments: Value) -> Result<()> {
        self.send(&json!({"execute": command, "arguments": arguments}))
    }

    /// Starts a process with `guest-exec` and returns its pid at once.
    pub fn spawn(&mut self, path: &str, args: &[&str]) -> Result<i64> {
        let started =
            self.execute("guest-exec", json!({"path": path, "arg": args, "capture-output": true}))?;
        started["pid"].as_i64().context("guest-exec returned no pid")
    }

    /// Waits for a process started with [`Qga::spawn`] and returns its output.
    pub fn wait(&mut self, pid: i64, timeout: Duration) -> Result<ExecOutput> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.execute("guest-exec-status", json!({"pid": pid}))?;
            if status["exited"] == json!(true) {
                return Ok(ExecOutput {
                    exit_code: status["exitcode"].as_i64().unwrap_or(-1),
                    stdout: decode(&status["out-data"])?,
                    stderr: decode(&status["err-data"])?,
                });
            }
            if Instant::now() > deadline {
                bail!("process {pid} still runs after {timeout:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a process to completion and requires it to succeed.
    pub fn run(&mut self, path: &str, args: &[&str]) -> Result<String> {
        let pid = self.spawn(path, args)?;
        let output = self.wait(pid, Duration::from_secs(20))?;
        if output.exit_code != 0 {
            bail!("{path} {args:?} exited with {}: {}", output.exit_code, output.stderr);
        }
        Ok(output.stdout)
    }

    fn send(&mut self, command: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        self.stream.write_all(&line).context("writing to the guest agent")
    }

    /// The next JSON object from the agent, or `None` at the deadline.
    fn read_reply(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            // 0xff precedes the reply to guest-sync-delimited; it is not JSON.
            self.buffer.retain(|&b| b != 0xff);
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(serde_json::from_slice(&line).context("parsing a guest agent reply")?));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("the guest agent socket was closed"),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                Err(e) => return Err(e).context("reading from the guest agent"),
            }
        }
    }
}

fn decode(data: &Value) -> Result<String> {
    let Some(text) = data.as_str() else {
        return Ok(String::new());
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
