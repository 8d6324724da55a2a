//! The VirtualMachine status the agent owns, computed from the VM, its VMI
//! and its volumes: `printableStatus`, `created`, `ready`, `runStrategy`,
//! conditions, `startFailure` and the generations (virt-controller's
//! `updateStatus`). Pure; `snapshotInProgress`, `restoreInProgress` and
//! `volumeSnapshotStatuses` belong to the snapshot controllers and are never
//! touched.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};
use vmsnap_api::kubevirt::VmiPhase;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineCondition, VirtualMachineInstance, run_strategy};

use crate::kubevirt::{VM_GENERATION_ANNOTATION, condition, printable};
use crate::runstrategy::{StartFailure, VmiView, has_start_request, has_stop_request_for};

/// What the VM controller found out about the VM's volumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeFacts {
    /// A DataVolume of the VM is still being populated (or not created yet).
    pub provisioning: bool,
    /// A DataVolume of the VM failed.
    pub data_volume_failed: bool,
    /// A PVC of the VM exists but is not bound.
    pub unbound_claim: bool,
}

/// A failure of the VM controller's last action, for the `Failure` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError {
    /// The condition reason, e.g. `FailedCreate`.
    pub reason: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Everything the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    /// The VM.
    pub vm: &'a VirtualMachine,
    /// Its VMI, if one exists.
    pub vmi: Option<&'a VirtualMachineInstance>,
    /// Its volumes.
    pub volumes: VolumeFacts,
    /// The last action's failure.
    pub sync_error: Option<&'a SyncError>,
    /// A VMI should exist but does not yet (e.g. waiting for DataVolumes).
    pub start_expected: bool,
    /// The start failure record after this reconcile.
    pub start_failure: Option<&'a StartFailure>,
    /// The current time, for new conditions.
    pub now: &'a Time,
}

/// The phase of a VMI without one.
static UNSET_PHASE: VmiPhase = VmiPhase::Unset;

/// The VMI as the run strategy sees it.
pub fn vmi_view(vmi: &VirtualMachineInstance) -> VmiView<'_> {
    let status = vmi.status.as_ref();
    VmiView {
        uid: vmi.metadata.uid.as_deref().unwrap_or_default(),
        phase: status.and_then(|s| s.phase.as_ref()).unwrap_or(&UNSET_PHASE),
        deleting: vmi.metadata.deletion_timestamp.is_some(),
        ran: status
            .is_some_and(|s| s.phase_transition_timestamps.iter().any(|p| p.phase == VmiPhase::Running)),
    }
}

fn vmi_condition_true(vmi: &VirtualMachineInstance, type_: &str) -> bool {
    vmi_condition(vmi, type_).is_some_and(|c| c.status == "True")
}

fn vmi_condition<'a>(
    vmi: &'a VirtualMachineInstance,
    type_: &str,
) -> Option<&'a vmsnap_api::kubevirt::VirtualMachineInstanceCondition> {
    vmi.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn vmi_condition_reason(vmi: &VirtualMachineInstance, type_: &str, status: &str, reason: &str) -> bool {
    vmi_condition(vmi, type_).is_some_and(|c| c.status == status && c.reason.as_deref() == Some(reason))
}

/// Whether the VM is meant to run now (virt-controller's `isSetToStart`).
pub fn is_set_to_start(vm: &VirtualMachine, vmi: Option<&VirtualMachineInstance>) -> bool {
    let requests = vm.status.as_ref().map(|s| s.state_change_requests.as_slice()).unwrap_or_default();
    match vm.spec.effective_run_strategy() {
        run_strategy::ALWAYS => true,
        run_strategy::MANUAL => match vmi {
            Some(vmi) => !has_stop_request_for(requests, &vmi_view(vmi)),
            None => has_start_request(requests),
        },
        run_strategy::RERUN_ON_FAILURE => vmi.is_none_or(|vmi| *vmi_view(vmi).phase != VmiPhase::Succeeded),
        run_strategy::ONCE => vmi.is_none(),
        _ => false,
    }
}

/// `status.printableStatus`, first match wins (virt-controller's `setPrintableStatus`).
pub fn printable_status(input: &StatusInput<'_>) -> &'static str {
    let vm = input.vm;
    let vmi = input.vmi;
    let view = vmi.map(vmi_view);
    let running = view.is_some_and(|v| *v.phase == VmiPhase::Running);
    let paused = vmi.is_some_and(|vmi| vmi_condition_true(vmi, condition::PAUSED));
    let synchronized_failed =
        |reason| vmi.is_some_and(|vmi| vmi_condition_reason(vmi, condition::SYNCHRONIZED, "False", reason));
    let strategy = vm.spec.effective_run_strategy();
    let crash_looping = input.start_failure.is_some_and(|f| f.consecutive_fail_count > 0)
        && matches!(strategy, run_strategy::ALWAYS | run_strategy::RERUN_ON_FAILURE | run_strategy::ONCE);
    if vm.metadata.deletion_timestamp.is_some() {
        printable::TERMINATING
    } else if view.is_some_and(|v| !v.is_final() && v.deleting) {
        printable::STOPPING
    } else if running && paused {
        printable::PAUSED
    } else if running {
        printable::RUNNING
    } else if synchronized_failed(condition::REASON_PVC_NOT_FOUND) {
        printable::PVC_NOT_FOUND
    } else if input.volumes.data_volume_failed {
        printable::DATA_VOLUME_ERROR
    } else if vmi.is_some_and(|vmi| {
        vmi_condition_reason(vmi, condition::POD_SCHEDULED, "False", condition::REASON_UNSCHEDULABLE)
    }) {
        printable::UNSCHEDULABLE
    } else if input.volumes.provisioning {
        printable::PROVISIONING
    } else if is_set_to_start(vm, vmi) && input.volumes.unbound_claim {
        printable::WAITING_FOR_VOLUME_BINDING
    } else if synchronized_failed(condition::REASON_IMAGE) {
        printable::ERR_IMAGE_PULL
    } else if match view {
        None => input.start_expected,
        Some(v) => {
            matches!(
                v.phase,
                VmiPhase::Unset | VmiPhase::Pending | VmiPhase::Scheduling | VmiPhase::Scheduled
            )
        }
    } {
        printable::STARTING
    } else if (view.is_none_or(|v| v.is_final())) && !input.start_expected && crash_looping {
        printable::CRASH_LOOP_BACK_OFF
    } else if view.map_or(!input.start_expected, |v| v.is_final()) {
        printable::STOPPED
    } else {
        printable::UNKNOWN
    }
}

/// Sets `new` into `conditions`: replaced in place, keeping the transition
/// time when neither status nor reason changed, or appended.
fn update_condition(conditions: &mut Vec<VirtualMachineCondition>, mut new: VirtualMachineCondition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status && old.reason == new.reason {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// The VM's conditions: `Ready` from the VMI's, `Failure` from the last
/// action, and every other VMI condition copied (virt-controller's `syncConditions`).
pub fn conditions(input: &StatusInput<'_>) -> Vec<VirtualMachineCondition> {
    let mut conditions = input.vm.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let new = |type_: &str, status: &str, reason: &str, message: &str| VirtualMachineCondition {
        type_: type_.into(),
        status: status.into(),
        last_probe_time: None,
        last_transition_time: Some(input.now.clone()),
        reason: Some(reason.into()),
        message: Some(message.into()),
    };
    // A VMI condition as the VM shows it: no probe time, and a transition time even if the VMI's
    // condition has none (the two kinds share KubeVirt's condition type).
    let mirrored = |c: &VirtualMachineCondition| VirtualMachineCondition {
        last_probe_time: None,
        last_transition_time: c.last_transition_time.clone().or_else(|| Some(input.now.clone())),
        ..c.clone()
    };
    let ready = match input.vmi {
        None => new(condition::READY, "False", condition::REASON_VMI_NOT_EXISTS, "VMI does not exist"),
        Some(vmi) => match vmi_condition(vmi, condition::READY) {
            None => new(
                condition::READY,
                "False",
                condition::REASON_VMI_CONDITION_MISSING,
                "VMI is missing the Ready condition",
            ),
            Some(c) => mirrored(c),
        },
    };
    update_condition(&mut conditions, ready);
    match input.sync_error {
        Some(error) => {
            update_condition(&mut conditions, new(condition::FAILURE, "True", error.reason, &error.message))
        }
        None => conditions.retain(|c| c.type_ != condition::FAILURE),
    }
    let ignored = [condition::READY, condition::FAILURE, "RestartRequired"];
    let vmi_conditions = input.vmi.and_then(|vmi| vmi.status.as_ref()).map(|s| s.conditions.as_slice());
    for c in vmi_conditions.unwrap_or_default() {
        if !ignored.contains(&c.type_.as_str()) {
            update_condition(&mut conditions, mirrored(c));
        }
    }
    conditions.retain(|c| {
        ignored.contains(&c.type_.as_str())
            || vmi_conditions.unwrap_or_default().iter().any(|v| v.type_ == c.type_)
    });
    conditions
}

/// The status fields the agent owns, as a merge patch body (`null` clears a field).
pub fn status_fields(input: &StatusInput<'_>) -> Map<String, Value> {
    let vm = input.vm;
    let status = vm.status.as_ref();
    let created = input.vmi.is_some();
    let ready = input.vmi.is_some_and(|vmi| vmi_condition_true(vmi, condition::READY));
    let strategy = vm.spec.effective_run_strategy();
    // Set for the first time when a VMI is created, so that it tells whether the VM ever started.
    let run_strategy = (status.is_some_and(|s| s.run_strategy.is_some()) || created).then_some(strategy);
    let mut fields = Map::new();
    fields.insert("created".into(), if created { json!(true) } else { Value::Null });
    fields.insert("ready".into(), if ready { json!(true) } else { Value::Null });
    fields.insert("printableStatus".into(), json!(printable_status(input)));
    fields.insert("runStrategy".into(), json!(run_strategy));
    fields.insert("conditions".into(), serde_json::to_value(conditions(input)).unwrap_or_default());
    fields.insert("startFailure".into(), serde_json::to_value(input.start_failure).unwrap_or_default());
    if let Some(vmi) = input.vmi {
        let observed = vmi
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(VM_GENERATION_ANNOTATION))
            .and_then(|g| g.parse::<i64>().ok());
        if let Some(observed) = observed {
            fields.insert("observedGeneration".into(), json!(observed));
        }
        fields.insert("desiredGeneration".into(), json!(vm.metadata.generation));
    }
    fields
}

/// The fields of `fields` whose value differs from the VM's current status (`null` equals absent).
pub fn changed_fields(vm: &VirtualMachine, fields: Map<String, Value>) -> Map<String, Value> {
    let current = vm.status.as_ref().and_then(|s| serde_json::to_value(s).ok()).unwrap_or_default();
    fields.into_iter().filter(|(key, value)| current.get(key).unwrap_or(&Value::Null) != value).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use vmsnap_api::kubevirt::{
        VirtualMachineInstanceCondition, VirtualMachineInstanceSpec, VirtualMachineInstanceStatus,
        VirtualMachineSpec,
    };

    use super::*;

    fn vm(strategy: &str) -> VirtualMachine {
        let mut vm = VirtualMachine::new("vm", VirtualMachineSpec::default());
        vm.spec.run_strategy = Some(strategy.into());
        vm.metadata.generation = Some(3);
        vm
    }

    fn vmi(phase: &str, conditions: &[(&str, &str)]) -> VirtualMachineInstance {
        let mut vmi = VirtualMachineInstance::new("vm", VirtualMachineInstanceSpec::default());
        vmi.metadata.uid = Some("u1".into());
        vmi.status = Some(VirtualMachineInstanceStatus {
            phase: Some(phase.into()),
            conditions: conditions
                .iter()
                .map(|(t, s)| VirtualMachineInstanceCondition {
                    type_: (*t).into(),
                    status: (*s).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        vmi
    }

    fn input<'a>(
        vm: &'a VirtualMachine,
        vmi: Option<&'a VirtualMachineInstance>,
        now: &'a Time,
    ) -> StatusInput<'a> {
        StatusInput {
            vm,
            vmi,
            volumes: VolumeFacts::default(),
            sync_error: None,
            start_expected: false,
            start_failure: None,
            now,
        }
    }

    #[test]
    fn printable_status_follows_kubevirts_precedence() {
        let now = crate::time::now_time();
        let always = vm("Always");
        let running = vmi("Running", &[("Ready", "True")]);
        let paused = vmi("Running", &[("Ready", "True"), ("Paused", "True")]);
        let mut stopping = running.clone();
        stopping.metadata.deletion_timestamp = Some(now.clone());
        let starting = vmi("Scheduled", &[]);
        let done = vmi("Succeeded", &[]);
        fn status(vm: &VirtualMachine, vmi: Option<&VirtualMachineInstance>) -> &'static str {
            printable_status(&input(vm, vmi, &crate::time::now_time()))
        }

        assert_eq!(status(&always, Some(&running)), "Running");
        assert_eq!(status(&always, Some(&paused)), "Paused");
        assert_eq!(status(&always, Some(&stopping)), "Stopping");
        assert_eq!(status(&always, Some(&starting)), "Starting");
        assert_eq!(status(&vm("Halted"), None), "Stopped");
        assert_eq!(status(&vm("Once"), Some(&done)), "Stopped");
        let mut deleted = always.clone();
        deleted.metadata.deletion_timestamp = Some(now.clone());
        assert_eq!(status(&deleted, Some(&running)), "Terminating");
    }

    #[test]
    fn volumes_and_start_failures_show_in_the_printable_status() {
        let now = crate::time::now_time();
        let always = vm("Always");
        let pending = vmi("Pending", &[]);
        let with = |volumes, vmi| printable_status(&StatusInput { volumes, ..input(&always, vmi, &now) });
        let provisioning = VolumeFacts { provisioning: true, ..Default::default() };
        let unbound = VolumeFacts { unbound_claim: true, ..Default::default() };
        let failed = VolumeFacts { data_volume_failed: true, ..Default::default() };
        assert_eq!(with(provisioning, None), "Provisioning");
        assert_eq!(with(unbound, Some(&pending)), "WaitingForVolumeBinding");
        assert_eq!(with(failed, None), "DataVolumeError");
        assert_eq!(printable_status(&input(&vm("Halted"), None, &now)), "Stopped");
        let mut no_pvc = pending.clone();
        no_pvc.status.as_mut().unwrap().conditions.push(VirtualMachineInstanceCondition {
            type_: "Synchronized".into(),
            status: "False".into(),
            reason: Some("FailedPvcNotFound".into()),
            ..Default::default()
        });
        assert_eq!(with(VolumeFacts::default(), Some(&no_pvc)), "ErrorPvcNotFound");
        let failure = StartFailure {
            consecutive_fail_count: 2,
            last_failed_vmi_uid: "u1".into(),
            retry_after_timestamp: now.0,
        };
        let looping = StatusInput { start_failure: Some(&failure), ..input(&always, None, &now) };
        assert_eq!(printable_status(&looping), "CrashLoopBackOff");
    }

    #[test]
    fn ready_comes_from_the_vmi_and_vmi_conditions_are_copied_then_dropped() {
        let now = crate::time::now_time();
        let mut vm = vm("Always");
        let running = vmi("Running", &[("Ready", "True"), ("AgentConnected", "True")]);

        let with_agent = conditions(&input(&vm, Some(&running), &now));
        vm.status = Some(Default::default());
        vm.status.as_mut().unwrap().conditions = with_agent.clone();
        let without_vmi = conditions(&input(&vm, None, &now));

        let summary = |cs: &[VirtualMachineCondition]| {
            cs.iter().map(|c| format!("{}={}", c.type_, c.status)).collect::<Vec<_>>()
        };
        assert_eq!(summary(&with_agent), ["Ready=True", "AgentConnected=True"]);
        assert_eq!(summary(&without_vmi), ["Ready=False"]);
        assert_eq!(without_vmi[0].reason.as_deref(), Some("VMINotExists"));
        let error = SyncError { reason: "FailedCreate", message: "boom".into() };
        let failed = conditions(&StatusInput { sync_error: Some(&error), ..input(&vm, None, &now) });
        assert_eq!(summary(&failed), ["Ready=False", "Failure=True"]);
    }

    #[test]
    fn status_fields_clear_what_no_longer_holds_and_unchanged_fields_are_skipped() {
        let now = crate::time::now_time();
        let mut vm = vm("Always");
        let mut running = vmi("Running", &[("Ready", "True")]);
        running.metadata = ObjectMeta {
            annotations: Some([(VM_GENERATION_ANNOTATION.to_owned(), "2".to_owned())].into()),
            ..running.metadata
        };
        let fields = status_fields(&input(&vm, Some(&running), &now));
        assert_eq!(
            (&fields["created"], &fields["ready"], &fields["runStrategy"]),
            (&json!(true), &json!(true), &json!("Always"))
        );
        assert_eq!((&fields["observedGeneration"], &fields["desiredGeneration"]), (&json!(2), &json!(3)));

        vm.status = serde_json::from_value(Value::Object(fields.clone())).unwrap();
        assert!(changed_fields(&vm, fields).is_empty());
        let stopped = status_fields(&input(&vm, None, &now));
        let changed = changed_fields(&vm, stopped);
        assert_eq!(changed["created"], Value::Null);
        assert_eq!(changed["printableStatus"], json!("Stopped"));
    }
}
