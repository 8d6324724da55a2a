//! `createContent`: the VirtualMachineSnapshotContent of a snapshot — the VM as it is, and one
//! VolumeBackup per volume that can be snapshotted.

use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use vmsnap_api::k8s_openapi::api::apps::v1::ControllerRevision;
use vmsnap_api::k8s_openapi::api::core::v1::PersistentVolumeClaim;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineSpec, VirtualMachineStatus};
use vmsnap_api::snapshot::{
    PersistentVolumeClaimCopy, SnapshotVirtualMachine, SourceSpec, VirtualMachineSnapshot,
    VirtualMachineSnapshotContent, VirtualMachineSnapshotContentSpec, VolumeBackup, content_name, finalizer,
    volume_snapshot_name,
};

use crate::backend;
use crate::error::ReconcileError;
use crate::source::Source;
use crate::vsclass;

/// The content's name: the one in the status once set, else `vmsnapshot-content-<snapshot uid>`.
pub fn name_for(snap: &VirtualMachineSnapshot) -> String {
    snap.status
        .as_ref()
        .and_then(|s| s.virtual_machine_snapshot_content_name.clone())
        .unwrap_or_else(|| content_name(&snap.uid().unwrap_or_default()))
}

/// The PVC of a volume if it can be snapshotted: present, Bound, with a storage class that has a
/// VolumeSnapshotClass. `None` (the volume is excluded) otherwise.
async fn snapshot_pvc(
    client: &Client,
    ns: &str,
    claim: &str,
) -> Result<Option<PersistentVolumeClaim>, ReconcileError> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let Some(pvc) = pvcs.get_opt(claim).await? else {
        tracing::warn!(%ns, %claim, "volume excluded from the snapshot: PVC not found");
        return Ok(None);
    };
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        tracing::warn!(%ns, %claim, "volume excluded from the snapshot: PVC not bound");
        return Ok(None);
    }
    let Some(sc) = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()) else {
        tracing::warn!(%ns, %claim, "volume excluded from the snapshot: no storage class");
        return Ok(None);
    };
    if vsclass::class_for(client, &sc).await?.is_none() {
        tracing::warn!(%ns, %claim, storage_class = %sc, "volume excluded from the snapshot: no VolumeSnapshotClass");
        return Ok(None);
    }
    Ok(Some(pvc))
}

fn without_managed_fields(mut meta: ObjectMeta) -> ObjectMeta {
    meta.managed_fields = None;
    meta
}

/// The VM spec stored in the content (`source.Spec()`). A stopped VM's is its current spec. A running
/// VM's is the spec its VMI started from (the ControllerRevision named by the VMI's
/// `virtualMachineRevisionName`), with the volumes, disks and DataVolume templates of the current
/// VM (which is how persistent hotplugs get in); the rest, memory for one, stays as it runs.
async fn source_spec(client: &Client, source: &Source) -> Result<SnapshotVirtualMachine, ReconcileError> {
    let metadata = without_managed_fields(source.vm.metadata.clone());
    let status = VirtualMachineStatus::default();
    let Some(vmi) = &source.vmi else {
        return Ok(SnapshotVirtualMachine { metadata, spec: source.vm.spec.clone(), status });
    };
    let revision_name = vmi.status.as_ref().and_then(|s| s.virtual_machine_revision_name.clone());
    let Some(revision_name) = revision_name.filter(|n| !n.is_empty()) else {
        // A VMI started by an agent older than its revisions: its current spec is all there is.
        tracing::warn!(vm = %source.vm.name_any(), "the VMI names no revision; storing the VM's current spec");
        return Ok(SnapshotVirtualMachine { metadata, spec: source.vm.spec.clone(), status });
    };
    let ns = source.vm.namespace().unwrap_or_default();
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let Some(revision) = revisions.get_opt(&revision_name).await? else {
        return Err(ReconcileError::RevisionMissing(revision_name));
    };
    let data = revision.data.map(|raw| raw.0).unwrap_or_default();
    let mut spec: VirtualMachineSpec = serde_json::from_value(data.get("spec").cloned().unwrap_or_default())
        .map_err(|source| ReconcileError::RevisionInvalid { name: revision_name.clone(), source })?;
    let current = &source.vm.spec;
    spec.template.spec.volumes = current.template.spec.volumes.clone();
    spec.template.spec.domain.devices.disks = current.template.spec.domain.devices.disks.clone();
    spec.data_volume_templates = current.data_volume_templates.clone();
    Ok(SnapshotVirtualMachine { metadata, spec, status })
}

/// Creates the content (AlreadyExists is fine) and returns its name.
pub async fn create(
    client: &Client,
    snap: &VirtualMachineSnapshot,
    source: &Source,
) -> Result<String, ReconcileError> {
    let ns = snap.namespace().unwrap_or_default();
    let snap_uid = snap.uid().unwrap_or_default();
    let vm: &VirtualMachine = &source.vm;
    let mut backups = Vec::new();
    let mut volumes: Vec<(String, String)> = vm
        .spec
        .template
        .spec
        .volumes
        .iter()
        .filter_map(|v| Some((v.name.clone(), v.claim_name()?.to_owned())))
        .collect();
    if backend::needs_backend_storage(vm) {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let selector = format!("{}={}", vmsnap_api::snapshot::label::PERSISTENT_STATE_FOR, vm.name_any());
        if let Some(pvc) =
            pvcs.list(&kube::api::ListParams::default().labels(&selector)).await?.items.into_iter().next()
        {
            volumes.push((backend::backend_volume_name(&vm.name_any()), pvc.name_any()));
        }
    }
    for (volume_name, claim) in volumes {
        let Some(pvc) = snapshot_pvc(client, &ns, &claim).await? else { continue };
        backups.push(VolumeBackup {
            volume_name: volume_name.clone(),
            persistent_volume_claim: PersistentVolumeClaimCopy {
                metadata: without_managed_fields(pvc.metadata.clone()),
                spec: pvc.spec.clone().unwrap_or_default(),
            },
            volume_snapshot_name: Some(volume_snapshot_name(&snap_uid, &volume_name)),
        });
    }
    let name = name_for(snap);
    let content = VirtualMachineSnapshotContent {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            finalizers: Some(vec![finalizer::CONTENT.to_owned()]),
            ..Default::default()
        },
        spec: VirtualMachineSnapshotContentSpec {
            virtual_machine_snapshot_name: Some(snap.name_any()),
            source: SourceSpec { virtual_machine: Some(source_spec(client, source).await?) },
            volume_backups: backups,
        },
        status: None,
    };
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(client.clone(), &ns);
    match contents.create(&PostParams::default(), &content).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(e)) if e.reason == "AlreadyExists" => Ok(name),
        Err(e) => Err(e.into()),
    }
}
