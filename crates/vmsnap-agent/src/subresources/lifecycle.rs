//! `start`, `stop` and `restart` of a VirtualMachine, as virt-api does them:
//! they change `spec.runStrategy` (Halted, Always, Once) or queue a state
//! change request in the VM status (Manual, RerunOnFailure, restarts), with
//! JSON patch `test` operations so that concurrent requests cannot be lost.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use vmsnap_api::kubevirt::{
    RestartOptions, StartOptions, StopOptions, VirtualMachine, VirtualMachineInstance,
    VirtualMachineStateChangeRequest, VirtualMachineStatus, VmiPhase, run_strategy,
};
use vmsnap_contracts::subresources::SubresourceError as ApiError;

use super::{get_vm, get_vmi, is_dry_run, message, refused, tested_patch_error};
use crate::agent::Agent;
use crate::kubevirt::{FIELD_MANAGER, START_PAUSED_KEY, START_PAUSED_TRUE, START_STRATEGY_PAUSED, request};
use vmsnap_api::refusal::Refusal;

fn params(dry_run: bool) -> PatchParams {
    PatchParams { dry_run, field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() }
}

fn is_final(vmi: &VirtualMachineInstance) -> bool {
    matches!(phase(vmi), Some(VmiPhase::Succeeded | VmiPhase::Failed))
}

fn phase(vmi: &VirtualMachineInstance) -> Option<&VmiPhase> {
    vmi.status.as_ref().and_then(|s| s.phase.as_ref())
}

fn stop_request(vmi: &VirtualMachineInstance) -> VirtualMachineStateChangeRequest {
    VirtualMachineStateChangeRequest {
        action: request::STOP.into(),
        uid: vmi.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The JSON patch that queues `changes` on the VM status (virt-api's `getChangeRequestJson`).
pub fn change_request_patch(
    vm: &VirtualMachine,
    changes: Vec<VirtualMachineStateChangeRequest>,
) -> Result<Value, ApiError> {
    let status = vm.status.clone().unwrap_or_default();
    let mut ops = Vec::new();
    if status == VirtualMachineStatus::default() {
        ops.push(json!({"op": "add", "path": "/status", "value": {"stateChangeRequests": changes}}));
        return Ok(Value::Array(ops));
    }
    let current = &status.state_change_requests;
    let tested = if current.is_empty() { Value::Null } else { json!(current) };
    ops.push(json!({"op": "test", "path": "/status/stateChangeRequests", "value": tested}));
    if current.is_empty() {
        ops.push(json!({"op": "add", "path": "/status/stateChangeRequests", "value": changes}));
    } else if changes.len() == 1 && changes[0].action == request::STOP {
        // A stop replaces whatever was queued.
        ops.push(json!({"op": "replace", "path": "/status/stateChangeRequests", "value": changes}));
    } else {
        return Err(ApiError::internal(
            "Internal error occurred: unable to complete request: stop/start already underway",
        ));
    }
    if status.start_failure.is_some() {
        ops.push(json!({"op": "remove", "path": "/status/startFailure"}));
    }
    Ok(Value::Array(ops))
}

/// The JSON patch that sets `runStrategy` (or the deprecated `running`) (virt-api's `getRunningPatch`).
pub fn running_patch(vm: &VirtualMachine, running: bool) -> Value {
    match &vm.spec.run_strategy {
        Some(current) => {
            let wanted = if running { run_strategy::ALWAYS } else { run_strategy::HALTED };
            json!([{"op": "test", "path": "/spec/runStrategy", "value": current},
                   {"op": "replace", "path": "/spec/runStrategy", "value": wanted}])
        }
        None => json!([{"op": "test", "path": "/spec/running", "value": vm.spec.running},
                       {"op": "add", "path": "/spec/running", "value": running}]),
    }
}

async fn patch_vm(
    agent: &Agent,
    vm: &VirtualMachine,
    patch: Value,
    status: bool,
    dry_run: bool,
) -> Result<(), ApiError> {
    let api: Api<VirtualMachine> =
        Api::namespaced(agent.client.clone(), vm.metadata.namespace.as_deref().unwrap_or_default());
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|error| ApiError::internal(error.to_string()))?;
    let name = vm.metadata.name.as_deref().unwrap_or_default();
    let patch = Patch::Json::<()>(patch);
    let result = if status {
        api.patch_status(name, &params(dry_run), &patch).await
    } else {
        api.patch(name, &params(dry_run), &patch).await
    };
    result.map(drop).map_err(tested_patch_error)
}

/// `start`.
pub async fn start(
    agent: &Agent,
    namespace: &str,
    name: &str,
    options: StartOptions,
) -> Result<(), ApiError> {
    let vm = get_vm(agent, namespace, name).await?;
    let vmi = get_vmi(agent, namespace, name).await?;
    if let Some(vmi) = &vmi
        && !is_final(vmi)
        && !matches!(phase(vmi), None | Some(VmiPhase::Unset | VmiPhase::Unknown))
    {
        return Err(refused(Refusal::AlreadyRunning, message::VM_ALREADY_RUNNING));
    }
    let paused = options.paused == Some(true);
    let mut start = VirtualMachineStateChangeRequest { action: request::START.into(), ..Default::default() };
    if paused {
        start.data.insert(START_PAUSED_KEY.into(), START_PAUSED_TRUE.into());
    }
    let dry_run = is_dry_run(&options.dry_run);
    match vm.spec.effective_run_strategy() {
        run_strategy::HALTED => {
            let starts_paused =
                vm.spec.template.spec.start_strategy.as_deref() == Some(START_STRATEGY_PAUSED);
            if paused && !starts_paused {
                // The VM controller switches the strategy when it sees the request.
                patch_vm(agent, &vm, change_request_patch(&vm, vec![start])?, true, dry_run).await
            } else {
                patch_vm(agent, &vm, running_patch(&vm, true), false, dry_run).await
            }
        }
        strategy @ (run_strategy::RERUN_ON_FAILURE | run_strategy::MANUAL) => {
            let rerun = strategy == run_strategy::RERUN_ON_FAILURE;
            if rerun && vmi.as_ref().is_some_and(|v| phase(v) == Some(&VmiPhase::Failed)) {
                return Err(ApiError::conflict(format!(
                    "{strategy} does not support starting VM from failed state"
                )));
            }
            let needs_restart = vmi
                .as_ref()
                .is_some_and(|v| if rerun { phase(v) == Some(&VmiPhase::Succeeded) } else { is_final(v) });
            let changes = match &vmi {
                Some(vmi) if needs_restart => vec![stop_request(vmi), start],
                _ => vec![start],
            };
            patch_vm(agent, &vm, change_request_patch(&vm, changes)?, true, dry_run).await
        }
        strategy => Err(ApiError::conflict(format!("{strategy} does not support manual start requests"))),
    }
}

/// Sets the VMI's `terminationGracePeriodSeconds` (a stop with a grace period).
async fn set_grace_period(
    agent: &Agent,
    vmi: &VirtualMachineInstance,
    seconds: i64,
    dry_run: bool,
) -> Result<(), ApiError> {
    let api: Api<VirtualMachineInstance> =
        Api::namespaced(agent.client.clone(), vmi.metadata.namespace.as_deref().unwrap_or_default());
    let patch = json!([
        {"op": "test", "path": "/spec/terminationGracePeriodSeconds", "value": vmi.spec.termination_grace_period_seconds},
        {"op": "add", "path": "/spec/terminationGracePeriodSeconds", "value": seconds},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|error| ApiError::internal(error.to_string()))?;
    let name = vmi.metadata.name.as_deref().unwrap_or_default();
    api.patch(name, &params(dry_run), &Patch::Json::<()>(patch)).await.map(drop).map_err(tested_patch_error)
}

/// `stop`.
pub async fn stop(agent: &Agent, namespace: &str, name: &str, options: StopOptions) -> Result<(), ApiError> {
    let vm = get_vm(agent, namespace, name).await?;
    let vmi = get_vmi(agent, namespace, name).await?;
    let dry_run = is_dry_run(&options.dry_run);
    let running = vmi.as_ref().filter(|v| !is_final(v));
    let old_grace = running.and_then(|v| v.spec.termination_grace_period_seconds);
    if let (Some(vmi), Some(grace)) = (running, options.grace_period) {
        set_grace_period(agent, vmi, grace, dry_run).await?;
    }
    match vm.spec.effective_run_strategy() {
        run_strategy::HALTED => {
            let Some(vmi) = running else {
                return Err(refused(Refusal::NotRunning, message::VM_NOT_RUNNING));
            };
            let shorter = match (options.grace_period, old_grace) {
                (None, _) => false,
                (Some(grace), Some(old)) => grace < old,
                (Some(_), None) => true,
            };
            if !shorter {
                return Err(ApiError::conflict(
                    "Halted only supports manual stop requests with a shorter graceperiod",
                ));
            }
            patch_vm(agent, &vm, change_request_patch(&vm, vec![stop_request(vmi)])?, true, dry_run).await
        }
        run_strategy::RERUN_ON_FAILURE | run_strategy::MANUAL => {
            let Some(vmi) = running else {
                return Err(refused(Refusal::NotRunning, message::VM_NOT_RUNNING));
            };
            patch_vm(agent, &vm, change_request_patch(&vm, vec![stop_request(vmi)])?, true, dry_run).await
        }
        _ => patch_vm(agent, &vm, running_patch(&vm, false), false, dry_run).await,
    }
}

/// `restart`: stop the VMI and start a new one.
pub async fn restart(
    agent: &Agent,
    namespace: &str,
    name: &str,
    options: RestartOptions,
) -> Result<(), ApiError> {
    match options.grace_period_seconds {
        Some(grace) if grace > 0 => {
            return Err(ApiError::bad_request("For force restart, only gracePeriod=0 is supported for now"));
        }
        Some(grace) if grace < 0 => {
            return Err(ApiError::bad_request("gracePeriod has to be greater or equal to 0"));
        }
        _ => {}
    }
    let vm = get_vm(agent, namespace, name).await?;
    let strategy = vm.spec.effective_run_strategy();
    if strategy == run_strategy::HALTED || strategy == run_strategy::ONCE {
        // virt-api's message, typo included.
        return Err(ApiError::conflict(format!(
            "RunStategy {strategy} does not support manual restart requests"
        )));
    }
    let Some(vmi) = get_vmi(agent, namespace, name).await? else {
        return Err(refused(Refusal::NotRunning, message::VM_NOT_RUNNING));
    };
    let dry_run = is_dry_run(&options.dry_run);
    let start = VirtualMachineStateChangeRequest { action: request::START.into(), ..Default::default() };
    patch_vm(agent, &vm, change_request_patch(&vm, vec![stop_request(&vmi), start])?, true, dry_run).await?;
    if options.grace_period_seconds == Some(0) && !is_final(&vmi) {
        set_grace_period(agent, &vmi, 0, dry_run).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use vmsnap_api::kubevirt::VirtualMachineSpec;

    use super::*;

    fn req(action: &str) -> VirtualMachineStateChangeRequest {
        VirtualMachineStateChangeRequest { action: action.into(), ..Default::default() }
    }

    #[test]
    fn a_change_request_adds_the_status_tests_the_queue_or_refuses_to_pile_up() {
        let mut vm = VirtualMachine::new("vm", VirtualMachineSpec::default());
        let first = change_request_patch(&vm, vec![req("Start")]).unwrap();
        assert_eq!(
            first,
            json!([{"op": "add", "path": "/status", "value": {"stateChangeRequests": [{"action": "Start"}]}}])
        );

        vm.status =
            Some(VirtualMachineStatus { printable_status: Some("Stopped".into()), ..Default::default() });
        let queued = change_request_patch(&vm, vec![req("Start")]).unwrap();
        assert_eq!(queued[0], json!({"op": "test", "path": "/status/stateChangeRequests", "value": null}));
        assert_eq!(queued[1]["op"], "add");

        vm.status.as_mut().unwrap().state_change_requests = vec![req("Start")];
        let stop = change_request_patch(&vm, vec![req("Stop")]).unwrap();
        assert_eq!(stop[1]["op"], "replace");
        let error = change_request_patch(&vm, vec![req("Start")]).unwrap_err();
        assert!(error.message.contains("stop/start already underway"), "{error}");
    }

    #[test]
    fn the_running_patch_tests_and_sets_the_run_strategy_or_running() {
        let mut vm = VirtualMachine::new("vm", VirtualMachineSpec::default());
        vm.spec.run_strategy = Some("Always".into());
        assert_eq!(
            running_patch(&vm, false)[1],
            json!({"op": "replace", "path": "/spec/runStrategy", "value": "Halted"})
        );
        vm.spec.run_strategy = None;
        vm.spec.running = Some(false);
        assert_eq!(
            running_patch(&vm, true)[0],
            json!({"op": "test", "path": "/spec/running", "value": false})
        );
        assert_eq!(running_patch(&vm, true)[1]["value"], json!(true));
    }
}
