//! Classifying decoded QMP objects: greeting, reply or event.

use serde_json::{Map, Value};

use super::events::{Event, QmpEvent, Timestamp};
use super::types::Greeting;
use crate::error::ProtocolError;
use crate::message::{Reply, parse_reply, preview_value};

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpMessage {
    /// `{"QMP": {...}}`, sent once on connect.
    Greeting(Greeting),
    /// A reply to a command.
    Reply(Reply),
    /// An asynchronous event.
    Event(QmpEvent),
}

impl QmpMessage {
    /// Classifies a decoded JSON object.
    pub fn parse(mut message: Map<String, Value>) -> Result<Self, ProtocolError> {
        if let Some(greeting) = message.remove("QMP") {
            return serde_json::from_value(greeting.clone()).map(QmpMessage::Greeting).map_err(|source| {
                ProtocolError::Malformed { kind: "greeting", preview: preview_value(&greeting), source }
            });
        }
        if message.contains_key("event") {
            return parse_event(message).map(QmpMessage::Event);
        }
        match parse_reply(message) {
            Ok(reply) => reply.map(QmpMessage::Reply),
            Err(message) => Err(ProtocolError::Unrecognised { preview: preview_value(&message) }),
        }
    }
}

fn parse_event(mut message: Map<String, Value>) -> Result<QmpEvent, ProtocolError> {
    let malformed = |message: &Map<String, Value>, source| ProtocolError::Malformed {
        kind: "event",
        preview: preview_value(message),
        source,
    };
    let name: String =
        serde_json::from_value(message["event"].clone()).map_err(|e| malformed(&message, e))?;
    let timestamp = match message.get("timestamp") {
        Some(ts) => serde_json::from_value::<Timestamp>(ts.clone()).map_err(|e| malformed(&message, e))?,
        None => Timestamp::default(),
    };
    let data = message.remove("data").unwrap_or(Value::Null);
    Ok(QmpEvent { event: Event::from_wire(&name, data), timestamp })
}
