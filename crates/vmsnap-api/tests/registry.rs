//! The registry describes each kind the way KubeVirt and Kubernetes do.

use vmsnap_api::registry::{CellSource, Scope, registry};

#[test]
fn snapshot_kinds_are_served_in_both_versions_with_kubevirt_columns() {
    let r = registry();
    let snap = r.by_plural("snapshot.kubevirt.io", "v1alpha1", "virtualmachinesnapshots").unwrap();
    assert_eq!(snap.versions, vec!["v1beta1", "v1alpha1"]);
    assert_eq!(snap.short_names, vec!["vmsnapshot", "vmsnapshots"]);
    assert_eq!(snap.categories, vec!["all"]);
    let names: Vec<_> = snap.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["SourceKind", "SourceName", "Phase", "ReadyToUse", "CreationTime", "Error"]);
    assert!(snap.has_status);
    assert_eq!(snap.scope, Scope::Namespaced);
}

#[test]
fn restore_schema_defaults_the_target_readiness_policy() {
    let restore = registry().by_kind("snapshot.kubevirt.io/v1beta1", "VirtualMachineRestore").unwrap();
    let policy = &restore.schema["properties"]["spec"]["properties"]["targetReadinessPolicy"];
    assert_eq!(policy["default"], "WaitGracePeriod");
}

#[test]
fn builtin_schemas_are_inlined_without_references() {
    let pvc = registry().by_kind("v1", "PersistentVolumeClaim").unwrap();
    let text = pvc.schema.to_string();
    assert!(!text.contains("$ref"), "PVC schema still has references");
    assert!(pvc.schema["properties"]["spec"]["properties"]["storageClassName"].is_object());
    assert!(matches!(pvc.columns[3].source, CellSource::Computed(_)));
}

#[test]
fn custom_schemas_are_structural() {
    for t in registry().all().iter().filter(|t| t.crd.is_some()) {
        let text = t.schema.to_string();
        assert!(!text.contains("$ref"), "{} schema has references", t.kind);
        assert_eq!(t.schema["type"], "object", "{}", t.kind);
    }
}
