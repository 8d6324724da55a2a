//! Context "[storage-req]" / "With online vm snapshot": snapshots of running guests, with and
//! without a guest agent, frozen or not, paused, with a hotplugged disk, and failing.

use std::time::Duration;

use serde_json::{Value, json};

use super::{check_online_snapshot_expected_content_source, content_name_of};
use crate::kubevirt_support::console::Console;
use crate::kubevirt_support::guest::Image;
use crate::kubevirt_support::libstorage::*;
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

const SNAPSHOT_DEADLINE_EXCEEDED: &str = "snapshot deadline exceeded";
const NOT_READY: &str = "Not ready";

/// `checkVMFreeze`: the indications say whether a guest agent quiesced the guest, the snapshot
/// is Ready and not Progressing, `ensure` holds in the guest, and the guest's `qemu-ga` runs
/// exactly when it is said to have one.
async fn check_vm_freeze(
    cluster: &Cluster,
    snapshot: &Value,
    vm: &str,
    has_guest_agent: bool,
    ensure: Ensure,
) {
    let expected =
        if has_guest_agent { json!(["GuestAgent", "Online"]) } else { json!(["NoGuestAgent", "Online"]) };
    assert_eq!(snapshot["status"]["indications"], expected, "{snapshot:#}");
    assert_eq!(items(&snapshot["status"]["conditions"]).len(), 2, "{snapshot:#}");
    assert!(has_condition_missing_or_false(snapshot, "Progressing"), "{snapshot:#}");
    assert!(has_condition_true(snapshot, "Ready"), "{snapshot:#}");

    let mut console = Console::login(cluster, vm).await;
    match ensure {
        Ensure::Freeze => ensure_freeze(&mut console).await,
        Ensure::NoFreeze => ensure_no_freeze(&mut console).await,
    }
    // "Sanity - ensure the tests are not lying about the image's guest agent availability".
    let (_, status) = console.run("qemu-ga --version").await;
    assert_eq!(status == 0, has_guest_agent, "qemu-ga --version exited {status}");
}

/// What `checkVMFreeze` checks in the guest.
enum Ensure {
    /// `ensureFreezeFedora`: the fsfreeze hook ran for a freeze and for exactly one thaw.
    Freeze,
    /// `ensureNoFreezeAlpine`: the guest was never frozen.
    NoFreeze,
}

async fn ensure_freeze(console: &mut Console) {
    // The guest's fsfreeze hook logs "freeze <µs>" and "thaw <µs>" (Fedora's journal has
    // "executing fsfreeze hook with arg 'freeze'" and "... 'thaw'").
    let (out, status) = console.run("grep '^freeze' /run/fsfreeze-hook.log").await;
    assert_eq!(status, 0, "the freeze hook ran: {out}");
    let (out, status) = console.run("grep '^thaw' /run/fsfreeze-hook.log").await;
    assert_eq!(status, 0, "the thaw hook ran: {out}");
    let (out, status) = console.run("grep '^thaw' /run/fsfreeze-hook.log | wc -l").await;
    assert_eq!((out.trim(), status), ("1", 0), "one thaw");
}

async fn ensure_no_freeze(console: &mut Console) {
    // The hook is installed, so a freeze would have logged (Alpine's check: /var/log/messages
    // exists and has no "guest-fsfreeze called").
    let (out, status) = console.run("ls /etc/qemu/fsfreeze-hook.d/").await;
    assert_eq!(status, 0, "the fsfreeze hook is installed: {out}");
    let (out, status) = console.run("cat /run/fsfreeze-hook.log 2>/dev/null | grep freeze").await;
    assert_eq!(status, 1, "no freeze: {out}");
}

/// `checkContentSourceAndMemory`.
async fn check_content_source_and_memory(
    cluster: &Cluster,
    vm: &Value,
    snapshot: &Value,
    expected_memory: &Value,
) {
    let content = cluster.get(CONTENT, &content_name_of(snapshot)).await;
    let memory = &content["spec"]["source"]["virtualMachine"]["spec"]["template"]["spec"]["domain"]["resources"]
        ["requests"]["memory"];
    assert_eq!(memory, expected_memory, "{content:#}");
    check_online_snapshot_expected_content_source(cluster, vm, snapshot, true).await;
}

/// Snapshots `vm` and checks what every snapshot of "With online vm snapshot" checks: the freeze
/// (`checkVMFreeze`) and the creation time.
async fn snapshot_checking_freeze(
    cluster: &Cluster,
    vm: &str,
    has_guest_agent: bool,
    ensure: Ensure,
) -> Value {
    let snapshot = snapshot_and_wait(cluster, vm).await;
    check_vm_freeze(cluster, &snapshot, vm, has_guest_agent, ensure).await;
    assert!(snapshot["status"]["creationTime"].is_string(), "{snapshot:#}");
    snapshot
}

/// Creates the snapshot `snapshot-<vm>` and waits for it to succeed.
async fn snapshot_and_wait(cluster: &Cluster, vm: &str) -> Value {
    cluster.create(SNAPSHOT, &new_snapshot(vm)).await;
    wait_snapshot_succeeded(cluster, &format!("snapshot-{vm}")).await
}

/// A VM of `vmi` with a blank DataVolume template `dv` as volume `blank`.
fn vm_with_blank(vmi: Vmi, dv: &DataVolume) -> Value {
    with_data_volume_template(new_virtual_machine(vmi.with_data_volume("blank", &dv.name())), &dv.0)
}

/// "[test_id:6767]with volumes and guest agent available"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_6767_with_volumes_and_guest_agent_available() {
    let Some(cluster) = Cluster::start().await else { return };
    let dv = blank_data_volume(None);
    let vm = vm_with_blank(Vmi::fedora().with_masquerade_networking(), &dv);
    let (vm, vmi) = create_and_start_vm(&cluster, vm, None).await;
    let name = name_of(&vm);
    wait_agent_connected(&cluster, &name).await;

    let initial_memory = vmi["spec"]["domain"]["resources"]["requests"]["memory"].clone();
    let new_memory = json!("1Gi");
    assert_ne!(new_memory, initial_memory);
    // "update vm to make sure vm revision is saved in the snapshot"
    let path = "/spec/template/spec/domain/resources/requests/memory";
    let patch = json!([{"op": "test", "path": path, "value": initial_memory}, {"op": "replace", "path": path, "value": new_memory}]);
    cluster.json_patch(VM, &name, &patch).await;

    let snapshot = snapshot_checking_freeze(&cluster, &name, true, Ensure::Freeze).await;
    check_content_source_and_memory(&cluster, &vm, &snapshot, &initial_memory).await;
}

/// "[test_id:6768]with volumes and no guest agent available"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_6768_with_volumes_and_no_guest_agent_available() {
    let Some(cluster) = Cluster::start().await else { return };
    let dv = blank_data_volume(None);
    let vm = vm_with_blank(Vmi::alpine().with_masquerade_networking(), &dv);
    let (vm, _) = create_and_start_vm(&cluster, vm, None).await;
    let name = name_of(&vm);

    let snapshot = snapshot_checking_freeze(&cluster, &name, false, Ensure::NoFreeze).await;
    check_online_snapshot_expected_content_source(&cluster, &vm, &snapshot, true).await;
}

/// "[test_id:6769]without volumes with guest agent available"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_6769_without_volumes_with_guest_agent_available() {
    let Some(cluster) = Cluster::start().await else { return };
    let vm = new_virtual_machine(Vmi::alpine_with_test_tooling().with_masquerade_networking());
    let (vm, _) = create_and_start_vm(&cluster, vm, None).await;
    let name = name_of(&vm);
    wait_agent_connected(&cluster, &name).await;

    let snapshot = snapshot_checking_freeze(&cluster, &name, true, Ensure::NoFreeze).await;
    check_online_snapshot_expected_content_source(&cluster, &vm, &snapshot, false).await;
}

/// `createDenyVolumeSnapshotCreateWebhook`: VolumeSnapshots of the VM cannot be created.
pub(super) async fn create_deny_volume_snapshot_create_webhook(cluster: &Cluster, vm: &str) -> String {
    let name = format!("temp-webhook-deny-volume-snapshot-create-{}", rand_string(5));
    let rule = json!({"apiGroups": ["snapshot.storage.k8s.io"], "apiVersions": ["v1"], "resources": ["volumesnapshots"]});
    let webhook = deny_webhook(
        &name,
        "dummy-webhook-deny-volume-snapshot-create.kubevirt.io",
        "CREATE",
        rule,
        ("snapshot.kubevirt.io/source-vm-name", vm),
    );
    cluster.create(WEBHOOK, &webhook).await;
    name
}

/// `updatedVMI.Status.FSFreezeStatus`.
async fn fs_freeze_status(cluster: &Cluster, vm: &str) -> String {
    cluster.get(VMI, vm).await["status"]["fsFreezeStatus"].as_str().unwrap_or_default().to_owned()
}

async fn wait_fs_freeze_status(cluster: &Cluster, vm: &str, expected: &str, timeout: Duration) {
    eventually(&format!("fsFreezeStatus {expected:?}"), timeout, POLL, async || {
        let status = fs_freeze_status(cluster, vm).await;
        if status == expected { Ok(()) } else { Err(status) }
    })
    .await;
}

/// A running guest with an agent that boots from an imported Fedora DataVolume, logged in.
async fn running_fedora_from_data_volume(cluster: &Cluster) -> Value {
    let url = Image::FedoraTestTooling.import_url(cluster);
    let vm = render_vm_with_registry_import_data_volume(&url, Image::FedoraTestTooling);
    let (vm, _) = create_and_start_vm(cluster, vm, None).await;
    wait_agent_connected(cluster, &name_of(&vm)).await;
    Console::login(cluster, &name_of(&vm)).await;
    vm
}

/// "[test_id:6837]delete snapshot after freeze, expect vm unfreeze"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_6837_delete_snapshot_after_freeze_expect_vm_unfreeze() {
    let Some(cluster) = Cluster::start().await else { return };
    let vm = running_fedora_from_data_volume(&cluster).await;
    let name = name_of(&vm);
    let webhook = create_deny_volume_snapshot_create_webhook(&cluster, &name).await;
    cluster.create(SNAPSHOT, &new_snapshot(&name)).await;

    wait_fs_freeze_status(&cluster, &name, "frozen", secs(60)).await;
    cluster.delete(SNAPSHOT, &format!("snapshot-{name}")).await;
    wait_fs_freeze_status(&cluster, &name, "", secs(60)).await;
    cluster.delete(WEBHOOK, &webhook).await;
}

/// "[test_id:6949]should unfreeze vm if snapshot fails when deadline exceeded"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_6949_should_unfreeze_vm_if_snapshot_fails_when_deadline_exceeded() {
    let Some(cluster) = Cluster::start().await else { return };
    let vm = running_fedora_from_data_volume(&cluster).await;
    let name = name_of(&vm);
    let webhook = create_deny_volume_snapshot_create_webhook(&cluster, &name).await;
    let mut snapshot = new_snapshot(&name);
    snapshot["spec"]["failureDeadline"] = json!("40s");
    cluster.create(SNAPSHOT, &snapshot).await;
    let snapshot_name = format!("snapshot-{name}");

    eventually("the snapshot to be InProgress", secs(30), POLL, async || {
        let snapshot = cluster.get(SNAPSHOT, &snapshot_name).await;
        if snapshot["status"]["phase"] == "InProgress" { Ok(()) } else { Err(status_of(&snapshot)) }
    })
    .await;
    wait_fs_freeze_status(&cluster, &name, "frozen", secs(10)).await;

    let snapshot = eventually("the snapshot to fail on its deadline", secs(60), POLL, async || {
        let snapshot = cluster.get(SNAPSHOT, &snapshot_name).await;
        let conditions: Vec<(Value, Value, Value)> = items(&snapshot["status"]["conditions"])
            .iter()
            .map(|c| (c["type"].clone(), c["status"].clone(), c["reason"].clone()))
            .collect();
        let expected = vec![
            (json!("Progressing"), json!("False"), json!("Operation failed")),
            (json!("Ready"), json!("False"), json!(NOT_READY)),
            (json!("Failure"), json!("True"), json!(SNAPSHOT_DEADLINE_EXCEEDED)),
        ];
        if conditions == expected && snapshot["status"]["phase"] == "Failed" {
            Ok(snapshot)
        } else {
            Err(status_of(&snapshot))
        }
    })
    .await;
    let content_name = format!("vmsnapshot-content-{}", uid_of(&snapshot));
    eventually("the content to be deleted", secs(30), POLL, async || {
        match cluster.get_opt(CONTENT, &content_name).await {
            None => Ok(()),
            Some(content) => Err(format!("{content:#}")),
        }
    })
    .await;
    wait_fs_freeze_status(&cluster, &name, "", secs(30)).await;
    cluster.delete(WEBHOOK, &webhook).await;
}

/// "[test_id:12182] should succeed snapshot when VM is paused with Paused indication"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_12182_should_succeed_snapshot_when_vm_is_paused_with_paused_indication() {
    let Some(cluster) = Cluster::start().await else { return };
    let dv_name = format!("dv-{}", rand_string(5));
    let vmi = Vmi::fedora().with_masquerade_networking().with_data_volume("blank", &dv_name);
    let dv = DataVolume::new()
        .with_name(&dv_name)
        .with_blank_image_source()
        .with_storage(SNAPSHOT_STORAGE_CLASS, Some("1Gi"));
    let vm = with_data_volume_template(new_virtual_machine(vmi), &dv.0);
    let (vm, _) = create_and_start_vm(&cluster, vm, None).await;
    let name = name_of(&vm);
    wait_agent_connected(&cluster, &name).await;

    // "Pausing the VirtualMachineInstance"
    cluster.subresource(VMI, &name, "pause", &json!({})).await.unwrap_or_else(|e| panic!("pause: {e}"));
    eventually("the VMI to be paused", secs(30), POLL, async || {
        let vmi = cluster.get(VMI, &name).await;
        if has_condition_true(&vmi, "Paused") { Ok(()) } else { Err(status_of(&vmi)) }
    })
    .await;

    let snapshot = snapshot_and_wait(&cluster, &name).await;
    let indications = items(&snapshot["status"]["indications"]);
    for expected in ["Online", "Paused"] {
        assert!(indications.contains(&json!(expected)), "indication {expected}: {snapshot:#}");
    }
    check_online_snapshot_expected_content_source(&cluster, &vm, &snapshot, true).await;
}

/// "should succeed online snapshot with hot plug disk"
#[tokio::test(flavor = "multi_thread")]
async fn should_succeed_online_snapshot_with_hot_plug_disk() {
    let Some(cluster) = Cluster::start().await else { return };
    let vm = running_fedora_from_data_volume(&cluster).await;
    let name = name_of(&vm);
    let hotplugged = add_volume_and_verify(&cluster, &name).await;

    let snapshot = snapshot_and_wait(&cluster, &name).await;
    assert_eq!(snapshot["status"]["indications"], json!(["GuestAgent", "Online"]), "{snapshot:#}");
    let updated = cluster.get(VM, &name).await;
    let content = cluster.get(CONTENT, &content_name_of(&snapshot)).await;
    let vm_volumes = items(&updated["spec"]["template"]["spec"]["volumes"]);
    let content_volumes =
        items(&content["spec"]["source"]["virtualMachine"]["spec"]["template"]["spec"]["volumes"]);
    assert_eq!(content_volumes.len(), vm_volumes.len(), "{content:#}");
    assert!(content_volumes.iter().any(|v| v["name"] == hotplugged), "{content:#}");

    let backups = items(&content["spec"]["volumeBackups"]);
    assert_eq!(backups.len(), vm_volumes.len(), "{content:#}");
    assert_eq!(items(&snapshot["status"]["snapshotVolumes"]["includedVolumes"]).len(), backups.len());
    assert!(items(&snapshot["status"]["snapshotVolumes"]["excludedVolumes"]).is_empty(), "{snapshot:#}");
    check_volume_backups(&cluster, &updated, &backups, false).await;
}

/// For every DataVolume of `vm`: its backup names the volume, has the PVC's spec, and its
/// VolumeSnapshot (of that PVC, labelled with the VM's name when `check_label`) is ready.
pub(super) async fn check_volume_backups(
    cluster: &Cluster,
    vm: &Value,
    backups: &[Value],
    check_label: bool,
) {
    for volume in items(&vm["spec"]["template"]["spec"]["volumes"]) {
        let Some(dv) = volume["dataVolume"]["name"].as_str() else { continue };
        let backup = backups
            .iter()
            .find(|b| b["persistentVolumeClaim"]["metadata"]["name"] == dv)
            .unwrap_or_else(|| panic!("no volume backup of {dv}: {backups:#?}"));
        assert_eq!(volume["name"], backup["volumeName"]);
        let pvc = cluster.get(PVC, dv).await;
        assert_eq!(
            pvc["spec"], backup["persistentVolumeClaim"]["spec"],
            "the PVC spec is backed up as it is"
        );
        let snapshot_name = backup["volumeSnapshotName"].as_str().expect("a VolumeSnapshot name");
        let volume_snapshot = cluster.get(VOLUME_SNAPSHOT, snapshot_name).await;
        assert_eq!(volume_snapshot["spec"]["source"]["persistentVolumeClaimName"], dv);
        if check_label {
            assert_eq!(
                volume_snapshot["metadata"]["labels"]["snapshot.kubevirt.io/source-vm-name"],
                vm["metadata"]["name"],
                "{volume_snapshot:#}"
            );
        }
        assert!(volume_snapshot["status"]["error"].is_null(), "{volume_snapshot:#}");
        assert_eq!(volume_snapshot["status"]["readyToUse"], true, "{volume_snapshot:#}");
    }
}

/// "should report appropriate event when freeze fails"
///
/// KubeVirt makes the freeze fail with SELinux in enforcing mode (set by cloud-init, then a
/// soft reboot) and an ext4 file system it mounts by hand. The test guest has no SELinux: a hook
/// of its fsfreeze hook directory that fails on `freeze` makes qemu-ga's freeze fail instead.
#[tokio::test(flavor = "multi_thread")]
async fn should_report_appropriate_event_when_freeze_fails() {
    let Some(cluster) = Cluster::start().await else { return };
    let dv = blank_data_volume(Some("16Mi"));
    let vmi = Vmi::fedora().with_cloud_init_no_cloud().with_data_volume("blank", &dv.name());
    let vm = with_data_volume_template(new_virtual_machine(vmi), &dv.0);
    let (vm, _) = create_and_start_vm(&cluster, vm, None).await;
    let name = name_of(&vm);
    wait_agent_connected(&cluster, &name).await;

    let blank_disk = eventually("the blank volume's target", secs(30), POLL, async || {
        let vmi = cluster.get(VMI, &name).await;
        items(&vmi["status"]["volumeStatus"])
            .iter()
            .find(|s| s["name"] == "blank")
            .and_then(|s| s["target"].as_str().filter(|t| !t.is_empty()).map(|t| format!("/dev/{t}")))
            .ok_or_else(|| status_of(&vmi))
    })
    .await;
    let mut console = Console::login(&cluster, &name).await;
    let (out, status) = console.run(&format!("grep -q '^{blank_disk} ' /proc/mounts")).await;
    assert_eq!(status, 0, "{blank_disk} is mounted: {out}");
    let fail_freeze = "printf '#!/bin/sh\\n[ \"$1\" != freeze ]\\n' > /etc/qemu/fsfreeze-hook.d/00-fail && \
                       chmod +x /etc/qemu/fsfreeze-hook.d/00-fail";
    let (out, status) = console.run(fail_freeze).await;
    assert_eq!(status, 0, "{out}");

    cluster.create(SNAPSHOT, &new_snapshot(&name)).await;
    expect_event(&cluster, "VirtualMachineInstance", &name, "Warning", "FreezeError").await;
    let snapshot_name = format!("snapshot-{name}");
    eventually("the snapshot to report the freeze error", secs(60), POLL, async || {
        let snapshot = cluster.get(SNAPSHOT, &snapshot_name).await;
        let matches = has_condition(&snapshot, "Ready", "False", Some("Not ready"))
            && has_condition(&snapshot, "Progressing", "False", Some("In error state"))
            && snapshot["status"]["phase"] == "InProgress"
            && snapshot["status"]["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("command Freeze failed"))
            && snapshot["status"]["creationTime"].is_null();
        if matches { Ok(()) } else { Err(status_of(&snapshot)) }
    })
    .await;
}
