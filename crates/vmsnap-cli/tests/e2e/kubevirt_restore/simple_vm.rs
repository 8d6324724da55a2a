//! Context "With simple VM": an Alpine VM (container disk, no guest agent) that is never started,
//! labelled for the test's webhook.

use serde_json::{Value, json};

use super::*;
use crate::kubevirt_support::libstorage::{deny_webhook, expect_event, has_condition};
use crate::kubevirt_support::libvmi::{Vmi, name_of, new_virtual_machine, uid_of};
use crate::kubevirt_support::{
    Cluster, POLL, RESTORE, VM, WEBHOOK, assert_json_eq, eventually, rand_string, secs,
};

/// The `BeforeEach`: the VM (not yet created), labelled `kubevirt.io/dummy-webhook-identifier`.
async fn simple_vm() -> Option<(Cluster, Value)> {
    let cluster = Cluster::start().await?;
    let mut vm = new_virtual_machine(Vmi::alpine().with_masquerade_networking());
    vm["metadata"]["labels"] = json!({"kubevirt.io/dummy-webhook-identifier": name_of(&vm)});
    Some((cluster, vm))
}

/// The `BeforeEach` of "and good snapshot exists": the VM created, and a snapshot of it.
async fn with_good_snapshot() -> Option<(Cluster, Value, Value)> {
    let (cluster, vm) = simple_vm().await?;
    let vm = cluster.create(VM, &vm).await;
    let snapshot = create_snapshot(&cluster, &vm).await;
    Some((cluster, vm, snapshot))
}

/// "and no snapshot" / "should wait for snapshot to exist and be ready"
#[tokio::test(flavor = "multi_thread")]
async fn should_wait_for_snapshot_to_exist_and_be_ready() {
    let Some((cluster, vm)) = simple_vm().await else { return };
    let vm = cluster.create(VM, &vm).await;
    let name = name_of(&vm);
    let restore = create_restore_def(&name, &format!("snapshot-{name}"));
    let restore = cluster.create(RESTORE, &restore).await;
    expect_event(
        &cluster,
        "VirtualMachineRestore",
        &name_of(&restore),
        "Warning",
        "VirtualMachineRestoreError",
    )
    .await;
    create_snapshot(&cluster, &vm).await;
    wait_restore_complete(&cluster, &name_of(&restore), &name, Some(&uid_of(&vm))).await;
}

/// "and good snapshot exists" / "[test_id:5256]should successfully restore"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_5256_should_successfully_restore() {
    let Some((cluster, vm, snapshot)) = with_good_snapshot().await else { return };
    let name = name_of(&vm);
    // "Wait for snapshot to be finished"
    let vm = eventually("the VM to be unlocked", secs(180), POLL, async || {
        let vm = cluster.get(VM, &name).await;
        if vm["status"]["snapshotInProgress"].is_null() { Ok(vm) } else { Err(format!("{:#}", vm["status"])) }
    })
    .await;
    let original_spec = vm["spec"].clone();

    let path = "/spec/template/spec/domain/resources/requests/memory";
    let patch = json!([{"op": "test", "path": path, "value": "128Mi"}, {"op": "replace", "path": path, "value": "256Mi"}]);
    let vm = cluster.json_patch(VM, &name, &patch).await;

    let restore = cluster.create(RESTORE, &create_restore_def(&name, &name_of(&snapshot))).await;
    let restore = wait_restore_complete(&cluster, &name_of(&restore), &name, Some(&uid_of(&vm))).await;
    assert!(items(&restore["status"]["restores"]).is_empty(), "{restore:#}");
    assert!(items(&restore["status"]["deletedDataVolumes"]).is_empty(), "{restore:#}");

    let vm = cluster.get(VM, &name).await;
    assert_json_eq(&vm["spec"], &original_spec, "the VM's spec is the snapshot's");
    delete_restore(&cluster, &name_of(&restore)).await;
}

/// "and good snapshot exists" / "[test_id:5258]should reject restore if another in progress"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_5258_should_reject_restore_if_another_in_progress() {
    let Some((cluster, vm, snapshot)) = with_good_snapshot().await else { return };
    let name = name_of(&vm);
    let webhook_name = "dummy-webhook-deny-vm-update.kubevirt.io";
    let rule = json!({"apiGroups": ["kubevirt.io"], "apiVersions": ["v1", "v1alpha3"], "resources": ["virtualmachines"]});
    let configuration = format!("temp-webhook-deny-vm-update{}", rand_string(5));
    let webhook = deny_webhook(
        &configuration,
        webhook_name,
        "UPDATE",
        rule,
        ("kubevirt.io/dummy-webhook-identifier", &name),
    );
    cluster.create(WEBHOOK, &webhook).await;

    let restore = cluster.create(RESTORE, &create_restore_def(&name, &name_of(&snapshot))).await;
    let restore_name = name_of(&restore);
    let restore = eventually("the restore to be refused by the webhook", secs(180), POLL, async || {
        let r = cluster.get(RESTORE, &restore_name).await;
        let conditions = items(&r["status"]["conditions"]);
        let refused = conditions.len() == 2
            && conditions.iter().all(|c| {
                c["status"] == "False"
                    && c["reason"].as_str().is_some_and(|reason| reason.contains(webhook_name))
            });
        if refused { Ok(r) } else { Err(status_of(&r)) }
    })
    .await;

    let mut r2 = restore.clone();
    r2["metadata"] = json!({"name": "dummy"});
    let refused = cluster.try_create(RESTORE, &r2).await.expect_err("a second restore is refused");
    let expected = format!("VirtualMachineRestore {restore_name:?} in progress");
    assert!(refused.to_string().contains(&expected), "{refused} should contain {expected}");

    cluster.delete(WEBHOOK, &configuration).await;
    wait_restore_complete(&cluster, &restore_name, &name, Some(&uid_of(&vm))).await;
    cluster.create(RESTORE, &r2).await;
    wait_restore_complete(&cluster, "dummy", &name, Some(&uid_of(&vm))).await;
    delete_restore(&cluster, "dummy").await;
    delete_restore(&cluster, &restore_name).await;
}

/// "and good snapshot exists" / "should fail restoring to a different VM that already exists"
#[tokio::test(flavor = "multi_thread")]
async fn should_fail_restoring_to_a_different_vm_that_already_exists() {
    let Some((cluster, _, snapshot)) = with_good_snapshot().await else { return };
    // "Creating a new VM"
    let new_vm = cluster.create(VM, &new_virtual_machine(Vmi::alpine())).await;
    // "Creating a VM restore"
    let restore = cluster.create(RESTORE, &create_restore_def(&name_of(&new_vm), &name_of(&snapshot))).await;
    let restore_name = name_of(&restore);
    expect_event(&cluster, "VirtualMachineRestore", &restore_name, "Warning", "VirtualMachineRestoreError")
        .await;
    let reason = "restore source and restore target are different but restore target already exists";
    eventually("the restore to be refused", secs(30), POLL, async || {
        let r = cluster.get(RESTORE, &restore_name).await;
        let refused = has_condition(&r, "Ready", "False", Some(reason))
            && has_condition(&r, "Progressing", "False", Some(reason));
        if refused { Ok(()) } else { Err(status_of(&r)) }
    })
    .await;
}

/// "restore to a new VM that does not exist" / "with changed name and MAC address"
#[tokio::test(flavor = "multi_thread")]
async fn restore_to_a_new_vm_that_does_not_exist_with_changed_name_and_mac_address() {
    let Some((cluster, vm, snapshot)) = with_good_snapshot().await else { return };
    let new_vm_name = format!("new-vm-{}", rand_string(12));
    let mut restore = create_restore_def(&new_vm_name, &name_of(&snapshot));
    // "Creating a VM restore with patches to change name and MAC address"
    restore["spec"]["patches"] = json!([mac_address_cloning_patch(&vm)]);
    let restore = cluster.create(RESTORE, &restore).await;
    let restore_name = name_of(&restore);

    // "Making sure that new VM is finally created"
    let new_vm = expect_new_vm_creation(&cluster, &new_vm_name).await;
    // "Waiting for VM restore to complete"
    let restore = wait_restore_complete(&cluster, &restore_name, &new_vm_name, Some(&uid_of(&new_vm))).await;
    assert!(items(&restore["status"]["restores"]).is_empty(), "{restore:#}");
    assert!(items(&restore["status"]["deletedDataVolumes"]).is_empty(), "{restore:#}");

    // "Expecting the restore to be owned by target VM"
    let owned = items(&restore["metadata"]["ownerReferences"]).iter().any(|o| {
        o["kind"] == "VirtualMachine"
            && o["uid"] == new_vm["metadata"]["uid"]
            && o["name"] == json!(new_vm_name)
    });
    assert!(owned, "restore is expected to be owned by target VM: {restore:#}");

    // "Verifying both VMs exist"
    let vm = cluster.get(VM, &name_of(&vm)).await;
    let new_vm = cluster.get(VM, &new_vm_name).await;
    // "Verifying newly created VM is set properly"
    assert_eq!(name_of(&new_vm), new_vm_name, "newly created VM should have correct name");
    let new_interfaces = items(&new_vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]);
    assert!(!new_interfaces.is_empty(), "{new_vm:#}");
    // "Verifying both VMs have different spec"
    let old_interfaces = items(&vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]);
    assert!(!old_interfaces.is_empty(), "{vm:#}");
    assert_ne!(new_interfaces[0]["macAddress"], old_interfaces[0]["macAddress"]);

    // "Making sure new VM is runnable"
    crate::kubevirt_support::libstorage::start_virtual_machine(&cluster, &new_vm_name).await;
    delete_restore(&cluster, &restore_name).await;
}
