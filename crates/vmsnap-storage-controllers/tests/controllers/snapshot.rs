//! VolumeSnapshots: content and status, restore and clone, deletion, errors,
//! grouping per VM, and how fast `creationTime` appears.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use vmsnap_api::snapshot::VirtualMachineSnapshotContent;
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotContent};
use vmsnap_storage::{SnapshotId, VolumeDriver};
use vmsnap_storage_controllers::PROVISIONER;
use vmsnap_testing::images::DiskModel;

use crate::harness::{Env, MIB};

fn volume_snapshot(name: &str, claim: &str) -> String {
    format!(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {{name: {name}}}\nspec: {{source: {{persistentVolumeClaimName: {claim}}}}}\n"
    )
}

fn restore_claim(name: &str, kind_and_group: &str, source: &str, size: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n  dataSourceRef: {{{kind_and_group}, name: {source}}}\n"
    )
}

async fn await_ready(env: &Env, name: &str) -> VolumeSnapshot {
    let snapshots: Api<VolumeSnapshot> = env.api();
    env.await_some(&snapshots, name, |s| (s.status.as_ref()?.ready_to_use == Some(true)).then(|| s.clone()))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_bit_exact_as_of_its_point_in_time_and_a_clone_copies_now() {
    let Some(env) = crate::harness::start().await else { return };
    env.bound_pvc("disk", "16Mi").await;
    let mut model = DiskModel::blank(16 * MIB);
    env.write("disk", &mut model, 0, 2 * MIB, 0x5a).await;
    env.apply(&volume_snapshot("snap", "disk")).await;
    let snapshot = await_ready(&env, "snap").await;
    let at_snapshot = model.clone();
    env.write("disk", &mut model, MIB, 4 * MIB, 0xc3).await;

    let uid = snapshot.uid().unwrap();
    let status = snapshot.status.clone().unwrap();
    assert_eq!(status.bound_volume_snapshot_content_name, Some(format!("snapcontent-{uid}")));
    assert_eq!(status.restore_size.unwrap().0, "16Mi");
    assert!(status.creation_time.is_some() && status.error.is_none());
    // The finalizer comes after the cut, so as not to delay `creationTime`.
    let snapshots: Api<VolumeSnapshot> = env.api();
    env.await_some(&snapshots, "snap", |s| {
        s.finalizers()
            .iter()
            .any(|f| f == "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection")
            .then_some(())
    })
    .await;
    let content: VolumeSnapshotContent = env.cluster_api().get(&format!("snapcontent-{uid}")).await.unwrap();
    let disk = env.volume_of("disk").await.id;
    assert_eq!(content.spec.source.volume_handle.as_deref(), Some(disk.as_str()));
    assert_eq!(content.spec.volume_snapshot_ref.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        (content.spec.driver.as_str(), content.spec.deletion_policy.as_str()),
        (PROVISIONER, "Delete")
    );
    assert_eq!(content.spec.volume_snapshot_class_name.as_deref(), Some("local-snapshots"));
    let content_status = content.status.unwrap();
    assert_eq!(content_status.snapshot_handle, Some(format!("snapshot-{uid}")));
    assert_eq!(content_status.restore_size, Some(16 * MIB as i64));
    assert_eq!(content_status.ready_to_use, Some(true));
    let nanos = content_status.creation_time.unwrap();
    assert_eq!(nanos / 1_000_000_000, status.creation_time.unwrap().0.as_second());

    env.apply(&restore_claim(
        "restored",
        "apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot",
        "snap",
        "8Mi",
    ))
    .await;
    env.apply(&restore_claim("cloned", "kind: PersistentVolumeClaim", "disk", "32Mi")).await;
    env.assert_data("restored", &at_snapshot).await;
    env.assert_data("cloned", &model.resized(32 * MIB)).await;
    env.assert_data("disk", &model).await;
    let claims: Api<PersistentVolumeClaim> = env.api();
    let restored = claims.get("restored").await.unwrap().status.unwrap();
    assert_eq!(
        restored.capacity.unwrap()["storage"].0,
        "16Mi",
        "the restore size wins over a smaller request"
    );

    let table = env.kubectl().run_async(&["get", "volumesnapshot", "snap"]).await;
    assert!(table.ok().contains("true"), "{}", table.stdout);
    env.await_event("default", "snap", "is ready to use").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_outlives_its_source_and_deleting_it_frees_every_layer() {
    let Some(env) = crate::harness::start().await else { return };
    env.bound_pvc("origin", "8Mi").await;
    let mut model = DiskModel::blank(8 * MIB);
    env.write("origin", &mut model, 2 * MIB, MIB, 0x42).await;
    env.apply(&volume_snapshot("keep", "origin")).await;
    let uid = await_ready(&env, "keep").await.uid().unwrap();
    let origin = env.volume_of("origin").await.id;

    let claims: Api<PersistentVolumeClaim> = env.api();
    claims.delete("origin", &DeleteParams::default()).await.unwrap();
    env.await_gone(&claims, "origin").await;
    env.await_gone(&env.cluster_api::<PersistentVolume>(), origin.as_str()).await;
    assert!(env.driver.volume(&origin).await.unwrap().is_none());

    env.apply(&restore_claim(
        "again",
        "apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot",
        "keep",
        "8Mi",
    ))
    .await;
    env.assert_data("again", &model).await;
    claims.delete("again", &DeleteParams::default()).await.unwrap();
    let snapshots: Api<VolumeSnapshot> = env.api();
    snapshots.delete("keep", &DeleteParams::default()).await.unwrap();
    env.await_gone(&snapshots, "keep").await;
    env.await_gone(&env.cluster_api::<VolumeSnapshotContent>(), &format!("snapcontent-{uid}")).await;
    env.await_gone(&claims, "again").await;
    vmsnap_testing::eventually("every volume and layer to be freed", crate::harness::WAIT, || async {
        let audit = env.driver.audit().await.unwrap();
        (audit.volumes == 0 && audit.snapshots == 0 && audit.files_on_disk.is_empty()).then_some(())
    })
    .await
    .unwrap();
    assert!(
        env.driver.snapshot(&SnapshotId::new(format!("snapshot-{uid}")).unwrap()).await.unwrap().is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_content_keeps_its_snapshot_after_the_volume_snapshot_goes() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(&format!(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata: {{name: retained}}\ndriver: {PROVISIONER}\ndeletionPolicy: Retain\n"
    ))
    .await;
    env.bound_pvc("vol", "4Mi").await;
    env.apply(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {name: held}\nspec: {volumeSnapshotClassName: retained, source: {persistentVolumeClaimName: vol}}\n",
    )
    .await;
    let uid = await_ready(&env, "held").await.uid().unwrap();
    let snapshots: Api<VolumeSnapshot> = env.api();
    snapshots.delete("held", &DeleteParams::default()).await.unwrap();
    env.await_gone(&snapshots, "held").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let content: VolumeSnapshotContent = env.cluster_api().get(&format!("snapcontent-{uid}")).await.unwrap();
    assert_eq!(content.spec.deletion_policy, "Retain");
    let id = SnapshotId::new(format!("snapshot-{uid}")).unwrap();
    assert!(env.driver.snapshot(&id).await.unwrap().is_some());

    // Pointed at a new VolumeSnapshot, the retained content binds to it like a pre-provisioned one.
    let contents: Api<VolumeSnapshotContent> = env.cluster_api();
    let patch =
        json!({"spec": {"volumeSnapshotRef": {"name": "rebound", "namespace": "default", "uid": null}}});
    contents
        .patch(&format!("snapcontent-{uid}"), &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    env.apply(&format!(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {{name: rebound}}\nspec: {{source: {{volumeSnapshotContentName: snapcontent-{uid}}}}}\n"
    ))
    .await;
    let rebound = await_ready(&env, "rebound").await;
    assert_eq!(rebound.status.unwrap().restore_size.unwrap().0, "4Mi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_missing_claim_reports_the_error_then_succeeds_once_it_exists() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(&volume_snapshot("early", "not-yet")).await;
    let snapshots: Api<VolumeSnapshot> = env.api();
    let message =
        env.await_some(&snapshots, "early", |s| s.status.as_ref()?.error.as_ref()?.message.clone()).await;
    assert!(
        message.contains("PersistentVolumeClaim default/not-yet") && message.contains("does not exist"),
        "{message}"
    );
    let status = snapshots.get("early").await.unwrap().status.unwrap();
    assert_eq!((status.ready_to_use, status.creation_time), (Some(false), None));
    env.await_event("default", "early", "does not exist").await;

    env.bound_pvc("not-yet", "4Mi").await;
    let ready = await_ready(&env, "early").await;
    assert!(ready.status.unwrap().error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshots_of_one_vm_are_cut_with_one_engine_call() {
    let Some(env) = crate::harness::start().await else { return };
    env.bound_pvc("disk-a", "4Mi").await;
    env.bound_pvc("disk-b", "4Mi").await;
    env.bound_pvc("alone", "4Mi").await;
    let backup = |volume: &str, claim: &str, snapshot: &str| {
        json!({"volumeName": volume, "volumeSnapshotName": snapshot,
               "persistentVolumeClaim": {"metadata": {"name": claim}, "spec": {"accessModes": ["ReadWriteOnce"]}}})
    };
    let content: VirtualMachineSnapshotContent = serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshotContent",
        "metadata": {"name": "vmsnapshot-content-1", "namespace": "default"},
        "spec": {"virtualMachineSnapshotName": "snap-1", "source": {},
                 "volumeBackups": [backup("a", "disk-a", "vs-a"), backup("b", "disk-b", "vs-b")]}
    }))
    .unwrap();
    let contents: Api<VirtualMachineSnapshotContent> = env.api();
    let content = contents.create(&PostParams::default(), &content).await.unwrap();
    let owned = |name: &str, claim: &str| -> VolumeSnapshot {
        serde_json::from_value(json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "labels": {"snapshot.kubevirt.io/source-vm-name": "vm"},
                         "ownerReferences": [{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshotContent",
                                              "name": content.name_any(), "uid": content.uid().unwrap(),
                                              "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"source": {"persistentVolumeClaimName": claim}}
        }))
        .unwrap()
    };
    let snapshots: Api<VolumeSnapshot> = env.api();
    snapshots.create(&PostParams::default(), &owned("vs-a", "disk-a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.apply(&volume_snapshot("vs-alone", "alone")).await;
    await_ready(&env, "vs-alone").await;
    assert!(snapshots.get("vs-a").await.unwrap().status.is_none_or(|s| s.creation_time.is_none()));
    snapshots.create(&PostParams::default(), &owned("vs-b", "disk-b")).await.unwrap();
    let a = await_ready(&env, "vs-a").await;
    let b = await_ready(&env, "vs-b").await;

    let calls: Vec<BTreeSet<_>> =
        env.driver.snapshot_calls.lock().unwrap().iter().map(|call| call.iter().cloned().collect()).collect();
    let grouped = BTreeSet::from([
        (
            env.volume_of("disk-a").await.id,
            SnapshotId::new(format!("snapshot-{}", a.uid().unwrap())).unwrap(),
        ),
        (
            env.volume_of("disk-b").await.id,
            SnapshotId::new(format!("snapshot-{}", b.uid().unwrap())).unwrap(),
        ),
    ]);
    assert_eq!(calls.len(), 2, "one call for vs-alone, one for the group: {calls:?}");
    assert!(calls.contains(&grouped), "{calls:?}");
    assert_eq!(a.status.unwrap().creation_time, b.status.unwrap().creation_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_time_appears_within_milliseconds_of_the_volume_snapshot() {
    let Some(env) = crate::harness::start().await else { return };
    env.bound_pvc("timed", "1Gi").await;
    let snapshots: Api<VolumeSnapshot> = env.api();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(snapshots, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(snapshot)) = stream.next().await {
            if snapshot.status.as_ref().is_some_and(|s| s.creation_time.is_some()) {
                let _ = tx.send((snapshot.name_any(), Instant::now()));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snapshots: Api<VolumeSnapshot> = env.api();
    let mut samples = Vec::new();
    for i in 0..15 {
        let name = format!("timed-{i}");
        let created: VolumeSnapshot = serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"source": {"persistentVolumeClaimName": "timed"}}}),
        )
        .unwrap();
        let started = Instant::now();
        snapshots.create(&PostParams::default(), &created).await.unwrap();
        let seen_at = loop {
            let (seen, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
            if seen == name {
                break at;
            }
        };
        samples.push(seen_at.duration_since(started));
    }
    watch.abort();
    samples.sort();
    let median = samples[samples.len() / 2];
    eprintln!(
        "VolumeSnapshot create -> creationTime seen by a watcher: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} snapshots of a 1 GiB volume",
        median.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
    assert!(median < Duration::from_millis(500), "median {median:?}: the cut path got slow");
}
