//! Freeze, unfreeze, pause and unpause of a running VMI.

use std::time::Duration;

use kube::runtime::events::EventType;
use serde_json::Value;
use vmsnap_contracts::subresources::SubresourceError as ApiError;

use super::{is_dry_run, message, refused, running_vmi};
use crate::agent::Agent;
use crate::error::error_chain;
use crate::running::FreezeFailure;
use crate::running::pause::PauseError;
use vmsnap_api::refusal::Refusal;

/// The `unfreezeTimeout` of a freeze body (required; `0s` disables the auto-thaw).
pub fn unfreeze_timeout(body: &Value) -> Result<Duration, ApiError> {
    let text = match body.get("unfreezeTimeout") {
        None | Some(Value::Null) => return Err(ApiError::bad_request(message::NO_UNFREEZE_TIMEOUT)),
        Some(Value::String(text)) => text,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "failed to unmarshal unfreeze timeout: {other} is not a duration such as \"5m0s\""
            )));
        }
    };
    vmsnap_api::duration::parse(text)
        .map_err(|error| ApiError::bad_request(format!("failed to unmarshal unfreeze timeout: {error}")))
}

/// `freeze`: freezes the guest filesystems; the VMI is marked `fsFreezeStatus: frozen` right after.
pub async fn freeze(agent: &Agent, namespace: &str, name: &str, body: Value) -> Result<(), ApiError> {
    let timeout = unfreeze_timeout(&body)?;
    let vmi = running_vmi(agent, namespace, name, message::VM_NOT_RUNNING).await?;
    match vmi.freeze(timeout).await {
        Ok(_) => Ok(()),
        Err(error) => {
            let detail = match &error {
                FreezeFailure::Agent(error) => format!("command Freeze failed: {}", error_chain(error)),
                other => error_chain(other),
            };
            vmi.event(EventType::Warning, "FreezeError", format!("Failed to freeze VMI: {detail}"));
            if let FreezeFailure::Api(_) = error {
                // The status could not say "frozen": do not leave the guest frozen behind its back.
                if let Err(thaw) = vmi.unfreeze().await {
                    tracing::warn!(vmi = %vmi.key(), error = %thaw, "could not thaw after a failed status write");
                }
                return Err(ApiError::internal(detail));
            }
            Err(ApiError::bad_request(detail))
        }
    }
}

/// `unfreeze`: thaws and clears `fsFreezeStatus`; harmless when not frozen.
pub async fn unfreeze(agent: &Agent, namespace: &str, name: &str) -> Result<(), ApiError> {
    let vmi = running_vmi(agent, namespace, name, message::VMI_NOT_RUNNING).await?;
    vmi.unfreeze().await.map_err(|error| match error {
        FreezeFailure::Agent(error) => {
            ApiError::bad_request(format!("command Unfreeze failed: {}", error_chain(&error)))
        }
        other => ApiError::internal(error_chain(&other)),
    })
}

fn dry_run(body: &Value) -> bool {
    let list: Vec<String> =
        body.get("dryRun").and_then(|d| serde_json::from_value(d.clone()).ok()).unwrap_or_default();
    is_dry_run(&list)
}

/// `pause`: stops the vCPUs (`Paused` condition with reason `PausedByUser`).
pub async fn pause(agent: &Agent, namespace: &str, name: &str, body: Value) -> Result<(), ApiError> {
    let vmi = running_vmi(agent, namespace, name, message::VM_NOT_RUNNING).await?;
    if vmi.facts().pause.is_paused() {
        return Err(refused(Refusal::AlreadyPaused, message::VMI_ALREADY_PAUSED));
    }
    if dry_run(&body) {
        return Ok(());
    }
    vmi.user_pause().await.map_err(|error| pause_error("pause", error))
}

/// `unpause`: resumes the vCPUs, whether a user or a disk error paused them.
/// (The API server refuses it while a snapshot is in progress.)
pub async fn unpause(agent: &Agent, namespace: &str, name: &str, body: Value) -> Result<(), ApiError> {
    let vmi = running_vmi(agent, namespace, name, message::VMI_NOT_RUNNING).await?;
    if !vmi.facts().pause.is_paused() {
        return Err(refused(Refusal::NotPaused, message::VMI_NOT_PAUSED));
    }
    if dry_run(&body) {
        return Ok(());
    }
    vmi.user_unpause().await.map_err(|error| pause_error("unpause", error))
}

fn pause_error(action: &str, error: PauseError) -> ApiError {
    match error {
        PauseError::AlreadyPaused => refused(Refusal::AlreadyPaused, message::VMI_ALREADY_PAUSED),
        PauseError::NotPaused => refused(Refusal::NotPaused, message::VMI_NOT_PAUSED),
        PauseError::Qemu(error) => {
            ApiError::internal(format!("Failed to {action} VMI: {}", error_chain(&error)))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_unfreeze_timeout_is_required_and_parsed_as_a_go_duration() {
        assert_eq!(unfreeze_timeout(&json!({"unfreezeTimeout": "5m0s"})).unwrap(), Duration::from_secs(300));
        assert_eq!(unfreeze_timeout(&json!({"unfreezeTimeout": "0s"})).unwrap(), Duration::ZERO);
        let missing = unfreeze_timeout(&json!({})).unwrap_err();
        assert_eq!(
            (missing.code, missing.message.as_str()),
            (400, "Unfreeze timeout in freeze request is not set")
        );
        assert_eq!(unfreeze_timeout(&json!({"unfreezeTimeout": "soon"})).unwrap_err().code, 400);
        assert_eq!(unfreeze_timeout(&json!({"unfreezeTimeout": 5})).unwrap_err().code, 400);
    }
}
