//! The snapshot source (a VirtualMachine and its running instance), its lock, and the freeze and
//! unfreeze calls (`pkg/storage/snapshot/source.go`).

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::k8s_openapi::api::core::v1::PersistentVolumeClaim;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance, vmi_condition};
use vmsnap_api::snapshot::{VirtualMachineSnapshot, finalizer, indication, label};

use crate::error::ReconcileError;
use crate::kube_util::{add_finalizer, kubevirt_subresource, remove_finalizer};

/// A snapshot's source VM, as seen at the start of a reconcile.
#[derive(Clone, Debug)]
pub struct Source {
    /// The VM.
    pub vm: VirtualMachine,
    /// Its running instance, if any.
    pub vmi: Option<VirtualMachineInstance>,
    /// The snapshot this source is loaded for.
    pub snapshot_name: String,
}

impl Source {
    /// The VM runs (a VMI exists).
    pub fn online(&self) -> bool {
        self.vmi.is_some()
    }

    fn vmi_condition(&self, type_: &str) -> Option<&vmsnap_api::kubevirt::VirtualMachineInstanceCondition> {
        self.vmi.as_ref()?.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The VMI is paused.
    pub fn paused(&self) -> bool {
        self.vmi_condition(vmi_condition::PAUSED).is_some_and(|c| c.status == "True")
    }

    /// The guest agent is connected (KubeVirt checks the condition's presence only).
    pub fn guest_agent(&self) -> bool {
        self.vmi_condition(vmi_condition::AGENT_CONNECTED).is_some()
    }

    /// The guest file systems are frozen.
    pub fn frozen(&self) -> bool {
        self.vmi.as_ref().and_then(|v| v.status.as_ref()).and_then(|s| s.fs_freeze_status.as_deref())
            == Some("frozen")
    }

    /// Locked for this snapshot: `snapshotInProgress` names it and the VM carries the source finalizer.
    pub fn locked(&self) -> bool {
        let in_progress = self.vm.status.as_ref().and_then(|s| s.snapshot_in_progress.as_deref());
        in_progress == Some(self.snapshot_name.as_str())
            && self.vm.finalizers().iter().any(|f| f == finalizer::SOURCE)
    }

    /// Volumes of the VMI that the VM spec does not have (hotplugged into the VMI only).
    pub fn vmi_only_volumes(&self) -> Vec<vmsnap_api::kubevirt::Volume> {
        let Some(vmi) = &self.vmi else { return Vec::new() };
        let persisted = &self.vm.spec.template.spec.volumes;
        vmi.spec.volumes.iter().filter(|v| !persisted.iter().any(|p| p.name == v.name)).cloned().collect()
    }

    /// `namespace/name` of the VM.
    pub fn key(&self) -> String {
        format!("{}/{}", self.vm.namespace().unwrap_or_default(), self.vm.name_any())
    }
}

/// Loads the source of a snapshot. Only `VirtualMachine` sources exist; a missing VM is `None`.
pub async fn load(client: &Client, snap: &VirtualMachineSnapshot) -> Result<Option<Source>, ReconcileError> {
    let source = &snap.spec.source;
    if source.kind != "VirtualMachine" {
        return Err(ReconcileError::UnknownSource(format!("{source:?}")));
    }
    let ns = snap.namespace().unwrap_or_default();
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &ns);
    let Some(vm) = vms.get_opt(&source.name).await? else { return Ok(None) };
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), &ns);
    let vmi = vmis.get_opt(&source.name).await?;
    Ok(Some(Source { vm, vmi, snapshot_name: snap.name_any() }))
}

/// The claim names of a VM's PVC, DataVolume and MemoryDump volumes.
pub fn claim_names(vm: &VirtualMachine) -> Vec<String> {
    vm.spec.template.spec.volumes.iter().filter_map(|v| v.claim_name().map(str::to_owned)).collect()
}

/// KubeVirt's `Lock()`: fails softly (false) with reasons appended to `lock_msg`.
pub async fn lock(
    client: &Client,
    source: &mut Source,
    lock_msg: &mut String,
) -> Result<bool, ReconcileError> {
    let ns = source.vm.namespace().unwrap_or_default();
    let vm_name = source.vm.name_any();
    if crate::backend::needs_backend_storage(&source.vm) {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let selector = format!("{}={vm_name}", label::PERSISTENT_STATE_FOR);
        if pvcs.list(&ListParams::default().labels(&selector)).await?.items.is_empty() {
            return Ok(false);
        }
    }
    let problems = volume_problems(client, &ns, &claim_names(&source.vm)).await?;
    let mut ok = true;
    for p in problems {
        lock_msg.push_str(&format!(" source {ns}/{vm_name} {p}"));
        ok = false;
    }
    let current = source.vm.status.as_ref().and_then(|s| s.snapshot_in_progress.clone());
    if let Some(other) = &current
        && other != &source.snapshot_name
    {
        lock_msg.push_str(&format!(" snapshot {other:?} in progress"));
        ok = false;
    }
    if !ok {
        return Ok(false);
    }
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &ns);
    if current.is_none() {
        let patch = json!({"status": {"snapshotInProgress": source.snapshot_name}});
        source.vm = vms.patch_status(&vm_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    if !source.vm.finalizers().iter().any(|f| f == finalizer::SOURCE) {
        add_finalizer(&vms, &source.vm, finalizer::SOURCE).await?;
        source.vm = vms.get(&vm_name).await?;
    }
    Ok(source.locked())
}

/// The reasons the VM's volumes cannot be locked: missing, being deleted, not bound, not populated.
async fn volume_problems(
    client: &Client,
    ns: &str,
    claims: &[String],
) -> Result<Vec<String>, ReconcileError> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), ns);
    let mut problems = Vec::new();
    for claim in claims {
        let Some(pvc) = pvcs.get_opt(claim).await? else {
            problems.push(format!("volume doesnt exist: {claim}"));
            continue;
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            problems.push(format!("volume is being deleted: {claim}"));
            continue;
        }
        if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            problems.push(format!("volume not bound: {claim}"));
            continue;
        }
        let dv_owner =
            pvc.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "DataVolume");
        if let Some(owner) = dv_owner {
            let populated = dvs
                .get_opt(&owner.name)
                .await?
                .and_then(|dv| dv.status)
                .and_then(|s| s.phase)
                .is_some_and(|p| p == vmsnap_api::cdi::dv_phase::SUCCEEDED);
            if !populated {
                problems.push(format!("volume not populated: {claim}"));
            }
        }
    }
    Ok(problems)
}

/// KubeVirt's `Unlock()`: a no-op unless this snapshot holds the lock; removes the source finalizer,
/// then clears `snapshotInProgress`.
pub async fn unlock(client: &Client, source: &mut Source) -> Result<(), ReconcileError> {
    let in_progress = source.vm.status.as_ref().and_then(|s| s.snapshot_in_progress.as_deref());
    if in_progress != Some(source.snapshot_name.as_str()) {
        return Ok(());
    }
    let ns = source.vm.namespace().unwrap_or_default();
    let vm_name = source.vm.name_any();
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &ns);
    remove_finalizer(&vms, &source.vm, finalizer::SOURCE).await?;
    let patch = json!({"status": {"snapshotInProgress": null}});
    source.vm = vms.patch_status(&vm_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// KubeVirt's `Freeze()`: only for a locked, running, unpaused VM with a guest agent, not already frozen.
pub async fn freeze(client: &Client, source: &Source, unfreeze_timeout: &str) -> Result<(), ReconcileError> {
    if !source.locked() {
        return Err(ReconcileError::FreezeUnlocked);
    }
    if source.frozen() || source.paused() || !source.guest_agent() {
        return Ok(());
    }
    let ns = source.vm.namespace().unwrap_or_default();
    let body = json!({"unfreezeTimeout": unfreeze_timeout});
    kubevirt_subresource(client, &ns, "virtualmachineinstances", &source.vm.name_any(), "freeze", Some(body))
        .await?;
    Ok(())
}

/// KubeVirt's `Unfreeze()`: only for a locked VM with a guest agent that is not paused.
pub async fn unfreeze(client: &Client, source: &Source) -> Result<(), ReconcileError> {
    if !source.locked() || !source.guest_agent() || source.paused() {
        return Ok(());
    }
    let ns = source.vm.namespace().unwrap_or_default();
    kubevirt_subresource(client, &ns, "virtualmachineinstances", &source.vm.name_any(), "unfreeze", None)
        .await
        .map_err(unfreeze_error)
}

/// The error of an unfreeze call. Across the API the guest agent's refusal is only the text of a
/// `Status` (virt-handler passes the agent's message on, and KubeVirt recognizes the VSS limit by
/// it): it is read once, here, into [`ReconcileError::FreezeLimitReached`].
fn unfreeze_error(error: kube::Error) -> ReconcileError {
    match error {
        kube::Error::Api(status) if indication::is_freeze_limit_reached(&status.message) => {
            ReconcileError::FreezeLimitReached(status.message)
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_request(message: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(
            json!({"code": 400, "message": message, "reason": "BadRequest", "status": "Failure"}),
        )
        .unwrap();
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn an_unfreeze_refused_for_the_vss_freeze_limit_is_its_own_error_with_the_agents_message() {
        // The agent's message as virt-handler passes it on (KubeVirt's `VSSFreezeLimitReached`).
        let limit = "failed to unfreeze: fsfreeze is limited up to 10 seconds";
        match unfreeze_error(bad_request(limit)) {
            ReconcileError::FreezeLimitReached(message) => assert_eq!(message, limit),
            other => panic!("expected FreezeLimitReached, got {other:?}"),
        }
        assert!(matches!(unfreeze_error(bad_request("guest agent not connected")), ReconcileError::Kube(_)));
    }
}
