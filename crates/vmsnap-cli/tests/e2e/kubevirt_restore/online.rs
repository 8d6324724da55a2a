//! Context "With a more complicated VM": restores from online snapshots (with and without a
//! guest agent, with a hotplugged disk), of a VM whose spec changed after its start, and of a VM
//! with the `RerunOnFailure` run strategy.

use serde_json::json;

use super::flows::*;
use super::*;
use crate::kubevirt_support::guest::Image;
use crate::kubevirt_support::libstorage::*;
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

/// `DescribeTable("should restore a vm from an online snapshot", ...)`.
///
/// KubeVirt sets `vm.Spec.Template.Spec.Domain.Firmware = &v1.Firmware{}` so that the restore
/// carries the firmware UUID patch; here the firmware holds the kernel boot already, so the VM
/// keeps it (and the patch is added all the same).
async fn should_restore_a_vm_from_an_online_snapshot(restore_to_new_vm: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let vm = create_vm_with_cloud_init(&ctx.cluster, Image::AlpineTestTooling, None);
    assert!(!vm["spec"]["template"]["spec"]["domain"]["firmware"].is_null());
    ctx.create_and_start_vm(vm).await;
    let target = ctx.target_vm_name(restore_to_new_vm);
    if !restore_to_new_vm {
        // "Expect to get event in case we stop the VM after we created the restore. Once VM is
        // stopped the VMRestore will continue and complete successfully"
        ctx.do_restore_stop_vm_after_restore_create(ROOT, ONLINE, &target).await;
    } else {
        ctx.do_restore_no_vm_start(ROOT, ONLINE, &target).await;
    }
    ctx.start_vm_after_restore(&target, ROOT).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());
    if restore_to_new_vm {
        ctx.check_new_vm_equality();
    }
}

/// "should restore a vm from an online snapshot" / Entry "[test_id:6053] to the same VM, stop VM after create restore"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_from_an_online_snapshot_test_id_6053_to_the_same_vm_stop_vm_after_create_restore()
 {
    should_restore_a_vm_from_an_online_snapshot(false).await;
}

/// "should restore a vm from an online snapshot" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_from_an_online_snapshot_to_a_new_vm() {
    should_restore_a_vm_from_an_online_snapshot(true).await;
}

/// `DescribeTable("should restore a vm from an online snapshot with guest agent", ...)`.
async fn should_restore_a_vm_from_an_online_snapshot_with_guest_agent(restore_to_new_vm: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let dv = blank_data_volume(None);
    let vmi = Vmi::fedora().with_masquerade_networking().with_data_volume("blank", &dv.name());
    ctx.create_and_start_vm(with_data_volume_template(new_virtual_machine(vmi), &dv.0)).await;
    wait_agent_connected(&ctx.cluster, &ctx.vm_name()).await;

    ctx.restore_to(BLANK, ONLINE, restore_to_new_vm).await;
}

/// "should restore a vm from an online snapshot with guest agent" / Entry "[test_id:6766] to the same VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_from_an_online_snapshot_with_guest_agent_test_id_6766_to_the_same_vm() {
    should_restore_a_vm_from_an_online_snapshot_with_guest_agent(false).await;
}

/// "should restore a vm from an online snapshot with guest agent" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_a_vm_from_an_online_snapshot_with_guest_agent_to_a_new_vm() {
    should_restore_a_vm_from_an_online_snapshot_with_guest_agent(true).await;
}

/// `DescribeTable("should restore an online vm snapshot that boots from a datavolumetemplate with guest agent", ...)`.
async fn should_restore_an_online_vm_snapshot_that_boots_from_a_datavolumetemplate_with_guest_agent(
    restore_to_new_vm: bool,
) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let vm = create_vm_with_cloud_init(&ctx.cluster, Image::FedoraTestTooling, Some(FEDORA_MEMORY));
    ctx.create_and_start_vm(vm).await;
    wait_agent_connected(&ctx.cluster, &ctx.vm_name()).await;

    let original_dv_name = name_of(&ctx.vm["spec"]["dataVolumeTemplates"][0]);
    let target = ctx.target_vm_name(restore_to_new_vm);
    ctx.do_restore(ROOT, ONLINE, &target).await;
    ctx.verify_restore(restore_to_new_vm, &original_dv_name).await;
}

/// "should restore an online vm snapshot that boots from a datavolumetemplate with guest agent" / Entry "[test_id:6836] to the same VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_an_online_vm_snapshot_that_boots_from_a_datavolumetemplate_with_guest_agent_test_id_6836_to_the_same_vm()
 {
    should_restore_an_online_vm_snapshot_that_boots_from_a_datavolumetemplate_with_guest_agent(false).await;
}

/// "should restore an online vm snapshot that boots from a datavolumetemplate with guest agent" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_an_online_vm_snapshot_that_boots_from_a_datavolumetemplate_with_guest_agent_to_a_new_vm()
 {
    should_restore_an_online_vm_snapshot_that_boots_from_a_datavolumetemplate_with_guest_agent(true).await;
}

/// "should restore vm spec at startup without new changes"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_vm_spec_at_startup_without_new_changes() {
    let Some(mut ctx) = Ctx::start().await else { return };
    let vm = create_vm_with_cloud_init(&ctx.cluster, Image::FedoraTestTooling, Some(FEDORA_MEMORY));
    ctx.create_and_start_vm(vm).await;
    let name = ctx.vm_name();
    wait_agent_connected(&ctx.cluster, &name).await;

    // "Updating the VM template spec"
    let vmi = ctx.vmi.clone().expect("the VMI");
    let initial_memory = vmi["spec"]["domain"]["resources"]["requests"]["memory"].clone();
    let new_memory = json!("2Gi");
    assert_ne!(new_memory, initial_memory);
    let path = "/spec/template/spec/domain/resources/requests/memory";
    ctx.cluster.json_patch(VM, &name, &json!([{"op": "replace", "path": path, "value": new_memory}])).await;

    ctx.create_snapshot().await; // "creating snapshot"
    let new_vm = stop_virtual_machine(&ctx.cluster, &name).await;
    start_virtual_machine(&ctx.cluster, &name).await;
    let vmi = ctx.cluster.get(VMI, &name).await;
    assert_eq!(
        vmi["spec"]["domain"]["resources"]["requests"]["memory"], new_memory,
        "the new spec applies at start"
    );
    let new_vm = stop_virtual_machine(&ctx.cluster, &name_of(&new_vm)).await;

    // "Restoring VM"
    let restore =
        create_restore_def_with_mac_address_patch(&ctx.vm, &name_of(&new_vm), &name_of(ctx.snapshot()));
    ctx.create_restore(&restore).await;
    ctx.wait_restore_complete(&name_of(&new_vm), Some(&uid_of(&new_vm))).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());

    start_virtual_machine(&ctx.cluster, &name).await;
    let vmi = ctx.cluster.get(VMI, &name).await;
    assert_eq!(
        vmi["spec"]["domain"]["resources"]["requests"]["memory"], initial_memory,
        "the snapshot's spec is back"
    );
}

/// `DescribeTable("should restore vm with hot plug disks", ...)`.
async fn should_restore_vm_with_hot_plug_disks(restore_to_new_vm: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let url = Image::FedoraTestTooling.import_url(&ctx.cluster);
    ctx.create_and_start_vm(render_vm_with_registry_import_data_volume(&url, Image::FedoraTestTooling)).await;
    wait_agent_connected(&ctx.cluster, &ctx.vm_name()).await;

    // "Add persistent hotplug disk"
    let hotplugged = add_volume_and_verify(&ctx.cluster, &ctx.vm_name()).await;
    let target = ctx.target_vm_name(restore_to_new_vm);
    ctx.do_restore(ROOT, ONLINE, &target).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 2, "{:#}", ctx.restore());
    if restore_to_new_vm {
        ctx.check_new_vm_equality();
    }
    let target_vm = ctx.target_vm(restore_to_new_vm);
    let target_vmi = ctx.cluster.get(VMI, &name_of(target_vm)).await;
    let volumes = items(&target_vmi["spec"]["volumes"]);
    assert_eq!(volumes.len(), 2, "{:#}", target_vmi["spec"]);
    assert!(volumes.iter().any(|v| v["name"] == hotplugged.as_str()), "{:#}", target_vmi["spec"]);
}

/// "should restore vm with hot plug disks" / Entry "[test_id:7425] to the same VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_vm_with_hot_plug_disks_test_id_7425_to_the_same_vm() {
    should_restore_vm_with_hot_plug_disks(false).await;
}

/// "should restore vm with hot plug disks" / Entry "to a new VM"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_vm_with_hot_plug_disks_to_a_new_vm() {
    should_restore_vm_with_hot_plug_disks(true).await;
}

/// "with run strategy and snapshot should successfully restore"
#[tokio::test(flavor = "multi_thread")]
async fn with_run_strategy_and_snapshot_should_successfully_restore() {
    let Some(mut ctx) = Ctx::start().await else { return };
    let url = Image::FedoraTestTooling.import_url(&ctx.cluster);
    let vm = with_run_strategy(
        render_vm_with_registry_import_data_volume(&url, Image::FedoraTestTooling),
        "RerunOnFailure",
    );
    ctx.vm = ctx.cluster.create(VM, &vm).await;
    ctx.start_vm().await;
    wait_vmi_phase(&ctx.cluster, &ctx.vm_name(), "Running", crate::support::BOOT_TIMEOUT).await;
    assert_eq!(ctx.vm["spec"]["runStrategy"], "RerunOnFailure");
    let name = ctx.vm_name();
    ctx.do_restore_no_vm_start(ROOT, ONLINE, &name).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());
    let restored = ctx.cluster.get(VM, &name).await;
    assert_eq!(restored["spec"]["runStrategy"], "RerunOnFailure");
}
