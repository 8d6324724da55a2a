//! Volume restore policies with the real storage driver: `InPlace` recreates the VM's own PVC from
//! the snapshot under the same name, `PrefixTargetName` names the new PVCs after the target VM, and
//! `volumeRestoreOverrides` set a PVC's name, labels and annotations.

use serde_json::Value;

use crate::support::*;

fn restore_of_demo_snapshot(name: &str, target: &str, extra_spec: &str) -> String {
    format!(
        r#"{{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
            "metadata": {{"name": "{name}"}},
            "spec": {{"target": {{"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "{target}"}},
                     "virtualMachineSnapshotName": "demo-snapshot"{extra_spec}}}}}"#
    )
}

async fn restored_claim(vmsnap: &Vmsnap, restore_name: &str) -> (Value, String) {
    let restore = await_restore_complete(vmsnap, restore_name).await;
    let claim = restore["status"]["restores"][0]["persistentVolumeClaim"].as_str().unwrap().to_owned();
    (restore, claim)
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_keeps_the_pvc_name_and_prefix_and_overrides_name_the_new_ones() {
    let Some(vmsnap) = start("tcg") else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    vmsnap.sh("demo", "echo A > /mnt/data/f && sync").await.unwrap();
    take_example_snapshot(&vmsnap).await;
    vmsnap.sh("demo", "echo B > /mnt/data/f && sync").await.unwrap();
    vmsnap.cli(&["vm", "stop", "demo", "--wait"]).await.ok();

    // InPlace: the same PVC name, the DataVolume kept, the data of the snapshot.
    let uid_before = get_json(&vmsnap, "pvc", "demo-data").await.unwrap()["metadata"]["uid"].clone();
    let in_place = restore_of_demo_snapshot("in-place", "demo", r#", "volumeRestorePolicy": "InPlace""#);
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &in_place).await.ok();
    let (restore, claim) = restored_claim(&vmsnap, "in-place").await;
    assert_eq!(claim, "demo-data", "{restore:#}");
    assert!(restore["status"]["deletedDataVolumes"].is_null(), "{restore:#}");
    let pvc = get_json(&vmsnap, "pvc", "demo-data").await.unwrap();
    assert_ne!(pvc["metadata"]["uid"], uid_before, "the PVC was recreated from the snapshot");
    assert_eq!(pvc["spec"]["dataSource"]["kind"], "VolumeSnapshot");
    assert!(exists(&vmsnap, "dv", "demo-data").await, "the DataVolume is kept");
    let vm = get_json(&vmsnap, "vm", "demo").await.unwrap();
    assert_eq!(vm["spec"]["template"]["spec"]["volumes"][0]["dataVolume"]["name"], "demo-data");
    vmsnap.cli(&["vm", "start", "demo", "--wait"]).await.ok();
    assert_eq!(vmsnap.sh("demo", "cat /mnt/data/f").await.unwrap(), "A\n");

    // PrefixTargetName, to a new VM: `<target>-<volume>`.
    let prefixed =
        restore_of_demo_snapshot("prefixed", "copy", r#", "volumeRestorePolicy": "PrefixTargetName""#);
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &prefixed).await.ok();
    let (_, claim) = restored_claim(&vmsnap, "prefixed").await;
    assert_eq!(claim, "copy-data");

    // Overrides: the name, labels and annotations of one volume's PVC.
    let overrides = r#", "volumeRestoreOverrides": [{"volumeName": "data", "restoreName": "gitops-disk",
        "labels": {"team": "db"}, "annotations": {"backup/source": "demo-snapshot"}}]"#;
    vmsnap
        .kubectl()
        .run_stdin_async(&["create", "-f", "-"], &restore_of_demo_snapshot("overridden", "other", overrides))
        .await
        .ok();
    let (_, claim) = restored_claim(&vmsnap, "overridden").await;
    assert_eq!(claim, "gitops-disk");
    let pvc = get_json(&vmsnap, "pvc", "gitops-disk").await.unwrap();
    assert_eq!(pvc["metadata"]["labels"]["team"], "db");
    assert_eq!(pvc["metadata"]["labels"]["restore.kubevirt.io/source-vm-name"], "demo");
    assert_eq!(pvc["metadata"]["annotations"]["backup/source"], "demo-snapshot");
    vmsnap.cli(&["vm", "start", "other", "--wait"]).await.ok();
    assert_eq!(vmsnap.sh("other", "cat /mnt/data/f").await.unwrap(), "A\n");
}
