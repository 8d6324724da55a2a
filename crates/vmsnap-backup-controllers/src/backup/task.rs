//! One backup run, in its own task (keyed by the object's uid): resolve the snapshot's disks,
//! choose the base, read (only what changed, for an incremental; `plan.rs`) and upload, commit,
//! then write the result. `status.progress` is written about once a second meanwhile
//! (`progress.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::backup::{
    TransferCounters, VirtualMachineRepositoryBackup, backup_type, label, phase, reason,
};
use vmsnap_api::quantity::{format_bytes, human_bytes};
use vmsnap_api::snapshot::{Condition, VirtualMachineSnapshot, condition_type};
use vmsnap_backup::{
    BackendKind, BackupId, BackupManifest, BackupMetadata, BackupOptions, BackupSession, DiskBackup,
    DiskSource, Progress, Repository, VmRef,
};

use super::base::{self, BaseChoice};
use super::plan::{DiskPlan, plan};
use super::progress::{Counters, write_progress};
use super::source::{self, ResolvedSnapshot};
use crate::Context;
use crate::disks::SnapshotDisk;
use crate::manifest_labels::{self, BACKUP_ID_LABEL};
use crate::metrics::BackupFigures;
use crate::status::{
    committed_counters, condition, disk_statuses, now, patch_status, publish, time_of, with_condition,
};

/// How many times the outcome of a run is written before giving up (1 s, 2 s, 4 s ... apart).
const RECORD_ATTEMPTS: u32 = 6;
/// On a backup object: the id of the repository session (and lease) its run began. A run that
/// finds it (the server was killed mid-backup) resumes that session, so that what it uploaded is
/// not uploaded again.
pub(crate) const SESSION_ANNOTATION: &str = "backup.vmsnap.io/session";
/// How long a failed run waits for its lease to be released (the storage may be what failed;
/// an unreleased lease lapses by itself).
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run needs.
pub(crate) struct Job {
    pub ctx: Arc<Context>,
    /// The object, as read just before the run.
    pub backup: VirtualMachineRepositoryBackup,
    /// Its repository, open.
    pub repository: Repository,
    /// How the repository's session runs (its read limit).
    pub options: BackupOptions,
    /// The ready snapshot to read.
    pub snapshot: VirtualMachineSnapshot,
    /// Whether the controller took the snapshot (then it is deleted if the backup fails).
    pub made_snapshot: bool,
}

/// Why a run failed (a sentence for `status.error` and the conditions).
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

impl Failure {
    /// `doing: error`, with what to do when the storage did not answer.
    fn of_storage(doing: &str, error: &vmsnap_backup::Error) -> Self {
        match error {
            vmsnap_backup::Error::Backend { location, kind: BackendKind::S3, .. } => Failure(format!(
                "{doing}: {error} (retried for up to {} s); check that {location} is running and reachable from this host, then create the backup again",
                vmsnap_backup::S3_RETRY_TIMEOUT.as_secs()
            )),
            vmsnap_backup::Error::Backend { location, kind: BackendKind::Directory, .. } => Failure(format!(
                "{doing}: {error}; check that directory {location} is mounted and writable, then create the backup again"
            )),
            _ => Failure(format!("{doing}: {error}")),
        }
    }
}

/// What a committed run did.
struct Committed {
    manifest: BackupManifest,
    type_: &'static str,
    full_reason: Option<String>,
    base: Option<String>,
}

impl Job {
    fn api(&self) -> Api<VirtualMachineRepositoryBackup> {
        Api::namespaced(self.ctx.client.clone(), &self.backup.namespace().unwrap_or_default())
    }

    fn conditions(&self) -> Vec<Condition> {
        self.backup.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }

    /// Runs the backup to its end and writes the outcome.
    pub(crate) async fn run(self) {
        let started = Instant::now();
        let counters = Arc::new(Mutex::new(Counters::default()));
        let outcome = self.execute(started, &counters).await;
        let transfer = counters.lock().expect("not poisoned").transfer(started);
        self.count(&outcome, started);
        // The outcome is written with a few retries: a committed backup whose status never says
        // so would be run again (and then adopted, see `committed_earlier`) only at the next start.
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=RECORD_ATTEMPTS {
            let result = match &outcome {
                Ok((committed, resolved)) => self.succeed(committed, resolved, &transfer, started).await,
                Err(failure) => self.fail(&failure.0, &transfer).await,
            };
            match result {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(backup = %self.backup.name_any(), %error, attempt, "could not record the backup's outcome");
                }
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }

    /// Adds the outcome to the metrics.
    fn count(&self, outcome: &Result<(Committed, ResolvedSnapshot), Failure>, started: Instant) {
        let namespace = self.backup.namespace().unwrap_or_default();
        let repository = format!("{namespace}/{}", self.backup.spec.repository);
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok((committed, resolved)) => {
                let stats = &committed.manifest.stats;
                let figures = BackupFigures {
                    bytes_read: stats.bytes_read,
                    bytes_uploaded: stats.bytes_uploaded,
                    bytes_deduplicated: stats.bytes_deduplicated,
                };
                let vm = format!("{namespace}/{}", resolved.vm);
                let at = committed.manifest.completed.timestamp();
                self.ctx.metrics.backup_finished(&repository, &vm, true, seconds, figures, at);
            }
            Err(_) => {
                let vm = format!("{namespace}/{}", self.snapshot.spec.source.name);
                let at = chrono::Utc::now().timestamp();
                self.ctx.metrics.backup_finished(
                    &repository,
                    &vm,
                    false,
                    seconds,
                    BackupFigures::default(),
                    at,
                );
            }
        }
    }

    async fn execute(
        &self,
        started: Instant,
        counters: &Arc<Mutex<Counters>>,
    ) -> Result<(Committed, ResolvedSnapshot), Failure> {
        let namespace = self.backup.namespace().unwrap_or_default();
        let resolved = source::resolve(&self.ctx.client, &namespace, &self.snapshot).await?;
        let resolve_took = started.elapsed();
        // The disks are opened (and the storage engine begins to map their chains) while the
        // repository is listed and the session begins: neither waits on the other.
        let ((disks, open_took), (prepared, prepare_took)) =
            tokio::join!(timed(self.open_disks(&resolved)), timed(self.prepare(&resolved)));
        let (choice, session) = match prepared? {
            Prepared::Adopted(committed) => return Ok((*committed, resolved)),
            Prepared::Run(choice, session) => (choice, session),
        };
        let disks = match disks {
            Ok(disks) => disks,
            Err(failure) => {
                abort(session).await;
                return Err(failure);
            }
        };
        let (planned, plan_took) = timed(plan(disks, &choice)).await;
        let (plans, full_reasons) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                abort(session).await;
                return Err(Failure(format!("mapping the snapshot's disks: {error}")));
            }
        };
        let incremental = plans.iter().any(|p| p.previous.is_some());
        let type_ = if incremental { backup_type::INCREMENTAL } else { backup_type::FULL };
        let full_reason = (!incremental).then(|| full_reasons.join("; "));
        let base = match (&choice, incremental) {
            (BaseChoice::Base(base), true) => Some(&**base),
            _ => None,
        };
        let doing = match (&base, &full_reason) {
            (Some(base), _) => {
                format!("reading what changed since backup {} ({} disk(s))", base.name, plans.len())
            }
            (None, reason) => format!(
                "reading every allocated byte of {} disk(s) (full: {})",
                plans.len(),
                reason.as_deref().unwrap_or_default()
            ),
        };
        let conditions = with_condition(
            &self.conditions(),
            condition(condition_type::PROGRESSING, true, reason::BACKUP_IN_PROGRESS, doing),
        );
        let patched = patch_status(
            &self.api(),
            &self.backup.name_any(),
            json!({
                "phase": phase::IN_PROGRESS,
                "type": type_,
                "fullReason": full_reason,
                "vmName": resolved.vm,
                "snapshotName": self.snapshot.name_any(),
                "baseBackup": base.map(|b| b.name.clone()),
                "baseBackupId": base.map(|b| b.manifest.id.to_string()),
                "pointInTime": resolved.point_in_time,
                "conditions": conditions,
            }),
        )
        .await;
        if let Err(error) = patched {
            abort(session).await;
            return Err(error.into());
        }

        counters.lock().expect("not poisoned").to_read_later =
            plans.iter().map(|p| p.extents.iter().map(|e| e.length).sum::<u64>()).sum();
        let planned_after = started.elapsed();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(write_progress(
            self.api(),
            self.backup.name_any(),
            counters.clone(),
            started,
            stopped,
        ));
        let (committed, read_and_commit_took) =
            timed(self.read_and_commit(session, &plans, &resolved, base, full_reason.as_deref(), counters))
                .await;
        tracing::info!(
            backup = %self.backup.name_any(),
            resolve_ms = resolve_took.as_millis(),
            open_disks_ms = open_took.as_millis(),
            prepare_ms = prepare_took.as_millis(),
            plan_ms = plan_took.as_millis(),
            files_mapped = ?plans.iter().map(|plan| plan.disk.files_mapped()).collect::<Vec<_>>(),
            planned_after_ms = planned_after.as_millis(),
            read_and_commit_ms = read_and_commit_took.as_millis(),
            "backup run: where its time went"
        );
        // Stopped and awaited (not aborted): a write in flight must land before the outcome's.
        let _ = stop.send(true);
        let _ = writer.await;
        let manifest = committed?;
        Ok((Committed { manifest, type_, full_reason, base: base.map(|b| b.name.clone()) }, resolved))
    }

    /// The backup an earlier run of this object committed, if any, among the repository's
    /// `manifests` (found by the uid the manifest records).
    async fn committed_earlier(&self, manifests: &[Arc<BackupManifest>]) -> Option<Committed> {
        let uid = self.backup.uid()?;
        let manifest = manifests
            .iter()
            .find(|m| manifest_labels::get(m, manifest_labels::OBJECT_UID) == Some(uid.as_str()))?;
        let type_ = match manifest_labels::get(manifest, manifest_labels::TYPE) {
            Some(backup_type::INCREMENTAL) => backup_type::INCREMENTAL,
            Some(_) => backup_type::FULL,
            None if manifest.base.is_some() => backup_type::INCREMENTAL,
            None => backup_type::FULL,
        };
        let full_reason = manifest_labels::get(manifest, manifest_labels::FULL_REASON).map(str::to_owned);
        let base = manifest_labels::get(manifest, manifest_labels::BASE_NAME).map(str::to_owned);
        tracing::info!(backup = %self.backup.name_any(), id = %manifest.id, "adopting the backup an earlier run committed");
        // The earlier run may have died before dropping its lease, which would hold prunes back.
        if let Err(error) = self.repository.release_committed_lease(&manifest.id).await {
            tracing::warn!(backup = %self.backup.name_any(), %error, "could not remove the earlier run's lease; it lapses");
        }
        Some(Committed { manifest: BackupManifest::clone(manifest), type_, full_reason, base })
    }

    /// The backup an earlier run of this object committed, if there is one; else the base and a
    /// session begun (its lease taken) for this run.
    async fn prepare(&self, resolved: &ResolvedSnapshot) -> Result<Prepared, Failure> {
        // One listing serves both questions.
        let manifests = self.repository.list_backups().await?;
        if let Some(committed) = self.committed_earlier(&manifests).await {
            // An earlier run committed, then stopped before writing so: that is the backup.
            return Ok(Prepared::Adopted(Box::new(committed)));
        }
        let point_in_time = resolved.point_in_time.as_ref().map(|t| t.0.as_second());
        let choice = base::choose(&self.ctx, &self.backup, &resolved.vm, point_in_time, &manifests).await?;
        let session = self.open_session().await?;
        Ok(Prepared::Run(choice, session))
    }

    /// Opens the disk of each volume of the snapshot.
    async fn open_disks(
        &self,
        resolved: &ResolvedSnapshot,
    ) -> Result<Vec<(String, Arc<SnapshotDisk>)>, Failure> {
        let mut disks = Vec::with_capacity(resolved.volumes.len());
        for volume in &resolved.volumes {
            let disk = SnapshotDisk::open(self.ctx.driver.as_ref(), &volume.snapshot_id).await?.ok_or_else(
                || {
                    Failure(format!(
                        "the storage engine has no snapshot {} (volume {})",
                        volume.snapshot_id, volume.name
                    ))
                },
            )?;
            disk.begin_mapping();
            disks.push((volume.name.clone(), disk));
        }
        Ok(disks)
    }

    async fn read_and_commit(
        &self,
        mut session: BackupSession,
        plans: &[DiskPlan<'_>],
        resolved: &ResolvedSnapshot,
        base: Option<&base::Base>,
        full_reason: Option<&str>,
        counters: &Arc<Mutex<Counters>>,
    ) -> Result<BackupManifest, Failure> {
        let mut manifests = Vec::new();
        for plan in plans {
            {
                // The extents stand for the disk's bytes to read until the engine's plan (whole
                // chunks, for an incremental) comes with its first progress.
                let extents: u64 = plan.extents.iter().map(|e| e.length).sum();
                let mut c = counters.lock().expect("not poisoned");
                c.to_read_later -= extents;
                c.current =
                    Progress { disk: plan.name.clone(), bytes_to_read: extents, ..Progress::default() };
            }
            let source: Arc<dyn DiskSource> = plan.disk.clone();
            let request = DiskBackup {
                name: plan.name.clone(),
                source,
                size: plan.disk.size(),
                extents: Some(&plan.extents),
                previous: plan.previous,
            };
            let shared = counters.clone();
            let mut progress = move |p: &Progress| shared.lock().expect("not poisoned").current = p.clone();
            match session.backup_disk(request, &mut progress).await {
                Ok(manifest) => {
                    let stats = &manifest.stats;
                    tracing::debug!(
                        backup = %self.backup.name_any(),
                        disk = %plan.name,
                        disk_ms = stats.duration_ms,
                        bytes_read = stats.bytes_read,
                        chunks_uploaded = stats.chunks_uploaded,
                        chunks_deduplicated = stats.chunks_deduplicated,
                        "disk backed up"
                    );
                    manifests.push(manifest)
                }
                Err(error) => {
                    abort(session).await;
                    return Err(Failure::of_storage(&format!("backing up disk {}", plan.name), &error));
                }
            }
            counters.lock().expect("not poisoned").finish_disk();
        }
        let namespace = self.backup.namespace().unwrap_or_default();
        let change_points = plans.iter().filter_map(|plan| {
            let point = plan.disk.change_point()?;
            Some((manifest_labels::change_point_key(&plan.name), point.to_string()))
        });
        let labels = [
            (manifest_labels::OBJECT_NAME, Some(self.backup.name_any())),
            (manifest_labels::OBJECT_UID, self.backup.uid()),
            (manifest_labels::SNAPSHOT, Some(self.snapshot.name_any())),
            (manifest_labels::POINT_IN_TIME, resolved.point_in_time.as_ref().map(|t| t.0.to_string())),
            (
                manifest_labels::TYPE,
                Some(if base.is_some() { backup_type::INCREMENTAL } else { backup_type::FULL }.to_owned()),
            ),
            (manifest_labels::BASE_NAME, base.map(|b| b.name.clone())),
            (manifest_labels::FULL_REASON, full_reason.filter(|r| !r.is_empty()).map(str::to_owned)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .chain(change_points)
        .collect();
        let metadata = BackupMetadata {
            vm: VmRef { namespace, name: resolved.vm.clone() },
            vm_spec: resolved.vm_spec.clone(),
            base: base.map(|b| b.manifest.id.clone()),
            labels,
        };
        let (committed, took) = timed(session.commit_backup(metadata, manifests)).await;
        tracing::debug!(backup = %self.backup.name_any(), commit_ms = took.as_millis(), "commit");
        committed.map_err(|error| Failure::of_storage("committing the backup", &error))
    }

    /// The repository session of this run: the one an earlier run of this object began, resumed
    /// when its lease is still there (the server was killed before it committed), so that the
    /// chunks it uploaded are found rather than uploaded again; else a new one, whose id is
    /// recorded on the object before anything is uploaded.
    async fn open_session(&self) -> Result<BackupSession, Failure> {
        let earlier =
            self.backup.annotations().get(SESSION_ANNOTATION).and_then(|id| id.parse::<BackupId>().ok());
        if let Some(id) = earlier {
            match self.repository.resume_backup_with(&id, self.options.clone()).await {
                Ok(Some(session)) => {
                    tracing::info!(backup = %self.backup.name_any(), %id, "resuming the repository session an earlier run began");
                    return Ok(session);
                }
                Ok(None) => {
                    tracing::info!(backup = %self.backup.name_any(), %id, "the earlier run's lease is gone or lapsed; starting over")
                }
                Err(error) => return Err(Failure::of_storage("resuming the earlier run's backup", &error)),
            }
        }
        let session = self
            .repository
            .begin_backup_with(self.options.clone())
            .await
            .map_err(|error| Failure::of_storage("starting the backup", &error))?;
        let annotation = json!({"metadata": {"annotations": {SESSION_ANNOTATION: session.id().as_str()}}});
        if let Err(error) = self
            .api()
            .patch(&self.backup.name_any(), &PatchParams::default(), &Patch::Merge(annotation))
            .await
        {
            // Only a resume after a crash needs it: the run goes on without.
            tracing::warn!(backup = %self.backup.name_any(), %error, "could not record the backup's session");
        }
        Ok(session)
    }

    async fn succeed(
        &self,
        committed: &Committed,
        resolved: &ResolvedSnapshot,
        transfer: &TransferCounters,
        started: Instant,
    ) -> Result<(), kube::Error> {
        let name = self.backup.name_any();
        let api = self.api();
        let manifest = &committed.manifest;
        let labels = json!({"metadata": {"labels": {
            BACKUP_ID_LABEL: manifest.id.as_str(),
            label::VM: resolved.vm,
            label::REPOSITORY: self.backup.spec.repository,
        }}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(labels)).await?;
        let stats = &manifest.stats;
        let summary = format!(
            "{} backup {} of VM {} committed: {} read, {} uploaded, {} deduplicated, {} reused{}",
            committed.type_,
            manifest.id,
            resolved.vm,
            human_bytes(stats.bytes_read),
            human_bytes(stats.bytes_uploaded),
            human_bytes(stats.bytes_deduplicated),
            human_bytes(stats.bytes_reused),
            match (&committed.base, &committed.full_reason) {
                (Some(base), _) => format!(" (incremental to {base})"),
                (None, Some(reason)) if !reason.is_empty() => format!(" (full: {reason})"),
                _ => String::new(),
            }
        );
        let conditions = with_condition(
            &with_condition(
                &self.conditions(),
                condition(condition_type::READY, true, reason::SUCCEEDED, &summary),
            ),
            condition(condition_type::PROGRESSING, false, reason::SUCCEEDED, "the backup is committed"),
        );
        let disks = disk_statuses(manifest);
        let progress =
            committed_counters(manifest, transfer.bytes_to_read, started.elapsed().as_secs() as i64);
        patch_status(
            &api,
            &name,
            json!({
                "phase": phase::SUCCEEDED,
                "type": committed.type_,
                "fullReason": committed.full_reason,
                "backupId": manifest.id.as_str(),
                "vmName": resolved.vm,
                "snapshotName": self.snapshot.name_any(),
                "baseBackup": committed.base,
                "baseBackupId": manifest.base.as_ref().map(|b| b.to_string()),
                "pointInTime": resolved.point_in_time,
                "completionTime": time_of(manifest.completed),
                "size": format_bytes(manifest.disks.iter().map(|d| d.size).sum()),
                "disks": disks,
                "progress": progress,
                "error": null,
                "conditions": conditions,
            }),
        )
        .await?;
        publish(&self.ctx, &self.backup.object_ref(&()), false, reason::SUCCEEDED, summary).await;
        let ours = resolved.point_in_time.as_ref().map(|t| t.0.as_second());
        super::snapshots::delete_older_bases(&self.ctx, &self.backup, &resolved.vm, ours).await
    }

    async fn fail(&self, message: &str, transfer: &TransferCounters) -> Result<(), kube::Error> {
        let name = self.backup.name_any();
        let conditions = [
            condition(condition_type::READY, false, reason::FAILED, message),
            condition(condition_type::PROGRESSING, false, reason::FAILED, "the backup failed"),
            condition(condition_type::FAILURE, true, reason::FAILED, message),
        ]
        .into_iter()
        .fold(self.conditions(), |all, c| with_condition(&all, c));
        patch_status(
            &self.api(),
            &name,
            json!({
                "phase": phase::FAILED,
                "error": {"time": now(), "message": message},
                "progress": transfer,
                "conditions": conditions,
            }),
        )
        .await?;
        publish(&self.ctx, &self.backup.object_ref(&()), true, reason::FAILED, message.to_owned()).await;
        if self.made_snapshot {
            super::snapshots::delete_made_by(&self.ctx, &self.backup).await?;
        }
        Ok(())
    }
}

/// What [`Job::prepare`] found.
enum Prepared {
    /// An earlier run of the object committed the backup.
    Adopted(Box<Committed>),
    /// Run the backup against this base, in this session.
    Run(BaseChoice, BackupSession),
}

/// `future`'s output, and how long it took.
async fn timed<T>(future: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let output = future.await;
    (output, start.elapsed())
}

/// Gives up a session that will not commit: releases its lease (an unreleased one lapses).
async fn abort(session: BackupSession) {
    match tokio::time::timeout(ABORT_TIMEOUT, session.abort()).await {
        Ok(Ok(())) => {}
        Ok(Err(abort)) => tracing::warn!(%abort, "could not release the failed backup's lease; it expires"),
        Err(_) => tracing::warn!("releasing the failed backup's lease timed out; it expires"),
    }
}
