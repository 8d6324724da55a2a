//! The backup controller: for each `VirtualMachineRepositoryBackup`, waits for its repository
//! and for a ready snapshot (taking one of a source VM), then runs the backup in a task of its
//! own ([`task`]) and records the outcome. Deleting the object deletes the backup from the
//! repository (`deletionPolicy: Delete`, the default) before its finalizer goes.
//!
//! A backup that was running when the server stopped is found `InProgress` with no task: it is
//! run again (the old session's lease lapses, and its chunks are pruned unless reused).

mod base;
mod plan;
mod progress;
mod snapshots;
mod source;
mod task;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;
use vmsnap_api::backup::{
    BackupPhase, VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, deletion_policy,
    finalizer as finalizers, label, phase, reason,
};
use vmsnap_api::snapshot::{SnapshotPhase, VirtualMachineSnapshot, condition_type};
use vmsnap_backup::{BackupId, BackupOptions, ReadLimit};

use crate::error::retry_after;
use crate::status::{StatusWrites, condition, now, publish, with_condition};
use crate::{Context, ReconcileError};

/// How often a backup waiting for its repository looks again.
const REPOSITORY_RETRY: Duration = Duration::from_secs(10);
/// How often a backup waiting for its snapshot looks again (snapshots it took also wake it).
const SNAPSHOT_POLL: Duration = Duration::from_secs(2);

/// The controller's state: the context and the running backups by object uid.
struct Backups {
    ctx: Arc<Context>,
    running: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Backups {
    fn is_running(&self, uid: &str) -> bool {
        let mut running = self.running.lock().expect("not poisoned");
        running.retain(|_, task| !task.is_finished());
        running.contains_key(uid)
    }

    fn stop(&self, uid: &str) {
        if let Some(task) = self.running.lock().expect("not poisoned").remove(uid) {
            task.abort();
        }
    }
}

impl Drop for Backups {
    /// The controller stopped (the server is stopping): so do the runs. Each is found
    /// `InProgress` without a task at the next start, and run again.
    fn drop(&mut self) {
        for task in self.running.lock().expect("not poisoned").values() {
            task.abort();
        }
    }
}

/// Runs the backup controller until the task is aborted.
pub(crate) async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let state = Arc::new(Backups { ctx, running: Mutex::default() });
    let taken_for_a_backup = watcher::Config::default().labels(label::BACKUP);
    Controller::new(Api::<VirtualMachineRepositoryBackup>::all(client.clone()), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config())
        .watches(Api::<VirtualMachineSnapshot>::all(client), taken_for_a_backup, |snapshot| {
            let backup = snapshot.labels().get(label::BACKUP)?;
            Some(ObjectRef::new(backup).within(&snapshot.namespace().unwrap_or_default()))
        })
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(
    backup: Arc<VirtualMachineRepositoryBackup>,
    error: &ReconcileError,
    _state: Arc<Backups>,
) -> Action {
    retry_after(backup.as_ref(), error, Duration::from_secs(5))
}

async fn reconcile(
    backup: Arc<VirtualMachineRepositoryBackup>,
    state: Arc<Backups>,
) -> Result<Action, ReconcileError> {
    let api: Api<VirtualMachineRepositoryBackup> =
        Api::namespaced(state.ctx.client.clone(), &backup.namespace().unwrap_or_default());
    finalizer(&api, finalizers::BACKUP, backup, |event| async {
        match event {
            Finalizer::Apply(backup) => apply(&backup, &state).await,
            Finalizer::Cleanup(backup) => cleanup(&backup, &state).await,
        }
    })
    .await
    .map_err(|error| ReconcileError::Finalizer(Box::new(error)))
}

/// Moves a backup on: waits for its repository and snapshot, then starts its run.
async fn apply(backup: &VirtualMachineRepositoryBackup, state: &Backups) -> Result<Action, ReconcileError> {
    let ctx = &state.ctx;
    let status = backup.status.clone().unwrap_or_default();
    if status.phase == Some(BackupPhase::Succeeded)
        && let Some(token) = verify::pending_request(backup)
    {
        verify::verify(ctx, backup, &token).await?;
        return Ok(Action::await_change());
    }
    if status.phase.as_ref().is_some_and(BackupPhase::is_final) {
        return Ok(Action::await_change());
    }
    let uid = backup.uid().unwrap_or_default();
    if state.is_running(&uid) {
        return Ok(Action::await_change());
    }
    let Some(source) = backup.spec.source.clone() else {
        if backup.labels().get(label::IMPORTED).map(String::as_str) == Some("true") {
            // The repository controller writes its status.
            return Ok(Action::await_change());
        }
        return fail(
            ctx,
            backup,
            "spec.source must name the VirtualMachine or VirtualMachineSnapshot to back up",
        )
        .await;
    };
    if let Some(policy) = backup.spec.deletion_policy.as_deref()
        && policy != deletion_policy::DELETE
        && policy != deletion_policy::RETAIN
    {
        return fail(ctx, backup, &format!("spec.deletionPolicy must be Delete or Retain, not {policy:?}"))
            .await;
    }
    let namespace = backup.namespace().unwrap_or_default();
    let repositories: Api<VirtualMachineBackupRepository> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(repo) = repositories.get_opt(&backup.spec.repository).await? else {
        let message =
            format!("waiting for VirtualMachineBackupRepository {} to exist", backup.spec.repository);
        wait(ctx, backup, BackupPhase::Pending, reason::WAITING, &message).await?;
        return Ok(Action::requeue(REPOSITORY_RETRY));
    };
    let repository = match ctx.repositories.open(&ctx.client, &repo, &ctx.config.local_root).await {
        Ok(repository) => repository,
        Err(error) => {
            let message = format!(
                "waiting for repository {} to open: {error} (see its Ready condition)",
                backup.spec.repository
            );
            wait(ctx, backup, BackupPhase::Pending, error.reason(), &message).await?;
            return Ok(Action::requeue(REPOSITORY_RETRY));
        }
    };
    let options = match backup_options(&repo) {
        Ok(options) => options,
        Err(message) => {
            wait(ctx, backup, BackupPhase::Pending, reason::WAITING, &message).await?;
            return Ok(Action::requeue(REPOSITORY_RETRY));
        }
    };
    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
    let group = source.api_group.as_deref().unwrap_or_default();
    let (snapshot, made_snapshot) = match (group, source.kind.as_str()) {
        ("kubevirt.io", "VirtualMachine") => {
            let name = snapshots::snapshot_name(&backup.name_any());
            let snapshot = match snapshots.get_opt(&name).await? {
                Some(snapshot) => snapshot,
                None => {
                    let vms: Api<vmsnap_api::kubevirt::VirtualMachine> =
                        Api::namespaced(ctx.client.clone(), &namespace);
                    if vms.get_opt(&source.name).await?.is_none() {
                        let message = format!("waiting for VirtualMachine {} to exist", source.name);
                        wait(ctx, backup, BackupPhase::Pending, reason::WAITING, &message).await?;
                        return Ok(Action::requeue(REPOSITORY_RETRY));
                    }
                    snapshots::take(ctx, backup, &source.name).await?
                }
            };
            (snapshot, true)
        }
        ("snapshot.kubevirt.io", "VirtualMachineSnapshot") => match snapshots.get_opt(&source.name).await? {
            Some(snapshot) => (snapshot, false),
            None => {
                let message = format!("waiting for VirtualMachineSnapshot {} to exist", source.name);
                wait(ctx, backup, BackupPhase::Pending, reason::WAITING, &message).await?;
                return Ok(Action::requeue(SNAPSHOT_POLL));
            }
        },
        (group, kind) => {
            let message = format!(
                "spec.source must be a VirtualMachine (kubevirt.io) or a VirtualMachineSnapshot (snapshot.kubevirt.io), not {kind} ({group:?})"
            );
            return fail(ctx, backup, &message).await;
        }
    };
    let snapshot_status = snapshot.status.clone().unwrap_or_default();
    if snapshot_status.phase == Some(SnapshotPhase::Failed) {
        let why = snapshot_status.error.and_then(|e| e.message).unwrap_or_else(|| "no message".into());
        return fail(ctx, backup, &format!("VirtualMachineSnapshot {} failed: {why}", snapshot.name_any()))
            .await;
    }
    if snapshot_status.ready_to_use != Some(true) {
        let message = format!("waiting for VirtualMachineSnapshot {} to be ready", snapshot.name_any());
        wait(ctx, backup, BackupPhase::Pending, reason::SNAPSHOT_IN_PROGRESS, &message).await?;
        return Ok(Action::requeue(SNAPSHOT_POLL));
    }
    // Read again, not from the cache: a run that just ended must not be started twice.
    let api: Api<VirtualMachineRepositoryBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(fresh) = api.get_opt(&backup.name_any()).await? else { return Ok(Action::await_change()) };
    let fresh_phase = fresh.status.as_ref().and_then(|s| s.phase.as_ref());
    if fresh.uid() != backup.uid() || fresh_phase.is_some_and(BackupPhase::is_final) {
        return Ok(Action::await_change());
    }
    let message = format!("backing up VirtualMachineSnapshot {}", snapshot.name_any());
    wait(ctx, &fresh, BackupPhase::InProgress, reason::BACKUP_IN_PROGRESS, &message).await?;
    let fresh = api.get(&backup.name_any()).await?;
    let job = task::Job { ctx: ctx.clone(), backup: fresh, repository, options, snapshot, made_snapshot };
    let mut running = state.running.lock().expect("not poisoned");
    running.entry(uid).or_insert_with(|| tokio::spawn(job.run()));
    Ok(Action::await_change())
}

// The API's default read limit is the engine's.
const _: () = assert!(vmsnap_api::backup::DEFAULT_READ_LIMIT == ReadLimit::DEFAULT.bytes_per_second);

/// How a backup to `repo` runs: its `spec.readLimit` (the engine's burst), or why it cannot, as a
/// sentence (admission refuses a bad value; this meets one written around it).
fn backup_options(repo: &VirtualMachineBackupRepository) -> Result<BackupOptions, String> {
    let bytes_per_second = vmsnap_api::backup::read_limit_or_default(repo.spec.read_limit.as_deref())
        .map_err(|error| {
            format!("waiting for repository {}'s spec.readLimit to be fixed: {error}", repo.name_any())
        })?;
    let read_limit = ReadLimit { bytes_per_second, ..ReadLimit::DEFAULT };
    Ok(BackupOptions { read_limit: Some(read_limit), ..BackupOptions::default() })
}

/// Drops the lease of the repository session a run of `backup` began and did not commit (the
/// run was stopped just now, or its server was killed): nothing will resume it, and its lease
/// would keep prunes from collecting what it uploaded until it lapses. Best effort: an unreleased
/// lease lapses by itself.
async fn abandon_unfinished_session(ctx: &Context, backup: &VirtualMachineRepositoryBackup) {
    let committed = backup.status.as_ref().and_then(|s| s.backup_id.as_deref()).is_some();
    let session =
        backup.annotations().get(task::SESSION_ANNOTATION).and_then(|id| id.parse::<BackupId>().ok());
    let Some(session) = session.filter(|_| !committed) else { return };
    let repositories: Api<VirtualMachineBackupRepository> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let repo = match repositories.get_opt(&backup.spec.repository).await {
        Ok(Some(repo)) => repo,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(backup = %backup.name_any(), %error, "could not read the repository to drop the run's lease; it lapses");
            return;
        }
    };
    let outcome = match ctx.repositories.open(&ctx.client, &repo, &ctx.config.local_root).await {
        Ok(repository) => repository.abandon_backup(&session).await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = outcome {
        tracing::warn!(backup = %backup.name_any(), %session, %error, "could not drop the run's lease; it lapses");
    }
}

/// Writes a phase and what the backup waits for or does (`Progressing`), if they changed.
async fn wait(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
    phase_now: BackupPhase,
    why: &str,
    message: &str,
) -> Result<(), ReconcileError> {
    let status = backup.status.clone().unwrap_or_default();
    let conditions = with_condition(
        &status.conditions,
        condition(condition_type::PROGRESSING, phase_now == BackupPhase::InProgress, why, message),
    );
    let conditions = if conditions.iter().any(|c| c.type_ == condition_type::READY) {
        conditions
    } else {
        with_condition(
            &conditions,
            condition(condition_type::READY, false, why, "the backup is not committed yet"),
        )
    };
    if status.phase.as_ref() == Some(&phase_now) && conditions == status.conditions {
        return Ok(());
    }
    let api: Api<VirtualMachineRepositoryBackup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    StatusWrites::of(&api, backup).patch(json!({"phase": phase_now, "conditions": conditions})).await?;
    Ok(())
}

/// Fails a backup before it ran (bad spec, failed snapshot).
async fn fail(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
    message: &str,
) -> Result<Action, ReconcileError> {
    let status = backup.status.clone().unwrap_or_default();
    let conditions = [
        condition(condition_type::READY, false, reason::FAILED, message),
        condition(condition_type::PROGRESSING, false, reason::FAILED, "the backup failed"),
        condition(condition_type::FAILURE, true, reason::FAILED, message),
    ]
    .into_iter()
    .fold(status.conditions, |all, c| with_condition(&all, c));
    let api: Api<VirtualMachineRepositoryBackup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    StatusWrites::of(&api, backup)
        .patch(json!({"phase": phase::FAILED, "error": {"time": now(), "message": message}, "conditions": conditions}))
        .await?;
    publish(ctx, &backup.object_ref(&()), true, reason::FAILED, message.to_owned()).await;
    Ok(Action::await_change())
}

/// Before the object goes: stops its run, deletes the snapshot it took and, per the deletion
/// policy, the backup from the repository.
async fn cleanup(backup: &VirtualMachineRepositoryBackup, state: &Backups) -> Result<Action, ReconcileError> {
    let ctx = &state.ctx;
    state.stop(&backup.uid().unwrap_or_default());
    snapshots::delete_made_by(ctx, backup).await?;
    abandon_unfinished_session(ctx, backup).await;
    let policy = backup.spec.deletion_policy.as_deref().unwrap_or(deletion_policy::DELETE);
    let id = backup
        .status
        .as_ref()
        .and_then(|s| s.backup_id.as_deref())
        .and_then(|id| id.parse::<BackupId>().ok());
    let Some(id) = id.filter(|_| policy == deletion_policy::DELETE) else {
        return Ok(Action::await_change());
    };
    let repositories: Api<VirtualMachineBackupRepository> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let Some(repo) = repositories.get_opt(&backup.spec.repository).await? else {
        // The repository object is gone: its data stays where it is, with this backup in it.
        return Ok(Action::await_change());
    };
    let repository = match ctx.repositories.open(&ctx.client, &repo, &ctx.config.local_root).await {
        Ok(repository) => repository,
        Err(error) => {
            let note = format!(
                "backup {id} cannot be deleted from repository {} until it opens: {error} (or set spec.deletionPolicy: Retain)",
                backup.spec.repository
            );
            publish(ctx, &backup.object_ref(&()), true, "DeleteWaiting", note).await;
            return Err(error.into());
        }
    };
    match repository.delete_backup(&id).await {
        Ok(()) => {
            let note = format!("backup {id} deleted from repository {}", backup.spec.repository);
            publish(ctx, &repo.object_ref(&()), false, "BackupDeleted", note).await;
        }
        Err(vmsnap_backup::Error::BackupNotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(Action::await_change())
}
