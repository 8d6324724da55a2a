//! The VM controller (KubeVirt's virt-controller VM logic): creates the
//! DataVolumes of `dataVolumeTemplates`, creates and deletes the VM's VMI as
//! its run strategy and state change requests say, and writes the VM status.
//!
//! The VMI is owned by the VM (controller reference), so deleting the VM lets
//! the garbage collector delete the VMI, whose finalizer makes the VMI
//! controller shut the guest down first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use vmsnap_api::cdi::{DataVolume, dv_phase};
use vmsnap_api::kubevirt::{
    Firmware, VirtualMachine, VirtualMachineInstance, VirtualMachineStateChangeRequest, run_strategy,
};
use vmsnap_api::snapshot::VirtualMachineRestore;

use crate::agent::Agent;
use crate::domain;
use crate::kubevirt::{
    START_STRATEGY_PAUSED, VM_GENERATION_ANNOTATION, VM_LABEL, VMI_FINALIZER, condition, firmware_uuid,
    request,
};
use crate::running::patch_params;
use crate::runstrategy::{self, StartFailure, VmAction, VmView, first_request_served};
use crate::vm_status::{self, StatusInput, SyncError, VolumeFacts, vmi_view};
use crate::vm_upkeep::{self, Deletion};
use crate::volumes::{self, claim_of};
use vmsnap_contracts::owner::controller_reference;

/// A VM reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum VmReconcileError {
    /// The Kubernetes API failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Runs the controller until the task is aborted.
pub async fn run(agent: Arc<Agent>) {
    let client = agent.client.clone();
    let controller = Controller::new(Api::<VirtualMachine>::all(client.clone()), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config())
        .owns(Api::<VirtualMachineInstance>::all(client.clone()), watcher::Config::default());
    volumes::watch_claims(controller, client, |vm| &vm.spec.template.spec.volumes)
        .run(reconcile, error_policy, agent)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "VM reconcile");
            }
        })
        .await;
}

fn error_policy(_vm: Arc<VirtualMachine>, error: &VmReconcileError, _agent: Arc<Agent>) -> Action {
    tracing::warn!(%error, "VM reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// The VMI a VM starts (virt-controller's `setupVMIFromVM`).
pub fn vmi_for(vm: &VirtualMachine, paused: bool) -> VirtualMachineInstance {
    let template = vm.spec.template.metadata.clone().unwrap_or_default();
    let mut labels = template.labels.unwrap_or_default();
    labels.insert(VM_LABEL.into(), vm.name_any());
    let mut annotations = template.annotations.unwrap_or_default();
    annotations.insert(VM_GENERATION_ANNOTATION.into(), vm.metadata.generation.unwrap_or(1).to_string());
    let mut spec = vm.spec.template.spec.clone();
    domain::apply_defaults(&mut spec);
    let firmware = spec.domain.firmware.get_or_insert_with(Firmware::default);
    if firmware.uuid.as_deref().is_none_or(str::is_empty) {
        firmware.uuid = Some(firmware_uuid(&vm.name_any()).to_string());
    }
    if paused {
        spec.start_strategy = Some(START_STRATEGY_PAUSED.into());
    }
    let mut vmi = VirtualMachineInstance::new(&vm.name_any(), spec);
    vmi.metadata = ObjectMeta {
        name: Some(vm.name_any()),
        namespace: vm.namespace(),
        labels: Some(labels),
        annotations: Some(annotations),
        owner_references: Some(vec![controller_reference(vm)]),
        finalizers: Some(vec![VMI_FINALIZER.into()]),
        ..Default::default()
    };
    vmi
}

fn is_controlled_by(vmi: &VirtualMachineInstance, vm: &VirtualMachine) -> bool {
    vmi.owner_references().iter().any(|o| o.controller == Some(true) && Some(&o.uid) == vm.uid().as_ref())
}

/// Creates the missing DataVolumes of `dataVolumeTemplates`.
async fn ensure_data_volumes(agent: &Agent, vm: &VirtualMachine) -> Result<(), SyncError> {
    let namespace = vm.namespace().unwrap_or_default();
    let api: Api<DataVolume> = Api::namespaced(agent.client.clone(), &namespace);
    for template in &vm.spec.data_volume_templates {
        let name = template.metadata.name.clone().unwrap_or_default();
        let failed = |error: kube::Error| SyncError {
            reason: condition::REASON_FAILED_CREATE,
            message: format!("Error encountered while creating DataVolumes: {error}"),
        };
        if let Some(existing) = api.get_opt(&name).await.map_err(failed)? {
            adopt_data_volume(&api, vm, &existing).await.map_err(failed)?;
            continue;
        }
        let mut dv = DataVolume::new(&name, template.spec.clone());
        dv.metadata.labels = template.metadata.labels.clone();
        dv.metadata.annotations = template.metadata.annotations.clone();
        dv.metadata.owner_references = Some(vec![controller_reference(vm)]);
        match api.create(&PostParams::default(), &dv).await {
            Ok(_) => record(
                agent,
                vm,
                EventType::Normal,
                "SuccessfulDataVolumeCreate",
                format!("Created DataVolume {name}"),
            ),
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(error) => {
                record(
                    agent,
                    vm,
                    EventType::Warning,
                    "FailedDataVolumeCreate",
                    format!("Error creating DataVolume {name}: {error}"),
                );
                return Err(failed(error));
            }
        }
    }
    Ok(())
}

/// Takes a DataVolume of a template that no controller owns (one a restore recreated, as KubeVirt's
/// VM controller claims it), so that it goes with the VM.
async fn adopt_data_volume(
    api: &Api<DataVolume>,
    vm: &VirtualMachine,
    dv: &DataVolume,
) -> Result<(), kube::Error> {
    let controlled = dv.owner_references().iter().any(|o| o.controller == Some(true));
    if controlled || dv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let mut owners = dv.owner_references().to_vec();
    owners.push(controller_reference(vm));
    let patch = json!([
        {"op": "test", "path": "/metadata/ownerReferences", "value": dv.metadata.owner_references},
        {"op": "add", "path": "/metadata/ownerReferences", "value": owners},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    match api.patch(&dv.name_any(), &patch_params(), &Patch::Json::<()>(patch)).await {
        Ok(_) => Ok(()),
        // Changed or gone meanwhile: the next reconcile looks again.
        Err(kube::Error::Api(status))
            if status.code == 422 || status.is_conflict() || status.is_not_found() =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// What the VM's volumes are up to.
async fn volume_facts(agent: &Agent, vm: &VirtualMachine) -> Result<VolumeFacts, kube::Error> {
    let namespace = vm.namespace().unwrap_or_default();
    let dvs: Api<DataVolume> = Api::namespaced(agent.client.clone(), &namespace);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(agent.client.clone(), &namespace);
    let mut facts = VolumeFacts::default();
    for volume in &vm.spec.template.spec.volumes {
        let Some((claim, is_data_volume)) = claim_of(volume) else { continue };
        if is_data_volume {
            match dvs.get_opt(claim).await?.and_then(|dv| dv.status).and_then(|s| s.phase) {
                Some(phase) if phase == dv_phase::SUCCEEDED => {}
                Some(phase) if phase == dv_phase::FAILED => facts.data_volume_failed = true,
                Some(phase)
                    if phase == dv_phase::WAIT_FOR_FIRST_CONSUMER
                        || phase == dv_phase::PENDING_POPULATION => {}
                _ => facts.provisioning = true,
            }
        }
        let pvc = pvcs.get_opt(claim).await?;
        if pvc.is_some_and(|p| p.status.and_then(|s| s.phase).as_deref() != Some("Bound")) {
            facts.unbound_claim = true;
        }
    }
    Ok(facts)
}

fn record(agent: &Agent, vm: &VirtualMachine, type_: EventType, reason: &str, note: String) {
    let recorder = agent.recorder.clone();
    let reference = vm.object_ref(&());
    let event =
        Event { type_, reason: reason.into(), note: Some(note), action: reason.into(), secondary: None };
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::debug!(%error, "could not record an event");
        }
    });
}

async fn reconcile(vm: Arc<VirtualMachine>, agent: Arc<Agent>) -> Result<Action, VmReconcileError> {
    let (namespace, name) = (vm.namespace().unwrap_or_default(), vm.name_any());
    let vms: Api<VirtualMachine> = Api::namespaced(agent.client.clone(), &namespace);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(agent.client.clone(), &namespace);
    let now = crate::time::now_time();
    if vm.metadata.deletion_timestamp.is_none()
        && let Some(patch) = vm_upkeep::upkeep_patch(&vm)
    {
        // The watch brings the VM back with its finalizer and firmware UUID.
        vm_upkeep::apply_upkeep(&vms, &vm, patch).await?;
        return Ok(Action::await_change());
    }
    let mut sync_error = ensure_data_volumes(&agent, &vm).await.err();
    let volumes = volume_facts(&agent, &vm).await?;
    let found = vmis.get_opt(&name).await?;
    // A VMI of the same name that another owner controls is left alone.
    let mut vmi = found.filter(|vmi| is_controlled_by(vmi, &vm) || vmi.owner_references().is_empty());
    let status = vm.status.clone().unwrap_or_default();
    let previous_failure: Option<StartFailure> =
        status.start_failure.clone().and_then(|value| serde_json::from_value(value).ok());
    let start_failure =
        runstrategy::next_start_failure(previous_failure, vmi.as_ref().map(vmi_view).as_ref(), now.0);
    let view = VmView {
        strategy: vm.spec.effective_run_strategy(),
        status_strategy: status.run_strategy.as_deref(),
        requests: &status.state_change_requests,
        backoff_left: runstrategy::backoff_left(start_failure.as_ref(), now.0),
    };
    let mut requeue = None;
    let action = if vm.metadata.deletion_timestamp.is_some() {
        let restores: Api<VirtualMachineRestore> = Api::namespaced(agent.client.clone(), &namespace);
        if let Deletion::AwaitingRestoreRecords(again) =
            vm_upkeep::finish_deletion(&vms, &vmis, &restores, &vm, vmi.as_ref()).await?
        {
            requeue = Some(again);
        }
        VmAction::Nothing
    } else {
        runstrategy::decide(view, vmi.as_ref().map(vmi_view)).unwrap_or_else(|error| {
            sync_error =
                Some(SyncError { reason: condition::REASON_FAILED_CREATE, message: error.to_string() });
            VmAction::Nothing
        })
    };
    let mut start_expected = false;
    match action {
        VmAction::Nothing => {}
        VmAction::Start { paused } => {
            if volumes.provisioning || volumes.data_volume_failed {
                start_expected = true;
            } else {
                let revision = vm_upkeep::record_start_revision(&agent.client, &vm).await?;
                match vmis.create(&PostParams::default(), &vmi_for(&vm, paused)).await {
                    Ok(created) => {
                        vm_upkeep::name_start_revision(&vmis, &name, &revision).await?;
                        record(
                            &agent,
                            &vm,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!(
                                "Started the virtual machine by creating the new virtual machine instance {name}"
                            ),
                        );
                        vmi = Some(created);
                    }
                    Err(kube::Error::Api(status)) if status.is_already_exists() => {
                        vmi = vmis.get_opt(&name).await?
                    }
                    Err(error) => {
                        record(
                            &agent,
                            &vm,
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating virtual machine instance: {error}"),
                        );
                        sync_error = Some(SyncError {
                            reason: condition::REASON_FAILED_CREATE,
                            message: format!("Failure while starting VMI: {error}"),
                        });
                    }
                }
            }
        }
        VmAction::Stop | VmAction::StopAndRequestStart => {
            match vmis.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    record(
                        &agent,
                        &vm,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!(
                            "Stopped the virtual machine by deleting the virtual machine instance {}",
                            vmi.as_ref().and_then(|v| v.uid()).unwrap_or_default()
                        ),
                    );
                    vmi = vmis.get_opt(&name).await?;
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => vmi = None,
                Err(error) => {
                    sync_error = Some(SyncError {
                        reason: condition::REASON_FAILED_DELETE,
                        message: format!("Failure attempting to delete VMI: {error}"),
                    });
                }
            }
            if action == VmAction::StopAndRequestStart {
                add_start_request(&vms, &name, &status.state_change_requests).await?;
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
        }
        VmAction::SwitchToAlways => {
            let patch = if vm.spec.run_strategy.is_some() {
                json!([{"op": "test", "path": "/spec/runStrategy", "value": vm.spec.run_strategy},
                       {"op": "replace", "path": "/spec/runStrategy", "value": run_strategy::ALWAYS}])
            } else {
                json!([{"op": "test", "path": "/spec/running", "value": vm.spec.running},
                       {"op": "replace", "path": "/spec/running", "value": true}])
            };
            let patch: json_patch::Patch = serde_json::from_value(patch).unwrap_or_default();
            if let Err(error) = vms.patch(&name, &patch_params(), &Patch::Json::<()>(patch)).await {
                sync_error = Some(SyncError {
                    reason: condition::REASON_FAILED_CREATE,
                    message: format!("Failure while starting VMI: {error}"),
                });
            }
        }
        VmAction::BackOff(delay) => requeue = Some(delay),
    }
    let input = StatusInput {
        vm: &vm,
        vmi: vmi.as_ref(),
        volumes,
        sync_error: sync_error.as_ref(),
        start_expected,
        start_failure: start_failure.as_ref(),
        now: &now,
    };
    let fields = vm_status::changed_fields(&vm, vm_status::status_fields(&input));
    if first_request_served(&status.state_change_requests, vmi.as_ref().map(vmi_view)) {
        trim_first_request(&vms, &name, &status.state_change_requests).await?;
    }
    if !fields.is_empty() {
        let patch = json!({ "status": Value::Object(fields) });
        vms.patch_status(&name, &patch_params(), &Patch::Merge(&patch)).await?;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Removes the first state change request, unless the list changed meanwhile.
async fn trim_first_request(
    vms: &Api<VirtualMachine>,
    name: &str,
    requests: &[VirtualMachineStateChangeRequest],
) -> Result<(), kube::Error> {
    // An emptied list is removed, not stored as `[]`: writers test for its absence.
    let rest = if requests.len() > 1 {
        json!({"op": "replace", "path": "/status/stateChangeRequests", "value": &requests[1..]})
    } else {
        json!({"op": "remove", "path": "/status/stateChangeRequests"})
    };
    let patch = json!([{"op": "test", "path": "/status/stateChangeRequests", "value": requests}, rest]);
    apply_status_json_patch(vms, name, patch).await
}

/// Appends a start request (RerunOnFailure after a failure), unless the list changed meanwhile.
async fn add_start_request(
    vms: &Api<VirtualMachine>,
    name: &str,
    requests: &[VirtualMachineStateChangeRequest],
) -> Result<(), kube::Error> {
    let mut wanted = requests.to_vec();
    wanted.push(VirtualMachineStateChangeRequest {
        action: request::START.into(),
        data: BTreeMap::new(),
        uid: None,
    });
    let patch = json!([
        {"op": "test", "path": "/status/stateChangeRequests", "value": if requests.is_empty() { Value::Null } else { json!(requests) }},
        {"op": "add", "path": "/status/stateChangeRequests", "value": wanted},
    ]);
    apply_status_json_patch(vms, name, patch).await
}

async fn apply_status_json_patch(
    vms: &Api<VirtualMachine>,
    name: &str,
    patch: Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    match vms.patch_status(name, &patch_params(), &Patch::Json::<()>(patch)).await {
        Ok(_) => Ok(()),
        // The list changed meanwhile: the next reconcile sees the new one.
        Err(kube::Error::Api(status)) if status.code == 422 || status.is_conflict() => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use vmsnap_api::kubevirt::{VirtualMachineSpec, Volume};

    use super::*;

    #[test]
    fn the_vmi_carries_the_vm_template_owner_finalizer_and_firmware_uuid() {
        let mut vm = VirtualMachine::new("testvm", VirtualMachineSpec::default());
        vm.metadata.namespace = Some("ns".into());
        vm.metadata.uid = Some("vm-uid".into());
        vm.metadata.generation = Some(4);
        vm.spec.template.spec.volumes.push(Volume { name: "data".into(), ..Default::default() });

        let vmi = vmi_for(&vm, true);

        assert_eq!(vmi.labels().get("kubevirt.io/vm").map(String::as_str), Some("testvm"));
        assert_eq!(vmi.annotations().get("kubevirt.io/vm-generation").map(String::as_str), Some("4"));
        let owner = &vmi.owner_references()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("vm-uid", Some(true)));
        assert_eq!(vmi.finalizers(), ["foregroundDeleteVirtualMachine"]);
        let uuid = vmi.spec.domain.firmware.as_ref().and_then(|f| f.uuid.clone());
        assert_eq!(uuid.as_deref(), Some("5a9fc181-957e-5c32-9e5a-2de5e9673531"));
        assert_eq!(vmi.spec.start_strategy.as_deref(), Some("Paused"));
        assert_eq!(vmi.spec.domain.devices.disks[0].name, "data");
        assert!(is_controlled_by(&vmi, &vm));
    }
}
