//! Binding a PVC to the PV of its engine volume, as external-provisioner and
//! the PV controller do together: create the PV (with a `claimRef` to the PVC
//! and its UID), mark it `Bound`, set the PVC's `volumeName` and binding
//! annotations, then its status. Each step checks what is already there, so a
//! bind interrupted at any step completes when it runs again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vmsnap_storage::VolumeInfo;

use super::PROVISIONER;
use super::context::{Context, already_exists};
use super::error::ReconcileError;
use super::names::{PV_FINALIZER, annotation};
use vmsnap_api::quantity::format_bytes;

/// What [`bind_claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// The PV was created by this call.
    Provisioned,
    /// The PV existed already (a repeated or resumed bind).
    Resumed,
}

/// Binds `claim` to the PV of `volume` (named like the volume), creating the PV if needed.
/// `extra_annotations` are set on the PVC in the same write as `volumeName`.
pub async fn bind_claim(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    volume: &VolumeInfo,
    extra_annotations: &BTreeMap<String, String>,
) -> Result<BindOutcome, ReconcileError> {
    let namespace = claim.namespace().unwrap_or_default();
    let claim_name = claim.name_any();
    let claim_uid = claim.uid().unwrap_or_default();
    let pv_name = volume.id.as_str();
    let pvs = ctx.cluster::<PersistentVolume>();
    let (pv, outcome) = match pvs.get_opt(pv_name).await? {
        Some(pv) => (pv, BindOutcome::Resumed),
        None => {
            let pv = persistent_volume(claim, class, volume)?;
            match pvs.create(&PostParams::default(), &pv).await {
                Ok(pv) => (pv, BindOutcome::Provisioned),
                Err(error) if already_exists(&error) => (pvs.get(pv_name).await?, BindOutcome::Resumed),
                Err(error) => return Err(error.into()),
            }
        }
    };
    let bound_to = pv.spec.as_ref().and_then(|spec| spec.claim_ref.as_ref());
    if bound_to.and_then(|r| r.uid.as_deref()) != Some(claim_uid.as_str()) {
        return Err(ReconcileError::Invalid(format!(
            "PersistentVolume {pv_name} exists but is not bound to claim {namespace}/{claim_name} (uid {claim_uid}); delete it or the claim"
        )));
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        let patch = json!({"status": {"phase": "Bound"}});
        pvs.patch_status(pv_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }

    let claims = ctx.namespaced::<PersistentVolumeClaim>(&namespace);
    let mut annotations: BTreeMap<String, String> = [
        (annotation::BIND_COMPLETED, "yes"),
        (annotation::BOUND_BY_CONTROLLER, "yes"),
        (annotation::STORAGE_PROVISIONER, PROVISIONER),
        (annotation::BETA_STORAGE_PROVISIONER, PROVISIONER),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    annotations.extend(extra_annotations.clone());
    let spec = claim.spec.as_ref();
    let mut spec_patch = serde_json::Map::new();
    if spec.and_then(|s| s.volume_name.as_deref()) != Some(pv_name) {
        spec_patch.insert("volumeName".into(), json!(pv_name));
    }
    if spec.and_then(|s| s.storage_class_name.as_deref()).is_none() {
        // The PVC named no class and got the default one: record it, as the API server's admission would have.
        spec_patch.insert("storageClassName".into(), json!(class.name_any()));
    }
    let current = claim.annotations();
    let missing_annotations = annotations.iter().any(|(k, v)| current.get(k) != Some(v));
    if !spec_patch.is_empty() || missing_annotations {
        let patch = json!({"metadata": {"annotations": annotations}, "spec": Value::Object(spec_patch)});
        claims.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }

    let access_modes = claim_access_modes(claim);
    let desired = json!({
        "phase": "Bound",
        "accessModes": access_modes,
        "capacity": {"storage": format_bytes(volume.size_bytes)},
    });
    let status = claim.status.as_ref();
    let current_capacity =
        status.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).map(|q| q.0.clone());
    let up_to_date = status.and_then(|s| s.phase.as_deref()) == Some("Bound")
        && status.and_then(|s| s.access_modes.as_ref()) == Some(&access_modes)
        && current_capacity.as_deref() == Some(format_bytes(volume.size_bytes).as_str());
    if !up_to_date {
        let patch = json!({"status": desired});
        claims.patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(outcome)
}

/// The access modes a PVC asked for (`ReadWriteOnce` if it named none).
pub fn claim_access_modes(claim: &PersistentVolumeClaim) -> Vec<String> {
    claim
        .spec
        .as_ref()
        .and_then(|spec| spec.access_modes.clone())
        .filter(|modes| !modes.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()])
}

/// The PV external-provisioner would create for `claim` on `volume`.
fn persistent_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    volume: &VolumeInfo,
) -> Result<PersistentVolume, ReconcileError> {
    let volume_mode =
        claim.spec.as_ref().and_then(|s| s.volume_mode.clone()).unwrap_or_else(|| "Filesystem".into());
    let mut csi = json!({"driver": PROVISIONER, "volumeHandle": volume.id.as_str()});
    if volume_mode == "Filesystem" {
        // The VM sees a disk either way; the file system type is what a kubelet would format.
        csi["fsType"] = json!("ext4");
    }
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": volume.id.as_str(),
            "annotations": {annotation::PROVISIONED_BY: PROVISIONER},
            "finalizers": [PV_FINALIZER],
        },
        "spec": {
            "accessModes": claim_access_modes(claim),
            "capacity": {"storage": format_bytes(volume.size_bytes)},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": claim.namespace(), "name": claim.name_any(), "uid": claim.uid(),
            },
            "csi": csi,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.name_any(),
            "volumeMode": volume_mode,
        },
    });
    serde_json::from_value(pv)
        .map_err(|error| ReconcileError::Invalid(format!("could not build a PersistentVolume: {error}")))
}
