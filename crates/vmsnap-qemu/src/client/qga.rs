//! [`QgaClient`]: guest agent commands, one at a time, under deadlines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use super::qga_conn::{Conn, Failure, fresh_sync_id};
use crate::command::{QgaCommand, arguments_value};
use crate::error::{CommandError, ConnectError, ProtocolError, StartCommandError};
use crate::qga::commands::{ExecArgs, ExecStatusArgs, GuestExec, GuestExecStatus};

/// Deadlines of a [`QgaClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QgaOptions {
    /// Default time allowed for each command, including any resync before it.
    pub command_timeout: Duration,
    /// How long a command that does not reply on success (`guest-shutdown`)
    /// waits for an error reply before it is taken as accepted.
    pub no_reply_grace: Duration,
    /// The pause between two `guest-exec-status` polls in [`QgaClient::exec_and_wait`].
    pub exec_poll_interval: Duration,
}

impl Default for QgaOptions {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_secs(30),
            no_reply_grace: Duration::from_millis(500),
            exec_poll_interval: Duration::from_millis(25),
        }
    }
}

/// What a process started by [`QgaClient::exec_and_wait`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// The exit code, if the process exited normally.
    pub exit_code: Option<i64>,
    /// The signal that killed it, if it did not.
    pub signal: Option<i64>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Whether the agent cut stdout at its size limit.
    pub stdout_truncated: bool,
    /// Whether the agent cut stderr at its size limit.
    pub stderr_truncated: bool,
}

impl ExecOutput {
    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// A guest agent client. Commands are serialised: the agent protocol cannot
/// match replies to requests, so only one may be in flight (share the client
/// through an `Arc`; concurrent callers queue, within their own deadlines). The connection is
/// opened lazily, reopened after an I/O error, and resynchronised with
/// `guest-sync-delimited` before the first command and after any timeout.
#[derive(Debug)]
pub struct QgaClient {
    path: PathBuf,
    options: QgaOptions,
    // A tokio mutex held across awaits on purpose: it *is* the protocol's
    // one-command-at-a-time rule. Cancelling a holder is safe because the
    // session is left unsynchronised, which forces a resync for the next one.
    conn: Mutex<Conn>,
}

/// What the current command was doing, to name a timeout precisely.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Phase {
    Queued,
    Syncing,
    Running,
}

impl QgaClient {
    /// A client for the agent socket at `path`; nothing is opened until the first command.
    pub fn new(path: impl AsRef<Path>, options: QgaOptions) -> Self {
        Self { path: path.as_ref().to_path_buf(), options, conn: Mutex::new(Conn::default()) }
    }

    /// Opens the agent socket and resynchronises within `timeout`, which is also
    /// the default per-command deadline. Fails with [`ConnectError::Timeout`]
    /// when the agent does not answer (not running in the guest, or hung).
    pub async fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, ConnectError> {
        let client = Self::new(path, QgaOptions { command_timeout: timeout, ..QgaOptions::default() });
        let connect_error = |failure| match failure {
            Failure::Connect(error) => error,
            Failure::Io(source) => ConnectError::Io { path: client.path.clone(), source },
            Failure::Closed => ConnectError::Closed { path: client.path.clone(), what: "guest agent resync" },
            Failure::Protocol(source) => ConnectError::Protocol { path: client.path.clone(), source },
            Failure::Qemu(_) | Failure::Start(_) => ConnectError::Protocol {
                path: client.path.clone(),
                source: ProtocolError::Unexpected { kind: "reply", state: "synchronising" },
            },
        };
        let sync = async {
            let mut conn = client.conn.lock().await;
            conn.sync(&client.path, fresh_sync_id()).await
        };
        match tokio::time::timeout(timeout, sync).await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(failure)) => Err(connect_error(failure)),
            Err(_) => Err(ConnectError::Timeout {
                path: client.path.clone(),
                what: "guest agent resync",
                after: timeout,
            }),
        }
    }

    /// The agent socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resynchronises now (normally done automatically when needed).
    pub async fn sync(&self) -> Result<(), CommandError> {
        self.run("guest-sync-delimited", None, self.options.command_timeout).await.map(drop)
    }

    /// Runs a typed command with the default deadline.
    pub async fn execute<C: QgaCommand>(&self, args: C::Args) -> Result<C::Returns, CommandError> {
        self.execute_with_timeout::<C>(args, self.options.command_timeout).await
    }

    /// Runs a typed command with its own deadline. A command that does not reply
    /// on success (`guest-shutdown`) returns once it was sent and no error came
    /// back within [`QgaOptions::no_reply_grace`].
    pub async fn execute_with_timeout<C: QgaCommand>(
        &self,
        args: C::Args,
        timeout: Duration,
    ) -> Result<C::Returns, CommandError> {
        let args = arguments_value(&args).map_err(|source| CommandError::Start {
            command: C::NAME.into(),
            source: StartCommandError::Encode { command: C::NAME.into(), source },
        })?;
        let grace = (!C::SUCCESS_RESPONSE).then_some(self.options.no_reply_grace);
        let value = self.run(C::NAME, Some((args, grace)), timeout).await?;
        serde_json::from_value(value)
            .map_err(|source| CommandError::Decode { command: C::NAME.into(), source })
    }

    /// Runs any command by name with JSON arguments (`null` or `{}` for none).
    pub async fn execute_raw(&self, name: &str, args: Value) -> Result<Value, CommandError> {
        self.run(name, Some((optional(args), None)), self.options.command_timeout).await
    }

    /// Sends a command that may never reply (e.g. `guest-shutdown`, or a
    /// command sent to a guest that is going away). Waits up to `grace` for an
    /// error; silence or the connection closing count as success. Either way
    /// the channel is resynchronised before the next command.
    pub async fn execute_no_reply(
        &self,
        name: &str,
        args: Value,
        grace: Duration,
    ) -> Result<(), CommandError> {
        let timeout = self.options.command_timeout.max(grace);
        self.run(name, Some((optional(args), Some(grace))), timeout).await.map(drop)
    }

    /// Runs `path` with `args` in the guest, capturing output, and polls until
    /// it exits or `timeout` passes. On timeout the process keeps running in the guest.
    pub async fn exec_and_wait(
        &self,
        path: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput, CommandError> {
        self.exec_and_wait_with(ExecArgs::new(path, args), timeout).await
    }

    /// [`QgaClient::exec_and_wait`] with full control of the `guest-exec` arguments.
    pub async fn exec_and_wait_with(
        &self,
        args: ExecArgs,
        timeout: Duration,
    ) -> Result<ExecOutput, CommandError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let label = format!("guest-exec {}", args.path);
        let timed_out = || CommandError::Timeout { command: label.clone(), after: timeout };
        let started = self.execute_with_timeout::<GuestExec>(args, timeout).await?;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(timed_out());
            }
            let status = match self
                .execute_with_timeout::<GuestExecStatus>(ExecStatusArgs { pid: started.pid }, remaining)
                .await
            {
                Err(
                    CommandError::Timeout { .. }
                    | CommandError::SyncTimeout { .. }
                    | CommandError::Busy { .. },
                ) => {
                    return Err(timed_out());
                }
                other => other?,
            };
            if status.exited {
                return Ok(ExecOutput {
                    exit_code: status.exitcode,
                    signal: status.signal,
                    stdout: status.out_data.unwrap_or_default(),
                    stderr: status.err_data.unwrap_or_default(),
                    stdout_truncated: status.out_truncated,
                    stderr_truncated: status.err_truncated,
                });
            }
            tokio::time::sleep(self.options.exec_poll_interval.min(remaining)).await;
        }
    }

    /// Resyncs if needed, then runs `command` (or only resyncs when `None`), all within `timeout`.
    async fn run(
        &self,
        name: &str,
        command: Option<(Option<Value>, Option<Duration>)>,
        timeout: Duration,
    ) -> Result<Value, CommandError> {
        let phase = AtomicU8::new(Phase::Queued as u8);
        let work = async {
            let mut conn = self.conn.lock().await;
            let Some((args, grace)) = command else {
                // An explicit resync is the command itself, so its timeout is a plain `Timeout`.
                phase.store(Phase::Running as u8, Ordering::Relaxed);
                return conn.sync(&self.path, fresh_sync_id()).await.map(|()| Value::Null);
            };
            if !conn.is_idle() {
                phase.store(Phase::Syncing as u8, Ordering::Relaxed);
                conn.sync(&self.path, fresh_sync_id()).await?;
            }
            phase.store(Phase::Running as u8, Ordering::Relaxed);
            conn.run(name, args, grace).await
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result.map_err(|failure| failure.into_command_error(name)),
            Err(_) => {
                let (command, after) = (name.to_owned(), timeout);
                Err(match phase.load(Ordering::Relaxed) {
                    p if p == Phase::Queued as u8 => CommandError::Busy { command, after },
                    p if p == Phase::Syncing as u8 => CommandError::SyncTimeout { command, after },
                    _ => CommandError::Timeout { command, after },
                })
            }
        }
    }
}

/// `null` and `{}` mean "no arguments".
fn optional(args: Value) -> Option<Value> {
    match args {
        Value::Null => None,
        Value::Object(map) if map.is_empty() => None,
        other => Some(other),
    }
}
