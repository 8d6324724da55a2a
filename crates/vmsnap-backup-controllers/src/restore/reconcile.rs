//! One reconcile of a `VirtualMachineRepositoryRestore`: wait for the backup, read its manifest,
//! stage its disks, make or restore the VM, wait for its DataVolumes, clean up.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use vmsnap_api::backup::RestoredDiskStatus;
use vmsnap_api::backup::{
    BackupPhase, TransferCounters, VirtualMachineBackupRepository, VirtualMachineRepositoryBackup,
    VirtualMachineRepositoryRestore, VirtualMachineRepositoryRestoreStatus, finalizer as fin, reason,
};
use vmsnap_api::cdi::{DataVolume, dv_phase};
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_backup::{BackupId, BackupManifest};

use super::download::DownloadState;
use super::staging::Staging;
use super::status::{failed, finished, in_progress, succeeded, waiting};
use super::vmspec::{Identity, RestoredDisk, recorded_metadata, restored_vm_spec};
use super::{RESTORE_UID_ANNOTATION, RestoreContext};
use crate::ReconcileError;
use crate::status::StatusWrites;

/// How often a running download's progress is written.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a restore waiting for something that sends no event looks again.
const WAIT: Duration = Duration::from_secs(2);
/// How often a restore looks at its importing DataVolumes unwoken (their watch wakes it on each
/// change; this only bounds a missed event).
const IMPORT_RECHECK: Duration = Duration::from_secs(30);
/// How often a restore waiting for the repository looks again.
const REPOSITORY_RETRY: Duration = Duration::from_secs(10);

/// The kube-runtime entry point: the finalizer first, then [`Restore::apply`] or
/// [`Restore::cleanup`].
pub(crate) async fn reconcile(
    restore: Arc<VirtualMachineRepositoryRestore>,
    rc: Arc<RestoreContext>,
) -> Result<Action, ReconcileError> {
    let api: Api<VirtualMachineRepositoryRestore> =
        Api::namespaced(rc.ctx.client.clone(), &restore.namespace().unwrap_or_default());
    finalizer(&api, fin::RESTORE, restore, |event| async {
        match event {
            FinalizerEvent::Apply(r) => Restore::new(&rc, &r).apply().await,
            FinalizerEvent::Cleanup(r) => Restore::new(&rc, &r).cleanup().await,
        }
    })
    .await
    .map_err(|error| ReconcileError::Finalizer(Box::new(error)))
}

/// How the target VM is restored.
enum Mode {
    /// Created from the recorded spec.
    New,
    /// The backed-up VM itself, stopped: its spec is replaced.
    InPlace(Box<VirtualMachine>),
}

struct Restore<'a> {
    rc: &'a RestoreContext,
    r: &'a VirtualMachineRepositoryRestore,
    ns: String,
    uid: String,
    st: VirtualMachineRepositoryRestoreStatus,
    /// Writes `st`, each on the condition that nothing else wrote the restore since.
    writes: StatusWrites<VirtualMachineRepositoryRestore>,
    staging: Staging,
}

impl<'a> Restore<'a> {
    fn new(rc: &'a RestoreContext, r: &'a VirtualMachineRepositoryRestore) -> Self {
        let uid = r.uid().unwrap_or_default();
        let ns = r.namespace().unwrap_or_default();
        let writes = StatusWrites::of(&Api::namespaced(rc.ctx.client.clone(), &ns), r);
        Restore {
            writes,
            rc,
            r,
            staging: Staging::new(&rc.ctx.config.staging_dir, &ns, &uid),
            ns,
            uid,
            st: r.status.clone().unwrap_or_default(),
        }
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(&self) -> Api<K> {
        Api::namespaced(self.rc.ctx.client.clone(), &self.ns)
    }

    fn vm_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.rc.ctx.client.clone(), &self.ns, &ApiResource::erase::<VirtualMachine>(&()))
    }

    /// Writes the status (a merge patch of the whole status) when it changed, unless the restore
    /// changed since this pass read it (a 409 then: the pass runs again on the newer copy).
    async fn save(&mut self) -> Result<(), ReconcileError> {
        if self.r.status.as_ref() == Some(&self.st) {
            return Ok(());
        }
        self.writes.patch(serde_json::to_value(&self.st).expect("a status serializes")).await?;
        Ok(())
    }

    async fn event(&self, warning: bool, reason: &str, note: String) {
        let event = vmsnap_contracts::controller::event(warning, reason, note);
        if let Err(error) = self.rc.ctx.recorder.publish(&event, &self.r.object_ref(&())).await {
            tracing::warn!(%error, %reason, "could not record an event");
        }
    }

    /// Waits (phase Pending) for what `message` names, looking again after `after`.
    async fn wait(&mut self, why: &str, message: String, after: Duration) -> Result<Action, ReconcileError> {
        waiting(&mut self.st, why, &message);
        self.save().await?;
        Ok(Action::requeue(after))
    }

    /// Fails for good: nothing staged stays.
    async fn fail(&mut self, why: &str, message: String) -> Result<Action, ReconcileError> {
        self.rc.downloads.forget(&self.uid);
        self.remove_staging();
        failed(&mut self.st, why, &message);
        self.save().await?;
        self.event(true, reason::FAILED, format!("restore failed: {message}")).await;
        Ok(Action::await_change())
    }

    fn remove_staging(&self) {
        if let Err(error) = self.staging.remove() {
            tracing::warn!(restore = %self.r.name_any(), %error, "could not remove the staging files");
        }
    }

    async fn cleanup(self) -> Result<Action, ReconcileError> {
        self.rc.downloads.forget(&self.uid);
        self.remove_staging();
        Ok(Action::await_change())
    }

    async fn apply(mut self) -> Result<Action, ReconcileError> {
        if finished(&self.st) {
            // A restore that ended keeps nothing staged (also after a crash between the two).
            self.rc.downloads.forget(&self.uid);
            self.remove_staging();
            return Ok(Action::await_change());
        }
        let target = &self.r.spec.target;
        let group = target.api_group.as_deref().unwrap_or_default();
        if target.kind != "VirtualMachine"
            || !(group.is_empty() || group == "kubevirt.io")
            || target.name.is_empty()
        {
            return self
                .fail(
                    reason::INVALID_SPEC,
                    format!(
                        "spec.target must name a VirtualMachine (apiGroup kubevirt.io), not {} {:?} {:?}",
                        if group.is_empty() { "(no apiGroup)" } else { group },
                        target.kind,
                        target.name
                    ),
                )
                .await;
        }
        let Some((repository, manifest)) = (match self.manifest().await? {
            Ok(found) => found,
            Err(action) => return Ok(action),
        }) else {
            return Ok(Action::await_change());
        };
        let vm = self.api::<VirtualMachine>().get_opt(&target.name).await?;
        let mode = match vm {
            Some(vm) if self.restored_by_me(&vm) => return self.await_data_volumes(&vm, &manifest).await,
            Some(vm) if vm.name_any() == manifest.vm.name && self.ns == manifest.vm.namespace => {
                if let Some(state) = self.running_state(&vm).await? {
                    return self
                        .wait(
                            reason::WAITING,
                            format!(
                                "stop the VM first: {} is {state}; a restore in place replaces the disks of a stopped VM",
                                vm.name_any()
                            ),
                            WAIT,
                        )
                        .await;
                }
                Mode::InPlace(Box::new(vm))
            }
            Some(vm) => {
                return self
                    .fail(
                        reason::INVALID_SPEC,
                        format!(
                            "target VM {} exists and is not the backed-up VM {}/{}: restore to a VM name that does not exist yet, or to {} itself (in place)",
                            vm.name_any(),
                            manifest.vm.namespace,
                            manifest.vm.name,
                            manifest.vm.name
                        ),
                    )
                    .await;
            }
            None => Mode::New,
        };
        for disk in &manifest.disks {
            if !is_dns_label(&disk.name) {
                return self
                    .fail(
                        reason::INVALID_SPEC,
                        format!(
                            "disk {:?} of the backup is not a valid volume name (a DNS-1123 label)",
                            disk.name
                        ),
                    )
                    .await;
            }
        }
        if let Some((DownloadState::Running, _)) = self.rc.downloads.state(&self.uid) {
            self.rc.downloads.settle(&self.uid, PROGRESS_INTERVAL).await;
        }
        match self.rc.downloads.state(&self.uid) {
            None => {
                let disks: Vec<String> = manifest.disks.iter().map(|d| d.name.clone()).collect();
                let names = disks.join(", ");
                let driver = self.rc.ctx.driver.clone();
                self.rc.downloads.start(
                    &self.uid,
                    driver,
                    repository,
                    manifest.clone(),
                    disks,
                    self.staging.clone(),
                );
                self.st.progress = Some(TransferCounters {
                    bytes_to_read: Some(bytes_to_write(&manifest) as i64),
                    bytes_written: Some(0),
                    percent: Some(0),
                    elapsed_seconds: Some(0),
                    ..Default::default()
                });
                in_progress(
                    &mut self.st,
                    &format!(
                        "writing disk(s) {names} of backup {} to staging files",
                        self.r.spec.backup_name
                    ),
                );
                self.save().await?;
                self.event(false, reason::RESTORE_IN_PROGRESS, format!("restoring disk(s) {names}")).await;
                Ok(Action::requeue(PROGRESS_INTERVAL))
            }
            Some((DownloadState::Running, elapsed)) => {
                let total = bytes_to_write(&manifest);
                let written = self.staging.allocated_bytes().min(total);
                self.st.progress = Some(progress(total, written, elapsed, 99));
                self.save().await?;
                // The next look waits for the end (`settle`) for up to an interval itself.
                Ok(Action::requeue(Duration::ZERO))
            }
            Some((DownloadState::Failed(message), _)) => self.fail(reason::FAILED, message).await,
            Some((DownloadState::Done(reports), elapsed)) => {
                let written = reports.iter().map(|r| r.bytes_written).sum();
                self.st.progress = Some(progress(written, written, elapsed, 100));
                self.make_vm(mode, &manifest).await
            }
        }
    }

    /// The backup's repository and manifest; `Err(action)` while waiting for them (the status
    /// says why), `Ok(None)` when the restore failed for good.
    async fn manifest(
        &mut self,
    ) -> Result<Result<Option<(vmsnap_backup::Repository, BackupManifest)>, Action>, ReconcileError> {
        let backup_name = self.r.spec.backup_name.clone();
        let Some(backup) = self.api::<VirtualMachineRepositoryBackup>().get_opt(&backup_name).await? else {
            let message = format!("waiting for VirtualMachineRepositoryBackup {backup_name} to exist");
            return self.wait(reason::WAITING, message, WAIT).await.map(Err);
        };
        let status = backup.status.clone().unwrap_or_default();
        match status.phase {
            Some(BackupPhase::Succeeded) => {}
            Some(BackupPhase::Failed) => {
                let why = status.error.and_then(|e| e.message).unwrap_or_default();
                self.fail(reason::FAILED, format!("backup {backup_name} failed: {why}")).await?;
                return Ok(Ok(None));
            }
            other => {
                let message = format!(
                    "waiting for backup {backup_name} to succeed (it is {})",
                    other.as_deref().unwrap_or("not started")
                );
                return self.wait(reason::WAITING, message, WAIT).await.map(Err);
            }
        }
        let id: BackupId = match status.backup_id.as_deref().unwrap_or_default().parse() {
            Ok(id) => id,
            Err(problem) => {
                self.fail(
                    reason::FAILED,
                    format!("backup {backup_name} has no valid status.backupId: {problem}"),
                )
                .await?;
                return Ok(Ok(None));
            }
        };
        let repository_name = backup.spec.repository.clone();
        let Some(object) = self.api::<VirtualMachineBackupRepository>().get_opt(&repository_name).await?
        else {
            let message = format!(
                "waiting for VirtualMachineBackupRepository {repository_name} (of backup {backup_name}) to exist"
            );
            return self.wait(reason::WAITING, message, WAIT).await.map(Err);
        };
        let ctx = &self.rc.ctx;
        let repository = match ctx.repositories.open(&ctx.client, &object, &ctx.config.local_root).await {
            Ok(repository) => repository,
            Err(error) => {
                let message = format!("repository {repository_name}: {error}");
                return self.wait(error.reason(), message, REPOSITORY_RETRY).await.map(Err);
            }
        };
        match repository.backup(&id).await {
            Ok(manifest) => Ok(Ok(Some((repository, manifest)))),
            Err(error @ vmsnap_backup::Error::BackupNotFound(_)) => {
                self.fail(reason::FAILED, format!("repository {repository_name}: {error}")).await?;
                Ok(Ok(None))
            }
            Err(error) => {
                let message =
                    format!("reading backup {backup_name} from repository {repository_name}: {error}");
                self.wait(reason::REPOSITORY_UNREACHABLE, message, REPOSITORY_RETRY).await.map(Err)
            }
        }
    }

    fn restored_by_me(&self, vm: &VirtualMachine) -> bool {
        vm.annotations().get(RESTORE_UID_ANNOTATION) == Some(&self.uid)
    }

    /// What the VM is doing when it is not stopped (its printable status), `None` when stopped.
    async fn running_state(&self, vm: &VirtualMachine) -> Result<Option<String>, ReconcileError> {
        let printable = vm.status.as_ref().and_then(|s| s.printable_status.clone());
        let instance = self.api::<VirtualMachineInstance>().get_opt(&vm.name_any()).await?;
        Ok(match (instance, printable.as_deref()) {
            (None, Some("Stopped")) => None,
            (Some(_), _) => Some(printable.unwrap_or_else(|| "running".into())),
            (None, other) => Some(other.unwrap_or("not yet reported stopped").to_owned()),
        })
    }

    /// Creates the new VM, or replaces the stopped VM's spec, with DataVolumes importing the
    /// staged disks.
    async fn make_vm(&mut self, mode: Mode, manifest: &BackupManifest) -> Result<Action, ReconcileError> {
        let target = self.r.spec.target.name.clone();
        let short_uid: String = self.uid.chars().take(8).collect();
        let disks: Vec<RestoredDisk> = manifest
            .disks
            .iter()
            .map(|d| RestoredDisk {
                volume: d.name.clone(),
                data_volume: match mode {
                    Mode::New => format!("{target}-{}", d.name),
                    Mode::InPlace(_) => format!("restore-{short_uid}-{}", d.name),
                },
                size: d.size,
                url: self.staging.url(&d.name),
            })
            .collect();
        let identity = if matches!(mode, Mode::New) { Identity::New } else { Identity::Keep };
        let mut spec = match restored_vm_spec(&manifest.vm_spec, &disks, identity) {
            Ok(spec) => spec,
            Err(error) => return self.fail(reason::INVALID_SPEC, error.to_string()).await,
        };
        let api = self.vm_api();
        match mode {
            Mode::New => {
                let mut vm =
                    DynamicObject::new(&target, &ApiResource::erase::<VirtualMachine>(&())).within(&self.ns);
                vm.metadata.labels = Some(string_map(recorded_metadata(&manifest.vm_spec, "labels")));
                vm.metadata.annotations =
                    Some([(RESTORE_UID_ANNOTATION.to_owned(), self.uid.clone())].into_iter().collect());
                vm.data = json!({"spec": spec});
                match api.create(&PostParams::default(), &vm).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.is_already_exists() => {
                        return Ok(Action::requeue(WAIT));
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            Mode::InPlace(existing) => {
                // The VM keeps how it is run (KubeVirt's in-place restore does too).
                let object = spec.as_object_mut().expect("a spec is an object");
                object.remove("running");
                object.remove("runStrategy");
                if let Some(running) = existing.spec.running {
                    object.insert("running".into(), json!(running));
                }
                if let Some(strategy) = &existing.spec.run_strategy {
                    object.insert("runStrategy".into(), json!(strategy));
                }
                let mut vm = api.get(&target).await?;
                if vm.metadata.resource_version != existing.metadata.resource_version {
                    // Changed since it was seen stopped: look again.
                    return Ok(Action::requeue(WAIT));
                }
                vm.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(RESTORE_UID_ANNOTATION.into(), self.uid.clone());
                vm.data["spec"] = spec;
                api.replace(&target, &PostParams::default(), &vm).await?;
            }
        }
        self.st.disks = disks
            .iter()
            .map(|d| RestoredDiskStatus { name: d.volume.clone(), data_volume_name: d.data_volume.clone() })
            .collect();
        let names: Vec<&str> = disks.iter().map(|d| d.data_volume.as_str()).collect();
        in_progress(&mut self.st, &format!("waiting for DataVolume(s) {} to import", names.join(", ")));
        self.save().await?;
        Ok(Action::requeue(WAIT))
    }

    /// Completes the restore once the VM's DataVolumes of the backup's disks have imported.
    async fn await_data_volumes(
        &mut self,
        vm: &VirtualMachine,
        manifest: &BackupManifest,
    ) -> Result<Action, ReconcileError> {
        // The DataVolume of each disk, as the VM (written by this restore) names it.
        let mut restored = Vec::new();
        for disk in &manifest.disks {
            let volume = vm.spec.template.spec.volumes.iter().find(|v| v.name == disk.name);
            let Some(dv) = volume.and_then(|v| v.data_volume.as_ref()) else {
                let message =
                    format!("VM {} has no DataVolume volume {:?} any more", vm.name_any(), disk.name);
                return self.fail(reason::FAILED, message).await;
            };
            restored.push(RestoredDiskStatus { name: disk.name.clone(), data_volume_name: dv.name.clone() });
        }
        self.st.disks = restored.clone();
        let dvs = self.api::<DataVolume>();
        let mut pending = Vec::new();
        for disk in &restored {
            let dv = dvs.get_opt(&disk.data_volume_name).await?;
            let phase = dv.as_ref().and_then(|d| d.status.as_ref()).and_then(|s| s.phase.clone());
            match phase.as_deref() {
                Some(dv_phase::SUCCEEDED) => {}
                Some(dv_phase::FAILED) => {
                    let why = dv
                        .and_then(|d| d.status)
                        .and_then(|s| {
                            s.conditions.into_iter().find_map(|c| c.message.filter(|m| !m.is_empty()))
                        })
                        .unwrap_or_default();
                    let message = format!(
                        "DataVolume {} failed to import disk {}: {why}",
                        disk.data_volume_name, disk.name
                    );
                    return self.fail(reason::FAILED, message).await;
                }
                other => pending.push(format!(
                    "{} ({})",
                    disk.data_volume_name,
                    other.unwrap_or("not created yet")
                )),
            }
        }
        if !pending.is_empty() {
            in_progress(&mut self.st, &format!("waiting for DataVolume(s) {} to import", pending.join(", ")));
            self.save().await?;
            return Ok(Action::requeue(IMPORT_RECHECK));
        }
        self.delete_replaced_data_volumes(vm).await?;
        self.rc.downloads.forget(&self.uid);
        self.remove_staging();
        if let Some(progress) = self.st.progress.as_mut() {
            progress.percent = Some(100);
        }
        let message = format!("VM {} restored from backup {}", vm.name_any(), self.r.spec.backup_name);
        succeeded(&mut self.st, &message);
        self.save().await?;
        self.event(false, reason::SUCCEEDED, message).await;
        Ok(Action::await_change())
    }

    /// Deletes the DataVolumes the VM owns that none of its templates names any more (those an
    /// in-place restore replaced).
    async fn delete_replaced_data_volumes(&self, vm: &VirtualMachine) -> Result<(), ReconcileError> {
        let templates: Vec<&str> =
            vm.spec.data_volume_templates.iter().filter_map(|t| t.metadata.name.as_deref()).collect();
        let dvs = self.api::<DataVolume>();
        for dv in dvs.list(&Default::default()).await? {
            let owned = dv
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == vm.uid().as_ref());
            if owned
                && !templates.contains(&dv.name_any().as_str())
                && dv.metadata.deletion_timestamp.is_none()
            {
                match dvs.delete(&dv.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(gone) if vmsnap_contracts::controller::is_not_found(&gone) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }
}

/// Bytes a restore of `manifest` writes at most: its chunks that are not holes.
fn bytes_to_write(manifest: &BackupManifest) -> u64 {
    manifest
        .disks
        .iter()
        .map(|d| {
            d.chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_some())
                .map(|(i, _)| d.chunk_range(i).1)
                .sum::<u64>()
        })
        .sum()
}

fn progress(total: u64, written: u64, elapsed: u64, cap: u64) -> TransferCounters {
    let percent = (written * 100).checked_div(total).map_or(cap, |p| p.min(cap));
    TransferCounters {
        bytes_to_read: Some(total as i64),
        bytes_written: Some(written as i64),
        percent: Some(percent as i32),
        elapsed_seconds: Some(elapsed as i64),
        ..Default::default()
    }
}

fn string_map(map: serde_json::Map<String, Value>) -> std::collections::BTreeMap<String, String> {
    map.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned()))).collect()
}

/// A DNS-1123 label: what volume and DataVolume name parts must be.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}
