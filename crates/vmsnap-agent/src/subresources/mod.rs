//! The `subresources.kubevirt.io/v1` actions ([`VmSubresources`]), with
//! virt-api's checks and messages and virt-handler's behaviour.
//!
//! VMI actions that touch the guest (freeze, unfreeze, pause, unpause,
//! hotplug) go to the running QEMU directly; VM actions (start, stop,
//! restart) only record the request on the VM through the API, as virt-api
//! does, and the VM controller acts on it. VM spec changes go through the API
//! server, so its admission rules (the snapshot and restore locks) apply and
//! their errors reach the caller unchanged.

mod exec;
mod guest;
mod lifecycle;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use kube::api::Api;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vmsnap_api::kubevirt::{
    GuestExecRequest, GuestExecResult, VirtualMachine, VirtualMachineInstance, VmiPhase,
};
use vmsnap_api::refusal::{Refusal, RefusalCause};
use vmsnap_api::registry::registry;
use vmsnap_contracts::subresources::{SubresourceError as ApiError, VmAction, VmSubresources, VmiAction};

use crate::agent::Agent;
use crate::error::error_chain;
use crate::hotplug::requests as hotplug;
use crate::running::RunningVmi;

/// KubeVirt's messages.
pub mod message {
    /// 409 when the VM (or VMI) does not run.
    pub const VM_NOT_RUNNING: &str = "VM is not running";
    /// 409 for unfreeze and unpause of a VMI that does not run.
    pub const VMI_NOT_RUNNING: &str = "VMI is not running";
    /// 409 for unpause of a VMI that is not paused.
    pub const VMI_NOT_PAUSED: &str = "VMI is not paused";
    /// 409 for pause of a paused VMI.
    pub const VMI_ALREADY_PAUSED: &str = "VMI is already paused";
    /// 409 for start of a running VM.
    pub const VM_ALREADY_RUNNING: &str = "VM is already running";
    /// 400 for freeze without a timeout.
    pub const NO_UNFREEZE_TIMEOUT: &str = "Unfreeze timeout in freeze request is not set";
}

#[async_trait]
impl VmSubresources for Agent {
    async fn vmi(&self, namespace: &str, name: &str, action: VmiAction, body: Value) -> Result<(), ApiError> {
        match action {
            VmiAction::Freeze => guest::freeze(self, namespace, name, body).await,
            VmiAction::Unfreeze => guest::unfreeze(self, namespace, name).await,
            VmiAction::Pause => guest::pause(self, namespace, name, body).await,
            VmiAction::Unpause => guest::unpause(self, namespace, name, body).await,
            VmiAction::AddVolume => hotplug::add_to_vmi(self, namespace, name, parse(body)?).await,
            VmiAction::RemoveVolume => hotplug::remove_from_vmi(self, namespace, name, parse(body)?).await,
        }
    }

    async fn vm(&self, namespace: &str, name: &str, action: VmAction, body: Value) -> Result<(), ApiError> {
        match action {
            VmAction::Start => lifecycle::start(self, namespace, name, parse(body)?).await,
            VmAction::Stop => lifecycle::stop(self, namespace, name, parse(body)?).await,
            VmAction::Restart => lifecycle::restart(self, namespace, name, parse(body)?).await,
            VmAction::AddVolume => hotplug::add_to_vm(self, namespace, name, parse(body)?).await,
            VmAction::RemoveVolume => hotplug::remove_from_vm(self, namespace, name, parse(body)?).await,
        }
    }

    async fn guest_exec(
        &self,
        namespace: &str,
        name: &str,
        request: GuestExecRequest,
    ) -> Result<GuestExecResult, ApiError> {
        exec::guest_exec(self, namespace, name, request).await
    }

    async fn console_socket(&self, namespace: &str, name: &str) -> Result<PathBuf, ApiError> {
        exec::console_socket(self, namespace, name).await
    }
}

/// Decodes a request body (an absent body is `{}`).
fn parse<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    let body = if body.is_null() { Value::Object(Default::default()) } else { body };
    serde_json::from_value(body).map_err(|error| {
        ApiError::bad_request(format!("Can not unmarshal Request body to struct, error: {error}"))
    })
}

/// A kube client error as the subresource's error, keeping code, reason and message.
pub fn api_error(error: kube::Error) -> ApiError {
    match error {
        kube::Error::Api(status) => ApiError::from_status(&status),
        other => ApiError::internal(error_chain(&other)),
    }
}

/// The error of a JSON patch with `test` operations that this agent made: the API server refuses a
/// failed `test` as 422 Invalid, which for such a patch (well formed, on fields that exist) can
/// only mean that someone changed the object meanwhile, virt-api's Conflict. An admission
/// rule's refusal is a 422 too: its causes (a snapshot or restore lock) are passed on.
pub fn tested_patch_error(error: kube::Error) -> ApiError {
    match error {
        kube::Error::Api(status) if status.code == 422 => {
            let details = status.details.as_ref().and_then(|d| serde_json::to_value(d).ok());
            ApiError { details, ..ApiError::conflict(status.message.clone()) }
        }
        other => api_error(other),
    }
}

fn not_found(kind: &str, name: &str) -> ApiError {
    match registry().by_kind("kubevirt.io/v1", kind) {
        Some(rt) => ApiError::not_found(&rt.qualified_plural(), name),
        None => ApiError::bad_request(format!("{kind} {name} not found")),
    }
}

/// 409 with virt-api's `message` and the [`Refusal`] clients read instead of it.
pub(crate) fn refused(refusal: Refusal, message: &str) -> ApiError {
    ApiError::refused(message, &RefusalCause::new(refusal))
}

/// The VM, or 404.
pub(crate) async fn get_vm(agent: &Agent, namespace: &str, name: &str) -> Result<VirtualMachine, ApiError> {
    let api: Api<VirtualMachine> = Api::namespaced(agent.client.clone(), namespace);
    api.get_opt(name).await.map_err(api_error)?.ok_or_else(|| not_found("VirtualMachine", name))
}

/// The VMI, if it exists.
pub(crate) async fn get_vmi(
    agent: &Agent,
    namespace: &str,
    name: &str,
) -> Result<Option<VirtualMachineInstance>, ApiError> {
    let api: Api<VirtualMachineInstance> = Api::namespaced(agent.client.clone(), namespace);
    api.get_opt(name).await.map_err(api_error)
}

/// The running VMI `namespace/name`: 404 if there is no such VMI, 409
/// `not_running` ([`Refusal::NotRunning`]) if it exists but does not run on this agent.
pub(crate) async fn running_vmi(
    agent: &Agent,
    namespace: &str,
    name: &str,
    not_running: &str,
) -> Result<Arc<RunningVmi>, ApiError> {
    if let Some(running) = agent.running(namespace, name)
        && running.facts().phase == VmiPhase::Running
    {
        return Ok(running);
    }
    match get_vmi(agent, namespace, name).await? {
        None => Err(not_found("VirtualMachineInstance", name)),
        Some(_) => Err(refused(Refusal::NotRunning, not_running)),
    }
}

/// Whether a body's `dryRun` asks only for validation.
pub(crate) fn is_dry_run(dry_run: &[String]) -> bool {
    dry_run.iter().any(|d| d == "All")
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_admission_refusal_of_a_tested_patch_is_a_conflict_that_keeps_its_causes() {
        let causes = json!({"causes": [
            {"reason": "FieldValueNotSupported", "field": "spec", "message": "Cannot update vm running state until snapshot \"s1\" completes"},
            {"reason": "vmsnap.io/SnapshotLock", "field": "status.snapshotInProgress", "message": "s1"},
        ]});
        let status = Status {
            code: 422,
            reason: "Invalid".into(),
            message: "admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: Cannot update vm running state until snapshot \"s1\" completes".into(),
            details: Some(serde_json::from_value(causes.clone()).unwrap()),
            ..Default::default()
        };
        let error = tested_patch_error(kube::Error::Api(status.clone().into()));
        assert_eq!(
            (error.code, error.reason, error.message.as_str()),
            (409, "Conflict", status.message.as_str())
        );
        assert_eq!(error.details, Some(causes));
        let refusal = RefusalCause::find(&status.details.unwrap().causes);
        assert_eq!(refusal, Some(RefusalCause::blocked_by(Refusal::SnapshotLock, "s1")));
    }
}
