//! Context "With a more complicated VM": `volumeRestoreOverrides`, `volumeRestorePolicy: InPlace`
//! with a DataVolume template, a standalone DataVolume and a PVC, and
//! `volumeOwnershipPolicy: None`.

use serde_json::{Value, json};

use super::flows::*;
use super::*;
use crate::kubevirt_support::guest::Image;
use crate::kubevirt_support::libstorage::*;
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

/// A restore of the context's snapshot onto its VM that stops the target, with `extra` spec fields.
fn stop_target_restore(ctx: &Ctx, extra: Value) -> Value {
    let mut restore = create_restore_def(&ctx.vm_name(), &name_of(ctx.snapshot()));
    restore["spec"]["targetReadinessPolicy"] = json!("StopTarget");
    for (key, value) in extra.as_object().expect("fields") {
        restore["spec"][key] = value.clone();
    }
    restore
}

/// The restore of the three `InPlace` tests: in place, the restored volume annotated `test: value`
/// ("to ensure it has been restored from a VolumeSnapshot").
fn in_place_restore(ctx: &Ctx) -> Value {
    stop_target_restore(
        ctx,
        json!({
            "volumeRestorePolicy": "InPlace",
            "volumeRestoreOverrides": [{"volumeName": "disk0", "annotations": {"test": "value"}}]
        }),
    )
}

/// Restores the context's snapshot in place (`in_place_restore`), waits for it and checks it
/// restored one volume; the restore as it completed.
async fn restore_in_place(ctx: &mut Ctx) -> Value {
    ctx.create_restore(&in_place_restore(ctx)).await;
    ctx.wait_restore_complete(&ctx.vm_name(), Some(&ctx.vm_uid())).await;
    let restore = ctx.restore().clone();
    assert_eq!(items(&restore["status"]["restores"]).len(), 1, "{restore:#}");
    restore
}

/// "Check the VM post-restore has info we want": the restored VM has `count` volumes, the first
/// under its original name; the restored VM, its volumes and the original VM's.
async fn check_restored_vm_volumes(ctx: &Ctx, count: usize) -> (Value, Vec<Value>, Vec<Value>) {
    let restored = ctx.cluster.get(VM, &ctx.vm_name()).await;
    let volumes = items(&restored["spec"]["template"]["spec"]["volumes"]);
    let original = items(&ctx.vm["spec"]["template"]["spec"]["volumes"]);
    assert_eq!(volumes.len(), count, "{volumes:#?}");
    assert_eq!(volumes[0]["name"], original[0]["name"], "volume name didn't change");
    (restored, volumes, original)
}

/// "Check the restored PVC exists", "PVC should have owner reference back to the DV (which has
/// same name as itself)", "Check the source DV for that PVC": the PVC `pvc_name` was restored
/// (annotated `test: value`), is owned by the DataVolume of its name, which names `restore` and
/// says the PVC was pre-populated.
async fn check_restored_pvc_owned_by_its_data_volume(ctx: &Ctx, pvc_name: &str, restore: &Value) {
    let pvc = ctx.cluster.get(PVC, pvc_name).await;
    assert_eq!(pvc["metadata"]["annotations"]["test"], "value", "{:#}", pvc["metadata"]);
    eventually("the PVC to be owned by its DataVolume", secs(60), POLL, async || {
        let pvc = ctx.cluster.get(PVC, pvc_name).await;
        let owner = &pvc["metadata"]["ownerReferences"][0]["name"];
        if owner == pvc_name { Ok(()) } else { Err(format!("{:#}", pvc["metadata"])) }
    })
    .await;
    let dv = ctx.cluster.get(DV, pvc_name).await;
    assert_eq!(dv["metadata"]["annotations"]["restore.kubevirt.io/name"], restore["metadata"]["name"]);
    assert_eq!(dv["metadata"]["annotations"]["cdi.kubevirt.io/storage.prePopulated"], json!(pvc_name));
}

/// "should override VM during restore"
#[tokio::test(flavor = "multi_thread")]
async fn should_override_vm_during_restore() {
    let Some(mut ctx) = Ctx::start().await else { return };
    let url = Image::Alpine.import_url(&ctx.cluster);
    ctx.create_and_start_vm(render_vm_with_registry_import_data_volume(&url, Image::Alpine)).await;
    ctx.create_snapshot().await;

    let new_disk_name = "new-disk";
    let restore = stop_target_restore(
        &ctx,
        json!({"volumeRestoreOverrides": [{
            "volumeName": "disk0",
            "restoreName": new_disk_name,
            "labels": {"new-label": "value"},
            "annotations": {"new-annotation": "value"}
        }]}),
    );
    ctx.create_restore(&restore).await;
    ctx.wait_restore_complete(&ctx.vm_name(), Some(&ctx.vm_uid())).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());

    // "Check the VM post-restore has info we want"
    let restored = ctx.cluster.get(VM, &ctx.vm_name()).await;
    let volumes = items(&restored["spec"]["template"]["spec"]["volumes"]);
    assert_eq!(volumes.len(), 1, "{volumes:#?}");
    assert_eq!(volumes[0]["name"], "disk0");
    assert_eq!(volumes[0]["dataVolume"]["name"], new_disk_name, "{volumes:#?}");
    // "Check the restored PVC has the info we want"
    let pvc = ctx.cluster.get(PVC, new_disk_name).await;
    assert_eq!(pvc["metadata"]["labels"]["new-label"], "value", "{:#}", pvc["metadata"]);
    assert_eq!(pvc["metadata"]["annotations"]["new-annotation"], "value", "{:#}", pvc["metadata"]);
    ctx.delete_restore().await;
}

/// "should restore with volume restore policy InPlace and DV template as disk"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_with_volume_restore_policy_in_place_and_dv_template_as_disk() {
    let Some(mut ctx) = Ctx::start().await else { return };
    let url = Image::Alpine.import_url(&ctx.cluster);
    ctx.create_and_start_vm(render_vm_with_registry_import_data_volume(&url, Image::Alpine)).await;
    ctx.create_snapshot().await;
    let restore = restore_in_place(&mut ctx).await;

    let (restored, volumes, original) = check_restored_vm_volumes(&ctx, 1).await;
    assert_eq!(
        volumes[0]["dataVolume"]["name"], original[0]["dataVolume"]["name"],
        "related DV didn't change"
    );
    let original_pvc_name = original[0]["dataVolume"]["name"].as_str().expect("a DataVolume").to_owned();

    // "The original VM should have information on the name of the PVC linked to the DV"
    let vmi = ctx.vmi.clone().expect("the VMI");
    assert_eq!(vmi["status"]["volumeStatus"][0]["name"], "disk0", "{:#}", vmi["status"]);
    assert_eq!(
        vmi["status"]["volumeStatus"][0]["persistentVolumeClaimInfo"]["claimName"],
        json!(original_pvc_name)
    );

    check_restored_pvc_owned_by_its_data_volume(&ctx, &original_pvc_name, &restore).await;

    // "Start VM"
    let target = start_virtual_machine(&ctx.cluster, &name_of(&restored)).await;
    let vmi = ctx.cluster.get(VMI, &name_of(&target)).await;
    // "Check the restored VM is exactly the same, the PVC is the same"
    assert_eq!(vmi["status"]["volumeStatus"][0]["name"], "disk0", "{:#}", vmi["status"]);
    assert_eq!(
        vmi["status"]["volumeStatus"][0]["persistentVolumeClaimInfo"]["claimName"],
        json!(original_pvc_name)
    );
    ctx.delete_restore().await;
}

/// "should restore with volume restore policy InPlace and DV (not template) as disk"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_with_volume_restore_policy_in_place_and_dv_not_template_as_disk() {
    let Some(mut ctx) = Ctx::start().await else { return };
    // "VM with normal DV mounted to it"
    let mut vm = create_vm_with_cloud_init(&ctx.cluster, Image::Alpine, None);
    // "Create standalone DV, not linked to a VM's template"
    let dv = orphan_data_volume_template(&mut vm, 0);
    let dv = ctx.cluster.create(DV, &dv).await;
    let original_pvc_name = name_of(&dv);
    // "Create and start the VM, wait for the DV to bind"
    ctx.create_and_start_vm(vm).await;
    wait_dv_succeeded(&ctx.cluster, &name_of(&dv), secs(180)).await;
    ctx.create_snapshot().await;

    let restore = restore_in_place(&mut ctx).await;
    assert!(
        items(&restore["status"]["deletedDataVolumes"]).is_empty(),
        "only DV templates are deleted: {restore:#}"
    );

    let (_, volumes, original) = check_restored_vm_volumes(&ctx, 2).await;
    assert_eq!(
        volumes[0]["persistentVolumeClaim"]["claimName"], original[0]["dataVolume"]["name"],
        "DV got converted to a PVC with the same name: {volumes:#?}"
    );
    check_restored_pvc_owned_by_its_data_volume(&ctx, &original_pvc_name, &restore).await;
}

/// `libstorage.NewPVC("standalone-pvc", "2Gi", sc, libstorage.WithStorageProfile())`.
fn standalone_pvc() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "standalone-pvc", "labels": {"cdi.kubevirt.io/applyStorageProfile": "true"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "2Gi"}},
            "storageClassName": SNAPSHOT_STORAGE_CLASS
        }
    })
}

/// `libvmi.New(WithMemoryRequest("1Mi"), WithPersistentVolumeClaim("disk0", pvc))`: a VM with no
/// boot image at all (no kernel boot), like KubeVirt's, that runs whatever its disk holds.
fn vm_on_standalone_pvc(pvc: &str) -> Value {
    let mut vmi = Vmi::new().with_memory_request("1Mi").with_persistent_volume_claim("disk0", pvc);
    vmi.0["spec"]["domain"].as_object_mut().expect("a domain").remove("firmware");
    new_virtual_machine(vmi)
}

/// "should restore with volume restore policy InPlace and PVC as disk"
#[tokio::test(flavor = "multi_thread")]
async fn should_restore_with_volume_restore_policy_in_place_and_pvc_as_disk() {
    let Some(mut ctx) = Ctx::start().await else { return };
    let pvc = ctx.cluster.create(PVC, &standalone_pvc()).await;
    let pvc_name = name_of(&pvc);
    ctx.create_and_start_vm(vm_on_standalone_pvc(&pvc_name)).await;
    ctx.create_snapshot().await;

    let restore = restore_in_place(&mut ctx).await;
    assert!(items(&restore["status"]["deletedDataVolumes"]).is_empty(), "{restore:#}");

    let (restored, volumes, _) = check_restored_vm_volumes(&ctx, 1).await;
    assert_eq!(volumes[0]["persistentVolumeClaim"]["claimName"], json!(pvc_name), "PVC name didn't change");
    // "Check the restored PVC exists"
    let pvc = ctx.cluster.get(PVC, &pvc_name).await;
    assert_eq!(pvc["metadata"]["annotations"]["test"], "value", "{:#}", pvc["metadata"]);
    // "PVC should have owner reference back to the VM"
    let owners = items(&pvc["metadata"]["ownerReferences"]);
    assert_eq!(owners.len(), 1, "{:#}", pvc["metadata"]);
    assert_eq!(owners[0]["kind"], "VirtualMachine");
    assert_eq!(owners[0]["name"], restored["metadata"]["name"]);
}

/// "standalone PVC should have no owner with volumeOwnershipPolicyNone"
#[tokio::test(flavor = "multi_thread")]
async fn standalone_pvc_should_have_no_owner_with_volume_ownership_policy_none() {
    let Some(mut ctx) = Ctx::start().await else { return };
    let pvc = ctx.cluster.create(PVC, &standalone_pvc()).await;
    ctx.create_and_start_vm(vm_on_standalone_pvc(&name_of(&pvc))).await;
    ctx.create_snapshot().await;

    // "We want the restored PVC to not be owned by the restored VM"
    let restore = stop_target_restore(&ctx, json!({"volumeOwnershipPolicy": "None"}));
    ctx.create_restore(&restore).await;
    ctx.wait_restore_complete(&ctx.vm_name(), Some(&ctx.vm_uid())).await;
    assert_eq!(items(&ctx.restore()["status"]["restores"]).len(), 1, "{:#}", ctx.restore());

    // "PVC should have no owner reference when restored"
    let r = ctx.cluster.get(RESTORE, &name_of(ctx.restore())).await;
    let restored_pvc =
        r["status"]["restores"][0]["persistentVolumeClaim"].as_str().expect("a PVC").to_owned();
    let pvc = ctx.cluster.get(PVC, &restored_pvc).await;
    assert!(pvc["metadata"]["ownerReferences"].is_null(), "{:#}", pvc["metadata"]);
    ctx.delete_restore().await;
}
