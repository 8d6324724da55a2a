//! What KubeVirt's VM controller keeps on every VM besides its run state: the controller finalizer
//! (a deleted VM stays until its VMI is gone), a firmware UUID written into the VM spec (so that
//! snapshots and restores carry the VM's identity), and the ControllerRevision each VMI starts from
//! (so that an online snapshot stores the spec that runs, not the one edited since).

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::VirtualMachineRestore;

use crate::kubevirt::firmware_uuid;
use crate::running::patch_params;

/// KubeVirt's VM controller finalizer (`v1.VirtualMachineControllerFinalizer`).
pub const VM_CONTROLLER_FINALIZER: &str = "kubevirt.io/virtualMachineControllerFinalizer";

/// Kubernetes' finalizer of an orphaning delete: the VMI is left running, so the VM may go at once.
const ORPHAN_FINALIZER: &str = "orphan";

/// The JSON patch that gives a live VM the finalizer and a firmware UUID (the legacy UUID of its
/// name, as KubeVirt's firmware synchronizer writes it), or `None` when it has both.
pub fn upkeep_patch(vm: &VirtualMachine) -> Option<Value> {
    let mut ops = Vec::new();
    let finalizers = vm.finalizers();
    if !finalizers.iter().any(|f| f == VM_CONTROLLER_FINALIZER) {
        let mut wanted = finalizers.to_vec();
        wanted.push(VM_CONTROLLER_FINALIZER.into());
        let old = if finalizers.is_empty() { Value::Null } else { json!(finalizers) };
        ops.push(json!({"op": "test", "path": "/metadata/finalizers", "value": old}));
        ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": wanted}));
    }
    let firmware = vm.spec.template.spec.domain.firmware.clone();
    if firmware.as_ref().and_then(|f| f.uuid.as_deref()).is_none_or(str::is_empty) {
        let mut updated = firmware.clone().unwrap_or_default();
        updated.uuid = Some(firmware_uuid(&vm.name_any()).to_string());
        ops.push(json!({"op": "test", "path": "/spec/template/spec/domain/firmware", "value": firmware}));
        ops.push(json!({"op": "add", "path": "/spec/template/spec/domain/firmware", "value": updated}));
    }
    (!ops.is_empty()).then(|| Value::Array(ops))
}

/// Applies [`upkeep_patch`]. A copy that changed meanwhile (the `test` fails) is left to the next
/// reconcile, which the watch brings.
pub async fn apply_upkeep(
    vms: &Api<VirtualMachine>,
    vm: &VirtualMachine,
    patch: Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    match vms.patch(&vm.name_any(), &patch_params(), &Patch::Json::<()>(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status))
            if status.code == 422 || status.is_conflict() || status.is_not_found() =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// How long a deleted VM waits for the restore controller to take its owner reference off the
/// restores that target the VM (beyond KubeVirt, kubevirt#13956), so that the garbage collector
/// keeps their records; past it the VM goes anyway, so that a stopped restore controller cannot
/// hold a deletion for ever.
pub const RESTORE_RECORD_GRACE: Duration = Duration::from_secs(30);

/// Where the deletion of a VM stands, once [`finish_deletion`] has done what it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The finalizer is gone (or never was): the API server lets the VM go.
    Released,
    /// The VMI is being stopped; its watch event brings the VM back.
    AwaitingVmi,
    /// Restores still name the VM as their owner; no watch event says when the restore controller
    /// has dropped it, so look again after this long.
    AwaitingRestoreRecords(Duration),
}

/// A VM being deleted: its VMI is stopped first, then the restores it owns let go of it, then the
/// finalizer goes (KubeVirt's order, with the restores' step beyond KubeVirt).
pub async fn finish_deletion(
    vms: &Api<VirtualMachine>,
    vmis: &Api<VirtualMachineInstance>,
    restores: &Api<VirtualMachineRestore>,
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
) -> Result<Deletion, kube::Error> {
    let finalizers = vm.finalizers();
    if !finalizers.iter().any(|f| f == VM_CONTROLLER_FINALIZER) {
        return Ok(Deletion::Released);
    }
    if let Some(vmi) = vmi
        && !finalizers.iter().any(|f| f == ORPHAN_FINALIZER)
    {
        if vmi.metadata.deletion_timestamp.is_none() {
            match vmis.delete(&vmi.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        return Ok(Deletion::AwaitingVmi);
    }
    if within_restore_record_grace(vm) && owns_a_restore(restores, vm).await? {
        return Ok(Deletion::AwaitingRestoreRecords(Duration::from_millis(500)));
    }
    let index = finalizers.iter().position(|f| f == VM_CONTROLLER_FINALIZER).expect("checked above");
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": VM_CONTROLLER_FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    apply_upkeep(vms, vm, patch).await?;
    Ok(Deletion::Released)
}

fn within_restore_record_grace(vm: &VirtualMachine) -> bool {
    let Some(deleted) = &vm.metadata.deletion_timestamp else { return false };
    let waited = crate::time::now().duration_since(deleted.0);
    waited.is_negative() || waited.unsigned_abs() < RESTORE_RECORD_GRACE
}

/// Whether a restore in the VM's namespace still has the VM (this very VM: by uid) as an owner.
async fn owns_a_restore(
    restores: &Api<VirtualMachineRestore>,
    vm: &VirtualMachine,
) -> Result<bool, kube::Error> {
    let Some(uid) = vm.uid() else { return Ok(false) };
    let listed = restores.list(&ListParams::default()).await?;
    Ok(listed.items.iter().any(|restore| restore.owner_references().iter().any(|owner| owner.uid == uid)))
}

/// `revision-start-vm-<uid>-<generation>`, KubeVirt's name of the revision a VMI starts from.
pub fn start_revision_name(vm: &VirtualMachine) -> String {
    format!("{}{}", start_revision_prefix(vm), vm.metadata.generation.unwrap_or(1))
}

fn start_revision_prefix(vm: &VirtualMachine) -> String {
    format!("revision-start-vm-{}-", vm.uid().unwrap_or_default())
}

/// Records the VM spec a VMI is about to start from, as KubeVirt's `createVMRevision` does: one
/// ControllerRevision per VM, owned by it, holding `{"spec": ...}`; older ones are deleted.
/// Returns its name.
pub async fn record_start_revision(client: &Client, vm: &VirtualMachine) -> Result<String, kube::Error> {
    let namespace = vm.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let name = start_revision_name(vm);
    let prefix = start_revision_prefix(vm);
    let mut exists = false;
    for revision in api.list(&ListParams::default()).await?.items {
        let existing = revision.name_any();
        if existing == name {
            exists = true;
        } else if existing.starts_with(&prefix) {
            match api.delete(&existing, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
    }
    if exists {
        return Ok(name);
    }
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace),
            owner_references: Some(vec![vmsnap_contracts::owner::controller_reference(vm)]),
            ..Default::default()
        },
        data: Some(RawExtension(json!({"spec": vm.spec}))),
        revision: vm.metadata.generation.unwrap_or(1),
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(name),
        Err(error) => Err(error),
    }
}

/// Names the revision in the VMI's status (`virtualMachineRevisionName`).
pub async fn name_start_revision(
    vmis: &Api<VirtualMachineInstance>,
    vmi: &str,
    revision: &str,
) -> Result<(), kube::Error> {
    let patch = json!({"status": {"virtualMachineRevisionName": revision}});
    vmis.patch_status(vmi, &patch_params(), &Patch::Merge(&patch)).await.map(drop)
}

#[cfg(test)]
mod tests {
    use vmsnap_api::kubevirt::{Firmware, VirtualMachineSpec};

    use super::*;

    fn vm() -> VirtualMachine {
        let mut vm = VirtualMachine::new("demo", VirtualMachineSpec::default());
        vm.metadata.uid = Some("u-1".into());
        vm.metadata.generation = Some(3);
        vm
    }

    #[test]
    fn a_new_vm_gets_kubevirts_finalizer_and_the_legacy_firmware_uuid_of_its_name() {
        let patch = upkeep_patch(&vm()).expect("a patch");
        let ops = patch.as_array().unwrap();
        assert_eq!(ops[0], json!({"op": "test", "path": "/metadata/finalizers", "value": null}));
        assert_eq!(
            ops[2],
            json!({"op": "test", "path": "/spec/template/spec/domain/firmware", "value": null})
        );
        // The json-patch crate fails a `test` of null on a missing path, which the API server (as
        // kube-apiserver) passes; the additions are what this checks.
        let adds: Vec<Value> = ops.iter().filter(|op| op["op"] == "add").cloned().collect();
        let patch = Value::Array(adds);
        let mut doc = serde_json::to_value(vm()).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc.pointer("/metadata/finalizers"), Some(&json!([VM_CONTROLLER_FINALIZER])));
        // uuid.NewSHA1(6a1a24a1-4061-4607-8bf4-a3963d0c5895, "demo"), as KubeVirt's CalculateLegacyUUID.
        assert_eq!(
            doc.pointer("/spec/template/spec/domain/firmware/uuid"),
            Some(&json!(firmware_uuid("demo").to_string()))
        );
    }

    #[test]
    fn a_vm_with_both_is_left_alone_and_its_own_uuid_is_kept() {
        let mut vm = vm();
        vm.metadata.finalizers = Some(vec!["other".into(), VM_CONTROLLER_FINALIZER.into()]);
        vm.spec.template.spec.domain.firmware = Some(Firmware {
            uuid: Some("11111111-2222-3333-4444-555555555555".into()),
            ..Default::default()
        });
        assert_eq!(upkeep_patch(&vm), None);
    }

    #[test]
    fn the_start_revision_is_named_after_the_vm_uid_and_generation() {
        assert_eq!(start_revision_name(&vm()), "revision-start-vm-u-1-3");
    }
}
