//! Context "With a more complicated VM": restores of stopped VMs that boot from a DataVolume
//! template, a standalone DataVolume, a PVC, or a container disk with a blank DataVolume; several
//! restores of one snapshot; targets that are running; a VM start refused during a restore.

use serde_json::{Value, json};

use super::flows::*;
use super::*;
use crate::kubevirt_support::guest::Image;
use crate::kubevirt_support::libstorage::*;
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

/// `renderVMWithRegistryImportDataVolume(cd.ContainerDiskAlpine, snapshotStorageClass)`.
fn alpine_vm(cluster: &Cluster) -> Value {
    render_vm_with_registry_import_data_volume(&Image::Alpine.import_url(cluster), Image::Alpine)
}

/// "[test_id:5259]should restore a vm multiple from the same snapshot"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_5259_should_restore_a_vm_multiple_from_the_same_snapshot() {
    let Some(mut ctx) = Ctx::start().await else { return };
    ctx.create_and_start_vm(alpine_vm(&ctx.cluster)).await;
    ctx.stop_vm().await;
    ctx.create_snapshot().await;
    for _ in 0..2 {
        let restore =
            create_restore_def_with_mac_address_patch(&ctx.vm, &ctx.vm_name(), &name_of(ctx.snapshot()));
        ctx.create_restore(&restore).await;
        ctx.wait_restore_complete(&ctx.vm_name(), Some(&ctx.vm_uid())).await;
        assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());
        ctx.delete_restore().await;
    }
}

/// "restore should allow grace period for the target to be ready"
#[tokio::test(flavor = "multi_thread")]
async fn restore_should_allow_grace_period_for_the_target_to_be_ready() {
    let Some(mut ctx) = Ctx::start().await else { return };
    ctx.create_and_start_vm(alpine_vm(&ctx.cluster)).await;
    ctx.create_snapshot().await;
    let restore =
        create_restore_def_with_mac_address_patch(&ctx.vm, &ctx.vm_name(), &name_of(ctx.snapshot()));
    ctx.create_restore(&restore).await;
    expect_event(
        &ctx.cluster,
        "VirtualMachineRestore",
        &name_of(ctx.restore()),
        "Warning",
        "RestoreTargetNotReady",
    )
    .await;
    ctx.stop_vm().await;
    ctx.wait_restore_complete(&ctx.vm_name(), Some(&ctx.vm_uid())).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());
}

/// "restore should stop target if targetReadinessPolicy is StopTarget"
#[tokio::test(flavor = "multi_thread")]
async fn restore_should_stop_target_if_target_readiness_policy_is_stop_target() {
    let Some(mut ctx) = Ctx::start().await else { return };
    ctx.create_and_start_vm(alpine_vm(&ctx.cluster)).await;
    ctx.create_snapshot().await;
    let mut restore =
        create_restore_def_with_mac_address_patch(&ctx.vm, &ctx.vm_name(), &name_of(ctx.snapshot()));
    restore["spec"]["targetReadinessPolicy"] = json!("StopTarget");
    ctx.create_restore(&restore).await;
    ctx.wait_restore_complete(&ctx.vm_name(), Some(&ctx.vm_uid())).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());

    // "Making sure VM was stopped in the restore"
    let name = ctx.vm_name();
    consistently("the VM stays not ready", secs(60), POLL, async || {
        let vm = ctx.cluster.get(VM, &name).await;
        if vm["status"]["ready"] == true { Err(status_of(&vm)) } else { Ok(()) }
    })
    .await;
    // "Making sure restored VM is runnable"
    start_virtual_machine(&ctx.cluster, &name).await;
}

/// `DescribeTable("should restore a vm that boots from a datavolumetemplate", ...)`.
async fn should_restore_a_vm_that_boots_from_a_datavolumetemplate(restore_to_new_vm: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    ctx.create_and_start_vm(create_vm_with_cloud_init(&ctx.cluster, Image::AlpineTestTooling, None)).await;
    let original_dv_name = name_of(&ctx.vm["spec"]["dataVolumeTemplates"][0]);
    let target = ctx.target_vm_name(restore_to_new_vm);
    ctx.do_restore(ROOT, OFFLINE, &target).await;
    ctx.verify_restore(restore_to_new_vm, &original_dv_name).await;
}

/// "should restore a vm that boots from a datavolumetemplate" / Entry "[test_id:5260] to the same VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_that_boots_from_a_datavolumetemplate_test_id_5260_to_the_same_vm() {
    should_restore_a_vm_that_boots_from_a_datavolumetemplate(false).await;
}

/// "should restore a vm that boots from a datavolumetemplate" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_that_boots_from_a_datavolumetemplate_to_a_new_vm() {
    should_restore_a_vm_that_boots_from_a_datavolumetemplate(true).await;
}

/// `DescribeTable("should restore a vm that boots from a datavolume (not template)", ...)`.
async fn should_restore_a_vm_that_boots_from_a_datavolume_not_template(restore_to_new_vm: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let mut vm = create_vm_with_cloud_init(&ctx.cluster, Image::AlpineTestTooling, None);
    let dv = orphan_data_volume_template(&mut vm, 0);
    let original_pvc_name = name_of(&dv);
    let dv = ctx.cluster.create(DV, &dv).await;
    ctx.create_and_start_vm(vm).await;
    wait_dv_succeeded(&ctx.cluster, &name_of(&dv), secs(180)).await;

    let restore = ctx.restore_to(ROOT, OFFLINE, restore_to_new_vm).await;
    assert!(items(&restore["status"]["deletedDataVolumes"]).is_empty(), "{restore:#}");
    ctx.cluster.get(DV, &name_of(&dv)).await;
    ctx.cluster.get(PVC, &original_pvc_name).await;
    for volume in items(&ctx.vm["spec"]["template"]["spec"]["volumes"]) {
        let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() else { continue };
        assert_ne!(claim, original_pvc_name);
        let pvc = ctx.cluster.get(PVC, claim).await;
        flows::verify_owner_ref(&pvc, "kubevirt.io/v1", "VirtualMachine", &ctx.vm_name(), &ctx.vm_uid());
    }
}

/// "should restore a vm that boots from a datavolume (not template)" / Entry "[test_id:5261] to the same VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_that_boots_from_a_datavolume_not_template_test_id_5261_to_the_same_vm() {
    should_restore_a_vm_that_boots_from_a_datavolume_not_template(false).await;
}

/// "should restore a vm that boots from a datavolume (not template)" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_that_boots_from_a_datavolume_not_template_to_a_new_vm() {
    should_restore_a_vm_that_boots_from_a_datavolume_not_template(true).await;
}

/// `DescribeTable("should restore a vm that boots from a PVC", ...)`.
async fn should_restore_a_vm_that_boots_from_a_pvc(restore_to_new_vm: bool, owned_by_vm: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let dv = DataVolume::new()
        .with_name(&format!("restore-pvc-{}", rand_string(12)))
        .with_import_source(&Image::AlpineTestTooling.import_url(&ctx.cluster))
        .with_storage(SNAPSHOT_STORAGE_CLASS, None);
    ctx.cluster.create(DV, &dv.0).await;
    let original_pvc_name = dv.name();
    let vmi =
        Vmi::render_with_pvc(&original_pvc_name).with_memory_request("128Mi").with_cloud_init_no_cloud();
    ctx.create_and_start_vm(new_virtual_machine(vmi)).await;

    // "Ensuring the PVC is owned by the VM"
    let mut pvc = ctx.cluster.get(PVC, &original_pvc_name).await;
    pvc["metadata"]["ownerReferences"] = if owned_by_vm {
        json!([{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": ctx.vm_name(), "uid": ctx.vm_uid()}])
    } else {
        Value::Null
    };
    ctx.cluster.try_update(PVC, &pvc).await.unwrap_or_else(|e| panic!("update PVC {original_pvc_name}: {e}"));

    let restore = ctx.restore_to(ROOT, OFFLINE, restore_to_new_vm).await;
    assert!(items(&restore["status"]["deletedDataVolumes"]).is_empty(), "{restore:#}");
    ctx.cluster.get(PVC, &original_pvc_name).await;

    let target_vm = ctx.cluster.get(VM, &name_of(ctx.target_vm(restore_to_new_vm))).await;
    for volume in items(&target_vm["spec"]["template"]["spec"]["volumes"]) {
        let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() else { continue };
        assert_ne!(claim, original_pvc_name);
        let pvc = ctx.cluster.get(PVC, claim).await;
        let owners = items(&pvc["metadata"]["ownerReferences"]);
        if owned_by_vm {
            assert!(!owners.is_empty(), "{:#}", pvc["metadata"]);
            assert_eq!(owners[0]["apiVersion"], "kubevirt.io/v1");
            assert_eq!(owners[0]["kind"], "VirtualMachine");
            assert_eq!(owners[0]["name"], target_vm["metadata"]["name"]);
            assert_eq!(owners[0]["uid"], target_vm["metadata"]["uid"]);
        } else {
            assert!(owners.is_empty(), "{:#}", pvc["metadata"]);
        }
        assert_eq!(pvc["metadata"]["labels"]["restore.kubevirt.io/source-vm-name"], json!(ctx.vm_name()));
        assert!(
            pvc["metadata"]["annotations"]["restore.kubevirt.io/owned-by-vm"].is_null(),
            "{:#}",
            pvc["metadata"]
        );
    }
}

/// "should restore a vm that boots from a PVC" / Entry "[test_id:5262] to the same VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_that_boots_from_a_pvc_test_id_5262_to_the_same_vm() {
    should_restore_a_vm_that_boots_from_a_pvc(false, true).await;
}

/// "should restore a vm that boots from a PVC" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_that_boots_from_a_pvc_to_a_new_vm() {
    should_restore_a_vm_that_boots_from_a_pvc(true, true).await;
}

/// "should restore a vm that boots from a PVC" / Entry "to a new VM, pvc not owned by VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_that_boots_from_a_pvc_to_a_new_vm_pvc_not_owned_by_vm() {
    should_restore_a_vm_that_boots_from_a_pvc(true, false).await;
}

/// `DescribeTable("should restore a vm with containerdisk and blank datavolume", ...)`.
async fn should_restore_a_vm_with_containerdisk_and_blank_datavolume(restore_to_new_vm: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let dv = blank_data_volume(None);
    let vmi =
        Vmi::alpine_with_test_tooling().with_masquerade_networking().with_data_volume("blank", &dv.name());
    ctx.create_and_start_vm(with_data_volume_template(new_virtual_machine(vmi), &dv.0)).await;

    let restore = ctx.restore_to(BLANK, OFFLINE, restore_to_new_vm).await;
    if restore_to_new_vm {
        assert!(items(&restore["status"]["deletedDataVolumes"]).is_empty(), "{restore:#}");
    } else {
        assert_eq!(restore["status"]["deletedDataVolumes"], json!([dv.name()]), "{restore:#}");
        let gone = ctx.cluster.try_get(DV, &dv.name()).await.expect_err("the DataVolume is deleted");
        assert!(gone.is_not_found(), "{gone}");
    }
}

/// "should restore a vm with containerdisk and blank datavolume" / Entry "[test_id:5263] to the same VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_with_containerdisk_and_blank_datavolume_test_id_5263_to_the_same_vm() {
    should_restore_a_vm_with_containerdisk_and_blank_datavolume(false).await;
}

/// "should restore a vm with containerdisk and blank datavolume" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_with_containerdisk_and_blank_datavolume_to_a_new_vm() {
    should_restore_a_vm_with_containerdisk_and_blank_datavolume(true).await;
}

/// How the restore of "should reject vm start if restore in progress" ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unblock {
    DeleteWebhook,
    DeleteRestore,
}

/// `DescribeTable("should reject vm start if restore in progress", ...)`.
async fn should_reject_vm_start_if_restore_in_progress(unblock: Unblock) {
    let Some(mut ctx) = Ctx::start().await else { return };
    ctx.create_and_start_vm(alpine_vm(&ctx.cluster)).await;
    ctx.stop_vm().await;
    ctx.create_snapshot().await;

    let webhook_name = "dummy-webhook-deny-pvc-create.kubevirt.io";
    let configuration = format!("temp-webhook-deny-pvc-create{}", rand_string(5));
    let rule = json!({"apiGroups": [""], "apiVersions": ["v1", "v1alpha3"], "resources": ["persistentvolumeclaims"]});
    let webhook = deny_webhook(
        &configuration,
        webhook_name,
        "CREATE",
        rule,
        ("restore.kubevirt.io/source-vm-name", &ctx.vm_name()),
    );
    ctx.cluster.create(WEBHOOK, &webhook).await;

    let restore =
        create_restore_def_with_mac_address_patch(&ctx.vm, &ctx.vm_name(), &name_of(ctx.snapshot()));
    ctx.create_restore(&restore).await;
    let (name, restore_name) = (ctx.vm_name(), name_of(ctx.restore()));
    eventually("the restore to be refused by the webhook, the VM locked", secs(180), POLL, async || {
        let r = ctx.cluster.get(RESTORE, &restore_name).await;
        let vm = ctx.cluster.get(VM, &name).await;
        let conditions = items(&r["status"]["conditions"]);
        let refused = conditions.len() == 2
            && conditions.iter().all(|c| {
                c["status"] == "False"
                    && c["reason"].as_str().is_some_and(|reason| reason.contains(webhook_name))
            })
            && vm["status"]["restoreInProgress"] == json!(restore_name);
        if refused { Ok(()) } else { Err(format!("{} / VM: {}", status_of(&r), status_of(&vm))) }
    })
    .await;

    let refused = ctx.cluster.start_vm(&name).await.expect_err("the VM cannot start during the restore");
    let expected = format!("Cannot update VM runStrategy until restore {restore_name:?} completes");
    assert!(refused.to_string().contains(&expected), "{refused} should contain {expected}");

    match unblock {
        Unblock::DeleteWebhook => {
            ctx.cluster.delete(WEBHOOK, &configuration).await;
            ctx.wait_restore_complete(&name, Some(&ctx.vm_uid())).await;
        }
        Unblock::DeleteRestore => delete_restore(&ctx.cluster, &restore_name).await,
    }
    eventually("the VM to be unlocked", secs(30), POLL, async || {
        let vm = ctx.cluster.get(VM, &name).await;
        if vm["status"]["restoreInProgress"].is_null() { Ok(()) } else { Err(status_of(&vm)) }
    })
    .await;
    ctx.start_vm().await;
    delete_restore(&ctx.cluster, &restore_name).await;
}

/// "should reject vm start if restore in progress" / Entry "and allow it to start after completion"
#[tokio::test(flavor = "multi_thread")]
async fn should_reject_vm_start_if_restore_in_progress_and_allow_it_to_start_after_completion() {
    should_reject_vm_start_if_restore_in_progress(Unblock::DeleteWebhook).await;
}

/// "should reject vm start if restore in progress" / Entry "and allow it to start after vmrestore deletion"
#[tokio::test(flavor = "multi_thread")]
async fn should_reject_vm_start_if_restore_in_progress_and_allow_it_to_start_after_vmrestore_deletion() {
    should_reject_vm_start_if_restore_in_progress(Unblock::DeleteRestore).await;
}
