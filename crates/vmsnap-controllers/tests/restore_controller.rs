//! The restore controller against the embedded API server with fakes for the agent, the
//! snapshotter and the provisioner: KubeVirt's restore, in place and to a new VM.

mod common;

use std::time::Duration;

use common::{Env, t};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::k8s_openapi::api::core::v1::PersistentVolumeClaim;
use vmsnap_api::kubevirt::{DataVolumeTemplateSpec, Interface, VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::VirtualMachineRestore;
use vmsnap_testing::eventually;
use vmsnap_testing::fixtures::{VmBuilder, VmiState, create_bound_pvc, create_running_vmi};

const WAIT: Duration = Duration::from_secs(30);

async fn snapshot_of(env: &Env, vm: &VirtualMachine, snap: &str) {
    env.create_vm(vm).await;
    env.create_snapshot(snap, vm.metadata.name.as_deref().unwrap(), json!({})).await;
    vmsnap_testing::await_value(&env.snapshots(), snap, WAIT, |s| {
        (s.status.as_ref()?.ready_to_use == Some(true)).then_some(())
    })
    .await
    .unwrap();
    eventually("the VM to be unlocked", WAIT, || async {
        let vm = env.vms().get(vm.metadata.name.as_deref().unwrap()).await.ok()?;
        vm.status.as_ref().is_none_or(|s| s.snapshot_in_progress.is_none()).then_some(())
    })
    .await
    .unwrap();
}

/// A running VM `vm` with one PVC, its VMI and a ready snapshot `snap` of it.
async fn running_vm_with_snapshot(env: &Env) {
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let vm = VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build();
    snapshot_of(env, &vm, "snap").await;
    let vm = env.vms().get("vm").await.unwrap();
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
}

/// Stops the VM `vm` as the node agent would: its VMI goes away.
async fn stop_vm(env: &Env) {
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(env.client.clone(), "default");
    vmis.delete("vm", &DeleteParams::default()).await.unwrap();
}

fn restores(env: &Env) -> Api<VirtualMachineRestore> {
    Api::namespaced(env.client.clone(), "default")
}

async fn create_restore(
    env: &Env,
    name: &str,
    target: &str,
    snap: &str,
    extra: serde_json::Value,
) -> VirtualMachineRestore {
    let mut spec = json!({"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target}, "virtualMachineSnapshotName": snap});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let r: VirtualMachineRestore = serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    restores(env).create(&PostParams::default(), &r).await.unwrap()
}

async fn wait_complete(env: &Env, name: &str) -> VirtualMachineRestore {
    vmsnap_testing::await_value(&restores(env), name, WAIT, |r| {
        (r.status.as_ref()?.complete == Some(true)).then(|| r.clone())
    })
    .await
    .unwrap()
}

/// Waits until the first condition of restore `name` has a reason that `matches`; returns it.
async fn first_reason(env: &Env, name: &str, matches: impl Fn(&str) -> bool) -> String {
    vmsnap_testing::await_value(&restores(env), name, WAIT, |r| {
        r.status.as_ref()?.conditions.first()?.reason.clone().filter(|x| matches(x))
    })
    .await
    .unwrap()
}

fn conds(r: &VirtualMachineRestore) -> Vec<(String, String, String)> {
    r.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_restore_repoints_the_vm_at_new_pvcs_from_the_snapshot() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    snapshot_of(&env, &VmBuilder::new("vm").with_pvc("data", "data-pvc").build(), "snap").await;
    let r = create_restore(&env, "restore", "vm", "snap", json!({})).await;
    let done = wait_complete(&env, "restore").await;
    assert_eq!(
        conds(&done),
        vec![t("Progressing", "False", "Operation complete"), t("Ready", "True", "Operation complete")]
    );
    let owner = &done.owner_references()[0];
    assert_eq!(
        (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str()),
        ("kubevirt.io/v1", "VirtualMachine", "vm")
    );
    let st = done.status.clone().unwrap();
    assert!(st.restore_time.is_some());
    let restored = format!("restore-{}-data", r.uid().unwrap());
    assert_eq!(st.restores[0].persistent_volume_claim, restored);
    let vm = env.vms().get("vm").await.unwrap();
    assert_eq!(
        vm.spec.template.spec.volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name,
        restored
    );
    assert_eq!(
        vm.annotations()["restore.kubevirt.io/lastRestoreUID"],
        format!("restore-{}", r.uid().unwrap())
    );
    assert!(vm.status.as_ref().unwrap().restore_in_progress.is_none());
    assert!(
        vm.spec.template.spec.domain.firmware.as_ref().unwrap().uuid.is_some(),
        "a same-name restore pins the legacy firmware UUID"
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    let pvc = pvcs.get(&restored).await.unwrap();
    assert_eq!(pvc.labels()["restore.kubevirt.io/source-vm-name"], "vm");
    assert_eq!(pvc.annotations()["restore.kubevirt.io/name"], "restore");
    let ds = pvc.spec.as_ref().unwrap().data_source.clone().unwrap();
    assert_eq!(
        (ds.kind.as_str(), ds.api_group.as_deref()),
        ("VolumeSnapshot", Some("snapshot.storage.k8s.io"))
    );
    assert_eq!(pvc.owner_references()[0].name, "vm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_twice_uses_new_names_and_deletes_the_old_template_data_volumes() {
    let env = Env::start().await;
    let mut vm = VmBuilder::new("vm").with_data_volume("data", "vm-data").build();
    vm.spec.data_volume_templates = vec![serde_json::from_value::<DataVolumeTemplateSpec>(json!({
        "metadata": {"name": "vm-data"},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local"}}
    }))
    .unwrap()];
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), "default");
    dvs.create(
        &PostParams::default(),
        &DataVolume::new("vm-data", vm.spec.data_volume_templates[0].spec.clone()),
    )
    .await
    .unwrap();
    eventually("the data volume to be bound", WAIT, || async {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
        let p = pvcs.get_opt("vm-data").await.ok()??;
        (p.status?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await
    .unwrap();
    snapshot_of(&env, &vm, "snap").await;
    let first = create_restore(&env, "first", "vm", "snap", json!({})).await;
    let done = wait_complete(&env, "first").await;
    let first_dv = format!("restore-{}-data", first.uid().unwrap());
    assert_eq!(done.status.as_ref().unwrap().deleted_data_volumes, vec!["vm-data"]);
    assert_eq!(
        done.status.as_ref().unwrap().restores[0].data_volume_name.as_deref(),
        Some(first_dv.as_str())
    );
    eventually("the old DataVolume to be deleted", WAIT, || async {
        dvs.get_opt("vm-data").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    let second = create_restore(&env, "second", "vm", "snap", json!({})).await;
    let done = wait_complete(&env, "second").await;
    let second_dv = format!("restore-{}-data", second.uid().unwrap());
    assert_ne!(first_dv, second_dv);
    assert_eq!(done.status.as_ref().unwrap().deleted_data_volumes, vec![first_dv.clone()]);
    let vm = env.vms().get("vm").await.unwrap();
    assert_eq!(vm.spec.template.spec.volumes[0].data_volume.as_ref().unwrap().name, second_dv);
    assert_eq!(vm.spec.data_volume_templates[0].metadata.name.as_deref(), Some(second_dv.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_new_vm_creates_a_halted_copy_with_its_own_identity() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let mut vm = VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build();
    vm.spec.template.spec.domain.devices.interfaces = vec![Interface {
        name: "default".into(),
        mac_address: Some("02:00:00:00:00:01".into()),
        ..Default::default()
    }];
    snapshot_of(&env, &vm, "snap").await;
    create_restore(&env, "copy-restore", "copy", "snap", json!({})).await;
    wait_complete(&env, "copy-restore").await;
    let copy = env.vms().get("copy").await.unwrap();
    assert_eq!(copy.spec.run_strategy.as_deref(), Some("Halted"));
    assert_ne!(
        copy.spec.template.spec.domain.devices.interfaces[0].mac_address.as_deref(),
        Some("02:00:00:00:00:01")
    );
    let original = env.vms().get("vm").await.unwrap();
    assert_eq!(
        original.spec.template.spec.volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-pvc",
        "the original is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_into_a_different_existing_vm_is_refused() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    snapshot_of(&env, &VmBuilder::new("vm").with_pvc("data", "data-pvc").build(), "snap").await;
    env.create_vm(&VmBuilder::new("other").build()).await;
    create_restore(&env, "wrong", "other", "snap", json!({})).await;
    let reason = vmsnap_testing::await_value(&restores(&env), "wrong", WAIT, |r| {
        let c = r.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
        c.reason.clone().filter(|x| x.contains("different"))
    })
    .await
    .unwrap();
    assert_eq!(reason, "restore source and restore target are different but restore target already exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_target_waits_in_the_grace_period_then_succeeds_when_stopped() {
    let env = Env::start().await;
    running_vm_with_snapshot(&env).await;
    create_restore(&env, "restore", "vm", "snap", json!({})).await;
    let waiting = first_reason(&env, "restore", |x| x.starts_with("Waiting for target VM")).await;
    assert_eq!(
        waiting,
        "Waiting for target VM to be powered off. Please stop the restore target to proceed with restore, or the operation will fail after 5m0s"
    );
    stop_vm(&env).await;
    wait_complete(&env, "restore").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_target_stops_the_vm_and_fail_immediate_fails_for_good() {
    let env = Env::start().await;
    running_vm_with_snapshot(&env).await;

    create_restore(&env, "fails", "vm", "snap", json!({"targetReadinessPolicy": "FailImmediate"})).await;
    let failed = vmsnap_testing::await_value(&restores(&env), "fails", WAIT, |r| {
        r.status.as_ref()?.conditions.iter().any(|c| c.type_ == "Failure").then(|| r.clone())
    })
    .await
    .unwrap();
    assert_eq!(
        conds(&failed),
        vec![
            t("Progressing", "False", "Restore target VMI must be powered off before restore operation"),
            t("Ready", "False", "Restore target VMI must be powered off before restore operation"),
            t("Failure", "True", "Restore target VMI must be powered off before restore operation"),
        ]
    );
    let blocked = env
        .server
        .kubectl()
        .run_stdin_async(
            &["create", "-f", "-"],
            r#"
apiVersion: snapshot.kubevirt.io/v1beta1
kind: VirtualMachineRestore
metadata:
  name: again
spec:
  target: {apiGroup: kubevirt.io, kind: VirtualMachine, name: vm}
  virtualMachineSnapshotName: snap
"#,
        )
        .await;
    assert!(blocked.err().contains("VirtualMachineRestore \"fails\" in progress"), "{blocked:?}");
    restores(&env).delete("fails", &DeleteParams::default()).await.unwrap();
    eventually("the failed restore to be gone", WAIT, || async {
        restores(&env).get_opt("fails").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();

    create_restore(&env, "stops", "vm", "snap", json!({"targetReadinessPolicy": "StopTarget"})).await;
    eventually("the stop subresource to be called", WAIT, || async {
        (env.agent.calls_of("stop") >= 1).then_some(())
    })
    .await
    .unwrap();
    stop_vm(&env).await;
    wait_complete(&env, "stops").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_restore_policies_and_overrides_name_the_pvcs() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    create_bound_pvc(&env.client, "default", "logs-pvc", "local").await.unwrap();
    snapshot_of(
        &env,
        &VmBuilder::new("vm").with_pvc("data", "data-pvc").with_pvc("logs", "logs-pvc").build(),
        "snap",
    )
    .await;
    create_restore(&env, "prefixed", "copy", "snap", json!({
        "volumeRestorePolicy": "PrefixTargetName",
        "volumeRestoreOverrides": [{"volumeName": "logs", "restoreName": "my-logs", "labels": {"tier": "gold"}, "annotations": {"note": "kept"}}]
    }))
    .await;
    wait_complete(&env, "prefixed").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    assert!(pvcs.get_opt("copy-data").await.unwrap().is_some());
    let logs = pvcs.get("my-logs").await.unwrap();
    assert_eq!(logs.labels()["tier"], "gold");
    assert_eq!(logs.annotations()["note"], "kept");

    create_restore(&env, "inplace", "vm", "snap", json!({"volumeRestorePolicy": "InPlace"})).await;
    let done = wait_complete(&env, "inplace").await;
    let names: Vec<String> =
        done.status.unwrap().restores.into_iter().map(|r| r.persistent_volume_claim).collect();
    assert_eq!(names, vec!["data-pvc", "logs-pvc"]);
    let data = pvcs.get("data-pvc").await.unwrap();
    assert_eq!(
        data.annotations()["restore.kubevirt.io/name"],
        "inplace",
        "the PVC was recreated by the restore"
    );
    let vm = env.vms().get("vm").await.unwrap();
    assert_eq!(
        vm.spec.template.spec.volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-pvc"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_created_before_its_snapshot_waits_and_then_completes() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    create_restore(&env, "early", "vm", "later", json!({})).await;
    first_reason(&env, "early", |x| x == "VMSnapshot default/later does not exist").await;
    snapshot_of(&env, &VmBuilder::new("vm").with_pvc("data", "data-pvc").build(), "later").await;
    wait_complete(&env, "early").await;
}
