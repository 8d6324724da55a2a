//! The restore controller: a `VirtualMachineRepositoryRestore` writes its backup's disks to staging
//! files (in a task of its own), then makes the target VM import them through DataVolumes.
//!
//! - A target VM that does not exist is created from the backup's recorded VM spec, stopped (as
//!   KubeVirt creates a restore's new target), with a new identity and a DataVolume
//!   `<target>-<volume>` per disk (`vmspec.rs`).
//! - A target that is the backed-up VM itself is restored in place, once stopped: its spec becomes
//!   the recorded one with DataVolumes `restore-<first 8 of the restore's UID>-<volume>`, keeping its
//!   run strategy, and its old DataVolumes go once the new ones are imported (as KubeVirt's
//!   `VirtualMachineRestore` of a snapshot in place).
//! - Any other existing VM is refused.
//!
//! The restore completes when the DataVolumes have imported; the staging files are removed then,
//! when it fails, and when it is deleted (finalizer `backup.vmsnap.io/restore-protection`).

mod download;
mod reconcile;
mod staging;
mod status;
mod vmspec;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use vmsnap_api::backup::{VirtualMachineRepositoryBackup, VirtualMachineRepositoryRestore};
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::kubevirt::VirtualMachine;

use crate::error::retry_after;
use crate::{Context, ReconcileError};

/// On a VM a restore created or restored in place: the restore's UID (as KubeVirt's
/// `restore.kubevirt.io/lastRestoreUID`), so that the next reconcile knows the VM is its own.
pub const RESTORE_UID_ANNOTATION: &str = "backup.vmsnap.io/restore-uid";

/// What the restore controller's reconciles share.
pub(crate) struct RestoreContext {
    ctx: Arc<Context>,
    downloads: download::Downloads,
}

/// Runs the restore controller until the task is aborted.
pub(crate) async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<VirtualMachineRepositoryRestore>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(vmsnap_contracts::controller::controller_config());
    let store = controller.store();
    let by_backup = store.clone();
    controller
        .watches(
            Api::<VirtualMachineRepositoryBackup>::all(client.clone()),
            watcher::Config::default(),
            move |b| restores_of(&by_backup, &b, |r, name| r.spec.backup_name == name),
        )
        .watches(Api::<VirtualMachine>::all(client.clone()), watcher::Config::default(), {
            let store = store.clone();
            move |vm| restores_of(&store, &vm, |r, name| r.spec.target.name == name)
        })
        // A restore waits for its DataVolumes to import: their progress and phase wake it.
        .watches(Api::<DataVolume>::all(client), watcher::Config::default(), move |dv| {
            restores_of(&store, &dv, |r, name| {
                r.status.as_ref().is_some_and(|s| s.disks.iter().any(|d| d.data_volume_name == name))
            })
        })
        .run(
            reconcile::reconcile,
            error_policy,
            Arc::new(RestoreContext { ctx, downloads: Default::default() }),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The restores in `obj`'s namespace that `refer` to it by name.
fn restores_of<K: ResourceExt>(
    store: &Store<VirtualMachineRepositoryRestore>,
    obj: &K,
    refers: impl Fn(&VirtualMachineRepositoryRestore, &str) -> bool,
) -> Vec<ObjectRef<VirtualMachineRepositoryRestore>> {
    let (namespace, name) = (obj.namespace(), obj.name_any());
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == namespace && refers(r, &name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

fn error_policy(
    restore: Arc<VirtualMachineRepositoryRestore>,
    error: &ReconcileError,
    _ctx: Arc<RestoreContext>,
) -> Action {
    retry_after(restore.as_ref(), error, Duration::from_secs(2))
}
