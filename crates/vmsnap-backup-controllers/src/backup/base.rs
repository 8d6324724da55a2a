//! The base of an incremental backup: the newest succeeded backup of the same VM in the same
//! repository, made here (imported backups name snapshots of another cluster), older than this
//! one, that recorded its disks' change points (then its snapshot may be gone) or whose snapshot
//! still exists. Without one the backup is full, and says why.

use kube::ResourceExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::api::{Api, ListParams};
use vmsnap_api::backup::{BackupPhase, VirtualMachineRepositoryBackup, label};
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_backup::BackupManifest;

use vmsnap_storage::{ChangePoint, SnapshotId};

use super::source;
use crate::manifest_labels;
use crate::{Context, ReconcileError};

/// What one disk of an incremental is diffed against in the storage engine.
pub(crate) enum DiskBase {
    /// The change point the base backup recorded: valid after its snapshot is deleted, until
    /// compaction folds its layer away.
    Point(ChangePoint),
    /// The base backup's snapshot (a backup that recorded no change point).
    Snapshot(SnapshotId),
}

/// The backup an incremental is read against.
pub(crate) struct Base {
    /// Its object's name.
    pub name: String,
    /// Its manifest (the previous disk manifests).
    pub manifest: Arc<BackupManifest>,
    /// What each of its disks is diffed against, by disk name.
    pub disks: BTreeMap<String, DiskBase>,
}

/// The change points `manifest` records for every one of its disks, or `None` when one lacks it.
fn recorded_points(manifest: &BackupManifest) -> Option<BTreeMap<String, DiskBase>> {
    manifest
        .disks
        .iter()
        .map(|disk| {
            let point = manifest_labels::change_point(manifest, &disk.name)?;
            Some((disk.name.clone(), DiskBase::Point(point)))
        })
        .collect()
}

/// A base, or why there is none (a sentence for `status.fullReason`).
pub(crate) enum BaseChoice {
    /// Read incrementally against this.
    Base(Box<Base>),
    /// Read everything.
    Full(String),
}

/// Chooses the base of `backup` of VM `vm`, whose point in time is `point_in_time` (seconds),
/// among `committed`, the repository's backups.
pub(crate) async fn choose(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
    vm: &str,
    point_in_time: Option<i64>,
    committed: &[Arc<BackupManifest>],
) -> Result<BaseChoice, ReconcileError> {
    if backup.spec.force_full == Some(true) {
        return Ok(BaseChoice::Full("spec.forceFull is set".into()));
    }
    let namespace = backup.namespace().unwrap_or_default();
    let backups: Api<VirtualMachineRepositoryBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let candidates: Vec<_> = backups
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|other| {
            let status = other.status.clone().unwrap_or_default();
            other.uid() != backup.uid()
                && other.spec.repository == backup.spec.repository
                && other.labels().get(label::IMPORTED).map(String::as_str) != Some("true")
                && status.phase == Some(BackupPhase::Succeeded)
                && status.vm_name.as_deref() == Some(vm)
                && status.backup_id.is_some()
                && match (pit(other), point_in_time) {
                    (Some(theirs), Some(ours)) => theirs <= ours,
                    _ => true,
                }
        })
        .collect();
    if candidates.is_empty() {
        return Ok(BaseChoice::Full(format!(
            "no earlier backup of VM {vm} in repository {} to be incremental to",
            backup.spec.repository
        )));
    }
    // Points in time are whole seconds in the API: backups within one second are ordered by
    // when the repository committed them.
    let mut manifests: HashMap<String, Arc<BackupManifest>> =
        committed.iter().map(|m| (m.id.to_string(), m.clone())).collect();
    let mut first_reason = None;
    let mut ordered: Vec<(Option<i64>, Option<Arc<BackupManifest>>, VirtualMachineRepositoryBackup)> =
        candidates
            .into_iter()
            .map(|other| {
                let manifest = other
                    .status
                    .as_ref()
                    .and_then(|s| s.backup_id.as_ref())
                    .and_then(|id| manifests.remove(id));
                (pit(&other), manifest, other)
            })
            .collect();
    ordered.sort_by(|a, b| {
        (b.0, b.1.as_ref().map(|m| m.completed)).cmp(&(a.0, a.1.as_ref().map(|m| m.completed)))
    });
    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
    for (_, manifest, candidate) in ordered {
        let status = candidate.status.clone().unwrap_or_default();
        let name = candidate.name_any();
        if let Some(disks) = manifest.as_deref().and_then(recorded_points) {
            let manifest = manifest.expect("points come from the manifest");
            return Ok(BaseChoice::Base(Box::new(Base { name, manifest, disks })));
        }
        let reason = match (status.snapshot_name.as_deref(), manifest) {
            (_, None) => format!("the previous backup {name} is not in the repository any more"),
            (None, _) => format!("the previous backup {name} records no snapshot"),
            (Some(snapshot_name), Some(manifest)) => match snapshots.get_opt(snapshot_name).await? {
                None => format!("the snapshot {snapshot_name} of the previous backup {name} was deleted"),
                Some(snapshot) => match source::resolve(&ctx.client, &namespace, &snapshot).await {
                    Err(error) => {
                        format!("the snapshot of the previous backup {name} cannot be read: {error}")
                    }
                    Ok(resolved) => {
                        let disks = resolved
                            .volumes
                            .into_iter()
                            .map(|v| (v.name, DiskBase::Snapshot(v.snapshot_id)))
                            .collect();
                        return Ok(BaseChoice::Base(Box::new(Base { name, manifest, disks })));
                    }
                },
            },
        };
        first_reason.get_or_insert(reason);
    }
    Ok(BaseChoice::Full(first_reason.unwrap_or_default()))
}

/// A backup's point in time in seconds (its completion time when it has none).
fn pit(backup: &VirtualMachineRepositoryBackup) -> Option<i64> {
    let status = backup.status.as_ref()?;
    status.point_in_time.as_ref().or(status.completion_time.as_ref()).map(|t| t.0.as_second())
}
