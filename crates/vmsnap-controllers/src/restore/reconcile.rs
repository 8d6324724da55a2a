//! `updateVMRestore`: KubeVirt's restore, step by step (§3.2 of the contract).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::cdi::{DataVolume, annotations as cdi, dv_phase};
use vmsnap_api::k8s_openapi::api::core::v1::PersistentVolumeClaim;
use vmsnap_api::k8s_openapi::api::storage::v1::StorageClass;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::{
    DEFAULT_GRACE_PERIOD, SnapshotPhase, VirtualMachineRestore, VirtualMachineRestoreStatus,
    VirtualMachineSnapshot, VirtualMachineSnapshotContent, VolumeRestore, annotation, event,
    finalizer as fin, target_readiness_policy, volume_ownership_policy, volume_restore_policy,
};
use vmsnap_api::volumesnapshot::VolumeSnapshot;

use super::names::restore_volume_name;
use super::patches::apply_patches;
use super::pvc::{Ownership, restore_pvc};
use super::status::{finished, set_failed, set_progress, set_waiting};
use super::vmspec::restored_vm;
use crate::context::{Component, Context};
use crate::error::ReconcileError;
use crate::expectations::AWAITING_OWN_WRITE;
use crate::kube_util::{error_message, now, patch_status};
use vmsnap_contracts::owner::controller_reference;

const WAIT: Duration = Duration::from_secs(2);
const INITIALIZING: &str = "Initializing VirtualMachineRestore";

/// What a step decided.
enum Next {
    Continue,
    Stop(Action),
}

/// The kube-runtime reconcile entry point. The status is initialised before anything else, then the
/// restore finalizer goes through the finalizer helper.
pub async fn reconcile(
    restore: Arc<VirtualMachineRestore>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    if !ctx.expectations.fresh(restore.as_ref()) {
        return Ok(Action::requeue(AWAITING_OWN_WRITE));
    }
    let api: Api<VirtualMachineRestore> =
        Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    if restore.status.is_none() && restore.metadata.deletion_timestamp.is_none() {
        let mut st = VirtualMachineRestoreStatus { complete: Some(false), ..Default::default() };
        set_progress(&mut st, true, INITIALIZING, false, INITIALIZING);
        let written = patch_status(&api, restore.as_ref(), None::<&VirtualMachineRestoreStatus>, &st)
            .await
            .map_err(|e| kube::runtime::finalizer::Error::ApplyFailed(ReconcileError::Kube(e)))?;
        ctx.expectations.record(written);
        return Ok(Action::await_change());
    }
    finalizer(&api, fin::RESTORE, restore, |event| async {
        match event {
            FinalizerEvent::Apply(r) => Restore::new(&ctx, &r).apply().await,
            FinalizerEvent::Cleanup(r) => Restore::new(&ctx, &r).cleanup().await,
        }
    })
    .await
}

struct Restore<'a> {
    ctx: &'a Context,
    r: &'a VirtualMachineRestore,
    ns: String,
    st: VirtualMachineRestoreStatus,
    /// The restore as this reconcile last wrote it: the base of its next status write.
    written: Option<VirtualMachineRestore>,
}

impl<'a> Restore<'a> {
    fn new(ctx: &'a Context, r: &'a VirtualMachineRestore) -> Self {
        let (ns, st) = (r.namespace().unwrap_or_default(), r.status.clone().unwrap_or_default());
        Restore { ctx, r, ns, st, written: None }
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(&self) -> Api<K> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    fn last_restore_uid(&self) -> String {
        format!("{}-{}", self.r.name_any(), self.r.uid().unwrap_or_default())
    }

    fn restored_by_me(&self, vm: &VirtualMachine) -> bool {
        vm.annotations().get(annotation::LAST_RESTORE_UID) == Some(&self.last_restore_uid())
    }

    async fn save(&mut self) -> Result<(), ReconcileError> {
        let base = self.written.as_ref().unwrap_or(self.r);
        let api = self.api::<VirtualMachineRestore>();
        let written = patch_status(&api, base, base.status.as_ref(), &self.st).await?;
        if let Some(written) = self.ctx.expectations.record(written) {
            self.written = Some(written);
        }
        Ok(())
    }

    async fn event(&self, warning: bool, reason: &str, note: String) {
        self.ctx.event(Component::Restore, &self.r.object_ref(&()), warning, reason, note).await;
    }

    /// `doUpdateError`: both conditions False with the error, a Warning event, and a retry.
    async fn error(&mut self, message: String) -> Result<Action, ReconcileError> {
        set_waiting(&mut self.st, &message);
        self.save().await?;
        self.event(true, event::RESTORE_ERROR, format!("VirtualMachineRestore encountered error {message}"))
            .await;
        Err(ReconcileError::Reported(message))
    }

    /// `doUpdateErrorWithFailure`: final.
    async fn fail(&mut self, message: &str) -> Result<Action, ReconcileError> {
        set_failed(&mut self.st, message);
        self.save().await?;
        self.event(true, event::RESTORE_FAILED, format!("VirtualMachineRestore failed {message}")).await;
        Ok(Action::await_change())
    }

    async fn target(&self) -> Result<Option<VirtualMachine>, ReconcileError> {
        Ok(self.api::<VirtualMachine>().get_opt(&self.r.spec.target.name).await?)
    }

    async fn cleanup(mut self) -> Result<Action, ReconcileError> {
        if let Some(vm) = self.target().await? {
            self.done_restore(&vm).await?;
        }
        let deleting = "VM restore is deleting";
        set_waiting(&mut self.st, deleting);
        self.save().await?;
        Ok(Action::await_change())
    }

    /// `UpdateDoneRestore`: clears the VM's `restoreInProgress` (and `memoryDumpRequest`) if this restore set it.
    async fn done_restore(&self, vm: &VirtualMachine) -> Result<(), ReconcileError> {
        let mine = vm.status.as_ref().and_then(|s| s.restore_in_progress.as_deref())
            == Some(self.r.name_any().as_str());
        if mine {
            let patch = json!({"status": {"restoreInProgress": null, "memoryDumpRequest": null}});
            self.api::<VirtualMachine>()
                .patch_status(&vm.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }

    async fn apply(mut self) -> Result<Action, ReconcileError> {
        let target_ref = &self.r.spec.target;
        if target_ref.kind != "VirtualMachine" {
            return self.error(format!("unknown source {target_ref:?}")).await;
        }
        let target = self.target().await?;
        if let Next::Stop(a) = self.keep_record_when_target_goes(target.as_ref()).await? {
            return Ok(a);
        }
        if finished(&self.st) {
            return Ok(Action::await_change());
        }
        if let Next::Stop(a) = self.ownership(target.as_ref()).await? {
            return Ok(a);
        }
        if let Next::Stop(a) = self.target_readiness(target.as_ref()).await? {
            return Ok(a);
        }
        let (snapshot, content) = match self.snapshot_and_content().await? {
            Ok(found) => found,
            Err(message) => return self.error(message).await,
        };
        if let Some(vm) = &target {
            let source_uid = snapshot.status.as_ref().and_then(|s| s.source_uid.clone());
            if !self.restored_by_me(vm) && vm.uid() != source_uid {
                return self
                    .error(
                        "restore source and restore target are different but restore target already exists"
                            .into(),
                    )
                    .await;
            }
            if !self.restored_by_me(vm) {
                let in_progress = vm.status.as_ref().and_then(|s| s.restore_in_progress.clone());
                match in_progress {
                    Some(other) if other != self.r.name_any() => {
                        return self.error(format!("vm restore {other} in progress")).await;
                    }
                    Some(_) => {}
                    None => {
                        let patch = json!({"status": {"restoreInProgress": self.r.name_any()}});
                        self.api::<VirtualMachine>()
                            .patch_status(&vm.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                    }
                }
            }
        }
        // As KubeVirt's `doUpdateError`: a failure of these steps, a refused write included (a
        // webhook denying a PVC or the VM update), is shown in both conditions and retried.
        match self.volume_restores(&content, target.as_ref()).await {
            Ok(Next::Stop(a)) => return Ok(a),
            Ok(Next::Continue) => {}
            Err(e) if e.is_stale() => return Err(e),
            Err(e) => return self.error(e.to_string()).await,
        }
        let target_done = target.as_ref().is_some_and(|vm| self.restored_by_me(vm));
        if !target_done {
            match self.reconcile_target(&content, target.as_ref()).await {
                Ok(Next::Stop(a)) => return Ok(a),
                Ok(Next::Continue) => {}
                Err(e) if e.is_stale() => return Err(e),
                Err(e) => return self.error(e.to_string()).await,
            }
        }
        for dv in self.st.deleted_data_volumes.clone() {
            match self.api::<DataVolume>().delete(&dv, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(gone) if vmsnap_contracts::controller::is_not_found(&gone) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(vm) = self.target().await? {
            self.done_restore(&vm).await?;
        }
        self.event(
            false,
            event::RESTORE_COMPLETE,
            format!("Successfully completed VirtualMachineRestore {}", self.r.name_any()),
        )
        .await;
        self.st.complete = Some(true);
        self.st.restore_time = Some(now());
        set_progress(&mut self.st, false, "Operation complete", true, "Operation complete");
        self.save().await?;
        Ok(Action::await_change())
    }

    /// Beyond KubeVirt (issue kubevirt#13956): a restore drops its owner reference (its one owner,
    /// the target VM, as in KubeVirt) as soon as that VM is being deleted, before the VM controller
    /// lets the VM go, so that the garbage collector does not delete the record of the restore with
    /// the VM; an unfinished restore then goes on and creates the target anew.
    async fn keep_record_when_target_goes(
        &self,
        target: Option<&VirtualMachine>,
    ) -> Result<Next, ReconcileError> {
        let target_going = target.is_none_or(|vm| vm.metadata.deletion_timestamp.is_some());
        let owned_by_a_vm = self.r.owner_references().iter().any(|o| o.kind == "VirtualMachine");
        if !(target_going && owned_by_a_vm) {
            return Ok(Next::Continue);
        }
        let patch = json!({"metadata": {"ownerReferences": null}});
        self.api::<VirtualMachineRestore>()
            .patch(&self.r.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(Next::Stop(Action::await_change()))
    }

    async fn ownership(&self, target: Option<&VirtualMachine>) -> Result<Next, ReconcileError> {
        let Some(vm) = target.filter(|vm| vm.metadata.deletion_timestamp.is_none()) else {
            return Ok(Next::Continue);
        };
        if !self.r.owner_references().is_empty() {
            return Ok(Next::Continue);
        }
        let owner = controller_reference(vm);
        let patch = json!({"metadata": {"ownerReferences": [owner]}});
        self.api::<VirtualMachineRestore>()
            .patch(&self.r.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(Next::Stop(Action::await_change()))
    }

    async fn target_readiness(&mut self, target: Option<&VirtualMachine>) -> Result<Next, ReconcileError> {
        let Some(vm) = target else { return Ok(Next::Continue) };
        if self.restored_by_me(vm) {
            return Ok(Next::Continue);
        }
        if self.api::<VirtualMachineInstance>().get_opt(&vm.name_any()).await?.is_none() {
            return Ok(Next::Continue);
        }
        let policy = self
            .r
            .spec
            .target_readiness_policy
            .clone()
            .unwrap_or_else(|| target_readiness_policy::WAIT_GRACE_PERIOD.into());
        let wait_msg =
            "Waiting for target VM to be powered off. Please stop the restore target to proceed with restore";
        let still = "Restore target VMI still exists, please stop the restore target to proceed with restore";
        match policy.as_str() {
            target_readiness_policy::WAIT_EVENTUALLY => {
                self.event(true, event::RESTORE_TARGET_NOT_READY, still.into()).await;
                set_waiting(&mut self.st, wait_msg);
                self.save().await?;
                Ok(Next::Stop(Action::await_change()))
            }
            target_readiness_policy::STOP_TARGET => {
                let msg = "Automatically stopping restore target for restore operation";
                self.event(true, event::RESTORE_TARGET_NOT_READY, msg.into()).await;
                set_waiting(&mut self.st, msg);
                self.save().await?;
                crate::kube_util::kubevirt_subresource(
                    &self.ctx.client,
                    &self.ns,
                    "virtualmachines",
                    &vm.name_any(),
                    "stop",
                    Some(json!({})),
                )
                .await?;
                Ok(Next::Stop(Action::requeue(WAIT)))
            }
            target_readiness_policy::FAIL_IMMEDIATE => self
                .fail("Restore target VMI must be powered off before restore operation")
                .await
                .map(Next::Stop),
            _ => {
                let created =
                    self.r.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
                let elapsed = Timestamp::now().duration_since(created).as_secs_f64();
                let grace = DEFAULT_GRACE_PERIOD.as_secs_f64();
                if elapsed > grace {
                    return self
                        .fail("Restore target failed to be ready within 5m0s. Please power off the target VM before attempting restore")
                        .await
                        .map(Next::Stop);
                }
                self.event(true, event::RESTORE_TARGET_NOT_READY, still.into()).await;
                set_waiting(&mut self.st, &format!("{wait_msg}, or the operation will fail after 5m0s"));
                self.save().await?;
                // KubeVirt waits for the next event; vmsnap also wakes up when the grace period ends.
                Ok(Next::Stop(Action::requeue(Duration::from_secs_f64((grace - elapsed).max(0.0) + 0.1))))
            }
        }
    }

    /// `getVMSnapshot` and its content, or KubeVirt's message for why they cannot be used.
    async fn snapshot_and_content(
        &self,
    ) -> Result<Result<(VirtualMachineSnapshot, VirtualMachineSnapshotContent), String>, ReconcileError> {
        let name = &self.r.spec.virtual_machine_snapshot_name;
        let key = format!("{}/{name}", self.ns);
        let Some(snap) = self.api::<VirtualMachineSnapshot>().get_opt(name).await? else {
            return Ok(Err(format!("VMSnapshot {key} does not exist")));
        };
        let st = snap.status.clone().unwrap_or_default();
        if st.phase == Some(SnapshotPhase::Failed) {
            return Ok(Err(format!("VMSnapshot {key} failed and is invalid to use")));
        }
        if st.ready_to_use != Some(true) {
            return Ok(Err(format!("VMSnapshot {key} not ready")));
        }
        let Some(content_name) = st.virtual_machine_snapshot_content_name.clone() else {
            return Ok(Err(format!("no snapshot content name in {key}")));
        };
        let Some(content) = self.api::<VirtualMachineSnapshotContent>().get_opt(&content_name).await? else {
            return Ok(Err(format!("VMSnapshotContent {content_name} does not exist")));
        };
        if content.status.as_ref().and_then(|s| s.ready_to_use) != Some(true) {
            return Ok(Err(format!("VMSnapshotContent {content_name} not ready")));
        }
        Ok(Ok((snap, content)))
    }

    /// `reconcileVolumeRestores`: one restored PVC per volume backup.
    async fn volume_restores(
        &mut self,
        content: &VirtualMachineSnapshotContent,
        target: Option<&VirtualMachine>,
    ) -> Result<Next, ReconcileError> {
        let source_vm = content.spec.source.virtual_machine.clone().unwrap_or_default();
        let memory_dumps: Vec<String> = source_vm
            .spec
            .template
            .spec
            .volumes
            .iter()
            .filter(|v| v.memory_dump.is_some())
            .map(|v| v.name.clone())
            .collect();
        let mut restores = self.st.restores.clone();
        for b in &content.spec.volume_backups {
            if memory_dumps.contains(&b.volume_name)
                || restores.iter().any(|r| r.volume_name == b.volume_name)
            {
                continue;
            }
            let Some(vs) = b.volume_snapshot_name.clone() else {
                return Err(ReconcileError::NotYetSet(format!("the VolumeSnapshotName of backup {b:?}")));
            };
            let claim = b.persistent_volume_claim.metadata.name.clone().unwrap_or_default();
            restores.push(VolumeRestore {
                volume_name: b.volume_name.clone(),
                persistent_volume_claim: restore_volume_name(self.r, &b.volume_name, &claim),
                volume_snapshot_name: vs,
                data_volume_name: None,
            });
        }
        if restores != self.st.restores {
            self.st.restores = restores;
            set_progress(&mut self.st, true, "Creating new PVCs", false, "Waiting for new PVCs");
            self.save().await?;
            return Ok(Next::Stop(Action::requeue(WAIT)));
        }
        let pvcs = self.api::<PersistentVolumeClaim>();
        let in_place = self.r.spec.volume_restore_policy.as_deref() == Some(volume_restore_policy::IN_PLACE);
        let mut busy = false;
        for i in 0..self.st.restores.len() {
            let vr = self.st.restores[i].clone();
            let backup = content
                .spec
                .volume_backups
                .iter()
                .find(|b| b.volume_name == vr.volume_name)
                .expect("restores come from backups");
            match pvcs.get_opt(&vr.persistent_volume_claim).await? {
                None => {
                    let vs = self.api::<VolumeSnapshot>().get_opt(&vr.volume_snapshot_name).await?;
                    let source_name = source_vm.metadata.name.clone().unwrap_or_default();
                    let source_uid = source_vm.metadata.uid.clone().unwrap_or_default();
                    let ownership = match target.filter(|vm| vm.metadata.deletion_timestamp.is_none()) {
                        Some(vm) => Some(Ownership::TargetVm(controller_reference(vm))),
                        None => Some(Ownership::SourceVm { name: &source_name, uid: &source_uid }),
                    };
                    let pvc = restore_pvc(
                        self.r,
                        backup,
                        &vr,
                        vs.as_ref(),
                        (&source_name, &self.ns.clone()),
                        ownership,
                    )?;
                    match pvcs.create(&PostParams::default(), &pvc).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.reason == "AlreadyExists" => {}
                        Err(e) => return Err(e.into()),
                    }
                    busy = true;
                }
                Some(pvc)
                    if in_place
                        && pvc.annotations().get(annotation::LAST_RESTORE_UID)
                            != Some(&self.last_restore_uid()) =>
                {
                    let dv_owner = pvc
                        .owner_references()
                        .iter()
                        .find(|o| o.controller == Some(true) && o.kind == "DataVolume")
                        .cloned();
                    if let Some(owner) = dv_owner {
                        if self.st.restores[i].data_volume_name.as_deref() != Some(owner.name.as_str()) {
                            self.st.restores[i].data_volume_name = Some(owner.name.clone());
                            self.save().await?;
                        }
                        let patch = json!({"metadata": {"annotations": {annotation::RESTORE_NAME: self.r.name_any(), cdi::PRE_POPULATED: owner.name}}});
                        self.api::<DataVolume>()
                            .patch(&owner.name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                    }
                    match pvcs.delete(&pvc.name_any(), &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(gone) if vmsnap_contracts::controller::is_not_found(&gone) => {}
                        Err(e) => return Err(e.into()),
                    }
                    busy = true;
                }
                Some(pvc) => {
                    let phase =
                        pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
                    if phase == "Pending" {
                        let sc_name =
                            pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default();
                        let scs: Api<StorageClass> = Api::all(self.ctx.client.clone());
                        let Some(sc) = scs.get_opt(&sc_name).await? else {
                            return Err(ReconcileError::StorageClassMissing(sc_name));
                        };
                        if sc.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
                            busy = true;
                        }
                    } else if phase != "Bound" {
                        return Err(ReconcileError::PvcNotBound {
                            pvc: format!("{}/{}", self.ns, pvc.name_any()),
                            phase: phase.to_string(),
                        });
                    }
                }
            }
        }
        if busy {
            set_progress(&mut self.st, true, "Creating new PVCs", false, "Waiting for new PVCs");
            self.save().await?;
            return Ok(Next::Stop(Action::requeue(WAIT)));
        }
        Ok(Next::Continue)
    }

    /// `target.Reconcile`: DataVolume adoption, the VM spec, and PVC ownership.
    async fn reconcile_target(
        &mut self,
        content: &VirtualMachineSnapshotContent,
        target: Option<&VirtualMachine>,
    ) -> Result<Next, ReconcileError> {
        let snapshot_vm = content.spec.source.virtual_machine.clone().unwrap_or_default();
        let pvcs = self.api::<PersistentVolumeClaim>();
        let mut updated = false;
        for i in 0..self.st.restores.len() {
            let vr = self.st.restores[i].clone();
            let Some(volume) =
                snapshot_vm.spec.template.spec.volumes.iter().find(|v| v.name == vr.volume_name)
            else {
                continue;
            };
            let Some(dv) = &volume.data_volume else { continue };
            let has_template = snapshot_vm
                .spec
                .data_volume_templates
                .iter()
                .any(|t| t.metadata.name.as_deref() == Some(dv.name.as_str()));
            if !has_template {
                continue;
            }
            let dv_name = vr.persistent_volume_claim.clone();
            let Some(mut pvc) = pvcs.get_opt(&dv_name).await? else {
                return Err(ReconcileError::RestoredPvcMissing(format!("{}/{dv_name}", self.ns)));
            };
            let populated_for = pvc.annotations().get(cdi::POPULATED_FOR).cloned();
            if populated_for.as_deref() != Some(dv_name.as_str()) || !pvc.owner_references().is_empty() {
                pvc.annotations_mut().insert(cdi::POPULATED_FOR.into(), dv_name.clone());
                pvc.metadata.owner_references = None;
                pvcs.replace(&dv_name, &PostParams::default(), &pvc).await?;
            }
            if vr.data_volume_name.as_deref() != Some(dv_name.as_str()) {
                self.st.restores[i].data_volume_name = Some(dv_name);
                updated = true;
            }
        }
        if updated {
            self.save().await?;
        }
        let mut new_vm = restored_vm(self.r, &snapshot_vm, &self.st.restores, target)?;
        // DataVolumes of the restored templates, adopting the restored PVCs.
        let dvs = self.api::<DataVolume>();
        let mut waiting = false;
        for t in &new_vm.spec.data_volume_templates {
            let Some(name) = t.metadata.name.clone() else { continue };
            if !self.st.restores.iter().any(|r| r.data_volume_name.as_deref() == Some(name.as_str())) {
                continue;
            }
            match dvs.get_opt(&name).await? {
                Some(dv) => {
                    let p = dv.status.and_then(|s| s.phase).unwrap_or_default();
                    if ![dv_phase::SUCCEEDED, dv_phase::WAIT_FOR_FIRST_CONSUMER, dv_phase::PENDING_POPULATION]
                        .contains(&p.as_str())
                    {
                        waiting = true;
                    }
                }
                None => {
                    let pvc = pvcs.get_opt(&name).await?;
                    let ready = pvc.is_some_and(|p| {
                        p.annotations().get(cdi::POPULATED_FOR) == Some(&name)
                            && p.owner_references().is_empty()
                    });
                    if ready {
                        let mut meta = t.metadata.clone();
                        meta.namespace = Some(self.ns.clone());
                        let ann = meta.annotations.get_or_insert_with(Default::default);
                        ann.insert(annotation::RESTORE_NAME.into(), self.r.name_any());
                        ann.insert(cdi::PRE_POPULATED.into(), "true".into());
                        let dv = DataVolume { metadata: meta, spec: t.spec.clone(), status: None };
                        if let Err(e) = dvs.create(&PostParams::default(), &dv).await {
                            let message =
                                format!("Error creating restore DataVolume {name}: {}", error_message(&e));
                            self.event(true, event::RESTORE_DATA_VOLUME_CREATE_ERROR, message.clone()).await;
                            return Err(ReconcileError::Reported(message));
                        }
                    }
                    waiting = true;
                }
            }
        }
        if let Some(vm) = target {
            let kept: Vec<String> =
                new_vm.spec.data_volume_templates.iter().filter_map(|t| t.metadata.name.clone()).collect();
            self.st.deleted_data_volumes = vm
                .spec
                .data_volume_templates
                .iter()
                .filter_map(|t| t.metadata.name.clone())
                .filter(|n| !kept.contains(n))
                .collect();
        }
        if waiting {
            set_progress(&mut self.st, true, "Updating target spec", false, "Waiting for target update");
            self.save().await?;
            return Ok(Next::Stop(Action::requeue(WAIT)));
        }
        let vms = self.api::<VirtualMachine>();
        let written = match target {
            None => {
                new_vm = apply_patches(&new_vm, &self.r.spec.patches)?;
                vms.create(&PostParams::default(), &new_vm).await?
            }
            Some(vm) => vms.replace(&vm.name_any(), &PostParams::default(), &new_vm).await?,
        };
        if self.r.spec.volume_ownership_policy.as_deref() != Some(volume_ownership_policy::NONE) {
            for claim in written.spec.template.spec.volumes.iter().filter_map(|v| v.claim_name()) {
                let Some(pvc) = pvcs.get_opt(claim).await? else { continue };
                if pvc.owner_references().is_empty()
                    && pvc.annotations().get(annotation::OWNED_BY_VM) == Some(&self.r.name_any())
                {
                    let patch = json!({"metadata": {"ownerReferences": [controller_reference(&written)], "annotations": {annotation::OWNED_BY_VM: null}}});
                    pvcs.patch(claim, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                }
            }
        }
        set_progress(&mut self.st, true, "Updating target spec", false, "Waiting for target update");
        self.save().await?;
        Ok(Next::Stop(Action::requeue(Duration::from_millis(200))))
    }
}
