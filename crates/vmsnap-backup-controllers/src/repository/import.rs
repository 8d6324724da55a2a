//! Import: every backup in a repository that no `VirtualMachineRepositoryBackup` stands for gets
//! one, so that a repository added to a new cluster (or a second object over the same location)
//! lists what it holds and can restore it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::backup::{
    BackupPhase, VirtualMachineBackupRepository, VirtualMachineRepositoryBackup,
    VirtualMachineRepositoryBackupSpec, backup_type, deletion_policy, label, phase, reason,
};
use vmsnap_api::quantity::format_bytes;
use vmsnap_api::snapshot::condition_type;
use vmsnap_backup::BackupManifest;

use crate::manifest_labels::{self, BACKUP_ID_LABEL};
use crate::status::{
    StatusWrites, committed_counters, condition, disk_statuses, patch_status, publish, time_of,
    with_condition,
};
use crate::{Context, ReconcileError};

/// The annotation on a repository object recording the newest backup (by commit time) an import
/// pass has seen: older backups without an object are not imported again, so that a backup
/// deleted with `deletionPolicy: Retain` stays out of this object (it reappears in a repository
/// object added anew). Backups committed later, by another cluster, are imported.
pub(crate) const IMPORTED_THROUGH: &str = "backup.vmsnap.io/imported-through";

/// The import mark of `repo`, if it has one.
pub(crate) fn imported_through(repo: &VirtualMachineBackupRepository) -> Option<DateTime<Utc>> {
    repo.annotations()
        .get(IMPORTED_THROUGH)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc())
}

/// Makes an object for each of `manifests` committed after the import mark that has none in the
/// repository object's namespace; updates the mark. Returns the names made.
pub(crate) async fn import_missing(
    ctx: &Context,
    repo: &VirtualMachineBackupRepository,
    manifests: &[Arc<BackupManifest>],
) -> Result<Vec<String>, ReconcileError> {
    let namespace = repo.namespace().unwrap_or_default();
    let api: Api<VirtualMachineRepositoryBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut existing = api.list(&ListParams::default()).await?.items;
    mark_missing(&api, repo, &existing, manifests).await?;
    let mut made = Vec::new();
    let through = imported_through(repo);
    for manifest in manifests.iter().filter(|m| through.is_none_or(|t| m.completed > t)) {
        let repo_name = repo.name_any();
        let of_this_repository =
            |object: &&VirtualMachineRepositoryBackup| object.spec.repository == repo_name;
        if existing.iter().filter(of_this_repository).any(|object| stands_for(object, manifest)) {
            continue;
        }
        let Some(name) = free_name(manifest, &existing) else {
            tracing::warn!(id = %manifest.id, "no free name for an imported backup; not imported");
            continue;
        };
        let object = imported_object(&name, repo, manifest);
        let created = match api.create(&PostParams::default(), &object).await {
            Ok(created) => created,
            // Made meanwhile (by another reconcile): the next pass matches it.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        };
        // Unconditional: the object is new, and the backup controller may already have added its
        // finalizer (a conflict would leave an imported backup with no status).
        patch_status(&api, &name, imported_status(repo, manifest)).await?;
        publish(
            ctx,
            &repo.object_ref(&()),
            false,
            "BackupImported",
            format!("backup {} of VM {} imported as {name}", manifest.id, manifest.vm.name),
        )
        .await;
        existing.push(created);
        made.push(name);
    }
    let newest = manifests.iter().map(|m| m.completed).max();
    if let Some(newest) = newest.filter(|n| through.is_none_or(|t| *n > t)) {
        let mark = json!({"metadata": {"annotations": {
            IMPORTED_THROUGH: newest.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        }}});
        let repos: Api<VirtualMachineBackupRepository> = Api::namespaced(ctx.client.clone(), &namespace);
        repos.patch(&repo.name_any(), &PatchParams::default(), &Patch::Merge(mark)).await?;
    }
    Ok(made)
}

/// The Ready reason of a committed backup whose manifest is no longer in the repository (deleted
/// through another object over the same location, or by hand).
const BACKUP_MISSING: &str = "BackupMissing";

/// Says on each succeeded backup of `repo` whether its manifest is still in the repository:
/// `Ready` turns False (`BackupMissing`) when it is gone, and True again if it comes back.
async fn mark_missing(
    api: &Api<VirtualMachineRepositoryBackup>,
    repo: &VirtualMachineBackupRepository,
    existing: &[VirtualMachineRepositoryBackup],
    manifests: &[Arc<BackupManifest>],
) -> Result<(), ReconcileError> {
    let ids: std::collections::HashSet<&str> = manifests.iter().map(|m| m.id.as_str()).collect();
    for object in existing
        .iter()
        .filter(|o| o.spec.repository == repo.name_any() && o.meta().deletion_timestamp.is_none())
    {
        let Some(status) = object.status.as_ref() else { continue };
        let Some(id) = status.backup_id.as_deref() else { continue };
        if status.phase != Some(BackupPhase::Succeeded) {
            continue;
        }
        let ready = vmsnap_api::snapshot::find_condition(&status.conditions, condition_type::READY);
        let marked = ready.is_some_and(|c| c.reason.as_deref() == Some(BACKUP_MISSING));
        let present = ids.contains(id);
        let update = match (present, marked) {
            (false, false) => condition(
                condition_type::READY,
                false,
                BACKUP_MISSING,
                format!("backup {id} is no longer in repository {}: it cannot be restored", repo.name_any()),
            ),
            (true, true) => condition(
                condition_type::READY,
                true,
                reason::SUCCEEDED,
                format!("backup {id} is in the repository again"),
            ),
            _ => continue,
        };
        let conditions = with_condition(&status.conditions, update);
        StatusWrites::of(api, object).patch(json!({"conditions": conditions})).await?;
    }
    Ok(())
}

/// Whether `object` (of the same repository object: a second object over the same location gets
/// objects of its own) is the object of backup `manifest`: by the id in its status or label, or, for a
/// backup whose status is not written yet, by the uid the manifest records.
fn stands_for(object: &VirtualMachineRepositoryBackup, manifest: &BackupManifest) -> bool {
    let id = manifest.id.as_str();
    object.status.as_ref().and_then(|s| s.backup_id.as_deref()) == Some(id)
        || object.labels().get(BACKUP_ID_LABEL).map(String::as_str) == Some(id)
        || (object.uid().is_some()
            && object.uid().as_deref() == manifest_labels::get(manifest, manifest_labels::OBJECT_UID))
}

/// The name the backup had where it was made, when free; else `<vm>-<first 8 of the id>`.
fn free_name(manifest: &BackupManifest, existing: &[VirtualMachineRepositoryBackup]) -> Option<String> {
    let taken = |name: &str| existing.iter().any(|o| o.name_any() == name);
    let recorded = manifest_labels::get(manifest, manifest_labels::OBJECT_NAME).map(str::to_owned);
    let fallback = format!("{}-{}", manifest.vm.name, &manifest.id.as_str()[..8]);
    recorded.into_iter().chain([fallback]).find(|name| is_dns_subdomain(name) && !taken(name))
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn imported_object(
    name: &str,
    repo: &VirtualMachineBackupRepository,
    manifest: &BackupManifest,
) -> VirtualMachineRepositoryBackup {
    let spec = VirtualMachineRepositoryBackupSpec {
        repository: repo.name_any(),
        source: None,
        force_full: None,
        // Another object (here, or in the cluster that made it) may stand for the same backup:
        // deleting this view must not delete the data under it. Set Delete to manage it here.
        deletion_policy: Some(deletion_policy::RETAIN.to_owned()),
    };
    let mut object = VirtualMachineRepositoryBackup::new(name, spec);
    object.metadata.namespace = repo.namespace();
    object.metadata.labels = Some(BTreeMap::from([
        (label::IMPORTED.to_owned(), "true".to_owned()),
        (label::VM.to_owned(), manifest.vm.name.clone()),
        (label::REPOSITORY.to_owned(), repo.name_any()),
        (BACKUP_ID_LABEL.to_owned(), manifest.id.to_string()),
    ]));
    object
}

/// The status of a backup as its manifest tells it.
fn imported_status(repo: &VirtualMachineBackupRepository, manifest: &BackupManifest) -> serde_json::Value {
    let type_ = manifest_labels::get(manifest, manifest_labels::TYPE).unwrap_or(if manifest.base.is_some() {
        backup_type::INCREMENTAL
    } else {
        backup_type::FULL
    });
    let point_in_time = manifest_labels::get(manifest, manifest_labels::POINT_IN_TIME)
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(Time);
    let disks = disk_statuses(manifest);
    let stats = &manifest.stats;
    let progress =
        committed_counters(manifest, Some(stats.bytes_read as i64), (stats.duration_ms / 1000) as i64);
    let ready = condition(
        condition_type::READY,
        true,
        reason::SUCCEEDED,
        format!("imported from repository {} (backup {})", repo.name_any(), manifest.id),
    );
    let progressing = condition(condition_type::PROGRESSING, false, reason::SUCCEEDED, "imported");
    json!({
        "phase": phase::SUCCEEDED,
        "type": type_,
        "fullReason": manifest_labels::get(manifest, manifest_labels::FULL_REASON),
        "backupId": manifest.id.as_str(),
        "vmName": manifest.vm.name,
        "snapshotName": manifest_labels::get(manifest, manifest_labels::SNAPSHOT),
        "baseBackup": manifest_labels::get(manifest, manifest_labels::BASE_NAME),
        "baseBackupId": manifest.base.as_ref().map(|b| b.to_string()),
        "pointInTime": point_in_time,
        "completionTime": time_of(manifest.completed),
        "size": format_bytes(manifest.disks.iter().map(|d| d.size).sum()),
        "disks": disks,
        "progress": progress,
        "conditions": with_condition(&with_condition(&[], ready), progressing),
    })
}
