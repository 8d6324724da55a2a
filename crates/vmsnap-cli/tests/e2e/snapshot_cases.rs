//! Online snapshots of real guests in the states KubeVirt distinguishes: paused, without a guest
//! agent, without any disk that can be snapshotted, and with disks hotplugged into the VM (kept in
//! its spec) or into the running instance only.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A VirtualMachineSnapshot of VM `vm`, as JSON for `kubectl create -f -`.
fn snapshot_of(vm: &str, name: &str) -> String {
    format!(
        r#"{{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {{"name": "{name}"}},
            "spec": {{"source": {{"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "{vm}"}}}}}}"#
    )
}

/// Creates a snapshot of `vm` with kubectl and returns it once Ready.
async fn snapshot(vmsnap: &Vmsnap, vm: &str, name: &str) -> Value {
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &snapshot_of(vm, name)).await.ok();
    let timeout = format!("--timeout={OPERATION_TIMEOUT}");
    let waited =
        vmsnap.kubectl_run(&["wait", "vmsnapshot", name, "--for", "condition=Ready", &timeout]).await;
    let snapshot = get_json(vmsnap, "vmsnapshot", name).await.unwrap();
    assert_eq!(waited.code, 0, "snapshot {name} did not become ready: {snapshot:#}");
    snapshot
}

/// How many times the guest's fsfreeze hook ran for a freeze.
async fn freezes(vmsnap: &Vmsnap, vm: &str) -> usize {
    let log = vmsnap.sh(vm, "cat /run/fsfreeze-hook.log 2>/dev/null || true").await.unwrap();
    log.lines().filter(|line| line.starts_with("freeze")).count()
}

/// A blank DataVolume of 64 MiB, ready.
async fn blank_data_volume(vmsnap: &Vmsnap, name: &str) {
    let dv = format!(
        r#"{{"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {{"name": "{name}"}},
            "spec": {{"source": {{"blank": {{}}}}, "storage": {{"resources": {{"requests": {{"storage": "64Mi"}}}}}}}}}}"#
    );
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &dv).await.ok();
    let ready = "--for=jsonpath={.status.phase}=Succeeded";
    kubectl(vmsnap, &["wait", "dv", name, ready, "--timeout=60s"]).await;
}

/// `PUT` of a KubeVirt subresource with `kubectl replace --raw`.
async fn subresource(vmsnap: &Vmsnap, plural: &str, name: &str, action: &str, body: &str) {
    let path = format!("/apis/subresources.kubevirt.io/v1/namespaces/default/{plural}/{name}/{action}");
    vmsnap.kubectl().run_stdin_async(&["replace", "--raw", &path, "-f", "-"], body).await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn indications_follow_pause_and_the_guest_agent_and_only_a_live_agent_freezes() {
    let Some(vmsnap) = start("tcg") else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;

    // Paused: crash-consistent, no freeze.
    vmsnap.cli(&["vm", "pause", "demo"]).await.ok();
    let paused = snapshot(&vmsnap, "demo", "while-paused").await;
    assert_eq!(strings(&paused["status"]["indications"]), ["Online", "Paused"], "{paused:#}");
    vmsnap.cli(&["vm", "unpause", "demo"]).await.ok();
    assert_eq!(freezes(&vmsnap, "demo").await, 0, "a paused guest is not frozen");

    // With the agent: frozen once.
    let quiesced = snapshot(&vmsnap, "demo", "with-agent").await;
    assert_eq!(strings(&quiesced["status"]["indications"]), ["GuestAgent", "Online"]);
    assert_eq!(freezes(&vmsnap, "demo").await, 1);

    // The agent stops for good (its binary can no longer run): crash-consistent, no freeze.
    let stop_agent =
        "(sleep 1; chmod -x \"$(command -v qemu-ga)\"; kill $(pidof qemu-ga)) >/dev/null 2>&1 </dev/null &";
    vmsnap.sh("demo", stop_agent).await.unwrap();
    until("the guest agent to be reported gone", Duration::from_secs(30), async || {
        let vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
        !conditions(&vmi).iter().any(|(kind, status, _)| kind == "AgentConnected" && status == "True")
    })
    .await;
    let crash_consistent = snapshot(&vmsnap, "demo", "without-agent").await;
    assert_eq!(strings(&crash_consistent["status"]["indications"]), ["NoGuestAgent", "Online"]);
    let messages: Vec<String> = crash_consistent["status"]["sourceIndications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        messages[0],
        "Guest agent was not available. Snapshot is crash-consistent and may not be application-consistent."
    );
    let vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
    assert!(vmi["status"]["fsFreezeStatus"].is_null(), "{vmi:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disks_hotplugged_into_the_vm_are_included_and_into_the_instance_only_are_listed_as_excluded() {
    let Some(vmsnap) = start("tcg") else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    blank_data_volume(&vmsnap, "kept").await;
    blank_data_volume(&vmsnap, "passing").await;
    await_running_with_agent(&vmsnap, "demo").await;
    let add = |name: &str| {
        format!(
            r#"{{"name": "{name}", "volumeSource": {{"dataVolume": {{"name": "{name}", "hotpluggable": true}}}}}}"#
        )
    };
    subresource(&vmsnap, "virtualmachines", "demo", "addvolume", &add("kept")).await;
    subresource(&vmsnap, "virtualmachineinstances", "demo", "addvolume", &add("passing")).await;
    until("both hotplugged disks to be mounted in the guest", Duration::from_secs(60), async || {
        let mounts = vmsnap.sh("demo", "cat /proc/mounts").await.unwrap_or_default();
        mounts.contains("/mnt/kept") && mounts.contains("/mnt/passing")
    })
    .await;

    let snapshot = snapshot(&vmsnap, "demo", "with-hotplugs").await;
    let volumes = &snapshot["status"]["snapshotVolumes"];
    assert_eq!(strings(&volumes["includedVolumes"]), ["data", "kept"], "{snapshot:#}");
    assert_eq!(strings(&volumes["excludedVolumes"]), ["passing"], "{snapshot:#}");
    assert_eq!(strings(&snapshot["status"]["indications"]), ["GuestAgent", "Online", "PartialSnapshot"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_without_disks_to_snapshot_succeeds_at_once_without_a_freeze() {
    let Some(vmsnap) = start("tcg") else { return };
    let diskless = r#"{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "diskless"},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"firmware": {"kernelBoot": {"container": {"image": "vmsnap.local/test-guest:latest"}}},
                       "devices": {}, "resources": {"requests": {"memory": "256Mi"}}}}}}}"#;
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], diskless).await.ok();
    await_running_with_agent(&vmsnap, "diskless").await;
    let snapshot = snapshot(&vmsnap, "diskless", "nothing-to-cut").await;
    assert_eq!(snapshot["status"]["phase"], "Succeeded");
    assert!(snapshot["status"]["snapshotVolumes"]["includedVolumes"].is_null(), "{snapshot:#}");
    let content = snapshot["status"]["virtualMachineSnapshotContentName"].as_str().unwrap().to_owned();
    let content = get_json(&vmsnap, "vmsnapshotcontent", &content).await.unwrap();
    assert!(content["spec"]["volumeBackups"].is_null(), "{content:#}");
    assert_eq!(freezes(&vmsnap, "diskless").await, 0, "nothing to cut, nothing to freeze");
}

/// A freeze hook that hangs longer than `failureDeadline` (given in seconds): the snapshot fails at
/// its deadline, the same way every time, with the hanging freeze named in its error; the guest is
/// thawed the moment the hook finally returns, and no freeze is sent twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_hook_that_outlasts_the_deadline_fails_the_snapshot_and_never_freezes_late() {
    let Some(vmsnap) = start("tcg") else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    let slow_hook = "printf '#!/bin/sh\\n[ \"$1\" = freeze ] && sleep 20\\nexit 0\\n' > /etc/qemu/fsfreeze-hook.d/00-slow \
                     && chmod +x /etc/qemu/fsfreeze-hook.d/00-slow";
    vmsnap.sh("demo", slow_hook).await.unwrap();

    let manifest = snapshot_of("demo", "slow").replace(r#""spec": {"#, r#""spec": {"failureDeadline": 10, "#);
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &manifest).await.ok();
    let failed = "--for=jsonpath={.status.phase}=Failed";
    let waited = vmsnap.kubectl_run(&["wait", "vmsnapshot", "slow", failed, "--timeout=40s"]).await;
    let snap = get_json(&vmsnap, "vmsnapshot", "slow").await.unwrap();
    assert_eq!(waited.code, 0, "the snapshot did not fail at its deadline: {snap:#}");

    let error = snap["status"]["error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("command Freeze failed"), "{snap:#}");
    assert!(error.contains("a freeze hook in the guest may hang"), "{snap:#}");
    let reasons = conditions(&snap);
    assert!(
        reasons.contains(&("Failure".into(), "True".into(), "snapshot deadline exceeded".into())),
        "{snap:#}"
    );
    assert!(snap["status"]["creationTime"].is_null());

    // The hook returns 20 s after it started: the guest freezes then, and is thawed at once
    // (a guest-exec that reaches the agent in between is refused: "the agent is in frozen state").
    until("the late freeze and its thaw", Duration::from_secs(40), async || {
        let log = vmsnap.sh("demo", "cat /run/fsfreeze-hook.log 2>/dev/null || true").await;
        log.is_ok_and(|log| log.lines().any(|l| l.starts_with("thaw")))
    })
    .await;
    let log = vmsnap.sh("demo", "cat /run/fsfreeze-hook.log").await.unwrap();
    let at = |kind: &str| -> Vec<u64> {
        log.lines()
            .filter(|l| l.starts_with(kind))
            .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
            .collect()
    };
    let (freezes, thaws) = (at("freeze"), at("thaw"));
    assert_eq!((freezes.len(), thaws.len()), (1, 1), "one freeze and one thaw expected:\n{log}");
    let frozen_for_ms = (thaws[0] - freezes[0]) / 1000;
    assert!(frozen_for_ms < 3000, "the late freeze lasted {frozen_for_ms} ms:\n{log}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = vmsnap.sh("demo", "cat /run/fsfreeze-hook.log").await.unwrap();
    assert_eq!(later, log, "the guest was frozen again after the snapshot was over");
    let vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
    assert!(vmi["status"]["fsFreezeStatus"].is_null(), "{vmi:#}");
    assert!(
        conditions(&vmi).iter().any(|(kind, status, _)| kind == "AgentConnected" && status == "True"),
        "{vmi:#}"
    );

    // The guest agent serves the next snapshot normally.
    vmsnap.sh("demo", "rm /etc/qemu/fsfreeze-hook.d/00-slow").await.unwrap();
    let next = snapshot(&vmsnap, "demo", "after").await;
    assert_eq!(strings(&next["status"]["indications"]), ["GuestAgent", "Online"], "{next:#}");
}
