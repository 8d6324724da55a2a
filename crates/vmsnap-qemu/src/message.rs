//! The reply shape QMP and QGA share: `{"return": ...}` or `{"error": {...}}`,
//! optionally with the request's `id` echoed.

use serde_json::{Map, Value};

use crate::codec::preview;
use crate::error::{ProtocolError, QemuError};

/// A reply to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The `id` the request carried, echoed by QEMU (QGA does not echo it reliably).
    pub id: Option<Value>,
    /// The `return` value, or the `error`.
    pub result: Result<Value, QemuError>,
}

/// Reads `message` as a reply, or returns it unchanged if it has neither `return` nor `error`.
pub(crate) fn parse_reply(
    mut message: Map<String, Value>,
) -> Result<Result<Reply, ProtocolError>, Map<String, Value>> {
    if let Some(value) = message.remove("return") {
        let id = message.remove("id");
        return Ok(Ok(Reply { id, result: Ok(value) }));
    }
    let Some(error) = message.remove("error") else {
        return Err(message);
    };
    let id = message.remove("id");
    Ok(match serde_json::from_value::<QemuError>(error.clone()) {
        Ok(error) => Ok(Reply { id, result: Err(error) }),
        Err(source) => {
            Err(ProtocolError::Malformed { kind: "error", preview: preview_value(&error), source })
        }
    })
}

/// The start of a JSON value, for error messages.
pub(crate) fn preview_value(value: &impl serde::Serialize) -> String {
    preview(&serde_json::to_vec(value).unwrap_or_default())
}
