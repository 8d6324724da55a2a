//! Context "With simple VM": a stopped VM of Alpine with test tooling (a container disk and a
//! cloud-init disk, nothing to snapshot).

use serde_json::{Value, json};

use super::{check_online_snapshot_expected_content_source, content_name_of};
use crate::kubevirt_support::libstorage::{new_snapshot, wait_snapshot_succeeded, wait_vmi_phase};
use crate::kubevirt_support::libvmi::{CLOUD_INIT_DISK_NAME, Vmi, name_of, new_virtual_machine};
use crate::kubevirt_support::{
    CONTENT, Cluster, POLL, SNAPSHOT, VM, VMI, assert_json_eq, eventually, items, secs,
};
use crate::support::BOOT_TIMEOUT;

/// The `BeforeEach`: `libvmi.NewVirtualMachine(libvmifact.NewAlpineWithTestTooling())`, created.
async fn simple_vm() -> Option<(Cluster, Value)> {
    let cluster = Cluster::start().await?;
    let vm = cluster.create(VM, &new_virtual_machine(Vmi::alpine_with_test_tooling())).await;
    Some((cluster, vm))
}

/// `createAndVerifyVMSnapshot`.
async fn create_and_verify_vm_snapshot(cluster: &Cluster, vm: &Value) {
    let name = name_of(vm);
    let snapshot = new_snapshot(&name);
    cluster.create(SNAPSHOT, &snapshot).await;
    let snapshot = wait_snapshot_succeeded(cluster, &name_of(&snapshot)).await;
    assert_eq!(snapshot["status"]["sourceUID"], vm["metadata"]["uid"], "{snapshot:#}");

    let running = cluster.get_opt(VMI, &name).await.is_some();
    let content_name = content_name_of(&snapshot);
    if running {
        assert_eq!(snapshot["status"]["indications"], json!(["NoGuestAgent", "Online"]), "{snapshot:#}");
        check_online_snapshot_expected_content_source(cluster, vm, &snapshot, false).await;
    } else {
        assert!(items(&snapshot["status"]["indications"]).is_empty(), "{snapshot:#}");
        let content = cluster.get(CONTENT, &content_name).await;
        assert_eq!(content["spec"]["virtualMachineSnapshotName"], snapshot["metadata"]["name"]);
        assert_json_eq(
            &content["spec"]["source"]["virtualMachine"]["spec"],
            &vm["spec"],
            "the content's source VM spec",
        );
        let uid = &content["spec"]["source"]["virtualMachine"]["metadata"]["uid"];
        assert!(uid.as_str().is_some_and(|u| !u.is_empty()), "{content:#}");
        assert!(items(&content["spec"]["volumeBackups"]).is_empty(), "{content:#}");
    }
}

/// "[test_id:4609]should successfully create a snapshot"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_4609_should_successfully_create_a_snapshot() {
    let Some((cluster, vm)) = simple_vm().await else { return };
    create_and_verify_vm_snapshot(&cluster, &vm).await;
}

/// "[test_id:4610]create a snapshot when VM is running should succeed"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_4610_create_a_snapshot_when_vm_is_running_should_succeed() {
    let Some((cluster, vm)) = simple_vm().await else { return };
    let patch = json!([{"op": "replace", "path": "/spec/runStrategy", "value": "Always"}]);
    let vm = cluster.json_patch(VM, &name_of(&vm), &patch).await;
    assert_eq!(vm["spec"]["runStrategy"], "Always");
    wait_vmi_phase(&cluster, &name_of(&vm), "Running", BOOT_TIMEOUT).await;
    create_and_verify_vm_snapshot(&cluster, &vm).await;
}

/// "should create a snapshot when VM runStrategy is Manual"
#[tokio::test(flavor = "multi_thread")]
async fn should_create_a_snapshot_when_vm_run_strategy_is_manual() {
    let Some((cluster, vm)) = simple_vm().await else { return };
    let patch = json!([{"op": "replace", "path": "/spec/runStrategy", "value": "Manual"}]);
    let vm = cluster.json_patch(VM, &name_of(&vm), &patch).await;
    assert_eq!(vm["spec"]["runStrategy"], "Manual");
    create_and_verify_vm_snapshot(&cluster, &vm).await;
}

/// "VM should contain snapshot status for all volumes"
#[tokio::test(flavor = "multi_thread")]
async fn vm_should_contain_snapshot_status_for_all_volumes() {
    let Some((cluster, vm)) = simple_vm().await else { return };
    let patch = json!([{"op": "replace", "path": "/spec/runStrategy", "value": "Always"}]);
    let vm = cluster.json_patch(VM, &name_of(&vm), &patch).await;
    let name = name_of(&vm);
    eventually("a snapshot status for each volume", secs(180), POLL, async || {
        let vm = cluster.get(VM, &name).await;
        let names: Vec<Value> =
            items(&vm["status"]["volumeSnapshotStatuses"]).iter().map(|s| s["name"].clone()).collect();
        if names == [json!("disk0"), json!(CLOUD_INIT_DISK_NAME)] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
}
