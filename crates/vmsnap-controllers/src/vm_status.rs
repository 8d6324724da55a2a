//! VM `status.volumeSnapshotStatuses`: whether each volume can be snapshotted, and why not (§2.9).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use vmsnap_api::cdi::{DataVolume, StorageProfile};
use vmsnap_api::k8s_openapi::api::core::v1::PersistentVolumeClaim;
use vmsnap_api::k8s_openapi::api::storage::v1::StorageClass;
use vmsnap_api::kubevirt::{VirtualMachine, VolumeSnapshotStatus};
use vmsnap_api::volumesnapshot::VolumeSnapshotClass;

use crate::context::Context;
use crate::error::ReconcileError;
use crate::{backend, vsclass};

async fn storage_class_for(
    client: &Client,
    vm: &VirtualMachine,
    volume: &vmsnap_api::kubevirt::Volume,
) -> Result<String, String> {
    let ns = vm.namespace().unwrap_or_default();
    let claim = volume.claim_name().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc_class = || async {
        let pvc = pvcs
            .get_opt(claim)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "PVC not found".to_owned())?;
        pvc.spec
            .and_then(|s| s.storage_class_name)
            .ok_or_else(|| "volume type has no StorageClass defined".to_owned())
    };
    if let Some(dv_ref) = &volume.data_volume {
        let dvs: Api<DataVolume> = Api::namespaced(client.clone(), &ns);
        if let Some(dv) = dvs.get_opt(&dv_ref.name).await.map_err(|e| e.to_string())? {
            if let Some(sc) = dv.spec.claim_spec().and_then(|s| s.storage_class_name.clone()) {
                return Ok(sc);
            }
            let template = vm
                .spec
                .data_volume_templates
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(dv_ref.name.as_str()));
            if let Some(sc) =
                template.and_then(|t| t.spec.claim_spec()).and_then(|s| s.storage_class_name.clone())
            {
                return Ok(sc);
            }
        }
    }
    pvc_class().await
}

async fn statuses(client: &Client, vm: &VirtualMachine) -> Vec<VolumeSnapshotStatus> {
    let mut out = Vec::new();
    for v in &vm.spec.template.spec.volumes {
        let snapshottable =
            v.persistent_volume_claim.is_some() || v.data_volume.is_some() || v.memory_dump.is_some();
        if !snapshottable {
            out.push(VolumeSnapshotStatus {
                name: v.name.clone(),
                enabled: false,
                reason: Some(format!("Snapshot is not supported for this volumeSource type [{}]", v.name)),
            });
            continue;
        }
        let entry = match storage_class_for(client, vm, v).await {
            Err(reason) => {
                VolumeSnapshotStatus { name: v.name.clone(), enabled: false, reason: Some(reason) }
            }
            Ok(sc) => match vsclass::class_for(client, &sc).await {
                Err(e) => {
                    VolumeSnapshotStatus { name: v.name.clone(), enabled: false, reason: Some(e.to_string()) }
                }
                Ok(None) => VolumeSnapshotStatus {
                    name: v.name.clone(),
                    enabled: false,
                    reason: Some(format!(
                        "No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass [{sc}] [{}]",
                        v.name
                    )),
                },
                Ok(Some(_)) => VolumeSnapshotStatus { name: v.name.clone(), enabled: true, reason: None },
            },
        };
        out.push(entry);
    }
    if backend::needs_backend_storage(vm) {
        out.push(VolumeSnapshotStatus {
            name: backend::backend_volume_name(&vm.name_any()),
            enabled: true,
            reason: None,
        });
    }
    out
}

async fn reconcile(vm: Arc<VirtualMachine>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let new = statuses(&ctx.client, &vm).await;
    let old = vm.status.as_ref().map(|s| s.volume_snapshot_statuses.clone()).unwrap_or_default();
    if new != old {
        let vms: Api<VirtualMachine> =
            Api::namespaced(ctx.client.clone(), &vm.namespace().unwrap_or_default());
        let value = if new.is_empty() { serde_json::Value::Null } else { json!(new) };
        let patch = json!({"status": {"volumeSnapshotStatuses": value}});
        match vms.patch_status(&vm.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // Deleted since this copy was read: it has no status left to keep.
            Err(error) if vmsnap_contracts::controller::is_gone(&error, vm.as_ref()) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Action::await_change())
}

fn all_vms(store: &Store<VirtualMachine>) -> Vec<ObjectRef<VirtualMachine>> {
    store.state().iter().map(|v| ObjectRef::from_obj(v.as_ref())).collect()
}

fn vms_using(
    store: &Store<VirtualMachine>,
    ns: Option<String>,
    claim: String,
) -> Vec<ObjectRef<VirtualMachine>> {
    store
        .state()
        .iter()
        .filter(|vm| {
            vm.namespace() == ns
                && vm.spec.template.spec.volumes.iter().any(|v| v.claim_name() == Some(claim.as_str()))
        })
        .map(|v| ObjectRef::from_obj(v.as_ref()))
        .collect()
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, ctx: Arc<Context>) {
    let controller = Controller::new(Api::<VirtualMachine>::all(client.clone()), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config());
    let store = controller.store();
    let (s1, s2, s3, s4, s5) = (store.clone(), store.clone(), store.clone(), store.clone(), store);
    controller
        .watches(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default(), move |p| vms_using(&s1, p.namespace(), p.name_any()))
        .watches(Api::<DataVolume>::all(client.clone()), watcher::Config::default(), move |d| vms_using(&s2, d.namespace(), d.name_any()))
        .watches(Api::<StorageClass>::all(client.clone()), watcher::Config::default(), move |_| all_vms(&s3))
        .watches(Api::<VolumeSnapshotClass>::all(client.clone()), watcher::Config::default(), move |_| all_vms(&s4))
        .watches(Api::<StorageProfile>::all(client), watcher::Config::default(), move |_| all_vms(&s5))
        .run(reconcile, |vm, e, _| {
            tracing::warn!(vm = %vm.name_any(), error = %e, "volumeSnapshotStatuses reconcile failed; retrying");
            Action::requeue(Duration::from_secs(2))
        }, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
