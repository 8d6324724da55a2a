//! Backups of a schedule's snapshots (`spec.backupTo`) and their own retention
//! (`spec.backupKeep`): after each VM's newest scheduled snapshot is ready, a
//! `VirtualMachineRepositoryBackup` of it (same name, same labels and run time) goes to the
//! repository; the backup controller makes it incremental to the VM's previous backup.
//!
//! The decisions are pure ([`plan_backups`], and retention is [`super::plan::plan_pruning`] over
//! the backups read as [`ScheduledSnapshot`]s); [`BackupPass::run`] carries them out.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use vmsnap_api::backup::{
    self as backup_api, VirtualMachineRepositoryBackup, VirtualMachineRepositoryBackupSpec,
};
use vmsnap_api::schedule::{annotations, labels};
use vmsnap_schedule::KeepPolicy;

use super::observed::{ScheduledSnapshot, SnapshotState};
use super::plan::{VmPruning, plan_pruning};
use crate::error::ReconcileError;
use crate::kube_util::error_message;

/// Reads a backup as retention sees it (its phase as the state); `None` without a name or
/// creation time.
pub fn observe_backup(backup: &VirtualMachineRepositoryBackup) -> Option<ScheduledSnapshot> {
    let created = backup.metadata.creation_timestamp.as_ref()?.0;
    let run_time = backup
        .annotations()
        .get(annotations::RUN_TIME)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or(created);
    let status = backup.status.as_ref();
    let state = if backup.metadata.deletion_timestamp.is_some() {
        SnapshotState::Deleting
    } else {
        match status.and_then(|s| s.phase.as_ref()) {
            Some(backup_api::BackupPhase::Succeeded) => SnapshotState::Succeeded,
            Some(backup_api::BackupPhase::Failed) => SnapshotState::Failed,
            _ => SnapshotState::InProgress,
        }
    };
    let vm = backup
        .labels()
        .get(labels::VM)
        .cloned()
        .or_else(|| status.and_then(|s| s.vm_name.clone()))
        .unwrap_or_default();
    Some(ScheduledSnapshot {
        name: backup.metadata.name.clone()?,
        vm,
        run_time,
        state,
        error: status.and_then(|s| s.error.as_ref()).and_then(|e| e.message.clone()),
    })
}

/// The snapshots to back up now: per VM, its newest scheduled snapshot once it has succeeded,
/// unless a backup of that name exists or a backup of a later (or the same) run does. Older
/// snapshots are never backed up after the fact: a backup is of the latest point in time, and a
/// newer run still in progress is waited for.
pub fn plan_backups(
    snapshots: &[ScheduledSnapshot],
    backups: &[ScheduledSnapshot],
) -> Vec<ScheduledSnapshot> {
    let mut newest: BTreeMap<&str, &ScheduledSnapshot> = BTreeMap::new();
    for s in snapshots.iter().filter(|s| s.state != SnapshotState::Deleting) {
        let slot = newest.entry(s.vm.as_str()).or_insert(s);
        if s.run_time > slot.run_time {
            *slot = s;
        }
    }
    newest
        .into_values()
        .filter(|s| s.state == SnapshotState::Succeeded)
        .filter(|s| !backups.iter().any(|b| b.name == s.name || (b.vm == s.vm && b.run_time >= s.run_time)))
        .cloned()
        .collect()
}

/// What the backup part of a reconcile did, for the status.
#[derive(Default)]
pub struct BackupPass {
    /// Backups created now: (VM, backup name).
    pub made: Vec<(String, String)>,
    /// The schedule's backups, as read after creating.
    pub backups: Vec<ScheduledSnapshot>,
    /// Retention's plan per VM.
    pub pruning: BTreeMap<String, VmPruning>,
    /// Backups deleted now, per VM.
    pub pruned_now: BTreeMap<String, usize>,
    /// Snapshots that a backup not yet finished reads: snapshot retention keeps them.
    pub snapshots_in_use: BTreeSet<String>,
}

impl BackupPass {
    /// Creates the backups [`plan_backups`] asks for in `repository`, then prunes the schedule's
    /// backups by `keep` (per VM, by run time in `zone`; backups still running are never
    /// deleted). Without `repository`, only reports which snapshots other backups are reading.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        client: &kube::Client,
        namespace: &str,
        schedule: &str,
        repository: Option<&str>,
        keep: Option<&KeepPolicy>,
        zone: &jiff::tz::TimeZone,
        now: Timestamp,
        snapshots: &[ScheduledSnapshot],
    ) -> Result<BackupPass, ReconcileError> {
        let api: Api<VirtualMachineRepositoryBackup> = Api::namespaced(client.clone(), namespace);
        let by_schedule = ListParams::default().labels(&format!("{}={schedule}", labels::SCHEDULE));
        let mut pass = BackupPass::default();
        if let Some(repository) = repository {
            let existing: Vec<ScheduledSnapshot> =
                api.list(&by_schedule).await?.items.iter().filter_map(observe_backup).collect();
            for snapshot in plan_backups(snapshots, &existing) {
                let object = new_backup(schedule, repository, &snapshot);
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => pass.made.push((snapshot.vm.clone(), snapshot.name.clone())),
                    Err(e) if vmsnap_contracts::controller::is_conflict(&e) => {}
                    Err(e) => tracing::warn!(
                        backup = %snapshot.name,
                        error = %error_message(&e),
                        "could not create a scheduled backup"
                    ),
                }
            }
        }
        let all = api.list(&ListParams::default()).await?.items;
        pass.snapshots_in_use = all
            .iter()
            .filter(|b| !b.status.as_ref().and_then(|s| s.phase.as_ref()).is_some_and(|p| p.is_final()))
            .filter_map(|b| b.spec.source.as_ref())
            .filter(|source| source.kind == "VirtualMachineSnapshot")
            .map(|source| source.name.clone())
            .collect();
        pass.backups = all
            .iter()
            .filter(|b| b.labels().get(labels::SCHEDULE).map(String::as_str) == Some(schedule))
            .filter_map(observe_backup)
            .collect();
        if let Some(keep) = keep.filter(|k| !k.is_empty()) {
            pass.pruning = plan_pruning(keep, zone, now, 1, &pass.backups, &BTreeSet::new());
            for (vm, plan) in &pass.pruning {
                for doomed in &plan.delete {
                    match api.delete(doomed, &DeleteParams::default()).await {
                        Ok(_) => *pass.pruned_now.entry(vm.clone()).or_default() += 1,
                        Err(gone) if vmsnap_contracts::controller::is_not_found(&gone) => {}
                        Err(e) => tracing::warn!(
                            backup = %doomed,
                            error = %error_message(&e),
                            "could not prune a scheduled backup"
                        ),
                    }
                }
            }
        }
        Ok(pass)
    }
}

/// The backup of a scheduled snapshot: same name, labels and run time; no owner reference
/// (deleting the schedule keeps it).
fn new_backup(
    schedule: &str,
    repository: &str,
    snapshot: &ScheduledSnapshot,
) -> VirtualMachineRepositoryBackup {
    let mut backup = VirtualMachineRepositoryBackup::new(
        &snapshot.name,
        VirtualMachineRepositoryBackupSpec {
            repository: repository.into(),
            source: Some(TypedLocalObjectReference {
                api_group: Some("snapshot.kubevirt.io".into()),
                kind: "VirtualMachineSnapshot".into(),
                name: snapshot.name.clone(),
            }),
            ..Default::default()
        },
    );
    let mut object_labels = BTreeMap::from([
        (labels::SCHEDULE.to_string(), schedule.to_string()),
        (backup_api::label::REPOSITORY.to_string(), repository.to_string()),
    ]);
    if snapshot.vm.len() <= super::names::NAME_LIMIT {
        object_labels.insert(labels::VM.into(), snapshot.vm.clone());
        object_labels.insert(backup_api::label::VM.into(), snapshot.vm.clone());
    }
    backup.metadata.labels = Some(object_labels);
    backup.metadata.annotations =
        Some(BTreeMap::from([(annotations::RUN_TIME.into(), snapshot.run_time.to_string())]));
    backup
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, vm: &str, at: &str, state: SnapshotState) -> ScheduledSnapshot {
        ScheduledSnapshot {
            name: name.into(),
            vm: vm.into(),
            run_time: at.parse().unwrap(),
            state,
            error: None,
        }
    }

    #[test]
    fn the_newest_snapshot_of_each_vm_is_backed_up_once_when_it_succeeded() {
        let snapshots = [
            item("s-a-1", "a", "2026-01-01T00:00:00Z", SnapshotState::Succeeded),
            item("s-a-2", "a", "2026-01-01T01:00:00Z", SnapshotState::Succeeded),
            item("s-a-3", "a", "2026-01-01T02:00:00Z", SnapshotState::InProgress),
            item("s-b-1", "b", "2026-01-01T00:00:00Z", SnapshotState::Failed),
        ];
        assert!(
            plan_backups(&snapshots, &[]).is_empty(),
            "a's newest run is in progress: it is waited for, not replaced by an older one; b's failed"
        );
        let done = [&snapshots[..2], &[item("s-a-3", "a", "2026-01-01T02:00:00Z", SnapshotState::Succeeded)]]
            .concat();
        let planned: Vec<String> = plan_backups(&done, &[]).into_iter().map(|s| s.name).collect();
        assert_eq!(planned, ["s-a-3"], "the newest, once it succeeded");
        let made = [item("s-a-3", "a", "2026-01-01T02:00:00Z", SnapshotState::InProgress)];
        assert!(plan_backups(&done, &made).is_empty(), "a backup of that snapshot exists");
    }

    #[test]
    fn an_older_snapshot_is_not_backed_up_after_a_newer_backup() {
        let snapshots = [item("s-a-1", "a", "2026-01-01T00:00:00Z", SnapshotState::Succeeded)];
        let backups = [item("manual", "a", "2026-01-01T03:00:00Z", SnapshotState::Succeeded)];
        assert!(plan_backups(&snapshots, &backups).is_empty());
    }
}
