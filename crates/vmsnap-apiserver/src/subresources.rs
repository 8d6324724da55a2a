//! The KubeVirt subresources (`subresources.kubevirt.io/v1`): the API server only routes them to
//! whoever plays KubeVirt's virt-handler (the node agent in embedded mode).

use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::Value;
use vmsnap_api::kubevirt::{GuestExecRequest, GuestExecResult};

use crate::error::ApiError;

/// Handles VM and VMI subresource calls. Implemented by the node agent.
#[async_trait]
pub trait VmSubresources: Send + Sync {
    /// `PUT .../virtualmachineinstances/{name}/{action}` (freeze, unfreeze, pause, unpause, addvolume, removevolume).
    async fn vmi(&self, namespace: &str, name: &str, action: &str, body: Value) -> Result<(), ApiError>;
    /// `PUT .../virtualmachines/{name}/{action}` (start, stop, restart, addvolume, removevolume).
    async fn vm(&self, namespace: &str, name: &str, action: &str, body: Value) -> Result<(), ApiError>;

    /// `PUT .../virtualmachineinstances/{name}/guestexec` (vmsnap): a command run through the guest agent.
    async fn guest_exec(
        &self,
        namespace: &str,
        name: &str,
        request: GuestExecRequest,
    ) -> Result<GuestExecResult, ApiError> {
        let _ = (namespace, name, request);
        Err(ApiError::unavailable("this node agent cannot run commands in guests"))
    }

    /// The unix socket of a running VMI's serial console (`GET .../virtualmachineinstances/{name}/console`).
    async fn console_socket(&self, namespace: &str, name: &str) -> Result<PathBuf, ApiError> {
        let _ = (namespace, name);
        Err(ApiError::unavailable("this node agent has no serial consoles"))
    }
}
