//! The restore's `patches`, applied as KubeVirt applies them.
//!
//! KubeVirt's restore controller applies `spec.patches` with evanphx/json-patch v4, which departs
//! from RFC 6902 in one way users and KubeVirt's own tests rely on: a `replace` of a member that an
//! existing object lacks sets it (v4 looks the member up without failing), so
//! `{"op": "replace", "path": ".../interfaces/0/macAddress", "value": "..."}` works on an interface
//! that has no MAC address yet. Everything else follows RFC 6902: a missing parent or array index
//! is an error.

use serde_json::Value;
use vmsnap_api::kubevirt::VirtualMachine;

use crate::error::ReconcileError;

/// Applies the restore's `patches` (one JSON patch operation per string) to a VM being created.
pub fn apply_patches(vm: &VirtualMachine, patches: &[String]) -> Result<VirtualMachine, ReconcileError> {
    if patches.is_empty() {
        return Ok(vm.clone());
    }
    let name = vm.metadata.name.clone().unwrap_or_default();
    let err = |reason: String| ReconcileError::Patch { vm: name.clone(), reason };
    let mut doc = serde_json::to_value(vm).expect("a VM serializes");
    for text in patches {
        let op: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        apply_op(&mut doc, op).map_err(err)?;
    }
    serde_json::from_value(doc).map_err(|e| err(e.to_string()))
}

/// Applies one operation in place, with v4's `replace`.
fn apply_op(doc: &mut Value, mut op: Value) -> Result<(), String> {
    if op.get("op").and_then(Value::as_str) == Some("replace")
        && let Some(path) = op.get("path").and_then(Value::as_str)
        && replaces_a_missing_member(doc, path)
    {
        op["op"] = Value::from("add");
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(vec![op])).map_err(|e| e.to_string())?;
    json_patch::patch(doc, &patch).map_err(|e| e.to_string())
}

/// Whether `path` names a member that its parent, an existing object, does not have.
fn replaces_a_missing_member(doc: &Value, path: &str) -> bool {
    let Some((parent, _)) = path.rsplit_once('/') else { return false };
    doc.pointer(path).is_none() && doc.pointer(parent).is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vmsnap_api::kubevirt::{Interface, VirtualMachineSpec};

    use super::*;

    fn vm() -> VirtualMachine {
        let mut spec = VirtualMachineSpec::default();
        spec.template.spec.domain.devices.interfaces =
            vec![Interface { name: "default".into(), ..Default::default() }];
        VirtualMachine::new("copy", spec)
    }

    fn patched(ops: &[Value]) -> Result<Value, String> {
        let texts: Vec<String> = ops.iter().map(Value::to_string).collect();
        apply_patches(&vm(), &texts).map(|vm| serde_json::to_value(vm).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn replace_sets_a_member_an_existing_object_lacks_as_kubevirts_json_patch_v4_does() {
        let mac = "/spec/template/spec/domain/devices/interfaces/0/macAddress";
        let vm = patched(&[json!({"op": "replace", "path": mac, "value": "DE-AD-00-00-BE-AF"})]).unwrap();
        assert_eq!(vm.pointer(mac), Some(&json!("DE-AD-00-00-BE-AF")));
    }

    #[test]
    fn replace_still_fails_under_a_missing_parent_or_past_the_end_of_a_list() {
        let under_missing = json!({"op": "replace", "path": "/spec/template/spec/nothing/here", "value": 1});
        let err = patched(&[under_missing]).unwrap_err();
        assert!(err.starts_with("error patching VM copy: "), "{err}");
        let past_end =
            json!({"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces/3", "value": {}});
        assert!(patched(&[past_end]).is_err());
    }

    #[test]
    fn operations_apply_in_order_and_an_existing_member_is_replaced() {
        let path = "/metadata/labels";
        let vm = patched(&[
            json!({"op": "add", "path": path, "value": {"a": "1"}}),
            json!({"op": "replace", "path": "/metadata/labels/a", "value": "2"}),
            json!({"op": "replace", "path": "/metadata/labels/b", "value": "3"}),
        ])
        .unwrap();
        assert_eq!(vm.pointer(path), Some(&json!({"a": "2", "b": "3"})));
    }

    #[test]
    fn a_malformed_operation_is_an_error_naming_the_vm() {
        let err = apply_patches(&vm(), &["{not json".into()]).unwrap_err().to_string();
        assert!(err.starts_with("error patching VM copy: "), "{err}");
    }
}
