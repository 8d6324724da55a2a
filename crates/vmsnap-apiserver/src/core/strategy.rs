//! Kind-specific rules the real API server applies on create and update: initial status of
//! built-ins, status reset of custom resources, the defaults KubeVirt's VM mutating webhook sets,
//! and the few validations of built-in kinds.

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
    if rt.group == "kubevirt.io" && rt.kind == "VirtualMachine" {
        set_firmware_defaults_if_empty(obj);
    }
}

/// KubeVirt's VM mutating webhook on create (`setFirmwareDefaultsIfEmpty`): a VM without a firmware
/// UUID or serial gets new random ones, so that its identity is in its spec from the start and
/// snapshots and in-place restores carry it.
fn set_firmware_defaults_if_empty(vm: &mut Value) {
    let Some(domain) = vm.pointer_mut("/spec/template/spec/domain").and_then(Value::as_object_mut) else {
        return;
    };
    let firmware = domain.entry("firmware").or_insert_with(|| json!({}));
    let Some(firmware) = firmware.as_object_mut() else { return };
    for field in ["uuid", "serial"] {
        if firmware.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            firmware.insert(field.into(), json!(uuid::Uuid::new_v4().to_string()));
        }
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

#[cfg(test)]
mod tests {
    use vmsnap_api::registry::registry;

    use super::*;

    fn vm_type() -> &'static ResourceType {
        registry().by_kind("kubevirt.io/v1", "VirtualMachine").unwrap()
    }

    #[test]
    fn a_new_vm_gets_a_random_firmware_uuid_and_serial_as_kubevirts_mutator_gives_it() {
        let mut vm = json!({"spec": {"template": {"spec": {"domain": {"devices": {}}}}}});
        prepare_create(vm_type(), &mut vm);
        let firmware = &vm["spec"]["template"]["spec"]["domain"]["firmware"];
        let uuid = firmware["uuid"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{uuid}");
        assert!(uuid::Uuid::parse_str(firmware["serial"].as_str().unwrap()).is_ok());
        let mut other = json!({"spec": {"template": {"spec": {"domain": {}}}}});
        prepare_create(vm_type(), &mut other);
        assert_ne!(other["spec"]["template"]["spec"]["domain"]["firmware"]["uuid"], uuid);
    }

    #[test]
    fn a_vm_keeps_the_firmware_identity_it_was_given() {
        let given =
            json!({"uuid": "11111111-2222-3333-4444-555555555555", "serial": "s-1", "bootloader": {}});
        let mut vm = json!({"spec": {"template": {"spec": {"domain": {"firmware": given.clone()}}}}});
        prepare_create(vm_type(), &mut vm);
        assert_eq!(vm["spec"]["template"]["spec"]["domain"]["firmware"], given);
    }
}
