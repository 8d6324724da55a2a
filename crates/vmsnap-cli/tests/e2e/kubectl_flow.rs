//! The OpenShift Virtualization workflow with kubectl and the example YAML, against a real
//! `vmsnap serve` running the test guest: online snapshot with the guest agent, restore as a new
//! VM beside the original, restores in place (twice from the same snapshot), deletion.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn online_snapshot_restores_in_place_and_as_a_new_vm_with_kubectl() {
    let Some(vmsnap) = start("auto") else { return };
    kubectl_flow(&vmsnap).await;
}

/// The whole flow, against a server whose snapshot and restore controllers run in-process or as
/// separate `vmsnap controller` processes.
pub async fn kubectl_flow(vmsnap: &Vmsnap) {
    let vm_yaml = example("vm.yaml");
    assert!(
        kubectl(vmsnap, &["apply", "-f", &vm_yaml]).await.contains("virtualmachine.kubevirt.io/demo created")
    );
    await_running_with_agent(vmsnap, "demo").await;
    vmsnap.sh("demo", "echo A > /mnt/data/f && sync").await.unwrap();

    // Online snapshot, quiesced by the guest agent.
    take_example_snapshot(vmsnap).await;
    let snapshot = get_json(vmsnap, "vmsnapshot", "demo-snapshot").await.unwrap();
    let vm = get_json(vmsnap, "vm", "demo").await.unwrap();
    assert_eq!(snapshot["status"]["phase"], "Succeeded");
    assert_eq!(snapshot["status"]["readyToUse"], true);
    assert_eq!(strings(&snapshot["status"]["indications"]), ["GuestAgent", "Online"]);
    assert_eq!(snapshot["status"]["sourceUID"], vm["metadata"]["uid"]);
    assert_eq!(strings(&snapshot["status"]["snapshotVolumes"]["includedVolumes"]), ["data"]);
    let content_name = snapshot["status"]["virtualMachineSnapshotContentName"].as_str().unwrap().to_owned();
    let content = get_json(vmsnap, "vmsnapshotcontent", &content_name).await.unwrap();
    let backups = content["spec"]["volumeBackups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{content:#}");
    assert_eq!(backups[0]["volumeName"], "data");
    assert_eq!(backups[0]["persistentVolumeClaim"]["metadata"]["name"], "demo-data");
    assert_eq!(content["spec"]["source"]["virtualMachine"]["metadata"]["name"], "demo");
    let hook_log = vmsnap.sh("demo", "cat /run/fsfreeze-hook.log").await.unwrap();
    let hooks: Vec<&str> = hook_log.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert_eq!(hooks, ["freeze", "thaw"], "the guest is frozen and thawed once: {hook_log}");
    let described = kubectl(vmsnap, &["describe", "vmsnapshot", "demo-snapshot"]).await;
    assert!(described.contains("SuccessfulVirtualMachineSnapshotContentCreate"), "{described}");
    let listed = kubectl(vmsnap, &["get", "vmsnapshot"]).await;
    assert!(listed.starts_with("NAME"), "{listed}");
    for column in ["SOURCEKIND", "SOURCENAME", "PHASE", "READYTOUSE", "CREATIONTIME", "ERROR"] {
        assert!(listed.lines().next().unwrap().contains(column), "{listed}");
    }
    assert!(listed.contains("demo-snapshot   VirtualMachine   demo         Succeeded   true"), "{listed}");

    // The original moves on; a copy restored beside it comes back with the snapshot's data.
    vmsnap.sh("demo", "echo B > /mnt/data/f && sync").await.unwrap();
    kubectl(vmsnap, &["create", "-f", &example("restore-new-vm.yaml")]).await;
    await_restore_complete(vmsnap, "demo-restore-copy").await;
    vmsnap.cli(&["vm", "start", "demo-copy"]).await.ok();
    await_running_with_agent(vmsnap, "demo-copy").await;
    assert_eq!(vmsnap.sh("demo-copy", "cat /mnt/data/f").await.unwrap(), "A\n");
    assert_eq!(vmsnap.sh("demo", "cat /mnt/data/f").await.unwrap(), "B\n");
    let identity = "cat /sys/class/dmi/id/product_uuid; cat /sys/class/net/eth0/address";
    let (original, copy) =
        (vmsnap.sh("demo", identity).await.unwrap(), vmsnap.sh("demo-copy", identity).await.unwrap());
    let (original, copy): (Vec<&str>, Vec<&str>) = (original.lines().collect(), copy.lines().collect());
    assert_ne!(original[0], copy[0], "the copy has its own firmware UUID");
    assert_ne!(original[1], copy[1], "the copy has its own MAC address");

    // A snapshot of one VM cannot overwrite a different VM that exists (once stopped: a running
    // target is waited for first, as in KubeVirt).
    vmsnap.cli(&["vm", "stop", "demo-copy"]).await.ok();
    await_stopped(vmsnap, "demo-copy").await;
    let clash = r#"{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
        "metadata": {"name": "clash"},
        "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "demo-copy"},
                 "virtualMachineSnapshotName": "demo-snapshot"}}"#;
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], clash).await.ok();
    let refused = "restore source and restore target are different but restore target already exists";
    until("the restore to a different VM to be refused", Duration::from_secs(60), async || {
        let clash = get_json(vmsnap, "vmrestore", "clash").await.unwrap();
        conditions(&clash).iter().any(|(_, status, reason)| status == "False" && reason == refused)
    })
    .await;
    assert!(
        get_json(vmsnap, "vmrestore", "clash").await.unwrap()["status"]["complete"] != true,
        "a refused restore does not complete"
    );
    kubectl(vmsnap, &["delete", "vmrestore", "clash"]).await;

    // In place: stop the VM, restore, start it: the data of the snapshot is back.
    vmsnap.cli(&["vm", "stop", "demo"]).await.ok();
    await_stopped(vmsnap, "demo").await;
    kubectl(vmsnap, &["create", "-f", &example("restore.yaml")]).await;
    let restore = await_restore_complete(vmsnap, "demo-restore").await;
    assert_restore_completed_as_kubevirt_says(&restore, &vm);
    assert_eq!(strings(&restore["status"]["deletedDataVolumes"]), ["demo-data"]);
    assert!(!exists(vmsnap, "dv", "demo-data").await, "the replaced DataVolume is deleted");
    let first_claim = restore["status"]["restores"][0]["persistentVolumeClaim"].as_str().unwrap().to_owned();
    let listed = kubectl(vmsnap, &["get", "vmrestore", "demo-restore"]).await;
    let header: Vec<&str> = listed.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TARGETKIND", "TARGETNAME", "COMPLETE", "RESTORETIME"]);
    assert!(listed.contains("demo-restore   VirtualMachine   demo         true"), "{listed}");

    // The same snapshot restored again: new PVC names, the previous restore's DataVolume replaced.
    let again = r#"{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
        "metadata": {"name": "demo-restore-again"},
        "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "demo"},
                 "virtualMachineSnapshotName": "demo-snapshot"}}"#;
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], again).await.ok();
    let restore = await_restore_complete(vmsnap, "demo-restore-again").await;
    let second_claim = restore["status"]["restores"][0]["persistentVolumeClaim"].as_str().unwrap();
    assert_ne!(second_claim, first_claim);
    assert_eq!(strings(&restore["status"]["deletedDataVolumes"]), vec![first_claim.clone()]);
    assert!(!exists(vmsnap, "dv", &first_claim).await);

    vmsnap.cli(&["vm", "start", "demo"]).await.ok();
    await_running_with_agent(vmsnap, "demo").await;
    assert_eq!(vmsnap.sh("demo", "cat /mnt/data/f").await.unwrap(), "A\n");

    // Deleting the copy leaves the record of the restore that made it (unlike KubeVirt, #13956).
    kubectl(vmsnap, &["delete", "vm", "demo-copy", "--timeout=120s"]).await;
    until("the restore to drop its owners", Duration::from_secs(30), async || {
        let restore = get_json(vmsnap, "vmrestore", "demo-restore-copy").await.unwrap();
        restore["metadata"]["ownerReferences"].is_null()
    })
    .await;
    let kept = get_json(vmsnap, "vmrestore", "demo-restore-copy").await.unwrap();
    assert_eq!(kept["status"]["complete"], true, "{kept:#}");

    // Deleting the snapshot removes its content and VolumeSnapshots.
    kubectl(vmsnap, &["delete", "vmsnapshot", "demo-snapshot", "--timeout=60s"]).await;
    assert!(!exists(vmsnap, "vmsnapshotcontent", &content_name).await);
    let left = kubectl(vmsnap, &["get", "volumesnapshots", "-o", "name"]).await;
    assert_eq!(left.trim(), "", "VolumeSnapshots left after the snapshot was deleted: {left}");
}

/// What KubeVirt's functional tests check of a completed restore.
fn assert_restore_completed_as_kubevirt_says(restore: &Value, vm: &Value) {
    let expected = [
        ("Progressing".to_owned(), "False".to_owned(), "Operation complete".to_owned()),
        ("Ready".to_owned(), "True".to_owned(), "Operation complete".to_owned()),
    ];
    assert_eq!(conditions(restore), expected, "{restore:#}");
    let owners = restore["metadata"]["ownerReferences"].as_array().map(Vec::len);
    assert_eq!(owners, Some(1), "KubeVirt's restore has exactly one owner, its target VM: {restore:#}");
    let owner = &restore["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["apiVersion"].as_str(), owner["kind"].as_str()),
        (Some("kubevirt.io/v1"), Some("VirtualMachine"))
    );
    assert_eq!(owner["uid"], vm["metadata"]["uid"]);
    assert!(restore["status"]["restoreTime"].is_string(), "{restore:#}");
}
