//! The snapshot and content controllers against the embedded API server, with a fake agent and a
//! fake CSI snapshotter: KubeVirt's state machine, names, conditions, indications and deletion.

mod common;

use std::time::Duration;

use common::{Env, t};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use vmsnap_api::k8s_openapi::api::core::v1::Event;
use vmsnap_api::kubevirt::{PersistentVolumeClaimVolumeSource, Volume};
use vmsnap_api::snapshot::{VirtualMachineSnapshotContent, content_name, volume_snapshot_name};
use vmsnap_api::volumesnapshot::VolumeSnapshot;
use vmsnap_testing::eventually;
use vmsnap_testing::fixtures::{VmBuilder, VmiState, create_bound_pvc, create_running_vmi};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_snapshot_captures_the_vm_and_one_backup_per_snapshottable_volume() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    create_bound_pvc(&env.client, "default", "nfs-pvc", "nfs").await.unwrap();
    let vm = env
        .create_vm(
            &VmBuilder::new("vm")
                .with_pvc("data", "data-pvc")
                .with_pvc("shared", "nfs-pvc")
                .with_container_disk("root")
                .build(),
        )
        .await;
    let snap = env.create_snapshot("snap", "vm", json!({})).await;
    let done = env.wait_phase("snap", "Succeeded", WAIT).await;
    let st = done.status.clone().unwrap();
    assert_eq!(st.source_uid, vm.uid());
    assert_eq!(st.ready_to_use, Some(true));
    assert!(st.indications.is_empty() || st.indications == vec!["PartialSnapshot"], "{:?}", st.indications);
    assert_eq!(
        Env::conditions(&done),
        vec![t("Progressing", "False", "Operation complete"), t("Ready", "True", "Ready")]
    );
    let lists = st.snapshot_volumes.clone().unwrap();
    assert_eq!(lists.included_volumes, vec!["data"]);
    assert_eq!(lists.excluded_volumes, vec!["shared", "root"]);
    assert_eq!(st.indications, vec!["PartialSnapshot"], "an excluded PVC makes the snapshot partial");

    let uid = snap.uid().unwrap();
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(env.client.clone(), "default");
    let content = contents.get(&content_name(&uid)).await.unwrap();
    assert_eq!(st.virtual_machine_snapshot_content_name.as_deref(), Some(content_name(&uid).as_str()));
    assert_eq!(content.finalizers(), vec!["snapshot.kubevirt.io/vmsnapshotcontent-protection"]);
    assert_eq!(content.spec.virtual_machine_snapshot_name.as_deref(), Some("snap"));
    assert_eq!(content.spec.source.virtual_machine.as_ref().unwrap().spec, vm.spec);
    assert_eq!(content.spec.volume_backups.len(), 1);
    let backup = &content.spec.volume_backups[0];
    assert_eq!(backup.volume_name, "data");
    assert_eq!(backup.persistent_volume_claim.metadata.name.as_deref(), Some("data-pvc"));
    assert_eq!(backup.volume_snapshot_name.as_deref(), Some(volume_snapshot_name(&uid, "data").as_str()));

    let vss: Api<VolumeSnapshot> = Api::namespaced(env.client.clone(), "default");
    let vs = vss.get(&volume_snapshot_name(&uid, "data")).await.unwrap();
    assert_eq!(vs.labels()["snapshot.kubevirt.io/source-vm-name"], "vm");
    assert_eq!(vs.labels()["snapshot.kubevirt.io/source-vm-namespace"], "default");
    assert_eq!(vs.spec.volume_snapshot_class_name.as_deref(), Some("local-snapshots"));
    let owner = &vs.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
        ("VirtualMachineSnapshotContent", Some(true), Some(true))
    );
    assert_eq!(env.agent.calls_of("freeze"), 0, "an offline VM is not frozen");

    let vm_after = eventually("the VM to be unlocked and its volume statuses written", WAIT, || async {
        let vm = env.vms().get("vm").await.unwrap();
        let st = vm.status.as_ref()?;
        let unlocked = st.snapshot_in_progress.is_none()
            && !vm.finalizers().iter().any(|f| f == "snapshot.kubevirt.io/snapshot-source-protection");
        (unlocked && st.volume_snapshot_statuses.len() == 3).then_some(vm)
    })
    .await
    .unwrap();
    let statuses = vm_after.status.unwrap().volume_snapshot_statuses;
    let shared = statuses.iter().find(|s| s.name == "shared").unwrap();
    assert!(!shared.enabled);
    assert_eq!(
        shared.reason.as_deref(),
        Some(
            "No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass [nfs] [shared]"
        )
    );
    let root = statuses.iter().find(|s| s.name == "root").unwrap();
    assert_eq!(root.reason.as_deref(), Some("Snapshot is not supported for this volumeSource type [root]"));

    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    let reasons: Vec<String> =
        events.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.contains(&"SuccessfulVirtualMachineSnapshotContentCreate".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"SuccessfulVolumeSnapshotCreate".to_string()), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_snapshot_with_the_guest_agent_freezes_and_thaws() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let vm = env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build()).await;
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
    env.create_snapshot("snap", "vm", json!({})).await;
    let done = env.wait_phase("snap", "Succeeded", WAIT).await;
    let st = done.status.unwrap();
    assert_eq!(st.indications, vec!["GuestAgent", "Online"]);
    assert_eq!(st.source_indications[0].indication, "GuestAgent");
    assert_eq!(
        st.source_indications[1].message,
        "Snapshot taken while the VM was running. Consistency depends on guest-agent quiescing."
    );
    assert_eq!(env.agent.calls_of("freeze"), 1);
    eventually("the guest to be thawed", WAIT, || async {
        (env.agent.calls_of("unfreeze") >= 1).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_guest_agent_or_while_paused_there_is_no_freeze() {
    let env = Env::start().await;
    for (vm_name, state, want) in [
        ("noagent", VmiState { agent: false, paused: false }, vec!["NoGuestAgent", "Online"]),
        ("paused", VmiState { agent: true, paused: true }, vec!["Online", "Paused"]),
    ] {
        let claim = format!("{vm_name}-pvc");
        create_bound_pvc(&env.client, "default", &claim, "local").await.unwrap();
        let vm = env.create_vm(&VmBuilder::new(vm_name).with_pvc("data", &claim).running().build()).await;
        create_running_vmi(&env.client, &vm, state, vec![]).await.unwrap();
        env.create_snapshot(&format!("snap-{vm_name}"), vm_name, json!({})).await;
        let done = env.wait_phase(&format!("snap-{vm_name}"), "Succeeded", WAIT).await;
        assert_eq!(done.status.unwrap().indications, want);
    }
    assert_eq!(env.agent.calls_of("freeze"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_without_snapshottable_volumes_succeeds_at_once_without_freezing() {
    let env = Env::start().await;
    let vm = env.create_vm(&VmBuilder::new("vm").with_container_disk("root").running().build()).await;
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
    env.create_snapshot("snap", "vm", json!({})).await;
    let done = env.wait_phase("snap", "Succeeded", WAIT).await;
    assert_eq!(done.status.unwrap().ready_to_use, Some(true));
    assert_eq!(env.agent.calls_of("freeze"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_hotplug_is_included_and_a_vmi_only_hotplug_is_excluded() {
    let env = Env::start().await;
    for claim in ["data-pvc", "hot-pvc", "vmi-only-pvc"] {
        create_bound_pvc(&env.client, "default", claim, "local").await.unwrap();
    }
    let mut builder =
        VmBuilder::new("vm").with_pvc("data", "data-pvc").with_pvc("hot", "hot-pvc").running().build();
    builder.spec.template.spec.volumes[1].persistent_volume_claim.as_mut().unwrap().hotpluggable = Some(true);
    let vm = env.create_vm(&builder).await;
    let vmi_only = Volume {
        name: "vmi-only".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: "vmi-only-pvc".into(),
            hotpluggable: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![vmi_only])
        .await
        .unwrap();
    env.create_snapshot("snap", "vm", json!({})).await;
    let done = env.wait_phase("snap", "Succeeded", WAIT).await;
    let st = done.status.unwrap();
    let lists = st.snapshot_volumes.unwrap();
    assert_eq!(lists.included_volumes, vec!["data", "hot"]);
    assert_eq!(lists.excluded_volumes, vec!["vmi-only"]);
    assert_eq!(st.indications, vec!["GuestAgent", "Online", "PartialSnapshot"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_freeze_reports_the_error_and_no_creation_time() {
    let env = Env::start().await;
    *env.agent.fail_freeze.lock().unwrap() = Some("command Freeze failed: guest agent refused".into());
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let vm = env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build()).await;
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
    env.create_snapshot("snap", "vm", json!({})).await;
    let snap = vmsnap_testing::await_value(&env.snapshots(), "snap", WAIT, |s| {
        let st = s.status.as_ref()?;
        st.error.as_ref()?;
        Some(s.clone())
    })
    .await
    .unwrap();
    let st = snap.status.clone().unwrap();
    assert!(st.error.unwrap().message.unwrap().contains("command Freeze failed"));
    assert!(st.creation_time.is_none());
    assert_eq!(Env::conditions(&snap)[0], t("Progressing", "False", "In error state"));
    assert_eq!(st.phase.as_deref(), Some("InProgress"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_freeze_is_retried_once_per_period_as_kubevirt_does() {
    let env = Env::start().await;
    *env.agent.fail_freeze.lock().unwrap() = Some("command Freeze failed: guest agent refused".into());
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let vm = env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build()).await;
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
    env.create_snapshot("snap", "vm", json!({})).await;
    vmsnap_testing::await_value(&env.snapshots(), "snap", WAIT, |s| {
        s.status.as_ref()?.error.as_ref().map(drop)
    })
    .await
    .unwrap();
    let first = std::time::Instant::now();
    let at_first_error = env.agent.calls_of("freeze");
    // KubeVirt requeues a failed freeze after 5 s: in 7 s after the first failure at most one more
    // attempt (the status write that reports an error must not bring an immediate second one).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let attempts = env.agent.calls_of("freeze");
    assert!(at_first_error <= 1, "{at_first_error} freeze attempts before the first error was reported");
    assert!(
        (2..=2).contains(&attempts),
        "{attempts} freeze attempts in the {:?} after the first failure (expected the first and one retry)",
        first.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_fails_the_snapshot_thaws_the_guest_and_unlocks_the_vm() {
    let mut env = Env::start().await;
    env.snapshotter = None; // the point in time is never fixed, so the deadline passes while frozen
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let vm = env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build()).await;
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
    let snap = env.create_snapshot("snap", "vm", json!({"failureDeadline": "3s"})).await;
    let failed = env.wait_phase("snap", "Failed", WAIT).await;
    assert_eq!(
        Env::conditions(&failed),
        vec![
            t("Progressing", "False", "Operation failed"),
            t("Ready", "False", "Not ready"),
            t("Failure", "True", "snapshot deadline exceeded")
        ]
    );
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(env.client.clone(), "default");
    eventually("the content to be deleted", WAIT, || async {
        contents.get_opt(&content_name(&snap.uid().unwrap())).await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    eventually("the guest to be thawed", WAIT, || async {
        (env.agent.calls_of("unfreeze") >= 1).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(env.agent.calls_of("freeze"), 1);
    eventually("the VM to be unlocked", WAIT, || async {
        let vm = env.vms().get("vm").await.unwrap();
        let unlocked = vm.status.as_ref().and_then(|s| s.snapshot_in_progress.clone()).is_none()
            && !vm.finalizers().iter().any(|f| f == "snapshot.kubevirt.io/snapshot-source-protection");
        unlocked.then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_snapshot_while_the_guest_is_frozen_thaws_it() {
    let mut env = Env::start().await;
    env.snapshotter = None; // nothing fixes the point in time: the guest stays frozen
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    let vm = env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build()).await;
    create_running_vmi(&env.client, &vm, VmiState { agent: true, paused: false }, vec![]).await.unwrap();
    env.create_snapshot("snap", "vm", json!({})).await;
    eventually("the guest to be frozen", WAIT, || async {
        (env.agent.calls_of("freeze") == 1).then_some(())
    })
    .await
    .unwrap();
    env.snapshots().delete("snap", &DeleteParams::default()).await.unwrap();
    eventually("the guest to be thawed", WAIT, || async {
        (env.agent.calls_of("unfreeze") >= 1).then_some(())
    })
    .await
    .unwrap();
    eventually("the snapshot to be gone", WAIT, || async {
        env.snapshots().get_opt("snap").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    let vm = env.vms().get("vm").await.unwrap();
    assert!(vm.status.as_ref().and_then(|s| s.snapshot_in_progress.clone()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_volume_snapshot_is_reported_missing() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").build()).await;
    let snap = env.create_snapshot("snap", "vm", json!({})).await;
    env.wait_phase("snap", "Succeeded", WAIT).await;
    let vs_name = volume_snapshot_name(&snap.uid().unwrap(), "data");
    let vss: Api<VolumeSnapshot> = Api::namespaced(env.client.clone(), "default");
    vss.delete(&vs_name, &DeleteParams::default()).await.unwrap();
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(env.client.clone(), "default");
    let want = format!("VolumeSnapshots ({vs_name}) missing");
    let msg = vmsnap_testing::await_value(&contents, &content_name(&snap.uid().unwrap()), WAIT, |c| {
        c.status.as_ref()?.error.as_ref()?.message.clone()
    })
    .await
    .unwrap();
    assert_eq!(msg, want);
    let s = vmsnap_testing::await_value(&env.snapshots(), "snap", WAIT, |s| {
        (s.status.as_ref()?.ready_to_use == Some(false)).then(|| s.clone())
    })
    .await
    .unwrap();
    assert_eq!(s.status.unwrap().error.unwrap().message.as_deref(), Some(want.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_created_before_its_vm_waits_then_succeeds() {
    let env = Env::start().await;
    env.create_snapshot("early", "later-vm", json!({})).await;
    let waiting = vmsnap_testing::await_value(&env.snapshots(), "early", WAIT, |s| {
        let c = s.status.as_ref()?.conditions.first()?;
        (c.reason.as_deref() == Some("Source does not exist")).then(|| s.clone())
    })
    .await
    .unwrap();
    assert_eq!(waiting.status.unwrap().phase.as_deref(), Some("InProgress"));
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    env.create_vm(&VmBuilder::new("later-vm").with_pvc("data", "data-pvc").build()).await;
    env.wait_phase("early", "Succeeded", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_a_ready_content_and_delete_removes_everything() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").build()).await;
    let kept = env.create_snapshot("kept", "vm", json!({"deletionPolicy": "Retain"})).await;
    env.wait_phase("kept", "Succeeded", WAIT).await;
    let gone = env.create_snapshot("gone", "vm", json!({})).await;
    env.wait_phase("gone", "Succeeded", WAIT).await;
    env.snapshots().delete("kept", &DeleteParams::default()).await.unwrap();
    env.snapshots().delete("gone", &DeleteParams::default()).await.unwrap();
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(env.client.clone(), "default");
    let vss: Api<VolumeSnapshot> = Api::namespaced(env.client.clone(), "default");
    eventually("both snapshots to be gone", WAIT, || async {
        let none = env.snapshots().list(&Default::default()).await.unwrap().items.is_empty();
        none.then_some(())
    })
    .await
    .unwrap();
    eventually("the Delete content and its VolumeSnapshot to be gone", WAIT, || async {
        let content_gone = contents.get_opt(&content_name(&gone.uid().unwrap())).await.unwrap().is_none();
        let vs_gone =
            vss.get_opt(&volume_snapshot_name(&gone.uid().unwrap(), "data")).await.unwrap().is_none();
        (content_gone && vs_gone).then_some(())
    })
    .await
    .unwrap();
    let retained = eventually("the retained content to lose its finalizer", WAIT, || async {
        let c = contents.get_opt(&content_name(&kept.uid().unwrap())).await.unwrap()?;
        c.finalizers().is_empty().then_some(c)
    })
    .await
    .unwrap();
    assert_eq!(retained.status.unwrap().ready_to_use, Some(true));
    assert!(vss.get_opt(&volume_snapshot_name(&kept.uid().unwrap(), "data")).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_wiped_by_hand_is_rebuilt_identically() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").build()).await;
    env.create_snapshot("snap", "vm", json!({})).await;
    let before = env.wait_phase("snap", "Succeeded", WAIT).await.status.unwrap();
    env.snapshots()
        .patch_status("snap", &PatchParams::default(), &Patch::Merge(&json!({"status": null})))
        .await
        .unwrap();
    let after = env.wait_phase("snap", "Succeeded", WAIT).await.status.unwrap();
    let strip = |mut s: vmsnap_api::snapshot::VirtualMachineSnapshotStatus| {
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    assert_eq!(strip(after), strip(before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_snapshot_waits_for_the_lock_of_the_first() {
    let mut env = Env::start().await;
    env.snapshotter = None;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").build()).await;
    env.create_snapshot("first", "vm", json!({})).await;
    vmsnap_testing::await_value(&env.vms(), "vm", WAIT, |vm| {
        vm.status.as_ref()?.snapshot_in_progress.clone()
    })
    .await
    .unwrap();
    env.create_snapshot("second", "vm", json!({})).await;
    let blocked = vmsnap_testing::await_value(&env.snapshots(), "second", WAIT, |s| {
        let r = s.status.as_ref()?.conditions.first()?.reason.clone()?;
        r.contains("in progress").then_some(r)
    })
    .await
    .unwrap();
    assert_eq!(blocked, "Source not locked snapshot \"first\" in progress");
}

/// A VolumeSnapshot the API refuses (KubeVirt's functional tests deny them with a webhook that names a
/// missing Service) is reported on the snapshot, in the Progressing condition's message and as a
/// warning event, while the phases, reasons and the content's unset status stay KubeVirt's; once the
/// refusal ends, the snapshot succeeds and the report is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_volume_snapshot_is_reported_on_the_snapshot_and_the_snapshot_goes_on_once_allowed() {
    let env = Env::start().await;
    let webhooks: Api<kube::api::DynamicObject> = Api::all_with(
        env.client.clone(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        )),
    );
    let deny: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "deny-volume-snapshots"},
        "webhooks": [{"name": "deny.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail",
            "rules": [{"operations": ["CREATE"], "apiGroups": ["snapshot.storage.k8s.io"], "apiVersions": ["v1"], "resources": ["volumesnapshots"]}],
            "clientConfig": {"service": {"namespace": "default", "name": "nonexistent", "path": "/deny"}}}]
    }))
    .unwrap();
    webhooks.create(&Default::default(), &deny).await.unwrap();
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    env.create_vm(&VmBuilder::new("vm").with_pvc("data", "data-pvc").build()).await;
    let snap = env.create_snapshot("snap", "vm", json!({})).await;

    let reported = vmsnap_testing::await_value(&env.snapshots(), "snap", WAIT, |s| {
        let progressing = s.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Progressing")?;
        progressing.message.clone().filter(|m| m.contains("could not be created")).map(|m| (s.clone(), m))
    })
    .await
    .unwrap();
    let (waiting, message) = reported;
    let vs_name = volume_snapshot_name(&snap.uid().unwrap(), "data");
    assert!(message.starts_with(&format!("VolumeSnapshot {vs_name}: could not be created: ")), "{message}");
    assert!(message.contains("service \"nonexistent\" not found"), "{message}");
    assert_eq!(
        Env::conditions(&waiting)[0],
        t("Progressing", "True", "Source locked and operation in progress")
    );
    assert_eq!(waiting.status.as_ref().unwrap().phase.as_deref(), Some("InProgress"));
    assert!(waiting.status.as_ref().unwrap().error.is_none());
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(env.client.clone(), "default");
    let content = contents.get(&content_name(&snap.uid().unwrap())).await.unwrap();
    assert!(content.status.is_none(), "KubeVirt leaves the content's status unset: {:?}", content.status);
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    eventually("a FailedVolumeSnapshotCreate warning on the snapshot", WAIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("snap")
                    && e.reason.as_deref() == Some("FailedVolumeSnapshotCreate")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await
    .unwrap();

    webhooks.delete("deny-volume-snapshots", &DeleteParams::default()).await.unwrap();
    let done = env.wait_phase("snap", "Succeeded", WAIT).await;
    let progressing =
        done.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(progressing.message, None, "{progressing:?}");
    let content = contents.get(&content_name(&snap.uid().unwrap())).await.unwrap();
    assert!(!content.annotations().contains_key("snapshot.vmsnap.io/volume-snapshot-refused"));
}
