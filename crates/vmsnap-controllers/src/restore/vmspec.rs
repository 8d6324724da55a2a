//! The restored VM (`generateRestoredVMSpec`): the snapshot's VM with its volumes pointing at the
//! restored PVCs and DataVolumes, and KubeVirt's run strategy rules.

use std::collections::BTreeMap;

use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use vmsnap_api::kubevirt::{
    PersistentVolumeClaimVolumeSource, VirtualMachine, VirtualMachineSpec, run_strategy,
};
use vmsnap_api::snapshot::{SnapshotVirtualMachine, VirtualMachineRestore, VolumeRestore, annotation};

use crate::error::ReconcileError;

/// KubeVirt's namespace for legacy firmware UUIDs (`uuid.NewSHA1(ns, vmName)`).
const FIRMWARE_UUID_NAMESPACE: uuid::Uuid = uuid::uuid!("6a1a24a1-4061-4607-8bf4-a3963d0c5895");

/// The restored VM: for an existing target, its metadata with the snapshot's spec; for a new one,
/// the snapshot VM's labels and annotations under the target's name.
pub fn restored_vm(
    restore: &VirtualMachineRestore,
    snapshot_vm: &SnapshotVirtualMachine,
    restores: &[VolumeRestore],
    target: Option<&VirtualMachine>,
) -> Result<VirtualMachine, ReconcileError> {
    let mut spec: VirtualMachineSpec = snapshot_vm.spec.clone();
    rewrite_volumes(&mut spec, restores)?;
    let target_name = restore.spec.target.name.clone();
    let source_name = snapshot_vm.metadata.name.clone().unwrap_or_default();
    let last_restore = format!(
        "{}-{}",
        restore.metadata.name.clone().unwrap_or_default(),
        restore.metadata.uid.clone().unwrap_or_default()
    );
    let mut vm = match target {
        Some(existing) => {
            let mut vm = existing.clone();
            let used_running = existing.spec.running.is_some();
            let current_strategy = existing.spec.run_strategy.clone();
            vm.spec = spec;
            if used_running {
                vm.spec.running = Some(false);
                vm.spec.run_strategy = None;
            } else {
                vm.spec.running = None;
                vm.spec.run_strategy = current_strategy;
            }
            vm
        }
        None => {
            let mut vm = VirtualMachine::new(&target_name, spec);
            vm.metadata = ObjectMeta {
                name: Some(target_name.clone()),
                namespace: restore.metadata.namespace.clone(),
                labels: snapshot_vm.metadata.labels.clone(),
                annotations: snapshot_vm.metadata.annotations.clone(),
                ..Default::default()
            };
            if vm.spec.running.is_some() {
                vm.spec.running = Some(false);
            } else {
                vm.spec.run_strategy = Some(run_strategy::HALTED.into());
            }
            vm
        }
    };
    vm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(annotation::LAST_RESTORE_UID.into(), last_restore);
    if source_name == target_name {
        let fw = vm.spec.template.spec.domain.firmware.get_or_insert_with(Default::default);
        if fw.uuid.as_deref().unwrap_or("").is_empty() {
            fw.uuid = Some(uuid::Uuid::new_v5(&FIRMWARE_UUID_NAMESPACE, source_name.as_bytes()).to_string());
        }
    } else if target.is_none() {
        give_new_identity(&mut vm, &target_name);
    }
    Ok(vm)
}

/// Beyond KubeVirt (issue kubevirt#11113): a copy restored as a new VM gets new MAC addresses and a
/// new firmware UUID wherever the snapshot fixed them, so it can run beside the original. Patches
/// are applied afterwards and can still set them.
fn give_new_identity(vm: &mut VirtualMachine, target_name: &str) {
    for iface in &mut vm.spec.template.spec.domain.devices.interfaces {
        if iface.mac_address.as_deref().is_some_and(|m| !m.is_empty()) {
            iface.mac_address = Some(random_mac());
        }
    }
    if let Some(fw) = vm.spec.template.spec.domain.firmware.as_mut()
        && fw.uuid.as_deref().is_some_and(|u| !u.is_empty())
    {
        let ns = vm.metadata.namespace.clone().unwrap_or_default();
        fw.uuid = Some(
            uuid::Uuid::new_v5(
                &FIRMWARE_UUID_NAMESPACE,
                format!("{ns}/{target_name}/{}", uuid::Uuid::new_v4()).as_bytes(),
            )
            .to_string(),
        );
    }
}

fn random_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    // Locally administered, unicast.
    format!("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4])
}

fn rewrite_volumes(spec: &mut VirtualMachineSpec, restores: &[VolumeRestore]) -> Result<(), ReconcileError> {
    let find = |name: &str| restores.iter().find(|r| r.volume_name == name);
    let mut volumes = Vec::new();
    for mut v in std::mem::take(&mut spec.template.spec.volumes) {
        if v.memory_dump.is_some() {
            continue;
        }
        let Some(r) = find(&v.name) else {
            volumes.push(v);
            continue;
        };
        if let Some(pvc) = v.persistent_volume_claim.as_mut() {
            pvc.claim_name = r.persistent_volume_claim.clone();
        } else if let Some(dv) = v.data_volume.clone() {
            let template = spec
                .data_volume_templates
                .iter_mut()
                .find(|t| t.metadata.name.as_deref() == Some(dv.name.as_str()));
            match template {
                Some(t) => {
                    let new_name = r.data_volume_name.clone().ok_or_else(|| {
                        ReconcileError::NotYetSet(format!("DataVolumeName for dv {}", dv.name))
                    })?;
                    t.metadata.name = Some(new_name.clone());
                    v.data_volume.as_mut().expect("a DataVolume volume").name = new_name;
                }
                None => {
                    v.data_volume = None;
                    v.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                        claim_name: r.persistent_volume_claim.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        volumes.push(v);
    }
    spec.template.spec.volumes = volumes;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::kubevirt::{DataVolumeSource, DataVolumeTemplateSpec, Firmware, Interface, Volume};

    fn snapshot_vm(name: &str) -> SnapshotVirtualMachine {
        let mut spec = VirtualMachineSpec { run_strategy: Some("Always".into()), ..Default::default() };
        spec.template.spec.volumes = vec![
            Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "data-pvc".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "tpl".into(),
                data_volume: Some(DataVolumeSource { name: "tpl-dv".into(), hotpluggable: None }),
                ..Default::default()
            },
            Volume {
                name: "plain".into(),
                data_volume: Some(DataVolumeSource { name: "plain-dv".into(), hotpluggable: None }),
                ..Default::default()
            },
        ];
        spec.data_volume_templates = vec![DataVolumeTemplateSpec {
            metadata: ObjectMeta { name: Some("tpl-dv".into()), ..Default::default() },
            ..Default::default()
        }];
        spec.template.spec.domain.devices.interfaces = vec![Interface {
            name: "default".into(),
            mac_address: Some("02:00:00:00:00:01".into()),
            ..Default::default()
        }];
        spec.template.spec.domain.firmware = Some(Firmware {
            uuid: Some("11111111-2222-3333-4444-555555555555".into()),
            ..Default::default()
        });
        SnapshotVirtualMachine {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
        .with_spec(spec)
    }

    trait WithSpec {
        fn with_spec(self, spec: VirtualMachineSpec) -> Self;
    }

    impl WithSpec for SnapshotVirtualMachine {
        fn with_spec(mut self, spec: VirtualMachineSpec) -> Self {
            self.spec = spec;
            self
        }
    }

    fn restore(target: &str) -> VirtualMachineRestore {
        let mut r = VirtualMachineRestore::new("r", Default::default());
        r.metadata.uid = Some("u".into());
        r.metadata.namespace = Some("default".into());
        r.spec.target.name = target.into();
        r
    }

    fn restores() -> Vec<VolumeRestore> {
        vec![
            VolumeRestore {
                volume_name: "data".into(),
                persistent_volume_claim: "restore-u-data".into(),
                volume_snapshot_name: "vs1".into(),
                data_volume_name: None,
            },
            VolumeRestore {
                volume_name: "tpl".into(),
                persistent_volume_claim: "restore-u-tpl".into(),
                volume_snapshot_name: "vs2".into(),
                data_volume_name: Some("restore-u-tpl".into()),
            },
            VolumeRestore {
                volume_name: "plain".into(),
                persistent_volume_claim: "restore-u-plain".into(),
                volume_snapshot_name: "vs3".into(),
                data_volume_name: None,
            },
        ]
    }

    #[test]
    fn volumes_point_at_the_restored_claims_and_templates_are_renamed() {
        let vm = restored_vm(&restore("vm"), &snapshot_vm("vm"), &restores(), None).unwrap();
        let vols = &vm.spec.template.spec.volumes;
        assert_eq!(vols[0].persistent_volume_claim.as_ref().unwrap().claim_name, "restore-u-data");
        assert_eq!(vols[1].data_volume.as_ref().unwrap().name, "restore-u-tpl");
        assert_eq!(vm.spec.data_volume_templates[0].metadata.name.as_deref(), Some("restore-u-tpl"));
        assert!(vols[2].data_volume.is_none(), "a DataVolume without a template becomes a PVC volume");
        assert_eq!(vols[2].persistent_volume_claim.as_ref().unwrap().claim_name, "restore-u-plain");
        assert_eq!(vm.metadata.annotations.unwrap()["restore.kubevirt.io/lastRestoreUID"], "r-u");
    }

    #[test]
    fn a_new_vm_is_created_halted_with_a_new_identity() {
        let vm = restored_vm(&restore("copy"), &snapshot_vm("vm"), &restores(), None).unwrap();
        assert_eq!(vm.metadata.name.as_deref(), Some("copy"));
        assert_eq!(vm.spec.run_strategy.as_deref(), Some("Halted"));
        let mac = vm.spec.template.spec.domain.devices.interfaces[0].mac_address.clone().unwrap();
        assert_ne!(mac, "02:00:00:00:00:01");
        assert!(mac.starts_with("02:"));
        assert_ne!(
            vm.spec.template.spec.domain.firmware.unwrap().uuid.unwrap(),
            "11111111-2222-3333-4444-555555555555"
        );
    }

    #[test]
    fn an_existing_vm_keeps_its_run_strategy_and_its_identity_when_restored_in_place() {
        let mut existing = VirtualMachine::new("vm", Default::default());
        existing.spec.run_strategy = Some("RerunOnFailure".into());
        let vm = restored_vm(&restore("vm"), &snapshot_vm("vm"), &restores(), Some(&existing)).unwrap();
        assert_eq!(vm.spec.run_strategy.as_deref(), Some("RerunOnFailure"));
        assert_eq!(
            vm.spec.template.spec.domain.devices.interfaces[0].mac_address.as_deref(),
            Some("02:00:00:00:00:01")
        );
        let mut running = VirtualMachine::new("vm", Default::default());
        running.spec.running = Some(true);
        let vm = restored_vm(&restore("vm"), &snapshot_vm("vm"), &restores(), Some(&running)).unwrap();
        assert_eq!((vm.spec.running, vm.spec.run_strategy.clone()), (Some(false), None));
    }
}
