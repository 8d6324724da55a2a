//! The sources a new volume can be made from: a VolumeSnapshot (restore) or a
//! PVC (clone), resolved to engine ids through the Kubernetes objects, as a
//! CSI provisioner resolves `dataSource` to snapshot and volume handles.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotContent};
use vmsnap_storage::{SnapshotId, VolumeId};

use super::PROVISIONER;
use super::context::Context;
use super::error::ReconcileError;
use super::names::snapshot_id_for;

/// A source that can be used now, or why it cannot be used yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<T> {
    /// Ready to use.
    Ready(T),
    /// Not yet: the message says what is awaited.
    Waiting(String),
}

/// The data source of a PVC, from `dataSourceRef` (preferred) or `dataSource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSource {
    /// No source: a blank volume.
    Blank,
    /// Restore this VolumeSnapshot of the PVC's namespace.
    Snapshot(String),
    /// Clone this PVC of the PVC's namespace.
    Claim(String),
    /// A source this driver cannot provision from; the message says why.
    Unsupported(String),
}

/// What a PVC asks to be made from.
pub fn claim_source(claim: &PersistentVolumeClaim) -> ClaimSource {
    let Some(spec) = claim.spec.as_ref() else { return ClaimSource::Blank };
    let (group, kind, name, namespace) = match (&spec.data_source_ref, &spec.data_source) {
        (Some(r), _) => (r.api_group.as_deref(), r.kind.as_str(), r.name.as_str(), r.namespace.as_deref()),
        (None, Some(r)) => (r.api_group.as_deref(), r.kind.as_str(), r.name.as_str(), None),
        (None, None) => return ClaimSource::Blank,
    };
    if namespace.is_some_and(|ns| Some(ns) != claim.metadata.namespace.as_deref()) {
        return ClaimSource::Unsupported(format!(
            "dataSourceRef names {kind} {name} in another namespace; the local driver provisions only from sources in the claim's namespace"
        ));
    }
    match (group.unwrap_or_default(), kind) {
        ("snapshot.storage.k8s.io", "VolumeSnapshot") => ClaimSource::Snapshot(name.to_owned()),
        ("", "PersistentVolumeClaim") => ClaimSource::Claim(name.to_owned()),
        (group, kind) => ClaimSource::Unsupported(format!(
            "the data source {kind}.{group} {name} is not supported; the local driver provisions from a VolumeSnapshot (snapshot.storage.k8s.io) or a PersistentVolumeClaim"
        )),
    }
}

/// A VolumeSnapshot to restore: its engine snapshot and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSource {
    /// The engine snapshot.
    pub snapshot: SnapshotId,
    /// Its restore size in bytes.
    pub size_bytes: u64,
}

/// Resolves the VolumeSnapshot `namespace/name` to its engine snapshot.
pub async fn resolve_snapshot(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Resolved<SnapshotSource>, ReconcileError> {
    let Some(snapshot) = ctx.namespaced::<VolumeSnapshot>(namespace).get_opt(name).await? else {
        return Ok(Resolved::Waiting(format!("VolumeSnapshot {namespace}/{name} does not exist yet")));
    };
    let status = snapshot.status.clone().unwrap_or_default();
    if status.ready_to_use != Some(true) {
        return Ok(Resolved::Waiting(format!("VolumeSnapshot {namespace}/{name} is not ready to use yet")));
    }
    let Some(content_name) = status.bound_volume_snapshot_content_name.as_deref() else {
        return Ok(Resolved::Waiting(format!(
            "VolumeSnapshot {namespace}/{name} is not bound to a content yet"
        )));
    };
    let Some(content) = ctx.cluster::<VolumeSnapshotContent>().get_opt(content_name).await? else {
        return Ok(Resolved::Waiting(format!(
            "VolumeSnapshotContent {content_name} of VolumeSnapshot {namespace}/{name} does not exist"
        )));
    };
    if content.spec.driver != PROVISIONER {
        return Err(ReconcileError::Invalid(format!(
            "VolumeSnapshot {namespace}/{name} was taken by CSI driver {}; the local driver restores only its own snapshots",
            content.spec.driver
        )));
    }
    let handle = content
        .status
        .as_ref()
        .and_then(|s| s.snapshot_handle.clone())
        .or_else(|| content.spec.source.snapshot_handle.clone());
    let snapshot_id = match handle {
        Some(handle) => SnapshotId::new(handle),
        None => snapshot_id_for(&snapshot.uid().unwrap_or_default()),
    }
    .map_err(|error| ReconcileError::Invalid(format!("VolumeSnapshotContent {content_name}: {error}")))?;
    let Some(info) =
        ctx.driver.snapshot(&snapshot_id).await.map_err(ReconcileError::storage("read a snapshot"))?
    else {
        return Err(ReconcileError::Invalid(format!(
            "VolumeSnapshot {namespace}/{name} names engine snapshot {snapshot_id}, which does not exist"
        )));
    };
    Ok(Resolved::Ready(SnapshotSource { snapshot: snapshot_id, size_bytes: info.size_bytes }))
}

/// A PVC to clone: its engine volume and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimVolume {
    /// The engine volume.
    pub volume: VolumeId,
    /// Its size in bytes.
    pub size_bytes: u64,
}

/// Resolves the PVC `namespace/name` to its engine volume (it must be bound to a PV of this driver).
pub async fn resolve_claim(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Resolved<ClaimVolume>, ReconcileError> {
    let Some(claim) = ctx.namespaced::<PersistentVolumeClaim>(namespace).get_opt(name).await? else {
        return Ok(Resolved::Waiting(format!("PersistentVolumeClaim {namespace}/{name} does not exist yet")));
    };
    match bound_volume(ctx, &claim).await? {
        Resolved::Ready(volume) => {
            let info = ctx
                .driver
                .volume(&volume)
                .await
                .map_err(ReconcileError::storage("read a volume"))?
                .ok_or_else(|| {
                    ReconcileError::Invalid(format!(
                        "PersistentVolumeClaim {namespace}/{name} is bound to engine volume {volume}, which does not exist"
                    ))
                })?;
            Ok(Resolved::Ready(ClaimVolume { volume, size_bytes: info.size_bytes }))
        }
        Resolved::Waiting(message) => Ok(Resolved::Waiting(message)),
    }
}

/// The engine volume behind a bound PVC of this driver.
pub async fn bound_volume(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
) -> Result<Resolved<VolumeId>, ReconcileError> {
    let name = claim.name_any();
    let namespace = claim.namespace().unwrap_or_default();
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let (Some(volume_name), "Bound") = (volume_name, phase) else {
        return Ok(Resolved::Waiting(format!(
            "PersistentVolumeClaim {namespace}/{name} is {phase}, not bound to a PersistentVolume yet"
        )));
    };
    let Some(pv) = ctx.cluster::<PersistentVolume>().get_opt(volume_name).await? else {
        return Ok(Resolved::Waiting(format!(
            "PersistentVolume {volume_name} of PersistentVolumeClaim {namespace}/{name} does not exist"
        )));
    };
    let volume = volume_of(&pv).ok_or_else(|| {
        ReconcileError::Invalid(format!(
            "PersistentVolumeClaim {namespace}/{name} is bound to PersistentVolume {volume_name}, which is not a volume of {PROVISIONER}"
        ))
    })??;
    Ok(Resolved::Ready(volume))
}

/// The engine volume of a PV of this driver; `None` for another driver's PV.
pub fn volume_of(pv: &PersistentVolume) -> Option<Result<VolumeId, ReconcileError>> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    (csi.driver == PROVISIONER).then(|| {
        VolumeId::new(csi.volume_handle.clone()).map_err(|error| {
            ReconcileError::Invalid(format!(
                "PersistentVolume {} has an invalid volume handle: {error}",
                pv.name_any()
            ))
        })
    })
}
