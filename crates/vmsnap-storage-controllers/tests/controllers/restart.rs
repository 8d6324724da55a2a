//! Restarts: the controllers stopped at any point (or with state left as a
//! crash between two steps leaves it) converge when they run again, without
//! making anything twice.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotContent};
use vmsnap_storage::{SnapshotId, VolumeDriver, VolumeId};
use vmsnap_storage_controllers::PROVISIONER;

use crate::harness::{Env, MIB, WAIT};

fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "4Mi"}}}
    }))
    .unwrap()
}

async fn volume_ids(env: &Env) -> BTreeSet<String> {
    env.driver.volumes().await.unwrap().into_iter().map(|v| v.id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_interrupted_between_any_two_steps_is_finished_without_duplicates() {
    let Some(mut env) = crate::harness::start().await else { return };
    env.bound_pvc("snapped", "4Mi").await;
    let snapped = env.volume_of("snapped").await.id;
    env.stop_controllers().await;

    let claims: Api<PersistentVolumeClaim> = env.api();
    // Stopped after the engine call, before the PV.
    let engine_only = claims.create(&PostParams::default(), &claim("engine-only")).await.unwrap();
    let engine_only = VolumeId::new(format!("pvc-{}", engine_only.uid().unwrap())).unwrap();
    env.driver.create_volume(&engine_only, 4 * MIB).await.unwrap();
    // Stopped after the PV, before the claim was bound.
    let with_pv = claims.create(&PostParams::default(), &claim("with-pv")).await.unwrap();
    let with_pv_volume = VolumeId::new(format!("pvc-{}", with_pv.uid().unwrap())).unwrap();
    env.driver.create_volume(&with_pv_volume, 4 * MIB).await.unwrap();
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": with_pv_volume.as_str(), "finalizers": ["local.storage.vmsnap.io/volume-protection"]},
        "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "4Mi"}, "storageClassName": "local",
                 "persistentVolumeReclaimPolicy": "Delete", "volumeMode": "Filesystem",
                 "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default",
                              "name": "with-pv", "uid": with_pv.uid()},
                 "csi": {"driver": PROVISIONER, "volumeHandle": with_pv_volume.as_str(), "fsType": "ext4"}}
    }))
    .unwrap();
    env.cluster_api::<PersistentVolume>().create(&PostParams::default(), &pv).await.unwrap();
    // Never started.
    claims.create(&PostParams::default(), &claim("untouched")).await.unwrap();
    // A snapshot stopped after the engine call, before any status.
    let snapshots: Api<VolumeSnapshot> = env.api();
    let snapshot: VolumeSnapshot = serde_json::from_value(
        json!({"metadata": {"name": "cut"}, "spec": {"source": {"persistentVolumeClaimName": "snapped"}}}),
    )
    .unwrap();
    let uid = snapshots.create(&PostParams::default(), &snapshot).await.unwrap().uid().unwrap();
    let content: VolumeSnapshotContent = serde_json::from_value(json!({
        "metadata": {"name": format!("snapcontent-{uid}"),
                     "finalizers": ["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"]},
        "spec": {"volumeSnapshotRef": {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                                       "namespace": "default", "name": "cut", "uid": uid},
                 "deletionPolicy": "Delete", "driver": PROVISIONER, "volumeSnapshotClassName": "local-snapshots",
                 "source": {"volumeHandle": snapped.as_str()}}
    }))
    .unwrap();
    env.cluster_api::<VolumeSnapshotContent>().create(&PostParams::default(), &content).await.unwrap();
    let snapshot_id = SnapshotId::new(format!("snapshot-{uid}")).unwrap();
    env.driver.snapshot_volumes(&[(snapped.clone(), snapshot_id.clone())], None).await.unwrap();
    let engine_calls = env.driver.snapshot_calls.lock().unwrap().len();

    env.start_controllers().await;
    for name in ["engine-only", "with-pv", "untouched"] {
        env.await_bound(name).await;
    }
    let ready = env.await_some(&snapshots, "cut", |s| s.status.as_ref()?.ready_to_use.filter(|r| *r)).await;
    assert!(ready);
    let untouched = claims.get("untouched").await.unwrap().uid().unwrap();
    let expected: BTreeSet<String> = [
        snapped.to_string(),
        engine_only.to_string(),
        with_pv_volume.to_string(),
        format!("pvc-{untouched}"),
    ]
    .into();
    assert_eq!(volume_ids(&env).await, expected);
    assert_eq!(env.driver.snapshot_calls.lock().unwrap().len(), engine_calls, "the snapshot was taken again");
    assert_eq!(env.driver.snapshots().await.unwrap().len(), 1);
    let content: VolumeSnapshotContent = env.cluster_api().get(&format!("snapcontent-{uid}")).await.unwrap();
    assert_eq!(content.status.unwrap().snapshot_handle, Some(snapshot_id.to_string()));
    assert_eq!(
        env.cluster_api::<PersistentVolume>().list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
    env.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_stopped_mid_way_converge_when_started_again() {
    let Some(mut env) = crate::harness::start().await else { return };
    let mut manifest = String::new();
    for i in 0..6 {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: claim-{i}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 4Mi}}}}\n"
        ));
    }
    for i in 0..2 {
        manifest.push_str(&format!(
            "---\napiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {{name: dv-{i}}}\nspec:\n  source: {{blank: {{}}}}\n  storage: {{resources: {{requests: {{storage: 4Mi}}}}}}\n"
        ));
    }
    env.apply(&manifest).await;
    let pvs: Api<PersistentVolume> = env.cluster_api();
    vmsnap_testing::eventually("the first PersistentVolume", WAIT, || async {
        (!pvs.list(&ListParams::default()).await.unwrap().items.is_empty()).then_some(())
    })
    .await
    .unwrap();
    env.stop_controllers().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    env.start_controllers().await;
    for i in 0..6 {
        env.await_bound(&format!("claim-{i}")).await;
    }
    let dvs: Api<vmsnap_api::cdi::DataVolume> = env.api();
    for i in 0..2 {
        env.await_some(&dvs, &format!("dv-{i}"), |dv| {
            (dv.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(())
        })
        .await;
    }
    let claims: Api<PersistentVolumeClaim> = env.api();
    let expected: BTreeSet<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|claim| format!("pvc-{}", claim.uid().unwrap()))
        .collect();
    assert_eq!(expected.len(), 8);
    assert_eq!(volume_ids(&env).await, expected);
    assert_eq!(pvs.list(&ListParams::default()).await.unwrap().items.len(), 8);
    env.assert_no_leaks().await;
}
