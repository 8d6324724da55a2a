//! `deploy/rbac.yaml` grants the controllers exactly what they use: every request the controllers
//! make in a scenario covering snapshots and restores is allowed by the ClusterRole (or the leader
//! election Role), and every verb the ClusterRole grants was used.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Env;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use vmsnap_api::backup::VirtualMachineRepositoryBackup;
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::kubevirt::{DataVolumeTemplateSpec, VirtualMachineInstance};
use vmsnap_api::schedule::VirtualMachineSnapshotSchedule;
use vmsnap_api::snapshot::{VirtualMachineRestore, VirtualMachineSnapshot};
use vmsnap_testing::eventually;
use vmsnap_testing::fixtures::{VmBuilder, VmiState, create_bound_pvc, create_running_vmi};

const WAIT: Duration = Duration::from_secs(30);

/// (group, resource[/subresource], verb) of a request.
fn classify(method: &str, path: &str, query: &str) -> Option<(String, String, String)> {
    let p = vmsnap_apiserver::pure::path::parse(path)?;
    let resource = match &p.subresource {
        Some(s) => format!("{}/{s}", p.plural),
        None => p.plural.clone(),
    };
    let verb = match (method, p.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if query.contains("watch=true") || query.contains("watch=1") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((p.group, resource, verb.to_owned()))
}

fn granted() -> BTreeSet<(String, String, String)> {
    let text =
        std::fs::read_to_string(format!("{}/../../deploy/rbac.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out = BTreeSet::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != "ClusterRole" || v["metadata"]["name"] != "vmsnap-controller" {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            g.as_str().unwrap().to_owned(),
                            r.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A schedule that catches up a missed run (creates a snapshot, then its backup), prunes by its
/// keep policies (deletes a snapshot and a backup), and suspends itself when a VM's run failed (patches its spec).
async fn schedule_scenario(env: &Env) {
    let schedules: Api<VirtualMachineSnapshotSchedule> = Api::namespaced(env.client.clone(), "default");
    let labelled = |name: &str, vm: &str, run_time: &str, deadline: &str| -> VirtualMachineSnapshot {
        serde_json::from_value(json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": name, "labels": {"schedule.vmsnap.io/schedule": "hourly"}, "annotations": {"schedule.vmsnap.io/run-time": run_time}},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}, "failureDeadline": deadline}}))
        .unwrap()
    };
    let ready = |name: &'static str| async move {
        vmsnap_testing::await_value(&env.snapshots(), name, WAIT, |s| {
            (s.status.as_ref()?.ready_to_use == Some(true)).then_some(())
        })
        .await
        .unwrap();
    };
    env.snapshots()
        .create(&PostParams::default(), &labelled("hourly-old", "vm", "2025-01-01T08:00:00Z", "5m"))
        .await
        .unwrap();
    ready("hourly-old").await;
    // Two earlier backups of the schedule (succeeded); with backupKeep.last 1 the older goes.
    let backups: Api<VirtualMachineRepositoryBackup> = Api::namespaced(env.client.clone(), "default");
    for (name, run_time) in [("hourly-b1", "2025-01-01T06:00:00Z"), ("hourly-b2", "2025-01-01T07:00:00Z")] {
        let backup: VirtualMachineRepositoryBackup = serde_json::from_value(json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
            "metadata": {"name": name, "labels": {"schedule.vmsnap.io/schedule": "hourly", "schedule.vmsnap.io/vm": "vm"},
                         "annotations": {"schedule.vmsnap.io/run-time": run_time}},
            "spec": {"repository": "main", "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}}))
        .unwrap();
        backups.create(&PostParams::default(), &backup).await.unwrap();
        let status = json!({"status": {"phase": "Succeeded", "vmName": "vm"}});
        backups
            .patch_status(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status))
            .await
            .unwrap();
    }
    let schedule: VirtualMachineSnapshotSchedule = serde_json::from_value(json!({
        "apiVersion": "schedule.vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshotSchedule", "metadata": {"name": "hourly"},
        "spec": {"vmName": "vm", "every": "1h", "keep": {"last": 1}, "backupTo": "main", "backupKeep": {"last": 1}}}))
    .unwrap();
    schedules.create(&PostParams::default(), &schedule).await.unwrap();
    // The newest scheduled snapshot is backed up at once; the test plays its backup controller.
    vmsnap_testing::await_value(&backups, "hourly-old", WAIT, |_| Some(())).await.unwrap();
    let status = json!({"status": {"phase": "Succeeded", "vmName": "vm"}});
    backups
        .patch_status("hourly-old", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status))
        .await
        .unwrap();
    // As after downtime: the last run dealt with was two hours ago, so one catch-up run is due.
    let two_hours_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
    let status = json!({"status": {"lastScheduleTime": two_hours_ago}});
    schedules
        .patch_status("hourly", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status))
        .await
        .unwrap();
    eventually("the catch-up run's snapshot, and the older one pruned", WAIT, || async {
        let made = env.snapshots().list(&Default::default()).await.ok()?.items;
        let names: Vec<String> = made.iter().filter_map(|s| s.metadata.name.clone()).collect();
        let caught_up = names.iter().any(|n| n.starts_with("hourly-vm-"));
        (caught_up && !names.contains(&"hourly-old".to_string())).then_some(())
    })
    .await
    .unwrap();
    eventually("the catch-up run's backup, and the older backup pruned", WAIT, || async {
        let made = backups.list(&Default::default()).await.ok()?.items;
        let names: Vec<String> = made.iter().filter_map(|b| b.metadata.name.clone()).collect();
        let backed_up = names.iter().any(|n| n.starts_with("hourly-vm-"));
        (backed_up && !names.contains(&"hourly-b1".to_string())).then_some(())
    })
    .await
    .unwrap();
    // A failed run (of a VM that does not exist, failing at its deadline) with a threshold of one
    // and failurePolicy.suspend: the schedule suspends itself.
    env.snapshots()
        .create(&PostParams::default(), &labelled("hourly-broken", "absent", "2025-01-01T09:00:00Z", "1s"))
        .await
        .unwrap();
    let policy = json!({"spec": {"failurePolicy": {"consecutiveFailures": 1, "suspend": true}}});
    schedules
        .patch("hourly", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&policy))
        .await
        .unwrap();
    vmsnap_testing::await_value(&schedules, "hourly", WAIT, |s| (s.spec.suspend == Some(true)).then_some(()))
        .await
        .unwrap();
}

fn restore(name: &str, target: &str, extra: Value) -> VirtualMachineRestore {
    let mut spec = json!({"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target}, "virtualMachineSnapshotName": "snap"});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore", "metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_grants_exactly_what_the_controllers_use() {
    let mut env = Env::start_untagged_controllers().await;
    env.server.api.record_requests();
    let tagged = vmsnap_testing::client_tagged(&env.server.kubeconfig(), "controllers").await.unwrap();
    env.controllers = Some(vmsnap_controllers::start(tagged, Default::default()));

    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let mut vm = VmBuilder::new("vm")
        .with_pvc("data", "data-pvc")
        .with_data_volume("root", "vm-root")
        .running()
        .build();
    vm.spec.data_volume_templates = vec![serde_json::from_value::<DataVolumeTemplateSpec>(json!({
        "metadata": {"name": "vm-root"},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local"}}
    }))
    .unwrap()];
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), "default");
    dvs.create(
        &PostParams::default(),
        &DataVolume::new("vm-root", vm.spec.data_volume_templates[0].spec.clone()),
    )
    .await
    .unwrap();
    let vm = env.create_vm(&vm).await;
    // The data PVC belongs to the VM (so a copy's PVC gets the VM as owner), and the storage class
    // names its snapshot class through a StorageProfile, as CDI does.
    let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "vm", "uid": vm.metadata.uid, "controller": true}]}});
    let pvcs: Api<vmsnap_api::k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(env.client.clone(), "default");
    pvcs.patch("data-pvc", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&owner))
        .await
        .unwrap();
    let profiles: Api<vmsnap_api::cdi::StorageProfile> = Api::all(env.client.clone());
    profiles
        .create(&PostParams::default(), &vmsnap_api::cdi::StorageProfile::new("local", Default::default()))
        .await
        .unwrap();
    let status = json!({"status": {"storageClass": "local", "snapshotClass": "local-snapshots"}});
    profiles
        .patch_status("local", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status))
        .await
        .unwrap();
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
    env.create_snapshot("snap", "vm", json!({})).await;
    vmsnap_testing::await_value(&env.snapshots(), "snap", WAIT, |s| {
        (s.status.as_ref()?.ready_to_use == Some(true)).then_some(())
    })
    .await
    .unwrap();

    let restores: Api<VirtualMachineRestore> = Api::namespaced(env.client.clone(), "default");
    let wait_complete = |name: &'static str| {
        let restores = restores.clone();
        async move {
            vmsnap_testing::await_value(&restores, name, WAIT, |r| {
                (r.status.as_ref()?.complete == Some(true)).then_some(())
            })
            .await
            .unwrap();
        }
    };
    restores.create(&PostParams::default(), &restore("copy", "copy", json!({}))).await.unwrap();
    wait_complete("copy").await;

    // A running target: the controller stops it, then restores in place over the DataVolume's PVC.
    restores
        .create(
            &PostParams::default(),
            &restore(
                "inplace",
                "vm",
                json!({"targetReadinessPolicy": "StopTarget", "volumeRestorePolicy": "InPlace"}),
            ),
        )
        .await
        .unwrap();
    eventually("the stop call", WAIT, || async { (env.agent.calls_of("stop") >= 1).then_some(()) })
        .await
        .unwrap();
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(env.client.clone(), "default");
    vmis.delete("vm", &DeleteParams::default()).await.unwrap();
    wait_complete("inplace").await;
    restores.create(&PostParams::default(), &restore("again", "vm", json!({}))).await.unwrap();
    wait_complete("again").await;
    env.snapshots().delete("snap", &DeleteParams::default()).await.unwrap();
    eventually("the snapshot to be gone", WAIT, || async {
        env.snapshots().get_opt("snap").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();

    schedule_scenario(&env).await;

    let used: BTreeSet<(String, String, String)> = env
        .server
        .api
        .recorded_requests()
        .into_iter()
        .filter(|r| r.component.as_deref() == Some("controllers"))
        .filter_map(|r| classify(&r.method, &r.path, &r.query))
        .collect();
    let granted = granted();
    let not_granted: Vec<_> = used.difference(&granted).collect();
    assert!(
        not_granted.is_empty(),
        "the controllers used what deploy/rbac.yaml does not grant: {not_granted:#?}"
    );
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(unused.is_empty(), "deploy/rbac.yaml grants what the controllers never used: {unused:#?}");
}
