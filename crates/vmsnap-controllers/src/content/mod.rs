//! The VirtualMachineSnapshotContent controller: freeze, VolumeSnapshots, unfreeze, readiness.

mod aggregate;
mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use vmsnap_api::kubevirt::VirtualMachineInstance;
use vmsnap_api::snapshot::{VirtualMachineSnapshot, VirtualMachineSnapshotContent};
use vmsnap_api::volumesnapshot::VolumeSnapshot;

use crate::context::Context;
use crate::error::{ReconcileError, STALE_RETRY};

fn contents_of_vm(
    store: &Store<VirtualMachineSnapshotContent>,
    ns: Option<String>,
    vm: String,
) -> Vec<ObjectRef<VirtualMachineSnapshotContent>> {
    store
        .state()
        .iter()
        .filter(|c| {
            c.namespace() == ns
                && c.spec.source.virtual_machine.as_ref().and_then(|v| v.metadata.name.as_deref())
                    == Some(vm.as_str())
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, ctx: Arc<Context>) {
    let controller = Controller::new(
        Api::<VirtualMachineSnapshotContent>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(vmsnap_contracts::controller::controller_config());
    let store = controller.store();
    controller
        .owns(Api::<VolumeSnapshot>::all(client.clone()), watcher::Config::default())
        .watches(Api::<VirtualMachineSnapshot>::all(client.clone()), watcher::Config::default(), |s| {
            Some(
                ObjectRef::new(&crate::snapshot::content_create::name_for(&s))
                    .within(&s.namespace().unwrap_or_default()),
            )
        })
        .watches(Api::<VirtualMachineInstance>::all(client), watcher::Config::default(), move |vmi| {
            contents_of_vm(&store, vmi.namespace(), vmi.name_any())
        })
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(
    content: Arc<VirtualMachineSnapshotContent>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    if error.is_stale() {
        return Action::requeue(STALE_RETRY);
    }
    tracing::warn!(content = %content.name_any(), error = %error, "VirtualMachineSnapshotContent reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
