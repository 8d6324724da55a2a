//! The VM controller's run strategies, state change requests, DataVolume
//! templates and printable statuses, against the API server. No guest boots:
//! the VMs' volumes are never ready, so these tests need no QEMU.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::cluster::{Cluster, NS, VMS, phase, printable, vmi_condition};
use support::manifests::{GuestDisk, guest_vm_yaml};
use vmsnap_api::cdi::DataVolume;
use vmsnap_testing::await_value;

const SHORT: Duration = Duration::from_secs(20);

/// `manual`: a VM with run strategy Manual whose only disk's claim does not exist.
fn manual_yaml() -> String {
    guest_vm_yaml("manual", "Manual", &[GuestDisk::virtio("data", "missing-pvc")])
}

const TEMPLATED_YAML: &str = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: templated
spec:
  runStrategy: Halted
  dataVolumeTemplates:
  - metadata:
      name: templated-disk
    spec:
      source:
        blank: {}
      storage:
        resources:
          requests:
            storage: 64Mi
  template:
    spec:
      domain:
        devices: {}
      volumes:
      - name: disk
        dataVolume:
          name: templated-disk
"#;

async fn refused(call: impl Future<Output = Result<Duration, kube::Error>>) -> (u16, String) {
    match call.await {
        Ok(_) => (200, String::new()),
        Err(kube::Error::Api(status)) => (status.code, status.message),
        Err(other) => (0, other.to_string()),
    }
}

fn requests(vm: &vmsnap_api::kubevirt::VirtualMachine) -> usize {
    vm.status.as_ref().map_or(0, |s| s.state_change_requests.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_vm_starts_and_stops_only_on_request_and_reports_its_missing_claim() -> Result<()> {
    let cluster = Cluster::start_without_guests().await?;
    cluster.apply(&manual_yaml()).await?;

    // Created but not started: Stopped, never run.
    let vm =
        await_value(&cluster.vms(), "manual", SHORT, |vm| (printable(vm) == "Stopped").then(|| vm.clone()))
            .await?;
    let status = vm.status.clone().unwrap_or_default();
    assert_eq!((status.created, status.run_strategy.as_deref()), (false, None));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").context("no Ready condition")?;
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("VMINotExists")));
    assert!(cluster.vmis().get_opt("manual").await?.is_none());

    // start: a start request, served by creating the VMI, which waits for its PVC.
    cluster.subresource(VMS, "manual", "start", None).await?;
    let vmi = await_value(&cluster.vmis(), "manual", SHORT, |v| {
        vmi_condition(v, "Synchronized").map(|_| v.clone())
    })
    .await?;
    assert_eq!(phase(&vmi), "Pending");
    assert_eq!(vmi_condition(&vmi, "Synchronized"), Some(("False".into(), Some("FailedPvcNotFound".into()))));
    let owner = &vmi.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("VirtualMachine", Some(true)));
    let vm = await_value(&cluster.vms(), "manual", SHORT, |vm| {
        (printable(vm) == "ErrorPvcNotFound" && requests(vm) == 0).then(|| vm.clone())
    })
    .await?;
    let status = vm.status.clone().unwrap_or_default();
    assert_eq!((status.created, status.ready, status.run_strategy.as_deref()), (true, false, Some("Manual")));
    let (code, message) = refused(cluster.subresource(VMS, "manual", "start", None)).await;
    assert_eq!((code, message.as_str()), (409, "VM is already running"));

    // stop: a stop request for that VMI, served by deleting it.
    cluster.subresource(VMS, "manual", "stop", None).await?;
    await_value(&cluster.vms(), "manual", SHORT, |vm| {
        (printable(vm) == "Stopped" && requests(vm) == 0).then_some(())
    })
    .await?;
    assert!(cluster.vmis().get_opt("manual").await?.is_none());
    let (code, message) = refused(cluster.subresource(VMS, "manual", "stop", None)).await;
    assert_eq!((code, message.as_str()), (409, "VM is not running"));
    let (code, message) = refused(cluster.subresource(VMS, "manual", "restart", None)).await;
    assert_eq!((code, message.as_str()), (409, "VM is not running"));
    let (code, _) = refused(cluster.subresource(VMS, "nosuchvm", "start", None)).await;
    assert_eq!(code, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_volume_templates_are_created_owned_and_hold_the_start_until_populated() -> Result<()> {
    let cluster = Cluster::start_without_guests().await?;
    cluster.apply(TEMPLATED_YAML).await?;

    // The DataVolume is created at once, owned by the VM; the VM is Provisioning even while Halted.
    let dvs: Api<DataVolume> = Api::namespaced(cluster.client.clone(), NS);
    let dv = await_value(&dvs, "templated-disk", SHORT, |dv| Some(dv.clone())).await?;
    let vm = cluster.vms().get("templated").await?;
    let owner = dv.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.len(), 1);
    assert_eq!(
        (owner[0].uid.as_str(), owner[0].controller),
        (vm.metadata.uid.as_deref().unwrap_or_default(), Some(true))
    );
    await_value(&cluster.vms(), "templated", SHORT, |vm| (printable(vm) == "Provisioning").then_some(()))
        .await?;

    // start on a Halted VM switches it to Always; the VMI waits for the DataVolume.
    cluster.subresource(VMS, "templated", "start", None).await?;
    assert_eq!(cluster.vms().get("templated").await?.spec.run_strategy.as_deref(), Some("Always"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cluster.vmis().get_opt("templated").await?.is_none(),
        "a VMI was created before its DataVolume was ready"
    );
    assert_eq!(printable(&cluster.vms().get("templated").await?), "Provisioning");

    // Populated but its PVC not bound yet: the VMI exists and waits; WaitingForVolumeBinding.
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "templated-disk"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }))?;
    Api::<PersistentVolumeClaim>::namespaced(cluster.client.clone(), NS)
        .create(&PostParams::default(), &pvc)
        .await?;
    cluster.set_data_volume_phase("templated-disk", "Succeeded").await?;
    let vmi = await_value(&cluster.vmis(), "templated", SHORT, |v| {
        vmi_condition(v, "Synchronized").map(|_| v.clone())
    })
    .await?;
    assert_eq!(vmi_condition(&vmi, "Synchronized").and_then(|(_, r)| r).as_deref(), Some("VolumeNotReady"));
    await_value(&cluster.vms(), "templated", SHORT, |vm| {
        (printable(vm) == "WaitingForVolumeBinding").then_some(())
    })
    .await?;

    // A failed DataVolume shows as such.
    cluster.set_data_volume_phase("templated-disk", "Failed").await?;
    await_value(&cluster.vms(), "templated", SHORT, |vm| (printable(vm) == "DataVolumeError").then_some(()))
        .await?;

    // Deleting the VM takes its VMI and DataVolume with it.
    cluster.kubectl(&["delete", "vm", "templated", "--wait=true"]).await?;
    for _ in 0..100 {
        if cluster.vmis().get_opt("templated").await?.is_none()
            && dvs.get_opt("templated-disk").await?.is_none()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the VMI or the DataVolume outlived their VM")
}

/// KubeVirt's VM controller keeps its finalizer and a firmware UUID on every VM, records the spec a
/// VMI starts from in a ControllerRevision named in the VMI's status, and on deletion stops the VMI
/// before the VM goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_carry_kubevirts_finalizer_and_firmware_uuid_and_each_start_records_its_revision() -> Result<()> {
    use k8s_openapi::api::apps::v1::ControllerRevision;
    let cluster = Cluster::start_without_guests().await?;
    cluster.apply(&manual_yaml()).await?;
    let vm = await_value(&cluster.vms(), "manual", SHORT, |vm| {
        let uuid = vm.spec.template.spec.domain.firmware.as_ref()?.uuid.clone()?;
        vm.metadata
            .finalizers
            .as_ref()?
            .iter()
            .any(|f| f == "kubevirt.io/virtualMachineControllerFinalizer")
            .then(|| (vm.clone(), uuid))
    })
    .await?;
    let (vm, uuid) = vm;
    // The API server gave it a random one at creation (KubeVirt's VM mutator), which is kept.
    // KubeVirt's CalculateLegacyUUID("manual"): uuid.NewSHA1(6a1a24a1-4061-4607-8bf4-a3963d0c5895, "manual").
    let legacy =
        uuid::Uuid::new_v5(&uuid::uuid!("6a1a24a1-4061-4607-8bf4-a3963d0c5895"), b"manual").to_string();
    assert_eq!(uuid::Uuid::parse_str(&uuid)?.get_version_num(), 4, "{uuid}");
    // A VM without one (made before the mutator existed, or updated to drop it) gets the legacy UUID.
    let drop_uuid = json!([{"op": "remove", "path": "/spec/template/spec/domain/firmware/uuid"}]);
    cluster
        .vms()
        .patch("manual", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(drop_uuid)?))
        .await?;
    await_value(&cluster.vms(), "manual", SHORT, |vm| {
        (vm.spec.template.spec.domain.firmware.as_ref()?.uuid.as_deref() == Some(legacy.as_str()))
            .then_some(())
    })
    .await?;
    assert!(
        vm.spec.template.spec.domain.firmware.as_ref().unwrap().kernel_boot.is_some(),
        "the rest of the firmware is kept"
    );

    cluster.subresource(VMS, "manual", "start", None).await?;
    let revision_name = await_value(&cluster.vmis(), "manual", SHORT, |v| {
        v.status.as_ref()?.virtual_machine_revision_name.clone()
    })
    .await?;
    let vm = cluster.vms().get("manual").await?;
    let uid = vm.metadata.uid.clone().unwrap_or_default();
    let generation = vm.metadata.generation.unwrap_or_default();
    assert_eq!(revision_name, format!("revision-start-vm-{uid}-{generation}"));
    let revisions: Api<ControllerRevision> = Api::namespaced(cluster.client.clone(), NS);
    let revision = revisions.get(&revision_name).await?;
    let stored: vmsnap_api::kubevirt::VirtualMachineSpec =
        serde_json::from_value(revision.data.clone().context("no data")?.0["spec"].clone())?;
    assert_eq!(stored, vm.spec, "the revision holds the spec the VMI started from");
    assert_eq!(revision.revision, generation);
    let owner = &revision.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!((owner.uid.as_str(), owner.controller), (uid.as_str(), Some(true)));

    // Deleting the VM: it stays (finalizer) until its VMI is gone, then goes with its revision.
    cluster.vms().delete("manual", &Default::default()).await?;
    let deleting = cluster.vms().get("manual").await?;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    for _ in 0..100 {
        let vm_gone = cluster.vms().get_opt("manual").await?.is_none();
        let vmi_gone = cluster.vmis().get_opt("manual").await?.is_none();
        assert!(!vm_gone || vmi_gone, "the VM went before its VMI");
        if vm_gone && revisions.get_opt(&revision_name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the VM, its VMI or its revision outlived the deletion")
}

/// A DataVolume of a template that exists without a controller (a restore recreated it) is claimed
/// by the VM, as KubeVirt's VM controller claims it, so that deleting the VM deletes it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_data_volume_of_a_template_is_adopted_by_its_vm() -> Result<()> {
    let cluster = Cluster::start_without_guests().await?;
    let dvs: Api<DataVolume> = Api::namespaced(cluster.client.clone(), NS);
    let orphan: DataVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": "templated-disk", "annotations": {"cdi.kubevirt.io/storage.prePopulated": "true"}},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "64Mi"}}}},
    }))?;
    dvs.create(&PostParams::default(), &orphan).await?;
    cluster.apply(TEMPLATED_YAML).await?;
    let vm =
        await_value(&cluster.vms(), "templated", SHORT, |vm| vm.metadata.uid.clone().map(|_| vm.clone()))
            .await?;
    let owners = await_value(&dvs, "templated-disk", SHORT, |dv| {
        let owners = dv.metadata.owner_references.clone()?;
        (!owners.is_empty()).then_some(owners)
    })
    .await?;
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].uid.as_str(), owners[0].kind.as_str(), owners[0].controller),
        (vm.metadata.uid.as_deref().unwrap_or_default(), "VirtualMachine", Some(true))
    );
    Ok(())
}

/// Beyond KubeVirt (kubevirt#13956): a deleted VM stays while a restore still has it as owner, so
/// that the restore controller can take the owner reference off and the garbage collector keeps
/// the restore's record; once no restore names it, the VM goes. (No restore controller runs
/// here: the test takes the owner reference off itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_vm_waits_for_the_restores_it_owns_to_let_go() -> Result<()> {
    use kube::ResourceExt;
    use vmsnap_api::snapshot::VirtualMachineRestore;
    let cluster = Cluster::start_without_guests().await?;
    cluster.apply(&manual_yaml()).await?;
    let uid = await_value(&cluster.vms(), "manual", SHORT, |vm| {
        vm.finalizers()
            .iter()
            .any(|f| f == "kubevirt.io/virtualMachineControllerFinalizer")
            .then(|| vm.uid())?
    })
    .await?;
    let restores: Api<VirtualMachineRestore> = Api::namespaced(cluster.client.clone(), NS);
    let restore: VirtualMachineRestore = serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
        "metadata": {"name": "manual-restore", "ownerReferences": [{
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "manual", "uid": uid,
            "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "manual"},
                 "virtualMachineSnapshotName": "manual-snapshot"},
    }))?;
    restores.create(&PostParams::default(), &restore).await?;

    cluster.vms().delete("manual", &Default::default()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = cluster.vms().get_opt("manual").await?.context("the VM went while a restore owned it")?;
    assert!(held.metadata.deletion_timestamp.is_some());

    let release = json!({"metadata": {"ownerReferences": null}});
    restores.patch("manual-restore", &PatchParams::default(), &Patch::Merge(&release)).await?;
    for _ in 0..50 {
        if cluster.vms().get_opt("manual").await?.is_none() {
            assert!(restores.get_opt("manual-restore").await?.is_some(), "the restore's record is kept");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the VM outlived its deletion after no restore owned it any more")
}
