//! PVCs: provisioning and binding, the StorageProfile, expansion, reclaim
//! policies and the protection of volumes a VM uses.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use vmsnap_api::cdi::StorageProfile;
use vmsnap_storage::{VolumeDriver, VolumeId};
use vmsnap_storage_controllers::PROVISIONER;

use crate::harness::MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_applied_with_kubectl_is_bound_to_a_local_csi_volume() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    )
    .await;
    let claim = env.await_bound("data").await;

    let table = env.kubectl().run_async(&["get", "pvc", "data"]).await;
    let row = table.ok().lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
    let uid = claim.uid().unwrap();
    assert!(row.starts_with(&format!("data Bound pvc-{uid} 1Gi RWO local")), "{row}");
    assert_eq!(claim.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("local"));
    let annotations = claim.annotations();
    assert_eq!(annotations.get("pv.kubernetes.io/bind-completed").map(String::as_str), Some("yes"));
    assert_eq!(
        annotations.get("volume.kubernetes.io/storage-provisioner").map(String::as_str),
        Some(PROVISIONER)
    );
    assert!(claim.finalizers().iter().any(|f| f == "kubernetes.io/pvc-protection"));

    let pv: PersistentVolume = env.cluster_api().get(&format!("pvc-{uid}")).await.unwrap();
    let spec = pv.spec.clone().unwrap();
    let csi = spec.csi.unwrap();
    assert_eq!(
        (csi.driver.as_str(), csi.volume_handle.as_str()),
        (PROVISIONER, format!("pvc-{uid}").as_str())
    );
    assert_eq!(csi.fs_type.as_deref(), Some("ext4"));
    assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
    assert_eq!(spec.claim_ref.unwrap().uid.as_deref(), Some(uid.as_str()));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
    assert_eq!(pv.status.unwrap().phase.as_deref(), Some("Bound"));
    let volume = env.driver.volume(&VolumeId::new(format!("pvc-{uid}")).unwrap()).await.unwrap().unwrap();
    assert_eq!(volume.size_bytes, 1 << 30);

    let classes =
        env.kubectl().run_async(&["get", "storageclass", "local", "-o", "jsonpath={.provisioner}"]).await;
    assert_eq!(classes.ok(), PROVISIONER);
    let profiles: Api<StorageProfile> = env.cluster_api();
    let status =
        env.await_some(&profiles, "local", |p| p.status.clone().filter(|s| s.snapshot_class.is_some())).await;
    assert_eq!(status.snapshot_class.as_deref(), Some("local-snapshots"));
    assert_eq!(status.provisioner.as_deref(), Some(PROVISIONER));
    assert_eq!(status.storage_class.as_deref(), Some("local"));
    assert_eq!(status.clone_strategy.as_deref(), Some("snapshot"));
    assert_eq!(
        status.claim_property_sets,
        vec![json!({"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_storage_class_gets_a_profile_and_wait_for_first_consumer_claims_stay_pending() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(&format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: later}}\nprovisioner: {PROVISIONER}\nvolumeBindingMode: WaitForFirstConsumer\n"
    ))
    .await;
    let profiles: Api<StorageProfile> = env.cluster_api();
    let status = env.await_some(&profiles, "later", |p| p.status.clone()).await;
    assert_eq!(status.snapshot_class.as_deref(), Some("local-snapshots"));

    env.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: waiting}\nspec:\n  storageClassName: later\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Mi}}\n",
    )
    .await;
    env.await_event("default", "waiting", "waiting for first consumer").await;
    let claims: Api<PersistentVolumeClaim> = env.api();
    let claim = claims.get("waiting").await.unwrap();
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Pending"));
    assert!(env.driver.volumes().await.unwrap().is_empty());

    env.kubectl().run_async(&["delete", "storageclass", "later"]).await.ok();
    env.await_gone(&profiles, "later").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_the_request_grows_a_detached_volume_and_waits_while_a_vm_uses_it() {
    let Some(env) = crate::harness::start().await else { return };
    env.bound_pvc("grow", "16Mi").await;
    let volume = env.volume_of("grow").await.id;
    let claims: Api<PersistentVolumeClaim> = env.api();
    let pvs: Api<PersistentVolume> = env.cluster_api();
    let request = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});

    claims.patch("grow", &PatchParams::default(), &Patch::Merge(&request("32Mi"))).await.unwrap();
    env.await_some(&claims, "grow", |c| {
        (c.status.as_ref()?.capacity.as_ref()?["storage"].0 == "32Mi").then_some(())
    })
    .await;
    assert_eq!(pvs.get(volume.as_str()).await.unwrap().spec.unwrap().capacity.unwrap()["storage"].0, "32Mi");
    assert_eq!(env.driver.volume(&volume).await.unwrap().unwrap().size_bytes, 32 * MIB);

    env.live.attach(&volume);
    claims.patch("grow", &PatchParams::default(), &Patch::Merge(&request("48Mi"))).await.unwrap();
    let message = env
        .await_some(&claims, "grow", |c| {
            let condition =
                c.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Resizing")?.clone();
            condition.message
        })
        .await;
    assert!(message.contains("a running VM uses it"), "{message}");
    env.await_event("default", "grow", "grows when the VM stops").await;
    assert_eq!(env.driver.volume(&volume).await.unwrap().unwrap().size_bytes, 32 * MIB);

    env.live.detach(&volume);
    let claim = env
        .await_some(&claims, "grow", |c| {
            (c.status.as_ref()?.capacity.as_ref()?["storage"].0 == "48Mi").then(|| c.clone())
        })
        .await;
    assert!(claim.status.unwrap().conditions.unwrap_or_default().is_empty());
    assert_eq!(env.driver.volume(&volume).await.unwrap().unwrap().size_bytes, 48 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_claim_deletes_or_retains_its_volume_as_the_class_says() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(&format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: keep}}\nprovisioner: {PROVISIONER}\nreclaimPolicy: Retain\n"
    ))
    .await;
    env.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: kept}\nspec:\n  storageClassName: keep\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 4Mi}}\n",
    )
    .await;
    let kept = env.volume_of("kept").await.id;
    env.bound_pvc("dropped", "4Mi").await;
    let dropped = env.volume_of("dropped").await.id;
    let claims: Api<PersistentVolumeClaim> = env.api();
    let pvs: Api<PersistentVolume> = env.cluster_api();

    env.kubectl().run_async(&["delete", "pvc", "kept", "dropped"]).await.ok();
    env.await_gone(&claims, "kept").await;
    env.await_gone(&claims, "dropped").await;
    env.await_gone(&pvs, dropped.as_str()).await;
    assert!(env.driver.volume(&dropped).await.unwrap().is_none());
    env.await_some(&pvs, kept.as_str(), |pv| {
        (pv.status.as_ref()?.phase.as_deref() == Some("Released")).then_some(())
    })
    .await;
    assert!(env.driver.volume(&kept).await.unwrap().is_some());

    // A retained volume outlives its PV too: it is the administrator's to remove.
    pvs.delete(kept.as_str(), &DeleteParams::default()).await.unwrap();
    env.await_gone(&pvs, kept.as_str()).await;
    assert!(env.driver.volume(&kept).await.unwrap().is_some());
    let audit = env.assert_no_leaks().await;
    assert_eq!(audit.volumes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_a_running_vm_uses_is_deleted_only_after_the_vm_stops() {
    let Some(env) = crate::harness::start().await else { return };
    env.bound_pvc("busy", "4Mi").await;
    let volume = env.volume_of("busy").await.id;
    env.live.attach(&volume);
    let claims: Api<PersistentVolumeClaim> = env.api();

    claims.delete("busy", &DeleteParams::default()).await.unwrap();
    env.await_event("default", "busy", "is used by a running VM").await;
    let claim = claims.get("busy").await.unwrap();
    assert!(claim.metadata.deletion_timestamp.is_some());
    assert!(env.driver.volume(&volume).await.unwrap().is_some());

    env.live.detach(&volume);
    env.await_gone(&claims, "busy").await;
    env.await_gone(&env.cluster_api::<PersistentVolume>(), volume.as_str()).await;
    assert!(env.driver.volume(&volume).await.unwrap().is_none());
    env.assert_no_leaks().await;
}
