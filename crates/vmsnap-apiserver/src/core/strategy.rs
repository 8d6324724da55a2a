//! Kind-specific rules the real API server applies on create and update: initial status of
//! built-ins, status reset of custom resources, and the few validations of built-in kinds.

use serde_json::{Value, json};
use vmsnap_api::registry::ResourceType;

use crate::pure::validation::Cause;

fn is_core(rt: &ResourceType, plural: &str) -> bool {
    rt.group.is_empty() && rt.plural == plural
}

/// Prepares a new object's status and kind-specific fields.
pub fn prepare_create(rt: &ResourceType, obj: &mut Value) {
    if is_core(rt, "namespaces") {
        obj["status"] = json!({ "phase": "Active" });
        obj["spec"] = json!({ "finalizers": ["kubernetes"] });
        let name = obj["metadata"]["name"].clone();
        let labels = &mut obj["metadata"]["labels"];
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = name;
    } else if is_core(rt, "secrets") {
        // SetDefaults_Secret: a Secret without a type is Opaque.
        if obj.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
            obj["type"] = json!("Opaque");
        }
    } else if is_core(rt, "persistentvolumeclaims") || is_core(rt, "persistentvolumes") {
        obj["status"] = json!({ "phase": "Pending" });
    } else if rt.has_status
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
}

/// Validation of built-in kinds beyond the schema.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if is_core(rt, "persistentvolumeclaims") {
        let modes = obj.pointer("/spec/accessModes").and_then(Value::as_array).map_or(0, Vec::len);
        if modes == 0 {
            causes.push(Cause {
                reason: "FieldValueRequired",
                field: "spec.accessModes".into(),
                message: "Required value: at least 1 access mode is required".into(),
            });
        }
        if obj.pointer("/spec/resources/requests/storage").is_none() {
            causes.push(Cause {
                reason: "FieldValueRequired",
                field: "spec.resources[storage]".into(),
                message: "Required value".into(),
            });
        }
    }
    causes
}

/// Fields of a PVC spec that cannot change after creation (everything but the storage request and
/// a few mutable fields), compared as the real API server does.
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if is_core(rt, "persistentvolumeclaims") {
        let strip = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = spec.as_object_mut() {
                m.remove("resources");
                m.remove("volumeName");
                m.remove("volumeAttributesClassName");
            }
            spec
        };
        if strip(old) != strip(new) && old.pointer("/spec/volumeName").is_some() {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                field: "spec".into(),
                message: "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
            });
        }
        let size = |v: &Value| v.pointer("/spec/resources/requests/storage").cloned();
        if let (Some(o), Some(n)) = (size(old), size(new))
            && quantity_bytes(&n).zip(quantity_bytes(&o)).is_some_and(|(n, o)| n < o)
        {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                field: "spec.resources.requests.storage".into(),
                message: "Forbidden: field can not be less than status.capacity".into(),
            });
        }
    }
    causes
}

/// Parses a Kubernetes quantity (a string or a number) into bytes.
pub fn quantity_bytes(q: &Value) -> Option<u64> {
    match q {
        Value::String(s) => vmsnap_api::quantity::parse_bytes(s).ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}
