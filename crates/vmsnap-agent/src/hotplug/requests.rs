//! `addvolume` and `removevolume`. On a VM the change is persisted in the VM
//! spec (the volume marked `hotpluggable: true`) and applied to its running
//! VMI; on a VMI it is applied to the VMI only, so it is not part of the VM and
//! not of its snapshots. The VMI spec is the intent: the disk is attached or
//! detached to match it, here at once and again by the VMI controller.

use kube::api::{Api, Patch};
use serde_json::json;
use vmsnap_api::kubevirt::{
    AddVolumeOptions, DataVolumeSource, Disk, DiskTarget, PersistentVolumeClaimVolumeSource,
    RemoveVolumeOptions, VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceSpec, Volume,
};
use vmsnap_contracts::subresources::SubresourceError as ApiError;

use crate::agent::Agent;
use crate::hotplug;
use crate::running::patch_params;
use crate::subresources::{api_error, get_vm, get_vmi, is_dry_run, message, refused, running_vmi};
use vmsnap_api::refusal::Refusal;

/// How often a spec update is retried when the object changed meanwhile.
const ATTEMPTS: usize = 5;

/// Who checks a hotplugged disk, which KubeVirt's messages start with: the VM
/// admission for a VM's `addvolume`, the VMI update admission for a VMI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotplugTo {
    /// `virtualmachines/addvolume`.
    Vm,
    /// `virtualmachineinstances/addvolume`.
    Vmi,
}

impl HotplugTo {
    fn message_prefix(self) -> &'static str {
        match self {
            HotplugTo::Vm => "AddVolume request",
            HotplugTo::Vmi => "Hotplug configuration",
        }
    }
}

/// KubeVirt's `ValidateHotplugDiskConfiguration`: a hotplugged disk is a disk
/// on the scsi or virtio bus, or a LUN on scsi (refused with 422 and its message).
fn check_hotplug_disk(disk: &Disk, to: HotplugTo) -> Result<(), ApiError> {
    let (prefix, name) = (to.message_prefix(), &disk.name);
    let bus = |target: &DiskTarget| target.bus.clone().unwrap_or_default();
    let message = match (&disk.disk, &disk.lun) {
        (Some(target), _) if !matches!(bus(target).as_str(), "scsi" | "virtio") => format!(
            "{prefix} for disk [{name}] requires bus to be 'scsi' or 'virtio'. [{}] is not permitted.",
            bus(target)
        ),
        (Some(_), _) => return Ok(()),
        (None, Some(target)) if bus(target) != "scsi" => {
            format!(
                "{prefix} for LUN [{name}] requires bus to be 'scsi'. [{}] is not permitted.",
                bus(target)
            )
        }
        (None, Some(_)) => return Ok(()),
        (None, None) => {
            format!("{prefix} for [{name}] requires diskDevice of type 'disk' or 'lun' to be used.")
        }
    };
    Err(ApiError::invalid(message.clone(), json!([{"reason": "FieldValueInvalid", "message": message}])))
}

/// The volume and disk an `addvolume` body describes.
pub fn hotplug_volume(options: &AddVolumeOptions, to: HotplugTo) -> Result<(Volume, Disk), ApiError> {
    if options.name.is_empty() {
        return Err(ApiError::bad_request("AddVolumeOptions requires name to be set"));
    }
    let source = &options.volume_source;
    let mut volume = Volume { name: options.name.clone(), ..Default::default() };
    match (&source.persistent_volume_claim, &source.data_volume) {
        (Some(pvc), None) => {
            volume.persistent_volume_claim =
                Some(PersistentVolumeClaimVolumeSource { hotpluggable: Some(true), ..pvc.clone() });
        }
        (None, Some(dv)) => {
            volume.data_volume = Some(DataVolumeSource { hotpluggable: Some(true), ..dv.clone() })
        }
        _ => {
            return Err(ApiError::bad_request(
                "AddVolumeOptions requires exactly one of volumeSource.persistentVolumeClaim or volumeSource.dataVolume",
            ));
        }
    }
    let mut disk = options.disk.clone().unwrap_or_default();
    disk.name = options.name.clone();
    if disk.disk.is_none() && disk.lun.is_none() && disk.cdrom.is_none() {
        disk.disk = Some(DiskTarget { bus: Some("virtio".into()), ..Default::default() });
    }
    check_hotplug_disk(&disk, to)?;
    Ok((volume, disk))
}

/// Adds `volume` and `disk` to `spec`; refuses a name already in use.
pub fn add_to_spec(
    spec: &mut VirtualMachineInstanceSpec,
    volume: &Volume,
    disk: &Disk,
) -> Result<(), ApiError> {
    if spec.volumes.iter().any(|v| v.name == volume.name) {
        return Err(ApiError::conflict(format!(
            "Unable to add volume [{}] because volume with that name already exists",
            volume.name
        )));
    }
    spec.volumes.push(volume.clone());
    spec.domain.devices.disks.retain(|d| d.name != disk.name);
    spec.domain.devices.disks.push(disk.clone());
    Ok(())
}

/// Removes hotplugged volume `name` from `spec`.
pub fn remove_from_spec(spec: &mut VirtualMachineInstanceSpec, name: &str) -> Result<(), ApiError> {
    let volume = spec.volumes.iter().find(|v| v.name == name).ok_or_else(|| {
        ApiError::bad_request(format!("Unable to remove volume [{name}] because it does not exist"))
    })?;
    if !volume.is_hotpluggable() {
        return Err(ApiError::bad_request(format!(
            "Unable to remove volume [{name}] because it is not hotpluggable"
        )));
    }
    spec.volumes.retain(|v| v.name != name);
    spec.domain.devices.disks.retain(|d| d.name != name);
    Ok(())
}

/// The merge patch body that sets a VMI spec's volumes and disks (`spec`
/// of a VMI, `spec.template.spec` of a VM), with a resourceVersion precondition.
fn volumes_patch(
    resource_version: Option<&str>,
    spec: &VirtualMachineInstanceSpec,
    of_vm: bool,
) -> serde_json::Value {
    let volumes =
        json!({"volumes": spec.volumes, "domain": {"devices": {"disks": spec.domain.devices.disks}}});
    let spec = if of_vm { json!({"template": {"spec": volumes}}) } else { volumes };
    json!({"metadata": {"resourceVersion": resource_version}, "spec": spec})
}

/// Changes the VMI spec with `change`, retrying on conflicts; returns the updated VMI.
async fn update_vmi(
    agent: &Agent,
    namespace: &str,
    name: &str,
    change: &(dyn Fn(&mut VirtualMachineInstanceSpec) -> Result<(), ApiError> + Sync),
) -> Result<VirtualMachineInstance, ApiError> {
    let api: Api<VirtualMachineInstance> = Api::namespaced(agent.client.clone(), namespace);
    for _ in 0..ATTEMPTS {
        let Some(vmi) = get_vmi(agent, namespace, name).await? else {
            return Err(refused(Refusal::NotRunning, message::VMI_NOT_RUNNING));
        };
        let mut spec = vmi.spec.clone();
        change(&mut spec)?;
        let patch = volumes_patch(vmi.metadata.resource_version.as_deref(), &spec, false);
        match api.patch(name, &patch_params(), &Patch::Merge(&patch)).await {
            Ok(updated) => return Ok(updated),
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            Err(error) => return Err(api_error(error)),
        }
    }
    Err(ApiError::conflict(format!("VirtualMachineInstance {namespace}/{name} kept changing; retry")))
}

/// Changes the VM template spec with `change`, retrying on conflicts.
async fn update_vm(
    agent: &Agent,
    namespace: &str,
    name: &str,
    change: &(dyn Fn(&mut VirtualMachineInstanceSpec) -> Result<(), ApiError> + Sync),
) -> Result<(), ApiError> {
    let api: Api<VirtualMachine> = Api::namespaced(agent.client.clone(), namespace);
    for _ in 0..ATTEMPTS {
        let vm = get_vm(agent, namespace, name).await?;
        let mut spec = vm.spec.template.spec.clone();
        change(&mut spec)?;
        let patch = volumes_patch(vm.metadata.resource_version.as_deref(), &spec, true);
        match api.patch(name, &patch_params(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            Err(error) => return Err(api_error(error)),
        }
    }
    Err(ApiError::conflict(format!("VirtualMachine {namespace}/{name} kept changing; retry")))
}

/// Attaches or detaches to match the VMI spec now, instead of waiting for the controller.
async fn apply_now(agent: &Agent, vmi: &VirtualMachineInstance) {
    let (namespace, name) = (
        vmi.metadata.namespace.as_deref().unwrap_or_default(),
        vmi.metadata.name.as_deref().unwrap_or_default(),
    );
    if let Some(running) = agent.running(namespace, name) {
        hotplug::sync(agent, &running, vmi).await;
    }
}

/// VMI `addvolume`: applied to the VMI only.
pub async fn add_to_vmi(
    agent: &Agent,
    namespace: &str,
    name: &str,
    options: AddVolumeOptions,
) -> Result<(), ApiError> {
    let (volume, disk) = hotplug_volume(&options, HotplugTo::Vmi)?;
    running_vmi(agent, namespace, name, message::VMI_NOT_RUNNING).await?;
    if is_dry_run(&options.dry_run) {
        return Ok(());
    }
    let updated = update_vmi(agent, namespace, name, &|spec| add_to_spec(spec, &volume, &disk)).await?;
    apply_now(agent, &updated).await;
    Ok(())
}

/// VMI `removevolume`: removed from the VMI only.
pub async fn remove_from_vmi(
    agent: &Agent,
    namespace: &str,
    name: &str,
    options: RemoveVolumeOptions,
) -> Result<(), ApiError> {
    running_vmi(agent, namespace, name, message::VMI_NOT_RUNNING).await?;
    if is_dry_run(&options.dry_run) {
        return Ok(());
    }
    let updated = update_vmi(agent, namespace, name, &|spec| remove_from_spec(spec, &options.name)).await?;
    apply_now(agent, &updated).await;
    Ok(())
}

/// VM `addvolume`: persisted in the VM spec, and applied to its running VMI.
pub async fn add_to_vm(
    agent: &Agent,
    namespace: &str,
    name: &str,
    options: AddVolumeOptions,
) -> Result<(), ApiError> {
    let (volume, disk) = hotplug_volume(&options, HotplugTo::Vm)?;
    let vm = get_vm(agent, namespace, name).await?;
    add_to_spec(&mut vm.spec.template.spec.clone(), &volume, &disk)?;
    if is_dry_run(&options.dry_run) {
        return Ok(());
    }
    update_vm(agent, namespace, name, &|spec| add_to_spec(spec, &volume, &disk)).await?;
    if agent.running(namespace, name).is_some() {
        let updated = update_vmi(agent, namespace, name, &|spec| {
            // Already there (e.g. added to the VMI first): keep it.
            match add_to_spec(spec, &volume, &disk) {
                Err(error) if error.code == 409 => Ok(()),
                other => other,
            }
        })
        .await?;
        apply_now(agent, &updated).await;
    }
    Ok(())
}

/// VM `removevolume`: removed from the VM spec and from its running VMI.
pub async fn remove_from_vm(
    agent: &Agent,
    namespace: &str,
    name: &str,
    options: RemoveVolumeOptions,
) -> Result<(), ApiError> {
    let vm = get_vm(agent, namespace, name).await?;
    remove_from_spec(&mut vm.spec.template.spec.clone(), &options.name)?;
    if is_dry_run(&options.dry_run) {
        return Ok(());
    }
    update_vm(agent, namespace, name, &|spec| remove_from_spec(spec, &options.name)).await?;
    if let Some(running) = agent.running(namespace, name) {
        let present = running.volumes().iter().any(|v| v.name() == options.name);
        let in_spec = get_vmi(agent, namespace, name)
            .await?
            .is_some_and(|vmi| vmi.spec.volumes.iter().any(|v| v.name == options.name));
        if present || in_spec {
            let updated = update_vmi(agent, namespace, name, &|spec| {
                // Already gone from the VMI spec: only QEMU still has the disk.
                match spec.volumes.iter().any(|v| v.name == options.name) {
                    true => remove_from_spec(spec, &options.name),
                    false => Ok(()),
                }
            })
            .await?;
            apply_now(agent, &updated).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use vmsnap_api::kubevirt::HotplugVolumeSource;

    use super::*;

    fn options(name: &str) -> AddVolumeOptions {
        AddVolumeOptions {
            name: name.into(),
            volume_source: HotplugVolumeSource {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "hot-pvc".into(),
                    ..Default::default()
                }),
                data_volume: None,
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_added_volume_is_hotpluggable_with_a_virtio_disk() {
        let (volume, disk) = hotplug_volume(&options("hot"), HotplugTo::Vm).unwrap();
        assert!(volume.is_hotpluggable());
        assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "hot-pvc");
        assert_eq!((disk.name.as_str(), disk.disk.unwrap().bus.as_deref()), ("hot", Some("virtio")));
        assert_eq!(hotplug_volume(&options(""), HotplugTo::Vm).unwrap_err().code, 400);
        let mut no_source = options("x");
        no_source.volume_source.persistent_volume_claim = None;
        assert_eq!(hotplug_volume(&no_source, HotplugTo::Vm).unwrap_err().code, 400);
    }

    #[test]
    fn only_scsi_and_virtio_disks_and_scsi_luns_are_hotplugged_with_kubevirts_messages() {
        let with_disk = |disk: Disk| AddVolumeOptions { disk: Some(disk), ..options("hot") };
        let target = |bus: &str| Some(DiskTarget { bus: Some(bus.into()), ..Default::default() });
        let scsi = Disk {
            disk: target("scsi"),
            serial: Some("test-volume-abcdefghijkl".into()),
            ..Default::default()
        };
        let (_, disk) = hotplug_volume(&with_disk(scsi), HotplugTo::Vm).unwrap();
        assert_eq!(disk.disk.unwrap().bus.as_deref(), Some("scsi"));
        hotplug_volume(&with_disk(Disk { lun: target("scsi"), ..Default::default() }), HotplugTo::Vmi)
            .unwrap();

        let refused = |disk: Disk, to| hotplug_volume(&with_disk(disk), to).unwrap_err();
        let sata = refused(Disk { disk: target("sata"), ..Default::default() }, HotplugTo::Vm);
        assert_eq!(
            (sata.code, sata.message.as_str()),
            (
                422,
                "AddVolume request for disk [hot] requires bus to be 'scsi' or 'virtio'. [sata] is not permitted."
            )
        );
        let lun = refused(Disk { lun: target("virtio"), ..Default::default() }, HotplugTo::Vmi);
        assert_eq!(
            lun.message,
            "Hotplug configuration for LUN [hot] requires bus to be 'scsi'. [virtio] is not permitted."
        );
        let cdrom = refused(Disk { cdrom: target("sata"), ..Default::default() }, HotplugTo::Vmi);
        assert_eq!(
            cdrom.message,
            "Hotplug configuration for [hot] requires diskDevice of type 'disk' or 'lun' to be used."
        );
    }

    #[test]
    fn volumes_are_added_once_and_only_hotplugged_ones_removed() {
        let mut spec = VirtualMachineInstanceSpec::default();
        spec.volumes.push(Volume { name: "boot".into(), ..Default::default() });
        let (volume, disk) = hotplug_volume(&options("hot"), HotplugTo::Vm).unwrap();

        add_to_spec(&mut spec, &volume, &disk).unwrap();

        assert_eq!(add_to_spec(&mut spec, &volume, &disk).unwrap_err().code, 409);
        assert!(
            remove_from_spec(&mut spec.clone(), "boot").unwrap_err().message.contains("not hotpluggable")
        );
        assert!(remove_from_spec(&mut spec.clone(), "nope").unwrap_err().message.contains("does not exist"));
        remove_from_spec(&mut spec, "hot").unwrap();
        assert_eq!(spec.volumes.len(), 1);
        assert!(spec.domain.devices.disks.is_empty());
    }
}
