//! The KubeVirt subresources (`subresources.kubevirt.io/v1`): the API server only routes them to
//! whoever plays KubeVirt's virt-handler (the node agent in embedded mode).

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ApiError;

/// Handles VM and VMI subresource calls. Implemented by the node agent.
#[async_trait]
pub trait VmSubresources: Send + Sync {
    /// `PUT .../virtualmachineinstances/{name}/{action}` (freeze, unfreeze, pause, unpause, addvolume, removevolume).
    async fn vmi(&self, namespace: &str, name: &str, action: &str, body: Value) -> Result<(), ApiError>;
    /// `PUT .../virtualmachines/{name}/{action}` (start, stop, restart, addvolume, removevolume).
    async fn vm(&self, namespace: &str, name: &str, action: &str, body: Value) -> Result<(), ApiError>;
}
