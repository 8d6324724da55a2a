//! Names the controllers give to objects and engine ids, and the finalizers,
//! annotations and condition types they use.
//!
//! Every id is derived from the UID of the object that asked for it, so a
//! reconcile that runs again after a crash finds what the interrupted one made.

use vmsnap_storage::{InvalidIdError, SnapshotId, VolumeId};

/// On PVCs of this driver: held while a running VM uses the volume (the real
/// API server's admission adds it to every PVC; here the PVC controller does).
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// On PVs of this driver: the engine volume is deleted (or kept, for
/// `Retain`) before the PV goes.
pub const PV_FINALIZER: &str = "local.storage.vmsnap.io/volume-protection";
/// On VolumeSnapshots of this driver: the content is deleted (for `Delete`) before the VolumeSnapshot goes.
pub const VOLUME_SNAPSHOT_FINALIZER: &str = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";
/// On VolumeSnapshotContents of this driver: the engine snapshot is deleted (for `Delete`) before the content goes.
pub const CONTENT_FINALIZER: &str = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";

/// On PVCs that a DataVolume populates: the PVC controller leaves provisioning
/// and binding to the DataVolume controller. The value is the DataVolume's name.
/// It counts only while that DataVolume controls the PVC (see
/// [`populating_data_volume`]): a copy of the PVC's metadata, as KubeVirt's
/// restore makes, must not leave the copy waiting for a population that never comes.
pub const POPULATING_DATA_VOLUME_ANNOTATION: &str = "local.storage.vmsnap.io/populating-data-volume";

/// The DataVolume that populates `claim`: the one named by
/// [`POPULATING_DATA_VOLUME_ANNOTATION`], if it is also the PVC's controller, and unless the PVC
/// says it was populated for its DataVolume by other means (`cdi.kubevirt.io/storage.populatedFor`,
/// as a PVC restored from a snapshot for a DataVolume is).
pub fn populating_data_volume(claim: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Option<&str> {
    let annotations = claim.metadata.annotations.as_ref()?;
    if annotations.contains_key(vmsnap_api::cdi::annotations::POPULATED_FOR) {
        return None;
    }
    let name = annotations.get(POPULATING_DATA_VOLUME_ANNOTATION)?;
    let controlled = claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.kind == "DataVolume" && &owner.name == name);
    controlled.then_some(name.as_str())
}

/// Well-known annotations of the Kubernetes persistent volume machinery.
pub mod annotation {
    /// On a PVC: binding finished.
    pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
    /// On a PVC: a controller (not the user) bound it.
    pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
    /// On a PVC: the provisioner expected to provision it.
    pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
    /// On a PVC: the same, under its deprecated name, which older tools read.
    pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
    /// On a PV: the provisioner that made it.
    pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
    /// On a StorageClass: the default class.
    pub const DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
}

/// The engine volume of a PVC provisioned by this driver (also the PV's name).
pub fn volume_id_for_claim(claim_uid: &str) -> Result<VolumeId, InvalidIdError> {
    VolumeId::new(format!("pvc-{claim_uid}"))
}

/// The engine snapshot of a VolumeSnapshot.
pub fn snapshot_id_for(snapshot_uid: &str) -> Result<SnapshotId, InvalidIdError> {
    SnapshotId::new(format!("snapshot-{snapshot_uid}"))
}

/// The VolumeSnapshotContent of a VolumeSnapshot, named as the external snapshotter does.
pub fn content_name_for(snapshot_uid: &str) -> String {
    format!("snapcontent-{snapshot_uid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derive_from_uids_as_the_csi_sidecars_name_them() {
        let uid = "3f2c6d1e-0a4b-4c5d-8e9f-001122334455";
        assert_eq!(volume_id_for_claim(uid).unwrap().as_str(), format!("pvc-{uid}"));
        assert_eq!(snapshot_id_for(uid).unwrap().as_str(), format!("snapshot-{uid}"));
        assert_eq!(content_name_for(uid), format!("snapcontent-{uid}"));
    }

    #[test]
    fn a_uid_that_is_not_a_safe_file_name_is_refused() {
        assert!(volume_id_for_claim("../etc").is_err());
        assert!(snapshot_id_for("a/b").is_err());
    }

    fn claim(
        annotation: Option<&str>,
        owner: Option<(&str, &str)>,
    ) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "c",
                "annotations": annotation.map(|dv| serde_json::json!({POPULATING_DATA_VOLUME_ANNOTATION: dv})),
                "ownerReferences": owner.map(|(kind, name)| serde_json::json!([{
                    "apiVersion": "x/v1", "kind": kind, "name": name, "uid": "u", "controller": true
                }])),
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_claim_is_populated_by_the_data_volume_that_annotates_and_controls_it() {
        assert_eq!(populating_data_volume(&claim(Some("dv"), Some(("DataVolume", "dv")))), Some("dv"));
    }

    #[test]
    fn a_copied_annotation_without_the_data_volume_as_controller_does_not_count() {
        assert_eq!(populating_data_volume(&claim(Some("dv"), Some(("VirtualMachine", "vm")))), None);
        assert_eq!(populating_data_volume(&claim(Some("dv"), None)), None);
        assert_eq!(populating_data_volume(&claim(Some("dv"), Some(("DataVolume", "other")))), None);
        assert_eq!(populating_data_volume(&claim(None, Some(("DataVolume", "dv")))), None);
    }

    #[test]
    fn a_claim_populated_for_its_data_volume_elsewhere_is_not_populated_again() {
        let mut restored = claim(Some("dv"), Some(("DataVolume", "dv")));
        let annotations = restored.metadata.annotations.as_mut().unwrap();
        annotations.insert(vmsnap_api::cdi::annotations::POPULATED_FOR.into(), "dv".into());
        assert_eq!(populating_data_volume(&restored), None);
    }
}
