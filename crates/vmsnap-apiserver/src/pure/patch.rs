//! The patch types the API server accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902, with the
//! API server's `test`-for-null quirk), strategic merge patch (for built-in kinds), and server-side
//! apply as "merge, and remove what this manager applied before but no longer applies".

use serde_json::{Map, Value};

use super::fieldset;

/// A patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not a patch of the declared type (400).
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed, e.g. a `test` (422).
    #[error("{0}")]
    Failed(String),
}

/// The patch content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchType {
    /// From a Content-Type header value.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        Some(match base {
            "application/merge-patch+json" => PatchType::Merge,
            "application/json-patch+json" => PatchType::Json,
            "application/strategic-merge-patch+json" => PatchType::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply,
            _ => return None,
        })
    }

    /// The content type string.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// RFC 7386 merge patch. The patch must be an object.
pub fn merge(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_type(patch)
        )));
    }
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// RFC 6902 JSON patch. Like the Kubernetes API server (evanphx/json-patch), a `test` of `null`
/// succeeds when the path does not exist; kube-rs's finalizer helper relies on it.
pub fn json(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        PatchError::Malformed(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_type(patch)
        ))
    })?;
    let mut doc = target.clone();
    for op in ops {
        let is_null_test = op.get("op").and_then(Value::as_str) == Some("test")
            && op.get("value").is_some_and(Value::is_null);
        if is_null_test {
            let path = op.get("path").and_then(Value::as_str).unwrap_or("");
            match doc.pointer(path) {
                None | Some(Value::Null) => continue,
                Some(_) => {
                    return Err(PatchError::Failed(format!("testing value {path} failed: test failed")));
                }
            }
        }
        let single: json_patch::Patch = serde_json::from_value(Value::Array(vec![op.clone()]))
            .map_err(|e| PatchError::Malformed(format!("invalid JSON patch operation {op}: {e}")))?;
        json_patch::patch(&mut doc, &single)
            .map_err(|e| PatchError::Failed(describe_json_patch_error(&e)))?;
    }
    Ok(doc)
}

fn describe_json_patch_error(e: &json_patch::PatchError) -> String {
    match e.kind {
        json_patch::PatchErrorKind::TestFailed => format!("{e}: test failed"),
        _ => e.to_string(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How a list at a given path merges in a strategic merge patch.
enum ListStrategy {
    /// Replace the whole list (the default).
    Replace,
    /// Union of primitive values (`finalizers`).
    PrimitiveMerge,
    /// Merge object elements by this key.
    MergeKey(&'static str),
}

fn list_strategy(path: &[String]) -> ListStrategy {
    let joined = path.join(".");
    match joined.as_str() {
        "metadata.finalizers" => ListStrategy::PrimitiveMerge,
        "metadata.ownerReferences" => ListStrategy::MergeKey("uid"),
        "metadata.managedFields" => ListStrategy::Replace,
        j if j.ends_with("conditions") => ListStrategy::MergeKey("type"),
        _ => ListStrategy::Replace,
    }
}

/// Strategic merge patch for built-in kinds, with the merge keys of the fields they use and the
/// `$patch`, `$setElementOrder`, `$deleteFromPrimitiveList` and `$retainKeys` directives. A
/// directive of the wrong shape is refused with apimachinery's `mergepatch` error (400; kube-apiserver
/// itself answers an unknown `$patch` with a 500, a request error here).
pub fn strategic(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_type(patch)
        )));
    }
    let mut out = target.clone();
    strategic_into(&mut out, patch, &mut Vec::new())?;
    Ok(out)
}

fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    let name = directive.as_str().map_or_else(|| directive.to_string(), str::to_owned);
    PatchError::Malformed(format!("unknown patch type: {name} in map: {}", Value::Object(map.clone())))
}

fn strategic_into(target: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), PatchError> {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return Ok(());
    };
    match pmap.get("$patch") {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut m = pmap.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some(Value::String(d)) if d == "delete" => {
            *target = Value::Null;
            return Ok(());
        }
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => return Err(bad_patch_type(other, pmap)),
    }
    let retain = match pmap.get("$retainKeys") {
        None => None,
        Some(Value::Array(keys)) if keys.iter().all(Value::is_string) => {
            let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
            if pmap.keys().any(|k| !k.starts_with('$') && !keys.contains(&k.as_str())) {
                return Err(PatchError::Failed("patch content doesn't match retainKeys list".into()));
            }
            Some(keys)
        }
        Some(_) => return Err(PatchError::Malformed("invalid patch format of retainKeys".into())),
    };
    for (key, value) in pmap {
        if key.starts_with("$setElementOrder/") && !value.is_array() {
            return Err(PatchError::Malformed("invalid patch format of setElementOrder list".into()));
        }
        if key.starts_with("$deleteFromPrimitiveList/") && !value.is_array() {
            return Err(PatchError::Malformed("invalid patch format of primitive list".into()));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let tmap = target.as_object_mut().expect("just made an object");
    if let Some(keys) = retain {
        tmap.retain(|k, _| keys.contains(&k.as_str()));
    }
    for (key, pval) in pmap {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list_key) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) =
                (tmap.get_mut(list_key).and_then(Value::as_array_mut), pval.as_array())
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        path.push(key.clone());
        match pval {
            Value::Null => {
                tmap.remove(key);
            }
            Value::Object(_) => {
                let entry = tmap.entry(key.clone()).or_insert(Value::Null);
                strategic_into(entry, pval, path)?;
                if entry.is_null() {
                    tmap.remove(key);
                }
            }
            Value::Array(items) => {
                let merged = merge_list(tmap.get(key), items, path)?;
                tmap.insert(key.clone(), merged);
            }
            other => {
                tmap.insert(key.clone(), other.clone());
            }
        }
        path.pop();
    }
    Ok(())
}

fn merge_list(current: Option<&Value>, items: &[Value], path: &mut Vec<String>) -> Result<Value, PatchError> {
    let existing = current.and_then(Value::as_array).cloned().unwrap_or_default();
    Ok(match list_strategy(path) {
        ListStrategy::Replace => Value::Array(items.to_vec()),
        ListStrategy::PrimitiveMerge => {
            let mut out = existing;
            for item in items {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Value::Array(out)
        }
        ListStrategy::MergeKey(k) => {
            let mut out = existing;
            for item in items {
                let key = item.get(k).cloned();
                let pos = out.iter().position(|e| key.is_some() && e.get(k) == key.as_ref());
                let directive = item.get("$patch");
                let delete = match (directive, item.as_object()) {
                    (None, _) => false,
                    (Some(Value::String(d)), _) if d == "delete" => true,
                    (Some(Value::String(d)), _) if d == "merge" || d == "replace" => false,
                    (Some(other), Some(map)) => return Err(bad_patch_type(other, map)),
                    (Some(_), None) => false,
                };
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_into(&mut out[i], item, path)?,
                    (None, false) => out.push(item.clone()),
                }
            }
            Value::Array(out)
        }
    })
}

/// Server-side apply without conflict detection: merge the applied configuration into the live
/// object, then remove every field that `previously_applied` (this manager's last field set) owned
/// but the new configuration no longer sets. Lists are atomic.
pub fn apply(live: &Value, applied: &Value, previously_applied: Option<&Value>) -> Result<Value, PatchError> {
    if !applied.is_object() {
        return Err(PatchError::Malformed("the applied configuration must be an object".into()));
    }
    let mut out = live.clone();
    deep_merge(&mut out, applied);
    if let Some(previous) = previously_applied {
        let current = fieldset::of(applied);
        fieldset::remove_dropped(&mut out, previous, &current);
    }
    Ok(out)
}

fn deep_merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, a) => *t = a.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes_fields() {
        let out = merge(&json!({"a": 1, "b": {"c": 2, "d": 3}}), &json!({"b": {"c": null, "e": 4}})).unwrap();
        assert_eq!(out, json!({"a": 1, "b": {"d": 3, "e": 4}}));
    }

    #[test]
    fn merge_patch_must_be_an_object() {
        assert!(matches!(merge(&json!({}), &json!([1])), Err(PatchError::Malformed(_))));
    }

    #[test]
    fn json_patch_test_of_null_passes_on_a_missing_path() {
        let doc = json!({"metadata": {"name": "x"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        assert_eq!(json(&doc, &patch).unwrap()["metadata"]["finalizers"], json!(["f"]));
    }

    #[test]
    fn json_patch_test_of_null_fails_when_the_path_has_a_value() {
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
        assert!(matches!(json(&doc, &patch), Err(PatchError::Failed(_))));
    }

    #[test]
    fn json_patch_failed_test_is_a_failure_not_malformed() {
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": ["b"]},
            {"op": "replace", "path": "/metadata/finalizers", "value": []}
        ]);
        assert!(matches!(json(&doc, &patch), Err(PatchError::Failed(_))));
    }

    #[test]
    fn json_patch_must_be_an_array() {
        assert!(matches!(json(&json!({}), &json!({"op": "add"})), Err(PatchError::Malformed(_))));
    }

    #[test]
    fn strategic_merge_unions_finalizers_and_merges_conditions_by_type() {
        let live = json!({"metadata": {"finalizers": ["a"]}, "status": {"conditions": [{"type": "X", "status": "False"}]}});
        let patch = json!({
            "metadata": {"finalizers": ["b"]},
            "status": {"conditions": [{"type": "X", "status": "True"}, {"type": "Y", "status": "True"}]}
        });
        let out = strategic(&live, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "X", "status": "True"}, {"type": "Y", "status": "True"}])
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let live = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}});
        let patch = json!({
            "$setElementOrder/finalizers": ["a"],
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "labels": {"$patch": "replace", "y": "2"}}
        });
        let out = strategic(&live, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a"]));
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
    }

    #[test]
    fn strategic_directives_of_the_wrong_shape_get_mergepatch_errors() {
        let live = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]}});
        let unknown = strategic(&live, &json!({"metadata": {"labels": {"$patch": "explode"}}}));
        assert!(
            matches!(&unknown, Err(PatchError::Malformed(m)) if m.starts_with("unknown patch type: explode in map:"))
        );
        let retain = strategic(&live, &json!({"metadata": {"$retainKeys": "labels"}}));
        assert_eq!(retain, Err(PatchError::Malformed("invalid patch format of retainKeys".into())));
        let order = strategic(&live, &json!({"metadata": {"$setElementOrder/finalizers": "x"}}));
        assert_eq!(order, Err(PatchError::Malformed("invalid patch format of setElementOrder list".into())));
        let delete = strategic(&live, &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": 1}}));
        assert_eq!(delete, Err(PatchError::Malformed("invalid patch format of primitive list".into())));
    }

    #[test]
    fn retain_keys_keeps_only_the_listed_fields() {
        let live = json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(strategic(&live, &patch).unwrap(), json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let mismatch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        assert_eq!(
            strategic(&live, &mismatch),
            Err(PatchError::Failed("patch content doesn't match retainKeys list".into()))
        );
    }

    #[test]
    fn apply_merges_and_prunes_what_the_manager_dropped() {
        let live = json!({"spec": {"a": 1, "b": 2, "other": 9}});
        let first = json!({"spec": {"a": 1, "b": 2}});
        let previous = fieldset::of(&first);
        let out = apply(&live, &json!({"spec": {"a": 5}}), Some(&previous)).unwrap();
        assert_eq!(out, json!({"spec": {"a": 5, "other": 9}}));
    }
}
