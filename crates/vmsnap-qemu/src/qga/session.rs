//! The guest agent session state machine, without I/O.
//!
//! QGA has no greeting. A client must first resynchronise with
//! `guest-sync-delimited` ([`QgaSession::begin_sync`]), and again after any
//! timeout, because the channel may still carry a stale reply (from a previous
//! client, or from a command whose caller gave up).
//!
//! The agent does not echo request ids reliably, so replies cannot be
//! correlated: **exactly one command may be in flight**, and its reply is the
//! next reply on the channel. The session enforces this.

use serde_json::{Map, Value};

use super::commands::{GuestSyncDelimited, SyncArgs};
use crate::codec::{Framing, LineDecoder, SENTINEL, encode_line};
use crate::command::{Command, QgaCommand, arguments_value, request};
use crate::error::{ProtocolError, QemuError, StartCommandError};
use crate::message::parse_reply;

/// The lifecycle of a guest agent channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QgaState {
    /// The channel may hold stale data: a fresh connection, or a command that
    /// timed out or was abandoned. Only a resync may be started.
    Unsynced,
    /// `guest-sync-delimited` with this id is in flight. Input up to its `0xFF`
    /// sentinel is dropped, and so is every reply but the one echoing the id.
    Syncing {
        /// The id sent, to be echoed back.
        id: u64,
    },
    /// In sync, nothing in flight: one command may be sent.
    Idle,
    /// One command is in flight; the next reply on the channel is its reply.
    AwaitingReply {
        /// The command name.
        command: String,
    },
}

impl QgaState {
    fn phrase(&self) -> &'static str {
        match self {
            QgaState::Unsynced => "not synchronised",
            QgaState::Syncing { .. } => "synchronising",
            QgaState::Idle => "idle",
            QgaState::AwaitingReply { .. } => "waiting for a reply",
        }
    }
}

/// Something the session produced from received bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum QgaOutput {
    /// The matching `guest-sync-delimited` reply arrived; the session is idle.
    Synced,
    /// The reply to the command in flight; the session is idle.
    Reply {
        /// The command name.
        command: String,
        /// The `return` value or the `error`.
        result: Result<Value, QemuError>,
    },
    /// A stale message dropped while (re)synchronising.
    Discarded(Map<String, Value>),
    /// A message that arrived with nothing in flight; it was dropped.
    Unsolicited(Map<String, Value>),
}

/// A guest agent client session.
#[derive(Debug)]
pub struct QgaSession {
    state: QgaState,
    decoder: LineDecoder,
}

impl Default for QgaSession {
    fn default() -> Self {
        Self::new()
    }
}

impl QgaSession {
    /// A session for a freshly opened channel (unsynchronised).
    pub fn new() -> Self {
        Self::with_decoder(LineDecoder::new(Framing::Qga))
    }

    /// A session using `decoder`, which must use [`Framing::Qga`].
    pub fn with_decoder(decoder: LineDecoder) -> Self {
        Self { state: QgaState::Unsynced, decoder }
    }

    /// The current state.
    pub fn state(&self) -> &QgaState {
        &self.state
    }

    /// Whether a command may be sent now.
    pub fn is_idle(&self) -> bool {
        self.state == QgaState::Idle
    }

    /// Adds received bytes; then drain [`QgaSession::poll_output`].
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    /// Starts a resync from any state and returns the bytes to write: a `0xFF`
    /// (so the agent drops any partial request of ours) and `guest-sync-delimited`.
    /// Use a fresh random `id` each time, below 2^53.
    pub fn begin_sync(&mut self, id: u64) -> Vec<u8> {
        self.decoder.resync();
        self.state = QgaState::Syncing { id };
        let args = arguments_value(&SyncArgs { id }).unwrap_or_default();
        let mut bytes = vec![SENTINEL];
        bytes.extend(encode_line(&request(GuestSyncDelimited::NAME, args, None)).unwrap_or_default());
        bytes
    }

    /// Starts a typed command; legal only when idle.
    pub fn start<C: QgaCommand>(&mut self, args: &C::Args) -> Result<Vec<u8>, StartCommandError> {
        let args = arguments_value(args)
            .map_err(|source| StartCommandError::Encode { command: C::NAME.into(), source })?;
        self.start_command(C::NAME, args)
    }

    /// Starts a command by name; legal only when idle.
    pub fn start_command(&mut self, name: &str, args: Option<Value>) -> Result<Vec<u8>, StartCommandError> {
        if self.state != QgaState::Idle {
            return Err(StartCommandError::NotAllowed { command: name.into(), state: self.state.phrase() });
        }
        let bytes = encode_line(&request(name, args, None))
            .map_err(|source| StartCommandError::Encode { command: name.into(), source })?;
        self.state = QgaState::AwaitingReply { command: name.into() };
        Ok(bytes)
    }

    /// Gives up on whatever is in flight (a timeout, or a command that never
    /// replies): the channel must be resynchronised before the next command.
    pub fn abandon(&mut self) {
        self.state = QgaState::Unsynced;
    }

    /// The next output, a protocol error, or `None` when more bytes are needed.
    /// A bad message while a command is in flight fails that command and leaves
    /// the session unsynchronised.
    pub fn poll_output(&mut self) -> Option<Result<QgaOutput, ProtocolError>> {
        loop {
            let message = match self.decoder.next_message()? {
                Ok(message) => message,
                Err(error) => match self.state {
                    // Garbage between the sentinel and our reply is stale: skip it.
                    QgaState::Syncing { .. } | QgaState::Unsynced => continue,
                    QgaState::Idle => return Some(Err(error.into())),
                    QgaState::AwaitingReply { .. } => {
                        self.state = QgaState::Unsynced;
                        return Some(Err(error.into()));
                    }
                },
            };
            return Some(self.handle(message));
        }
    }

    fn handle(&mut self, message: Map<String, Value>) -> Result<QgaOutput, ProtocolError> {
        match &self.state {
            QgaState::Unsynced => Ok(QgaOutput::Discarded(message)),
            QgaState::Idle => Ok(QgaOutput::Unsolicited(message)),
            QgaState::Syncing { id } => {
                let echoed = message.get("return").and_then(Value::as_u64);
                if echoed == Some(*id) {
                    self.state = QgaState::Idle;
                    Ok(QgaOutput::Synced)
                } else {
                    Ok(QgaOutput::Discarded(message))
                }
            }
            QgaState::AwaitingReply { command } => {
                let command = command.clone();
                self.state = QgaState::Idle;
                match parse_reply(message) {
                    Ok(Ok(reply)) => Ok(QgaOutput::Reply { command, result: reply.result }),
                    Ok(Err(error)) => {
                        self.state = QgaState::Unsynced;
                        Err(error)
                    }
                    Err(message) => {
                        self.state = QgaState::Unsynced;
                        Err(ProtocolError::Unrecognised { preview: crate::message::preview_value(&message) })
                    }
                }
            }
        }
    }
}
