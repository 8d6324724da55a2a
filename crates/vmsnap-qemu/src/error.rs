//! Errors, named for the operation that fails.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::DecodeError;

/// The `error` member of a QMP or QGA reply: QEMU (or the agent) refused or failed a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{desc} ({class})")]
pub struct QemuError {
    /// The error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotFound`.
    pub class: String,
    /// The human-readable description.
    pub desc: String,
}

/// A message from the peer that the session cannot accept.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes did not form a JSON object line.
    #[error("could not decode a message from the peer")]
    Decode(#[from] DecodeError),
    /// A JSON object with none of the members the protocol defines.
    #[error("unrecognised message from the peer: {preview:?}")]
    Unrecognised {
        /// The start of the message.
        preview: String,
    },
    /// A known kind of message whose members have the wrong shape.
    #[error("malformed {kind} message from the peer: {preview:?}")]
    Malformed {
        /// Which kind of message it claimed to be (`greeting`, `event`, ...).
        kind: &'static str,
        /// The start of the message.
        preview: String,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// A well-formed message that is not legal in the current session state.
    #[error("unexpected {kind} message while the session is {state}")]
    Unexpected {
        /// The kind of message received.
        kind: &'static str,
        /// The session state, as a phrase.
        state: &'static str,
    },
    /// QEMU answered the capabilities negotiation with an error.
    #[error("QEMU rejected qmp_capabilities: {0}")]
    CapabilitiesRejected(QemuError),
}

/// A command could not be started by a sans-IO session.
#[derive(Debug, thiserror::Error)]
pub enum StartCommandError {
    /// The session is not in a state where this command may be sent.
    #[error("{command} cannot be sent while the session is {state}")]
    NotAllowed {
        /// The command name.
        command: String,
        /// The session state, as a phrase.
        state: &'static str,
    },
    /// The arguments did not serialise to JSON.
    #[error("could not encode the arguments of {command}")]
    Encode {
        /// The command name.
        command: String,
        /// What serde_json objected to.
        #[source]
        source: serde_json::Error,
    },
}

/// Connecting to a QMP or QGA socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket could not be opened; check that QEMU is running and the path is right.
    #[error("could not connect to {}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// The peer did not finish the handshake (QMP greeting and capabilities, or
    /// the QGA resync) in time; for QGA this usually means the agent is not running in the guest.
    #[error("{} did not complete the {what} within {after:?}", path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// Which step timed out.
        what: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// The peer closed the connection during the handshake.
    #[error("{} closed the connection during the {what}", path.display())]
    Closed {
        /// The socket path.
        path: PathBuf,
        /// Which step was running.
        what: &'static str,
    },
    /// The peer broke the protocol during the handshake.
    #[error("the handshake with {} failed", path.display())]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ProtocolError,
    },
}

/// Running one command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No reply arrived within the deadline. For QGA the connection is resynchronised before the next command.
    #[error("{command} did not complete within {after:?}")]
    Timeout {
        /// The command name.
        command: String,
        /// The time allowed.
        after: Duration,
    },
    /// The guest agent did not answer `guest-sync-delimited`, so the command was never sent;
    /// the agent is hung, busy (e.g. inside a freeze) or not running in the guest.
    #[error("the guest agent did not resynchronise within {after:?}, so {command} was not sent")]
    SyncTimeout {
        /// The command that was to be sent.
        command: String,
        /// The time allowed.
        after: Duration,
    },
    /// An earlier guest agent command still held the (one-at-a-time) channel when the deadline passed.
    #[error("{command} waited {after:?} behind an earlier guest agent command and was not sent")]
    Busy {
        /// The command that was to be sent.
        command: String,
        /// The time allowed.
        after: Duration,
    },
    /// The connection closed before the reply arrived (QEMU exited or the socket was closed).
    #[error("the connection closed before {command} completed")]
    Disconnected {
        /// The command name.
        command: String,
    },
    /// QEMU or the guest agent answered with an error.
    #[error("{command} failed: {desc} ({class})")]
    Qemu {
        /// The command name.
        command: String,
        /// The error class, e.g. `GenericError`.
        class: String,
        /// The description QEMU gave.
        desc: String,
    },
    /// The reply did not have the shape the command's `Returns` type expects.
    #[error("the reply to {command} did not match its expected type")]
    Decode {
        /// The command name.
        command: String,
        /// What serde_json objected to.
        #[source]
        source: serde_json::Error,
    },
    /// The command could not be started (bad arguments, or illegal in the session state).
    #[error("{command} could not be sent")]
    Start {
        /// The command name.
        command: String,
        /// Why.
        #[source]
        source: StartCommandError,
    },
    /// The peer sent something that breaks the protocol instead of a reply.
    #[error("the peer broke the protocol while {command} was running")]
    Protocol {
        /// The command name.
        command: String,
        /// What was wrong.
        #[source]
        source: ProtocolError,
    },
    /// Reading or writing the socket failed.
    #[error("i/o error while running {command}")]
    Io {
        /// The command name.
        command: String,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// The guest agent connection had to be reopened for this command, and that failed.
    #[error("could not reconnect to the guest agent to run {command}")]
    Connect {
        /// The command name.
        command: String,
        /// Why the connection failed.
        #[source]
        source: ConnectError,
    },
}

impl CommandError {
    /// The error for `command` from an `error` reply.
    pub fn from_qemu(command: &str, error: QemuError) -> Self {
        Self::Qemu { command: command.to_owned(), class: error.class, desc: error.desc }
    }
}

/// Waiting for a QMP event failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No matching event arrived in time.
    #[error("no matching QMP event arrived within {after:?}")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The QMP connection closed, so no more events will arrive.
    #[error("the QMP connection closed while waiting for an event")]
    Disconnected,
    /// The receiver fell behind and events were dropped; re-query the state instead of trusting the stream.
    #[error("{missed} QMP events were dropped because the receiver fell behind")]
    Lagged {
        /// How many events were lost.
        missed: u64,
    },
}
