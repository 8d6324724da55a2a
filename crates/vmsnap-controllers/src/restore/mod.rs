//! The VirtualMachineRestore controller (`VMRestoreController`).

mod names;
mod patches;
mod pvc;
mod reconcile;
mod status;
mod vmspec;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::k8s_openapi::api::core::v1::PersistentVolumeClaim;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::{VirtualMachineRestore, VirtualMachineSnapshot, annotation};

pub use names::restore_volume_name;

use crate::context::Context;
use crate::error::{ReconcileError, quiet_finalizer_outcome};

/// The restores in `obj`'s namespace that `refer` to it by name.
fn restores_of<K: ResourceExt>(
    store: &Store<VirtualMachineRestore>,
    obj: &K,
    refers: impl Fn(&VirtualMachineRestore, &str) -> bool,
) -> Vec<ObjectRef<VirtualMachineRestore>> {
    let (ns, name) = (obj.namespace(), obj.name_any());
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == ns && refers(r, &name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Whether the restore's target is the VirtualMachine `name` (its VMI has the same name).
fn targets(restore: &VirtualMachineRestore, name: &str) -> bool {
    restore.spec.target.name == name && restore.spec.target.kind == "VirtualMachine"
}

/// Whether the restore restores from the snapshot `name`.
fn restores_from(restore: &VirtualMachineRestore, name: &str) -> bool {
    restore.spec.virtual_machine_snapshot_name == name
}

fn by_annotation<K: ResourceExt>(obj: &K) -> Option<ObjectRef<VirtualMachineRestore>> {
    let name = obj.annotations().get(annotation::RESTORE_NAME)?;
    Some(ObjectRef::new(name).within(&obj.namespace().unwrap_or_default()))
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, ctx: Arc<Context>) {
    let controller =
        Controller::new(Api::<VirtualMachineRestore>::all(client.clone()), watcher::Config::default())
            .with_config(vmsnap_contracts::controller::controller_config());
    let store = controller.store();
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    controller
        .watches(Api::<VirtualMachine>::all(client.clone()), watcher::Config::default(), move |vm| {
            restores_of(&s1, &vm, targets)
        })
        .watches(Api::<VirtualMachineInstance>::all(client.clone()), watcher::Config::default(), move |vmi| {
            restores_of(&s2, &vmi, targets)
        })
        .watches(Api::<VirtualMachineSnapshot>::all(client.clone()), watcher::Config::default(), move |s| {
            restores_of(&s3, &s, restores_from)
        })
        .watches(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default(), |p| {
            by_annotation(&p)
        })
        .watches(Api::<DataVolume>::all(client), watcher::Config::default(), |d| by_annotation(&d))
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(
    restore: Arc<VirtualMachineRestore>,
    error: &kube::runtime::finalizer::Error<ReconcileError>,
    _ctx: Arc<Context>,
) -> Action {
    if let Some(action) = quiet_finalizer_outcome(error) {
        return action;
    }
    tracing::info!(restore = %restore.name_any(), error = %error, "VirtualMachineRestore waits; retrying");
    Action::requeue(Duration::from_secs(2))
}
