//! How deep a value nests, and how deep the store lets it nest.
//!
//! serde_json (the store's reader and that of every Rust API client, kube-rs included) refuses
//! documents nested 128 levels deep or more, and a Go client's list or watch wraps an object in
//! two or three more levels. A value the store accepted but could not read back would break every
//! read, list and delete of it, so the writer refuses anything deeper than [`MAX_NESTING`].

use serde_json::Value;

/// The deepest nesting of objects and arrays the store accepts: well under serde_json's limit of
/// 128, with room for the list and watch envelopes around an object.
pub const MAX_NESTING: usize = 100;

/// The nesting depth of a value: 0 for a scalar, 1 for `{}` or `[]`, 2 for `{"a": {}}`, ...
/// Iterative, so that a value of any depth is measured without deep recursion.
pub fn nesting_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1usize)];
    while let Some((v, depth)) = pending.pop() {
        match v {
            Value::Object(m) => {
                deepest = deepest.max(depth);
                pending.extend(m.values().map(|child| (child, depth + 1)));
            }
            Value::Array(a) => {
                deepest = deepest.max(depth);
                pending.extend(a.iter().map(|child| (child, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Parses a stored value. Rows written before the writer refused deep values may nest deeper
/// than serde_json's default limit; they are read without it (on the reader's own thread, whose
/// stack is ample for the few hundred levels a patch could have reached), so that they can still
/// be read and deleted.
pub(crate) fn parse_stored(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text).or_else(|first| {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        deserializer.disable_recursion_limit();
        serde::Deserialize::deserialize(&mut deserializer).map_err(|_: serde_json::Error| first)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!({});
        for _ in 1..depth {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn rows_deeper_than_serde_jsons_limit_are_still_read() {
        let deep = nested(200).to_string();
        assert_eq!(nesting_depth(&parse_stored(&deep).unwrap()), 200);
        assert!(parse_stored("{\"a\": ").is_err());
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(nesting_depth(&json!(1)), 0);
        assert_eq!(nesting_depth(&json!({})), 1);
        assert_eq!(nesting_depth(&json!({"a": [1, {"b": {}}]})), 4);
        assert_eq!(nesting_depth(&nested(300)), 300);
    }

    #[test]
    fn the_limit_leaves_room_for_envelopes_under_serde_jsons_own() {
        let wrapped = json!({"type": "ADDED", "object": {"items": [nested(MAX_NESTING)]}});
        assert!(serde_json::from_str::<Value>(&wrapped.to_string()).is_ok());
        // And serde_json's own limit is real: what the store refuses could not be read back.
        assert!(serde_json::from_str::<Value>(&nested(129).to_string()).is_err());
    }
}
