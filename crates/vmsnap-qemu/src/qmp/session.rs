//! The QMP session state machine, without I/O.
//!
//! Feed it received bytes with [`QmpSession::push_bytes`], drain
//! [`QmpSession::poll_output`], and write out whatever
//! [`QmpSession::take_transmit`] and [`QmpSession::start_command`] return.
//! The session answers the greeting with `qmp_capabilities` by itself.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::args::CapabilitiesArgs;
use super::commands::QmpCapabilities;
use super::events::QmpEvent;
use super::message::QmpMessage;
use super::types::Greeting;
use crate::codec::{Framing, LineDecoder, encode_line};
use crate::command::{QmpCommand, QmpPhase, arguments_value, request};
use crate::error::{ProtocolError, QemuError, StartCommandError};
use crate::message::Reply;

/// The lifecycle of a QMP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QmpState {
    /// Connected; waiting for QEMU's `{"QMP": ...}` greeting. Nothing may be sent yet.
    AwaitingGreeting,
    /// The greeting arrived and `qmp_capabilities` was queued with this id;
    /// waiting for its reply. QEMU accepts no other command in this phase.
    Negotiating {
        /// The id of the `qmp_capabilities` request.
        id: u64,
    },
    /// Command mode: commands may be sent, replies are matched by id, events flow.
    Ready,
    /// The handshake failed or the connection is gone; nothing more can happen.
    Closed,
}

impl QmpState {
    fn phrase(self) -> &'static str {
        match self {
            QmpState::AwaitingGreeting => "waiting for the QMP greeting",
            QmpState::Negotiating { .. } => "negotiating capabilities",
            QmpState::Ready => "ready",
            QmpState::Closed => "closed",
        }
    }
}

/// Something the session produced from received bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpOutput {
    /// Capabilities negotiation succeeded: the session is [`QmpState::Ready`].
    Ready(Greeting),
    /// The reply to a command started with [`QmpSession::start_command`].
    Reply {
        /// The id the command was sent with.
        id: u64,
        /// The command name.
        command: String,
        /// The `return` value or the `error`.
        result: Result<Value, QemuError>,
    },
    /// An asynchronous event.
    Event(QmpEvent),
    /// A reply that matches no command in flight (an id never issued, or an
    /// `error` without id, which QEMU sends for requests it could not parse).
    Unmatched(Reply),
}

/// A request ready to be written: its id and its encoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingCommand {
    /// The id the reply will carry.
    pub id: u64,
    /// The bytes to write, newline included.
    pub bytes: Vec<u8>,
}

/// A QMP client session: handshake, id allocation and reply correlation.
#[derive(Debug)]
pub struct QmpSession {
    state: QmpState,
    decoder: LineDecoder,
    greeting: Option<Greeting>,
    next_id: u64,
    in_flight: HashMap<u64, String>,
    /// Commands whose caller gave up; their late replies are dropped silently.
    abandoned: HashSet<u64>,
    transmit: Vec<u8>,
}

impl Default for QmpSession {
    fn default() -> Self {
        Self::new()
    }
}

impl QmpSession {
    /// A session for a freshly opened connection.
    pub fn new() -> Self {
        Self::with_decoder(LineDecoder::new(Framing::Qmp))
    }

    /// A session using `decoder` (e.g. with a smaller line limit).
    pub fn with_decoder(decoder: LineDecoder) -> Self {
        Self {
            state: QmpState::AwaitingGreeting,
            decoder,
            greeting: None,
            next_id: 1,
            in_flight: HashMap::new(),
            abandoned: HashSet::new(),
            transmit: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> QmpState {
        self.state
    }

    /// The greeting, once received.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// How many commands await a reply.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Adds received bytes; then drain [`QmpSession::poll_output`].
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    /// Takes the bytes the session itself wants written (the `qmp_capabilities` request).
    pub fn take_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.transmit)
    }

    /// Starts a typed command: allocates an id and encodes the request.
    pub fn start<C: QmpCommand>(&mut self, args: &C::Args) -> Result<OutgoingCommand, StartCommandError> {
        let allowed = matches!(
            (C::PHASE, self.state),
            (QmpPhase::Command, QmpState::Ready)
                | (QmpPhase::Negotiation, QmpState::AwaitingGreeting | QmpState::Negotiating { .. })
        );
        if !allowed {
            return Err(StartCommandError::NotAllowed {
                command: C::NAME.into(),
                state: self.state.phrase(),
            });
        }
        let args = arguments_value(args)
            .map_err(|source| StartCommandError::Encode { command: C::NAME.into(), source })?;
        Ok(self.encode(C::NAME, args))
    }

    /// Starts a command by name (the escape hatch for commands without a type).
    pub fn start_command(
        &mut self,
        name: &str,
        args: Option<Value>,
    ) -> Result<OutgoingCommand, StartCommandError> {
        if self.state != QmpState::Ready {
            return Err(StartCommandError::NotAllowed { command: name.into(), state: self.state.phrase() });
        }
        Ok(self.encode(name, args))
    }

    fn encode(&mut self, name: &str, args: Option<Value>) -> OutgoingCommand {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = encode_line(&request(name, args, Some(id))).unwrap_or_default();
        self.in_flight.insert(id, name.to_owned());
        OutgoingCommand { id, bytes }
    }

    /// Forgets a command whose caller stopped waiting; a late reply is dropped.
    pub fn abandon(&mut self, id: u64) {
        if self.in_flight.remove(&id).is_some() {
            self.abandoned.insert(id);
        }
    }

    /// Marks the connection closed and returns the commands that will never get a reply.
    pub fn close(&mut self) -> Vec<(u64, String)> {
        self.state = QmpState::Closed;
        self.abandoned.clear();
        self.in_flight.drain().collect()
    }

    /// The next output, a protocol error for a bad message (the session carries
    /// on after it unless it is in the handshake), or `None` when more bytes are needed.
    pub fn poll_output(&mut self) -> Option<Result<QmpOutput, ProtocolError>> {
        loop {
            let message = match self.decoder.next_message()? {
                Ok(object) => QmpMessage::parse(object),
                Err(error) => Err(error.into()),
            };
            let output = message.and_then(|message| self.handle(message)).transpose();
            if let Some(Err(_)) = &output
                && matches!(self.state, QmpState::AwaitingGreeting | QmpState::Negotiating { .. })
            {
                self.state = QmpState::Closed;
            }
            if output.is_some() {
                return output;
            }
        }
    }

    fn handle(&mut self, message: QmpMessage) -> Result<Option<QmpOutput>, ProtocolError> {
        match (self.state, message) {
            (QmpState::AwaitingGreeting, QmpMessage::Greeting(greeting)) => {
                let outgoing = self
                    .start::<QmpCapabilities>(&CapabilitiesArgs::default())
                    .expect("qmp_capabilities is legal while awaiting the greeting and always encodes");
                self.transmit.extend_from_slice(&outgoing.bytes);
                self.state = QmpState::Negotiating { id: outgoing.id };
                self.greeting = Some(greeting);
                Ok(None)
            }
            (QmpState::Negotiating { id }, QmpMessage::Reply(reply)) if reply.id == Some(Value::from(id)) => {
                self.in_flight.remove(&id);
                match reply.result {
                    Ok(_) => {
                        self.state = QmpState::Ready;
                        Ok(self.greeting.clone().map(QmpOutput::Ready))
                    }
                    Err(error) => Err(ProtocolError::CapabilitiesRejected(error)),
                }
            }
            // An event may even come before the greeting: QEMU 7.2 decides whether a monitor
            // gets events without the lock its connection handler takes (fixed upstream in
            // December 2025), so an event emitted while a client connects (RESUME at start-up)
            // can overtake the greeting. libvirt's monitor takes events in any phase too.
            (
                QmpState::AwaitingGreeting | QmpState::Negotiating { .. } | QmpState::Ready,
                QmpMessage::Event(event),
            ) => Ok(Some(QmpOutput::Event(event))),
            (QmpState::Ready, QmpMessage::Reply(reply)) => Ok(self.correlate(reply)),
            (state, message) => {
                let kind = match message {
                    QmpMessage::Greeting(_) => "greeting",
                    QmpMessage::Reply(_) => "reply",
                    QmpMessage::Event(_) => "event",
                };
                Err(ProtocolError::Unexpected { kind, state: state.phrase() })
            }
        }
    }

    fn correlate(&mut self, reply: Reply) -> Option<QmpOutput> {
        let Some(id) = reply.id.as_ref().and_then(Value::as_u64) else {
            return Some(QmpOutput::Unmatched(reply));
        };
        if let Some(command) = self.in_flight.remove(&id) {
            return Some(QmpOutput::Reply { id, command, result: reply.result });
        }
        if self.abandoned.remove(&id) {
            tracing::debug!(id, "dropping the late reply to an abandoned QMP command");
            return None;
        }
        Some(QmpOutput::Unmatched(reply))
    }
}
