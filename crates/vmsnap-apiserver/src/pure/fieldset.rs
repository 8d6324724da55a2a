//! Field sets in the `FieldsV1` format of `metadata.managedFields` (`{"f:spec": {"f:source": {}}}`).
//! Lists are treated as atomic leaves.

use serde_json::{Map, Value};

/// The set of fields a configuration sets.
pub fn of(config: &Value) -> Value {
    match config {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if k == "metadata" {
                    // Only labels and annotations of metadata are owned.
                    let mut meta = Map::new();
                    for owned in ["labels", "annotations"] {
                        if let Some(sub) = v.get(owned) {
                            meta.insert(format!("f:{owned}"), of(sub));
                        }
                    }
                    if !meta.is_empty() {
                        out.insert("f:metadata".into(), Value::Object(meta));
                    }
                    continue;
                }
                out.insert(format!("f:{k}"), of(v));
            }
            Value::Object(out)
        }
        _ => Value::Object(Map::new()),
    }
}

/// Removes from `object` every field in `previous` that is not in `current`.
pub fn remove_dropped(object: &mut Value, previous: &Value, current: &Value) {
    let (Some(obj), Some(prev)) = (object.as_object_mut(), previous.as_object()) else { return };
    for (fk, psub) in prev {
        let Some(key) = fk.strip_prefix("f:") else { continue };
        match current.get(fk) {
            None => {
                obj.remove(key);
            }
            Some(csub) => {
                if let Some(child) = obj.get_mut(key) {
                    remove_dropped(child, psub, csub);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_become_nested_sets_and_lists_are_leaves() {
        let set = of(
            &json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"list": [1, 2]}}),
        );
        assert_eq!(set, json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:list": {}}}));
    }

    #[test]
    fn dropped_fields_are_removed_and_kept_fields_stay() {
        let mut obj = json!({"spec": {"a": 1, "b": {"c": 1, "d": 2}}});
        let prev = json!({"f:spec": {"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}}});
        let cur = json!({"f:spec": {"f:b": {"f:d": {}}}});
        remove_dropped(&mut obj, &prev, &cur);
        assert_eq!(obj, json!({"spec": {"b": {"d": 2}}}));
    }
}
