//! What a fake peer does for each command, and what it has received.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

/// How a fake peer answers a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Reply with this `return` value.
    Reply(Value),
    /// Reply with `{"error": {"class": class, "desc": desc}}`.
    Error {
        /// The error class, e.g. `GenericError`.
        class: String,
        /// The description.
        desc: String,
    },
    /// Never reply. The fake guest agent also stops reading the connection, as
    /// a hung single-threaded agent would; the fake QMP keeps serving other commands.
    Hang,
    /// Close the connection instead of replying.
    Disconnect,
    /// Reply nothing, but keep serving (what `guest-shutdown` does on success).
    NoReply,
    /// Wait, then behave as the inner behaviour. The fake QMP waits in the
    /// background (replies may overtake each other); the fake agent blocks.
    Delay(Duration, Box<Behavior>),
    /// Write these bytes instead of a reply (garbage, half a line, stray sentinels...).
    Raw(Vec<u8>),
}

impl Behavior {
    /// [`Behavior::Error`] with class `GenericError`.
    pub fn generic_error(desc: &str) -> Self {
        Behavior::Error { class: "GenericError".into(), desc: desc.into() }
    }

    /// [`Behavior::Delay`] of `delay` before `then`.
    pub fn delayed(delay: Duration, then: Behavior) -> Self {
        Behavior::Delay(delay, Box::new(then))
    }
}

/// A command a fake peer received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedCommand {
    /// The command name (`execute`).
    pub name: String,
    /// The `arguments` member, `null` when absent.
    pub arguments: Value,
}

/// The scripted behaviours and the record of received commands.
#[derive(Debug, Default)]
pub(crate) struct Script {
    pub(crate) persistent: HashMap<String, Behavior>,
    pub(crate) once: HashMap<String, VecDeque<Behavior>>,
    pub(crate) received: Vec<ReceivedCommand>,
}

impl Script {
    /// Records `name` and returns its scripted behaviour, if any (else the default applies).
    pub(crate) fn record(&mut self, name: &str, arguments: &Value) -> Option<Behavior> {
        self.received.push(ReceivedCommand { name: name.to_owned(), arguments: arguments.clone() });
        if let Some(behavior) = self.once.get_mut(name).and_then(VecDeque::pop_front) {
            return Some(behavior);
        }
        self.persistent.get(name).cloned()
    }
}

/// Splits a decoded request into its command name, arguments and id.
pub(crate) fn parse_request(
    request: &serde_json::Map<String, Value>,
) -> Option<(String, Value, Option<Value>)> {
    let name = request.get("execute").or_else(|| request.get("exec-oob"))?.as_str()?.to_owned();
    let arguments = request.get("arguments").cloned().unwrap_or(Value::Null);
    Some((name, arguments, request.get("id").cloned()))
}

/// Encodes `{"return": value}` or `{"error": ...}`, echoing `id` when given.
pub(crate) fn reply_line(result: Result<Value, (&str, &str)>, id: Option<Value>) -> Vec<u8> {
    let mut reply = serde_json::Map::new();
    match result {
        Ok(value) => reply.insert("return".into(), value),
        Err((class, desc)) => {
            reply.insert("error".into(), serde_json::json!({ "class": class, "desc": desc }))
        }
    };
    if let Some(id) = id {
        reply.insert("id".into(), id);
    }
    // QEMU ends its lines with CRLF; the fake does too, so clients are tested against it.
    let mut line = serde_json::to_vec(&reply).unwrap_or_default();
    line.extend_from_slice(b"\r\n");
    line
}
