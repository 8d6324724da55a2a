//! Fixtures for controller tests: storage classes, bound PVCs, VMs built step by step, VMIs with the
//! status an agent would report.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use vmsnap_api::kubevirt::{
    DataVolumeSource, Disk, DiskTarget, PersistentVolumeClaimVolumeSource, VirtualMachine,
    VirtualMachineInstance, Volume,
};

/// The provisioner/driver name the fixtures use (the local driver's).
pub const PROVISIONER: &str = vmsnap_contracts::names::LOCAL_STORAGE_DRIVER;

/// StorageClass `local` and its default VolumeSnapshotClass `local-snapshots`, as seed objects.
pub fn storage_objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": PROVISIONER, "volumeBindingMode": "Immediate", "allowVolumeExpansion": true, "reclaimPolicy": "Delete"}),
        json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
               "metadata": {"name": "local-snapshots", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
               "driver": PROVISIONER, "deletionPolicy": "Delete"}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "nfs"}, "provisioner": "example.com/nfs", "volumeBindingMode": "Immediate"}),
    ]
}

/// Creates a PVC of `storage_class` and marks it Bound, as a provisioner would.
pub async fn create_bound_pvc(
    client: &Client,
    ns: &str,
    name: &str,
    storage_class: &str,
) -> anyhow::Result<PersistentVolumeClaim> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class, "resources": {"requests": {"storage": "1Gi"}},
                 "volumeName": format!("pv-{name}")}
    }))?;
    pvcs.create(&PostParams::default(), &pvc).await?;
    let status = json!({"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
    Ok(pvcs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?)
}

/// Builds a VirtualMachine step by step: `VmBuilder::new("vm").with_pvc("data", "data-pvc").running().build()`.
pub struct VmBuilder {
    vm: VirtualMachine,
}

impl VmBuilder {
    /// A stopped VM with no disks.
    pub fn new(name: &str) -> VmBuilder {
        let mut vm = VirtualMachine::new(name, Default::default());
        vm.spec.run_strategy = Some("Halted".into());
        VmBuilder { vm }
    }

    fn disk(mut self, volume: Volume) -> VmBuilder {
        self.vm.spec.template.spec.domain.devices.disks.push(Disk {
            name: volume.name.clone(),
            disk: Some(DiskTarget { bus: Some("virtio".into()), ..Default::default() }),
            ..Default::default()
        });
        self.vm.spec.template.spec.volumes.push(volume);
        self
    }

    /// A disk backed by a PVC.
    pub fn with_pvc(self, volume: &str, claim: &str) -> VmBuilder {
        self.disk(Volume {
            name: volume.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// A disk backed by a DataVolume.
    pub fn with_data_volume(self, volume: &str, dv: &str) -> VmBuilder {
        self.disk(Volume {
            name: volume.into(),
            data_volume: Some(DataVolumeSource { name: dv.into(), hotpluggable: None }),
            ..Default::default()
        })
    }

    /// A container disk (never snapshotted).
    pub fn with_container_disk(self, volume: &str) -> VmBuilder {
        self.disk(Volume {
            name: volume.into(),
            container_disk: Some(vmsnap_api::kubevirt::ContainerDiskSource {
                image: "quay.io/containerdisks/fedora".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// `runStrategy: Always`.
    pub fn running(mut self) -> VmBuilder {
        self.vm.spec.run_strategy = Some("Always".into());
        self
    }

    /// The VM.
    pub fn build(self) -> VirtualMachine {
        self.vm
    }
}

/// What a fake VMI reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct VmiState {
    /// `AgentConnected` is present.
    pub agent: bool,
    /// `Paused` is True.
    pub paused: bool,
}

/// Creates a Running VMI for `vm` with the status an agent would write; `extra_volumes` are
/// VMI-only (hotplugged, not persisted in the VM).
pub async fn create_running_vmi(
    client: &Client,
    vm: &VirtualMachine,
    state: VmiState,
    extra_volumes: Vec<Volume>,
) -> anyhow::Result<VirtualMachineInstance> {
    let ns = vm.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = vm.metadata.name.clone().unwrap_or_default();
    let mut spec = vm.spec.template.spec.clone();
    spec.volumes.extend(extra_volumes);
    Ok(create_vmi_as_running(client, &ns, &VirtualMachineInstance::new(&name, spec), state).await?)
}

/// Creates `vmi` in `ns`, then gives it the Running status a node agent would write for `state`.
pub async fn create_vmi_as_running(
    client: &Client,
    ns: &str,
    vmi: &VirtualMachineInstance,
    state: VmiState,
) -> Result<VirtualMachineInstance, kube::Error> {
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let created = vmis.create(&PostParams::default(), vmi).await?;
    let mut conditions = vec![json!({"type": "Ready", "status": "True"})];
    if state.agent {
        conditions.push(json!({"type": "AgentConnected", "status": "True"}));
    }
    if state.paused {
        conditions.push(json!({"type": "Paused", "status": "True", "reason": "PausedByUser"}));
    }
    let status = json!({"status": {"phase": "Running", "conditions": conditions}});
    vmis.patch_status(&created.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await
}
