//! The VirtualMachine update locks (`pkg/storage/admitters/vm-storage-status.go`).

use vmsnap_api::kubevirt::VirtualMachine;

use crate::{Cause, Denial, VM_WEBHOOK};

/// While a snapshot holds the VM, its volumes and running state cannot change; while a restore
/// is in progress, its run strategy cannot change.
pub fn validate_vm_update(old: &VirtualMachine, new: &VirtualMachine) -> Result<(), Denial> {
    let mut causes = Vec::new();
    let status = new.status.as_ref().or(old.status.as_ref());
    if let Some(snapshot) = status.and_then(|s| s.snapshot_in_progress.as_deref()) {
        let (o, n) = (&old.spec.template.spec, &new.spec.template.spec);
        if o.volumes != n.volumes || o.domain.devices.disks != n.domain.devices.disks {
            causes.push(Cause::invalid(
                "spec",
                format!("Cannot update vm disks or volumes until snapshot {snapshot:?} completes"),
            ));
        }
        if old.spec.running != new.spec.running || old.spec.run_strategy != new.spec.run_strategy {
            causes.push(Cause::invalid(
                "spec",
                format!("Cannot update vm running state until snapshot {snapshot:?} completes"),
            ));
        }
    }
    if let Some(restore) = status.and_then(|s| s.restore_in_progress.as_deref())
        && old.spec != new.spec
        && old.spec.effective_run_strategy() != new.spec.effective_run_strategy()
    {
        causes.push(Cause::invalid(
            "spec",
            format!("Cannot update VM runStrategy until restore {restore:?} completes"),
        ));
    }
    Denial::check(VM_WEBHOOK, causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::kubevirt::{PersistentVolumeClaimVolumeSource, VirtualMachineStatus, Volume};

    fn vm(snapshot: Option<&str>, restore: Option<&str>) -> VirtualMachine {
        let mut vm = VirtualMachine::new("vm", Default::default());
        vm.spec.run_strategy = Some("Halted".into());
        vm.status = Some(VirtualMachineStatus {
            snapshot_in_progress: snapshot.map(Into::into),
            restore_in_progress: restore.map(Into::into),
            ..Default::default()
        });
        vm
    }

    #[test]
    fn a_locked_vm_cannot_start_or_change_volumes() {
        let old = vm(Some("snap"), None);
        let mut new = old.clone();
        new.spec.run_strategy = Some("Always".into());
        new.spec.template.spec.volumes.push(Volume {
            name: "d".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "p".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let denial = validate_vm_update(&old, &new).unwrap_err();
        let msgs: Vec<_> = denial.causes.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "Cannot update vm disks or volumes until snapshot \"snap\" completes",
                "Cannot update vm running state until snapshot \"snap\" completes",
            ]
        );
    }

    #[test]
    fn a_restoring_vm_keeps_its_run_strategy_but_labels_can_change() {
        let old = vm(None, Some("r"));
        let mut started = old.clone();
        started.spec.run_strategy = Some("Always".into());
        assert!(
            validate_vm_update(&old, &started)
                .unwrap_err()
                .message()
                .ends_with("Cannot update VM runStrategy until restore \"r\" completes")
        );
        let mut relabelled = old.clone();
        relabelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(validate_vm_update(&old, &relabelled).is_ok());
    }

    #[test]
    fn an_unlocked_vm_can_change_freely() {
        let old = vm(None, None);
        let mut new = old.clone();
        new.spec.run_strategy = Some("Always".into());
        assert!(validate_vm_update(&old, &new).is_ok());
    }
}
