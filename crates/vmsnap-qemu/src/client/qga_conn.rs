//! The connection behind a [`super::QgaClient`]: socket I/O around a [`QgaSession`].

use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::READ_CHUNK;
use crate::error::{CommandError, ConnectError, ProtocolError, QemuError, StartCommandError};
use crate::qga::{QgaOutput, QgaSession};

/// Why a step on the connection failed, before it is named for a command.
#[derive(Debug)]
pub(super) enum Failure {
    Connect(ConnectError),
    Io(std::io::Error),
    Closed,
    Protocol(ProtocolError),
    Qemu(QemuError),
    Start(StartCommandError),
}

impl Failure {
    pub(super) fn into_command_error(self, command: &str) -> CommandError {
        let command = command.to_owned();
        match self {
            Failure::Connect(source) => CommandError::Connect { command, source },
            Failure::Io(source) => CommandError::Io { command, source },
            Failure::Closed => CommandError::Disconnected { command },
            Failure::Protocol(source) => CommandError::Protocol { command, source },
            Failure::Qemu(error) => CommandError::from_qemu(&command, error),
            Failure::Start(source) => CommandError::Start { command, source },
        }
    }
}

/// The socket (when open) and the session over it.
#[derive(Debug, Default)]
pub(super) struct Conn {
    stream: Option<UnixStream>,
    session: QgaSession,
}

impl Conn {
    /// Whether a command can be sent without a resync first.
    pub(super) fn is_idle(&self) -> bool {
        self.stream.is_some() && self.session.is_idle()
    }

    /// Opens the socket if needed, then resynchronises with `guest-sync-delimited`.
    pub(super) async fn sync(&mut self, path: &Path, id: u64) -> Result<(), Failure> {
        if self.stream.is_none() {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|source| Failure::Connect(ConnectError::Io { path: path.to_path_buf(), source }))?;
            self.stream = Some(stream);
            self.session = QgaSession::new();
        }
        let bytes = self.session.begin_sync(id);
        self.write(&bytes).await?;
        loop {
            match self.next_output().await? {
                QgaOutput::Synced => return Ok(()),
                other => tracing::debug!(?other, "dropping a stale guest agent message while resyncing"),
            }
        }
    }

    /// Sends the command and waits for its reply. With a
    /// `grace`, the command is not expected to reply: silence for `grace`, or
    /// the connection closing, count as success and leave the channel to be
    /// resynchronised.
    pub(super) async fn run(
        &mut self,
        name: &str,
        args: Option<Value>,
        grace: Option<Duration>,
    ) -> Result<Value, Failure> {
        let bytes = self.session.start_command(name, args).map_err(Failure::Start)?;
        self.write(&bytes).await?;
        let Some(grace) = grace else {
            return self.read_reply().await;
        };
        match tokio::time::timeout(grace, self.read_reply()).await {
            Ok(Ok(_)) | Ok(Err(Failure::Closed)) => Ok(Value::Null),
            Ok(Err(failure)) => Err(failure),
            Err(_) => {
                self.session.abandon();
                Ok(Value::Null)
            }
        }
    }

    async fn read_reply(&mut self) -> Result<Value, Failure> {
        loop {
            match self.next_output().await? {
                QgaOutput::Reply { result, .. } => return result.map_err(Failure::Qemu),
                other => tracing::debug!(?other, "dropping a guest agent message that is not the reply"),
            }
        }
    }

    async fn next_output(&mut self) -> Result<QgaOutput, Failure> {
        let mut buf = vec![0; READ_CHUNK];
        loop {
            if let Some(output) = self.session.poll_output() {
                return output.map_err(Failure::Protocol);
            }
            let stream = self.stream.as_mut().ok_or(Failure::Closed)?;
            match stream.read(&mut buf).await {
                Ok(0) => return Err(self.reset(Failure::Closed)),
                Ok(read) => self.session.push_bytes(&buf[..read]),
                Err(error) => return Err(self.reset(Failure::Io(error))),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let stream = self.stream.as_mut().ok_or(Failure::Closed)?;
        match stream.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.reset(Failure::Io(error))),
        }
    }

    /// Drops the socket so the next command reconnects.
    fn reset(&mut self, failure: Failure) -> Failure {
        self.stream = None;
        self.session = QgaSession::new();
        failure
    }
}

/// A fresh id for `guest-sync-delimited`: random, non-zero, below 2^53.
pub(super) fn fresh_sync_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Each `RandomState` is seeded from the OS, so this needs no RNG crate.
    let random = RandomState::new().hash_one((count, std::time::SystemTime::now()));
    (random & ((1 << 53) - 1)).max(1)
}
