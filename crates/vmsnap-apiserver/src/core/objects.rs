//! Small accessors and conversions on stored objects (plain JSON).

use serde_json::{Map, Value, json};
use vmsnap_api::registry::ResourceType;
use vmsnap_store::ObjectKey;

use super::events_view;

/// The store resource id of a kind. Both Event views share the core one.
pub fn storage_resource(rt: &ResourceType) -> String {
    if rt.plural == "events" && (rt.group.is_empty() || rt.group == "events.k8s.io") {
        return "/events".to_owned();
    }
    format!("{}/{}", rt.group, rt.plural)
}

/// The store key of an object.
pub fn key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey::new(storage_resource(rt), namespace.unwrap_or(""), name)
}

/// `metadata` as a map, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Whether the object is being deleted.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Whether nothing holds the object any more once it is being deleted.
pub fn is_releasable(rt: &ResourceType, obj: &Value) -> bool {
    if !finalizers(obj).is_empty() {
        return false;
    }
    if rt.group.is_empty() && rt.plural == "namespaces" {
        let spec_finalizers = obj.pointer("/spec/finalizers").and_then(Value::as_array).map_or(0, Vec::len);
        return spec_finalizers == 0;
    }
    true
}

/// Converts a stored object into what a client of `version` sees.
pub fn to_version(rt: &ResourceType, version: &str, mut obj: Value) -> Value {
    if rt.group == "events.k8s.io" {
        return events_view::core_to_events_v1(&obj);
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version(version)));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

/// Drops empty metadata lists and maps, as Go's `omitempty` encoding of ObjectMeta does: an object
/// whose last finalizer was removed has no `finalizers` field at all.
pub fn normalize_metadata(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["finalizers", "labels", "annotations", "ownerReferences", "managedFields"] {
            let empty = match meta.get(field) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(field);
            }
        }
    }
}

/// Converts an object received from a client of any served version into the stored form.
pub fn to_storage(rt: &ResourceType, mut obj: Value) -> Value {
    normalize_metadata(&mut obj);
    if rt.group == "events.k8s.io" {
        return events_view::events_v1_to_core(&obj);
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version(rt.storage_version())));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

/// Whether two objects differ in anything but metadata and status (what bumps `generation`).
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    strip(old) != strip(new)
}

/// Equality ignoring `metadata.resourceVersion` and `metadata.managedFields` (no-op detection).
pub fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}
