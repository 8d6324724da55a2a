//! The VirtualMachineSnapshot, VirtualMachineSnapshotContent and VirtualMachineRestore controllers,
//! following KubeVirt's contract (`shared/docs/kubevirt-snapshot-contract.md`) on kube-runtime.
//!
//! They use only the Kubernetes API: they read VMs, VMIs, PVCs, DataVolumes, StorageClasses and the
//! CSI snapshot kinds, call the VMI `freeze`/`unfreeze` subresources, and write events. The same code
//! runs in `vmsnap serve` and, as `vmsnap controller`, against a real cluster.

mod backend;
mod content;
mod context;
mod error;
mod expectations;
pub mod kube_util;
pub mod leader;
pub mod metrics;
pub mod naming;
pub mod restore;
mod retry_clock;
pub mod schedule;
pub mod snapshot;
mod source;
mod vm_status;
mod vsclass;

use std::sync::Arc;

use kube::Client;
use tokio::task::JoinHandle;

pub use context::{Context, ControllerConfig};
pub use error::ReconcileError;
pub use metrics::Metrics;

/// The running controllers; dropping the handle stops them.
pub struct Controllers {
    tasks: Vec<JoinHandle<()>>,
    /// Their metrics (for `/metrics`).
    pub metrics: Arc<Metrics>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts every controller against `client`.
pub fn start(client: Client, config: ControllerConfig) -> Controllers {
    let metrics = Arc::new(Metrics::default());
    let ctx = Context::new(client.clone(), &config, metrics.clone());
    let tasks = vec![
        tokio::spawn(schedule::run(client.clone(), config.instance.clone())),
        tokio::spawn(snapshot::run(client.clone(), ctx.clone())),
        tokio::spawn(content::run(client.clone(), ctx.clone())),
        tokio::spawn(vm_status::run(client.clone(), ctx.clone())),
        tokio::spawn(restore::run(client, ctx)),
    ];
    Controllers { tasks, metrics }
}
