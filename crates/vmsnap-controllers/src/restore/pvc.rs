//! The PVC a restore creates from a VolumeSnapshot (`CreateRestorePVCDef`).

use std::collections::BTreeMap;

use vmsnap_api::cdi::annotations as cdi;
use vmsnap_api::k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference, TypedObjectReference,
};
use vmsnap_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use vmsnap_api::snapshot::{
    VirtualMachineRestore, VolumeBackup, VolumeRestore, annotation, label, volume_ownership_policy,
};
use vmsnap_api::volumesnapshot::VolumeSnapshot;

use crate::error::ReconcileError;

const DROPPED_ANNOTATION_PREFIXES: &[&str] = &[
    "pv.kubernetes.io",
    "volume.beta.kubernetes.io",
    "cdi.kubevirt.io",
    "volume.kubernetes.io",
    "k8s.io/CloneRequest",
    "k8s.io/CloneOf",
];

/// Where the restored PVC's ownership comes from.
pub enum Ownership<'a> {
    /// The target VM exists: it owns the PVC.
    TargetVm(OwnerReference),
    /// The target VM will be created; the source PVC was owned by the source VM named here.
    SourceVm { name: &'a str, uid: &'a str },
}

/// Bytes of a quantity (for comparing sizes).
fn quantity_bytes(q: &Quantity) -> Option<u64> {
    vmsnap_api::quantity::parse_bytes(&q.0).ok()
}

/// Builds the restored PVC for one volume.
pub fn restore_pvc(
    restore: &VirtualMachineRestore,
    backup: &VolumeBackup,
    vr: &VolumeRestore,
    vs: Option<&VolumeSnapshot>,
    source_vm: (&str, &str),
    ownership: Option<Ownership<'_>>,
) -> Result<PersistentVolumeClaim, ReconcileError> {
    let vs = vs.ok_or_else(|| ReconcileError::VolumeSnapshotMissing(vr.volume_snapshot_name.clone()))?;
    if vr.volume_snapshot_name.is_empty() {
        return Err(ReconcileError::NotYetSet("the VolumeSnapshot name of a volume restore".into()));
    }
    let source = &backup.persistent_volume_claim;
    let over = restore
        .spec
        .volume_restore_overrides
        .iter()
        .find(|o| o.volume_name.as_deref() == Some(vr.volume_name.as_str()));
    let mut labels: BTreeMap<String, String> = source.metadata.labels.clone().unwrap_or_default();
    labels.remove(label::PERSISTENT_STATE_FOR);
    labels.insert(label::RESTORE_SOURCE_VM_NAME.into(), source_vm.0.into());
    labels.insert(label::RESTORE_SOURCE_VM_NAMESPACE.into(), source_vm.1.into());
    if let Some(extra) = over.and_then(|o| o.labels.clone()) {
        labels.extend(extra);
    }
    let mut annotations: BTreeMap<String, String> = source
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k == cdi::CONTENT_TYPE || !DROPPED_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect();
    let restore_name = restore.metadata.name.clone().unwrap_or_default();
    annotations.insert(annotation::RESTORE_NAME.into(), restore_name.clone());
    annotations.insert(
        annotation::LAST_RESTORE_UID.into(),
        format!("{restore_name}-{}", restore.metadata.uid.clone().unwrap_or_default()),
    );
    if let Some(extra) = over.and_then(|o| o.annotations.clone()) {
        annotations.extend(extra);
    }
    let mut owner_references = None;
    if let Some(dv) = &vr.data_volume_name {
        annotations.insert(cdi::POPULATED_FOR.into(), dv.clone());
    } else if restore.spec.volume_ownership_policy.as_deref() != Some(volume_ownership_policy::NONE) {
        match ownership {
            Some(Ownership::TargetVm(owner)) => owner_references = Some(vec![owner]),
            Some(Ownership::SourceVm { name, uid }) => {
                let owned_by_source = source
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "VirtualMachine" && o.name == name && o.uid == uid);
                if owned_by_source {
                    annotations.insert(annotation::OWNED_BY_VM.into(), restore_name.clone());
                }
            }
            None => {}
        }
    }
    let mut resources = source.spec.resources.clone().unwrap_or_default();
    let requested = resources.requests.as_ref().and_then(|r| r.get("storage")).cloned();
    let restore_size = vs.status.as_ref().and_then(|s| s.restore_size.clone());
    let size = match (requested, restore_size) {
        (Some(r), Some(s)) => Some(if quantity_bytes(&s) > quantity_bytes(&r) { s } else { r }),
        (r, s) => r.or(s),
    };
    if let Some(size) = size {
        resources.requests.get_or_insert_with(Default::default).insert("storage".into(), size);
    }
    let data_source = TypedLocalObjectReference {
        api_group: Some("snapshot.storage.k8s.io".into()),
        kind: "VolumeSnapshot".into(),
        name: vr.volume_snapshot_name.clone(),
    };
    Ok(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(vr.persistent_volume_claim.clone()),
            namespace: restore.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references,
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: source.spec.access_modes.clone(),
            resources: Some(resources),
            storage_class_name: source.spec.storage_class_name.clone(),
            volume_mode: source.spec.volume_mode.clone(),
            data_source: Some(data_source.clone()),
            data_source_ref: Some(TypedObjectReference {
                api_group: data_source.api_group,
                kind: data_source.kind,
                name: data_source.name,
                namespace: None,
            }),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn restored_request(requested: &str, restore_size: Option<&str>) -> String {
        let restore: VirtualMachineRestore = serde_json::from_value(json!({
            "metadata": {"name": "r", "namespace": "default", "uid": "u"},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"},
                     "virtualMachineSnapshotName": "s"}
        }))
        .unwrap();
        let backup: VolumeBackup = serde_json::from_value(json!({
            "volumeName": "disk0",
            "persistentVolumeClaim": {"metadata": {"name": "pvc"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": requested}}}},
            "volumeSnapshotName": "vs"
        }))
        .unwrap();
        let vr = VolumeRestore {
            volume_name: "disk0".into(),
            persistent_volume_claim: "restore-u-disk0".into(),
            volume_snapshot_name: "vs".into(),
            data_volume_name: None,
        };
        let vs: VolumeSnapshot = serde_json::from_value(json!({
            "metadata": {"name": "vs"}, "spec": {"source": {"persistentVolumeClaimName": "pvc"}},
            "status": {"restoreSize": restore_size}
        }))
        .unwrap();
        let pvc = restore_pvc(&restore, &backup, &vr, Some(&vs), ("vm", "default"), None).unwrap();
        pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0.clone()
    }

    #[test]
    fn the_restored_claim_asks_for_the_larger_of_the_source_request_and_the_restore_size() {
        // KubeVirt's "should restore a vm with restore size bigger then PVC size": 1528Mi rounded to 2Gi.
        assert_eq!(restored_request("1528Mi", Some("2Gi")), "2Gi");
        assert_eq!(restored_request("2Gi", Some("1528Mi")), "2Gi");
        assert_eq!(restored_request("1Gi", None), "1Gi");
        assert_eq!(restored_request("1Gi", Some("1073741824")), "1Gi");
    }
}
