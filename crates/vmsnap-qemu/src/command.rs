//! "Each command is a type": the request and reply shapes of a command, and
//! where it is legal, written on a marker type.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A QMP or QGA command: its wire name, argument type and reply type.
///
/// Implementors are uninhabited marker types (`enum QueryStatus {}`), used as
/// `client.execute::<QueryStatus>(())`. Commands without arguments use `()`,
/// which is sent as no `arguments` member at all.
pub trait Command {
    /// The command name on the wire, e.g. `query-status`.
    const NAME: &'static str;
    /// The `arguments` member of the request.
    type Args: Serialize + Send;
    /// The `return` member of a successful reply.
    type Returns: DeserializeOwned + Send;
}

/// The reply of commands that return `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// The QMP session phase in which a command may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QmpPhase {
    /// Capabilities negotiation: only `qmp_capabilities` is accepted by QEMU.
    Negotiation,
    /// Command mode, after a successful `qmp_capabilities`.
    Command,
}

/// A command of the QEMU Machine Protocol.
pub trait QmpCommand: Command {
    /// The session phase in which the command is legal.
    const PHASE: QmpPhase = QmpPhase::Command;
}

/// A command of the QEMU guest agent protocol.
pub trait QgaCommand: Command {
    /// Whether the agent replies on success. `guest-shutdown` does not (its
    /// schema says `'success-response': false`); such commands must have
    /// `Returns = ()`, and the client does not wait for a reply to them.
    const SUCCESS_RESPONSE: bool = true;
}

/// Turns typed arguments into the optional `arguments` member of a request:
/// `()` and `{}` become `None`, so argument-less commands carry no member.
pub(crate) fn arguments_value(args: &impl Serialize) -> Result<Option<Value>, serde_json::Error> {
    match serde_json::to_value(args)? {
        Value::Null => Ok(None),
        Value::Object(map) if map.is_empty() => Ok(None),
        other => Ok(Some(other)),
    }
}

/// Builds the request object `{"execute": name, "arguments": args, "id": id}`.
pub(crate) fn request(name: &str, args: Option<Value>, id: Option<u64>) -> Value {
    let mut request = serde_json::Map::new();
    request.insert("execute".into(), Value::String(name.into()));
    if let Some(args) = args {
        request.insert("arguments".into(), args);
    }
    if let Some(id) = id {
        request.insert("id".into(), Value::from(id));
    }
    Value::Object(request)
}

/// Declares command marker types. Each entry is
/// `doc, Type, "wire-name", Args => Returns;` plus an optional trait-constant block.
macro_rules! commands {
    ($proto:ident { $(
        $(#[$meta:meta])*
        $ty:ident = $name:literal, $args:ty => $ret:ty $({ $($konst:tt)* })?;
    )* }) => { $(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub enum $ty {}

        impl $crate::command::Command for $ty {
            const NAME: &'static str = $name;
            type Args = $args;
            type Returns = $ret;
        }

        impl $crate::command::$proto for $ty { $($($konst)*)? }
    )* };
}

pub(crate) use commands;
