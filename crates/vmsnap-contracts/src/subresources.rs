//! The KubeVirt subresources (`subresources.kubevirt.io/v1`). The API server only routes them; the
//! node agent (KubeVirt's virt-handler) implements [`VmSubresources`]. Actions are types, and an
//! error carries its `Status` code and reason, so neither side reads the other's strings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use async_trait::async_trait;
use serde_json::Value;
use vmsnap_api::kubevirt::{GuestExecRequest, GuestExecResult};
use vmsnap_api::refusal::RefusalCause;

/// An action on a VirtualMachineInstance: `PUT .../virtualmachineinstances/{name}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmiAction {
    /// Freeze the guest's file systems (body: `unfreezeTimeout`).
    Freeze,
    /// Thaw them.
    Unfreeze,
    /// Pause the vCPUs.
    Pause,
    /// Resume them.
    Unpause,
    /// Hotplug a volume into the running instance only.
    AddVolume,
    /// Unplug a volume hotplugged into the instance.
    RemoveVolume,
}

/// An action on a VirtualMachine: `PUT .../virtualmachines/{name}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    /// Start the VM.
    Start,
    /// Stop it.
    Stop,
    /// Restart it.
    Restart,
    /// Hotplug a volume, kept in the VM's spec.
    AddVolume,
    /// Unplug a volume and drop it from the spec.
    RemoveVolume,
}

impl VmiAction {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            VmiAction::Freeze => "freeze",
            VmiAction::Unfreeze => "unfreeze",
            VmiAction::Pause => "pause",
            VmiAction::Unpause => "unpause",
            VmiAction::AddVolume => "addvolume",
            VmiAction::RemoveVolume => "removevolume",
        }
    }
}

impl VmAction {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            VmAction::Start => "start",
            VmAction::Stop => "stop",
            VmAction::Restart => "restart",
            VmAction::AddVolume => "addvolume",
            VmAction::RemoveVolume => "removevolume",
        }
    }
}

/// A path segment that names no action of that kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown subresource {0:?}")]
pub struct UnknownAction(pub String);

impl FromStr for VmiAction {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        [
            VmiAction::Freeze,
            VmiAction::Unfreeze,
            VmiAction::Pause,
            VmiAction::Unpause,
            VmiAction::AddVolume,
            VmiAction::RemoveVolume,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

impl FromStr for VmAction {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        [VmAction::Start, VmAction::Stop, VmAction::Restart, VmAction::AddVolume, VmAction::RemoveVolume]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

impl fmt::Display for VmiAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for VmAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a subresource call failed, as the `Status` the API server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SubresourceError {
    /// The HTTP status code.
    pub code: u16,
    /// The `Status` reason (`BadRequest`, `Conflict`, ...).
    pub reason: &'static str,
    /// What went wrong, for the user.
    pub message: String,
    /// The `Status` details, when the cause has some (a NotFound names the object).
    pub details: Option<Value>,
}

impl SubresourceError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        SubresourceError { code, reason, message: message.into(), details: None }
    }

    /// 400: the request or the guest refused (virt-handler's answer to a failed freeze).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 for a named object: `<plural>.<group> "<name>" not found`.
    pub fn not_found(qualified_plural: &str, name: &str) -> Self {
        let mut error = Self::new(404, "NotFound", format!("{qualified_plural} \"{name}\" not found"));
        let group = qualified_plural.split_once('.').map_or("", |(_, group)| group);
        let plural = qualified_plural.split_once('.').map_or(qualified_plural, |(plural, _)| plural);
        error.details = Some(serde_json::json!({"name": name, "group": group, "kind": plural}));
        error
    }

    /// 409: the object is not in a state for the action (virt-api's Conflict).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message)
    }

    /// 409 for a refusal a client acts on: virt-api's `message`, and vmsnap's cause saying what
    /// the refusal is ([`RefusalCause`]), so that clients never read the message.
    pub fn refused(message: impl Into<String>, cause: &RefusalCause) -> Self {
        let mut error = Self::conflict(message);
        error.details = Some(serde_json::json!({ "causes": [cause.to_json()] }));
        error
    }

    /// 422 with the causes (`[{reason, message, field}]`): the request is refused as invalid, as
    /// virt-api refuses a hotplug it cannot do.
    pub fn invalid(message: impl Into<String>, causes: Value) -> Self {
        let mut error = Self::new(422, "Invalid", message);
        error.details = Some(serde_json::json!({ "causes": causes }));
        error
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 503: nothing can serve the call.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504: the guest did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// An API error met while serving the call, passed on with its code and reason.
    pub fn from_status(status: &kube::core::Status) -> Self {
        let reason = STATUS_REASONS.iter().copied().find(|r| *r == status.reason).unwrap_or("InternalError");
        SubresourceError {
            code: if status.code == 0 { 500 } else { status.code },
            reason,
            message: status.message.clone(),
            details: status.details.as_ref().and_then(|d| serde_json::to_value(d).ok()),
        }
    }
}

/// The `Status` reasons a passed-on API error keeps (others become `InternalError`).
const STATUS_REASONS: &[&str] = &[
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Invalid",
    "BadRequest",
    "Forbidden",
    "Unauthorized",
    "MethodNotAllowed",
    "Expired",
    "Gone",
    "Timeout",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "TooManyRequests",
];

/// Handles VM and VMI subresource calls. Implemented by the node agent.
#[async_trait]
pub trait VmSubresources: Send + Sync {
    /// A VMI action.
    async fn vmi(
        &self,
        namespace: &str,
        name: &str,
        action: VmiAction,
        body: Value,
    ) -> Result<(), SubresourceError>;
    /// A VM action.
    async fn vm(
        &self,
        namespace: &str,
        name: &str,
        action: VmAction,
        body: Value,
    ) -> Result<(), SubresourceError>;

    /// `PUT .../virtualmachineinstances/{name}/guestexec` (vmsnap): a command run through the guest agent.
    async fn guest_exec(
        &self,
        namespace: &str,
        name: &str,
        request: GuestExecRequest,
    ) -> Result<GuestExecResult, SubresourceError> {
        let _ = (namespace, name, request);
        Err(SubresourceError::unavailable("this node agent cannot run commands in guests"))
    }

    /// The unix socket of a running VMI's serial console (`GET .../virtualmachineinstances/{name}/console`).
    async fn console_socket(&self, namespace: &str, name: &str) -> Result<PathBuf, SubresourceError> {
        let _ = (namespace, name);
        Err(SubresourceError::unavailable("this node agent has no serial consoles"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_path_segments() {
        for action in ["freeze", "unfreeze", "pause", "unpause", "addvolume", "removevolume"] {
            assert_eq!(action.parse::<VmiAction>().unwrap().as_str(), action);
        }
        for action in ["start", "stop", "restart", "addvolume", "removevolume"] {
            assert_eq!(action.parse::<VmAction>().unwrap().as_str(), action);
        }
        assert_eq!("migrate".parse::<VmAction>(), Err(UnknownAction("migrate".into())));
        assert!("start".parse::<VmiAction>().is_err());
    }

    #[test]
    fn a_not_found_names_the_object_as_the_api_server_does() {
        let error = SubresourceError::not_found("virtualmachines.kubevirt.io", "demo");
        assert_eq!((error.code, error.reason), (404, "NotFound"));
        assert_eq!(error.message, "virtualmachines.kubevirt.io \"demo\" not found");
    }

    #[test]
    fn a_refusal_keeps_the_message_and_carries_its_cause() {
        use vmsnap_api::refusal::Refusal;
        let error = SubresourceError::refused("VMI is not paused", &RefusalCause::new(Refusal::NotPaused));
        assert_eq!(
            (error.code, error.reason, error.message.as_str()),
            (409, "Conflict", "VMI is not paused")
        );
        assert_eq!(error.details, Some(serde_json::json!({"causes": [{"reason": "vmsnap.io/NotPaused"}]})));
    }
}
