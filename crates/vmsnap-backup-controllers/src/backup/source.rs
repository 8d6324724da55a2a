//! From a ready `VirtualMachineSnapshot` to what a backup reads: each disk's storage-engine
//! snapshot, the VM as it was, and the point in time.
//!
//! VirtualMachineSnapshot.status.virtualMachineSnapshotContentName -> the content's
//! spec.volumeBackups[] {volumeName, volumeSnapshotName} -> VolumeSnapshot
//! .status.boundVolumeSnapshotContentName -> VolumeSnapshotContent.status.snapshotHandle, which
//! is the engine's `SnapshotId` (the storage controllers' `snapshot/cut.rs`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::{Client, ResourceExt};
use vmsnap_api::snapshot::{VirtualMachineSnapshot, VirtualMachineSnapshotContent};
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotContent};
use vmsnap_storage::SnapshotId;

/// A disk of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotVolume {
    /// The volume's name in the VM (the disk's name in the backup).
    pub name: String,
    /// The storage engine's snapshot of it.
    pub snapshot_id: SnapshotId,
}

/// What a ready snapshot holds.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedSnapshot {
    /// The VM's name.
    pub vm: String,
    /// Its disks.
    pub volumes: Vec<SnapshotVolume>,
    /// The VM as it was (the content's `spec.source.virtualMachine`).
    pub vm_spec: serde_json::Value,
    /// The snapshot's creation time.
    pub point_in_time: Option<Time>,
}

/// Why a snapshot cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// An object of the chain is missing or incomplete (the message says which).
    #[error("{0}")]
    Broken(String),
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Resolves the ready snapshot `snapshot` of `namespace`.
pub(crate) async fn resolve(
    client: &Client,
    namespace: &str,
    snapshot: &VirtualMachineSnapshot,
) -> Result<ResolvedSnapshot, ResolveError> {
    let broken = |what: String| {
        ResolveError::Broken(format!("VirtualMachineSnapshot {}: {what}", snapshot.name_any()))
    };
    let status = snapshot.status.clone().unwrap_or_default();
    let content_name = status
        .virtual_machine_snapshot_content_name
        .ok_or_else(|| broken("status.virtualMachineSnapshotContentName is not set".into()))?;
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(client.clone(), namespace);
    let content = contents
        .get_opt(&content_name)
        .await?
        .ok_or_else(|| broken(format!("its VirtualMachineSnapshotContent {content_name} does not exist")))?;
    let vm_spec = match &content.spec.source.virtual_machine {
        Some(vm) => serde_json::to_value(vm).expect("a VM serializes"),
        None => {
            return Err(broken(format!(
                "VirtualMachineSnapshotContent {content_name} has no spec.source.virtualMachine"
            )));
        }
    };
    let volume_snapshots: Api<VolumeSnapshot> = Api::namespaced(client.clone(), namespace);
    let volume_contents: Api<VolumeSnapshotContent> = Api::all(client.clone());
    let mut volumes = Vec::new();
    for backup in &content.spec.volume_backups {
        let volume = &backup.volume_name;
        let Some(vs_name) = backup.volume_snapshot_name.as_deref() else {
            return Err(broken(format!("volume {volume} has no VolumeSnapshot in {content_name}")));
        };
        let vs = volume_snapshots
            .get_opt(vs_name)
            .await?
            .ok_or_else(|| broken(format!("VolumeSnapshot {vs_name} of volume {volume} does not exist")))?;
        let bound =
            vs.status.as_ref().and_then(|s| s.bound_volume_snapshot_content_name.clone()).ok_or_else(
                || broken(format!("VolumeSnapshot {vs_name} of volume {volume} is not bound to a content")),
            )?;
        let vsc = volume_contents.get_opt(&bound).await?.ok_or_else(|| {
            broken(format!("VolumeSnapshotContent {bound} of volume {volume} does not exist"))
        })?;
        let handle = vsc
            .status
            .as_ref()
            .and_then(|s| s.snapshot_handle.clone())
            .or_else(|| vsc.spec.source.snapshot_handle.clone())
            .ok_or_else(|| {
                broken(format!("VolumeSnapshotContent {bound} of volume {volume} has no snapshotHandle"))
            })?;
        let snapshot_id = SnapshotId::new(handle.clone()).map_err(|e| {
            broken(format!("VolumeSnapshotContent {bound} has an invalid snapshotHandle {handle:?}: {e}"))
        })?;
        volumes.push(SnapshotVolume { name: volume.clone(), snapshot_id });
    }
    if volumes.is_empty() {
        return Err(broken("it holds no volume snapshots (no disk to back up)".into()));
    }
    Ok(ResolvedSnapshot {
        vm: snapshot.spec.source.name.clone(),
        volumes,
        vm_spec,
        point_in_time: status.creation_time,
    })
}
