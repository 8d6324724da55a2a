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

/// The fields both `applied` and `other` (another manager's set) own where the applied
/// configuration `config` sets a value different from the live object's: server-side apply's
/// conflicts, as paths in structured-merge-diff's notation (`.spec.x`).
pub fn conflicts(live: &Value, config: &Value, applied: &Value, other: &Value) -> Vec<String> {
    let mut found = Vec::new();
    conflicts_at(live, config, applied, other, &mut Vec::new(), &mut found);
    found
}

fn conflicts_at(
    live: &Value,
    config: &Value,
    applied: &Value,
    other: &Value,
    path: &mut Vec<String>,
    found: &mut Vec<String>,
) {
    let (Some(applied), Some(other)) = (applied.as_object(), other.as_object()) else { return };
    for (fk, applied_child) in applied {
        let (Some(other_child), Some(key)) = (other.get(fk), fk.strip_prefix("f:")) else { continue };
        path.push(key.to_owned());
        let (live_child, config_child) = (&live[key], &config[key]);
        let is_leaf = |set: &Value| set.as_object().is_none_or(Map::is_empty);
        if is_leaf(applied_child) || is_leaf(other_child) {
            if live_child != config_child {
                found.push(path.iter().map(|p| format!(".{p}")).collect());
            }
        } else {
            conflicts_at(live_child, config_child, applied_child, other_child, path, found);
        }
        path.pop();
    }
}

/// `set` without the field at `path` (`.spec.x`) and what is under it: ownership taken by a
/// forced apply.
pub fn without(set: &Value, path: &str) -> Value {
    let mut out = set.clone();
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut node = &mut out;
    for (i, part) in parts.iter().enumerate() {
        let key = format!("f:{part}");
        let Some(map) = node.as_object_mut() else { break };
        if i == parts.len() - 1 {
            map.remove(&key);
            break;
        }
        match map.get_mut(&key) {
            Some(child) => node = child,
            None => break,
        }
    }
    out
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
    fn conflicts_are_shared_fields_set_to_other_values() {
        let live = json!({"spec": {"a": 1, "b": {"c": 2}, "d": 3}});
        let config = json!({"spec": {"a": 5, "b": {"c": 2}, "d": 3}});
        let applied = of(&config);
        let other = json!({"f:spec": {"f:a": {}, "f:b": {"f:c": {}}}});
        assert_eq!(conflicts(&live, &config, &applied, &other), vec![".spec.a"]);
        assert_eq!(without(&other, ".spec.a"), json!({"f:spec": {"f:b": {"f:c": {}}}}));
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
