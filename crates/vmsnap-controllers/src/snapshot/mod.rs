//! The VirtualMachineSnapshot controller (`VMSnapshotController`'s snapshot queue).

pub mod content_create;
pub mod deadline;
mod reconcile;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::{VirtualMachineSnapshot, VirtualMachineSnapshotContent};

pub use reconcile::should_delete_content;

use crate::context::Context;
use crate::error::{ReconcileError, quiet_finalizer_outcome};

fn by_source(
    store: &Store<VirtualMachineSnapshot>,
    ns: Option<String>,
    name: String,
) -> Vec<ObjectRef<VirtualMachineSnapshot>> {
    store
        .state()
        .iter()
        .filter(|s| {
            s.namespace() == ns && s.spec.source.name == name && s.spec.source.kind == "VirtualMachine"
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, ctx: Arc<Context>) {
    let controller =
        Controller::new(Api::<VirtualMachineSnapshot>::all(client.clone()), watcher::Config::default())
            .with_config(vmsnap_contracts::controller::controller_config());
    let store = controller.store();
    let (s1, s2) = (store.clone(), store);
    controller
        .watches(Api::<VirtualMachine>::all(client.clone()), watcher::Config::default(), move |vm| {
            by_source(&s1, vm.namespace(), vm.name_any())
        })
        .watches(Api::<VirtualMachineInstance>::all(client.clone()), watcher::Config::default(), move |vmi| {
            by_source(&s2, vmi.namespace(), vmi.name_any())
        })
        .watches(Api::<VirtualMachineSnapshotContent>::all(client), watcher::Config::default(), |c| {
            c.spec
                .virtual_machine_snapshot_name
                .clone()
                .map(|n| ObjectRef::new(&n).within(&c.namespace().unwrap_or_default()))
        })
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(
    snap: Arc<VirtualMachineSnapshot>,
    error: &kube::runtime::finalizer::Error<ReconcileError>,
    _ctx: Arc<Context>,
) -> Action {
    use kube::runtime::finalizer::Error as F;
    if let Some(action) = quiet_finalizer_outcome(error) {
        return action;
    }
    match error {
        F::CleanupFailed(ReconcileError::Waiting(_)) => Action::requeue(Duration::from_millis(500)),
        e => {
            tracing::warn!(snapshot = %snap.name_any(), error = %e, "VirtualMachineSnapshot reconcile failed; retrying");
            Action::requeue(Duration::from_secs(2))
        }
    }
}
