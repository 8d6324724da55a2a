//! KubeVirt's VirtualMachine snapshot and restore lock tests, ported.
//!
//! Ported from the "Validate VM snapshot, restore status" context of
//! `pkg/storage/admitters/vm-storage-admitter_test.go` of kubevirt/kubevirt at commit
//! `d923fdb815cd2016ddaebdaaa51db04133576d72`: one test per `DescribeTable` `Entry`, in modules
//! named like the `Describe`/`Context`/`DescribeTable` blocks. KubeVirt's tests check allowed or
//! not and the cause's field; these also check the cause's type and message, as
//! `vm-storage-status.go` at the same commit writes them.
//!
//! Not ported (listed in `docs/compatibility.md`): the "Validate VM DataVolumeTemplate"
//! context, whose rules are not snapshot or restore locks.

mod support;

use std::collections::BTreeMap;

use vmsnap_admission::{Denial, validate_vm_update};
use vmsnap_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vmsnap_api::kubevirt::{
    DataVolumeSource, Disk, EmptyDiskSource, ResourceRequirements, VirtualMachine,
    VirtualMachineInstanceSpec, VirtualMachineInstanceTemplateSpec, VirtualMachineSpec, VirtualMachineStatus,
    Volume,
};

use support::{CauseTuple, cause, causes};

/// The spec of KubeVirt's `api.NewMinimalVMI("testvmi")`: 8192Ki of memory requested.
fn minimal_vmi_spec() -> VirtualMachineInstanceSpec {
    let mut spec = VirtualMachineInstanceSpec::default();
    spec.domain.resources = Some(ResourceRequirements {
        requests: BTreeMap::from([("memory".to_string(), Quantity("8192Ki".into()))]),
        ..Default::default()
    });
    spec
}

/// `v1.EmptyDiskSource{}`: Go's zero capacity.
fn empty_disk(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_disk: Some(EmptyDiskSource { capacity: Quantity("0".into()) }),
        ..Default::default()
    }
}

fn disk(name: &str) -> Disk {
    Disk { name: name.into(), ..Default::default() }
}

fn vm_with(spec: VirtualMachineSpec, status: VirtualMachineStatus) -> VirtualMachine {
    let mut vm = VirtualMachine::new("", spec);
    vm.metadata.name = None;
    vm.status = Some(status);
    vm
}

fn not_supported(message: &str) -> Vec<CauseTuple> {
    vec![cause("FieldValueNotSupported", "spec", message)]
}

mod validating_vm_admitter {
    mod validate_vm_snapshot_restore_status {
        /// `DescribeTable("when snapshot is in progress, should")`: a VM with one empty disk
        /// `orginalvolume`, `running: false`, locked by snapshot `testsnapshot`.
        mod when_snapshot_is_in_progress_should {
            use super::super::super::*;

            fn locked_vm() -> VirtualMachine {
                let mut template = minimal_vmi_spec();
                template.domain.devices.disks = vec![disk("orginalvolume")];
                template.volumes = vec![empty_disk("orginalvolume")];
                vm_with(
                    VirtualMachineSpec {
                        running: Some(false),
                        template: VirtualMachineInstanceTemplateSpec { metadata: None, spec: template },
                        ..Default::default()
                    },
                    VirtualMachineStatus {
                        snapshot_in_progress: Some("testsnapshot".into()),
                        ..Default::default()
                    },
                )
            }

            /// Admits the update `mutate` makes to the locked VM.
            fn admit(mutate: impl FnOnce(&mut VirtualMachine)) -> Result<(), Denial> {
                let old_vm = locked_vm();
                let mut vm = old_vm.clone();
                mutate(&mut vm);
                validate_vm_update(&old_vm, &vm)
            }

            const VOLUMES_LOCKED: &str =
                "Cannot update vm disks or volumes until snapshot \"testsnapshot\" completes";
            const RUNNING_LOCKED: &str =
                "Cannot update vm running state until snapshot \"testsnapshot\" completes";

            #[test]
            fn reject_update_to_disks() {
                let result = admit(|vm| {
                    vm.spec.template.spec.domain.devices.disks = vec![disk("testvolume")];
                    vm.spec.template.spec.volumes = vec![empty_disk("testvolume")];
                });
                assert_eq!(causes(result), not_supported(VOLUMES_LOCKED));
            }

            #[test]
            fn reject_adding_volumes() {
                let result = admit(|vm| {
                    vm.spec.template.spec.domain.devices.disks.push(disk("testvolume"));
                    vm.spec.template.spec.volumes.push(empty_disk("testvolume"));
                });
                assert_eq!(causes(result), not_supported(VOLUMES_LOCKED));
            }

            #[test]
            fn reject_update_to_volumees() {
                let result = admit(|vm| {
                    let volume = &mut vm.spec.template.spec.volumes[0];
                    *volume = Volume {
                        name: volume.name.clone(),
                        data_volume: Some(DataVolumeSource { name: "fake".into(), ..Default::default() }),
                        ..Default::default()
                    };
                });
                assert_eq!(causes(result), not_supported(VOLUMES_LOCKED));
            }

            #[test]
            fn accept_update_to_spec_that_is_not_volumes_or_running_state() {
                let result = admit(|vm| vm.spec.template.spec.affinity = Some(serde_json::json!({})));
                assert_eq!(result, Ok(()));
            }

            #[test]
            fn reject_update_to_running_state() {
                let result = admit(|vm| vm.spec.running = Some(true));
                assert_eq!(causes(result), not_supported(RUNNING_LOCKED));
            }

            #[test]
            fn accept_update_to_running_state_if_value_doesnt_change() {
                let result = admit(|vm| vm.spec.running = Some(false));
                assert_eq!(result, Ok(()));
            }

            #[test]
            fn reject_update_to_running_state_when_switch_state_type() {
                let result = admit(|vm| {
                    vm.spec.running = None;
                    vm.spec.run_strategy = Some("Manual".into());
                });
                assert_eq!(causes(result), not_supported(RUNNING_LOCKED));
            }

            #[test]
            fn accept_update_to_metadata() {
                let result = admit(|vm| {
                    vm.metadata.annotations = Some(BTreeMap::from([("foo".into(), "bar".into())]))
                });
                assert_eq!(result, Ok(()));
            }

            #[test]
            fn accept_update_to_status() {
                let result = admit(|vm| vm.status.as_mut().unwrap().ready = true);
                assert_eq!(result, Ok(()));
            }
        }

        /// `DescribeTable("when restore is in progress, should")`: a minimal VM locked by restore
        /// `testrestore`, with `runStrategy: Halted` when the entry updates the run strategy and
        /// `running: false` otherwise.
        mod when_restore_is_in_progress_should {
            use super::super::super::*;

            /// Admits the update `mutate` makes to the restoring VM.
            fn admit(
                mutate: impl FnOnce(&mut VirtualMachine),
                update_run_strategy: bool,
            ) -> Result<(), Denial> {
                let mut spec = VirtualMachineSpec {
                    template: VirtualMachineInstanceTemplateSpec { metadata: None, spec: minimal_vmi_spec() },
                    ..Default::default()
                };
                if update_run_strategy {
                    spec.run_strategy = Some("Halted".into());
                } else {
                    spec.running = Some(false);
                }
                let old_vm = vm_with(
                    spec,
                    VirtualMachineStatus {
                        restore_in_progress: Some("testrestore".into()),
                        ..Default::default()
                    },
                );
                let mut vm = old_vm.clone();
                mutate(&mut vm);
                validate_vm_update(&old_vm, &vm)
            }

            const RUN_STRATEGY_LOCKED: &str =
                "Cannot update VM runStrategy until restore \"testrestore\" completes";

            #[test]
            fn reject_update_to_running_true() {
                let result = admit(|vm| vm.spec.running = Some(true), false);
                assert_eq!(causes(result), not_supported(RUN_STRATEGY_LOCKED));
            }

            #[test]
            fn reject_update_of_run_strategy() {
                let result = admit(|vm| vm.spec.run_strategy = Some("Manual".into()), true);
                assert_eq!(causes(result), not_supported(RUN_STRATEGY_LOCKED));
            }

            /// KubeVirt replaces the template with an empty one.
            #[test]
            fn accept_update_to_spec_except_running_true() {
                let result =
                    admit(|vm| vm.spec.template = VirtualMachineInstanceTemplateSpec::default(), false);
                assert_eq!(result, Ok(()));
            }

            #[test]
            fn accept_update_to_metadata() {
                let result = admit(
                    |vm| vm.metadata.annotations = Some(BTreeMap::from([("foo".into(), "bar".into())])),
                    false,
                );
                assert_eq!(result, Ok(()));
            }

            #[test]
            fn accept_update_to_status() {
                let result = admit(|vm| vm.status.as_mut().unwrap().ready = true, false);
                assert_eq!(result, Ok(()));
            }
        }
    }
}
