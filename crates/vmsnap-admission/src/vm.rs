//! The VirtualMachine update locks (`pkg/storage/admitters/vm-storage-status.go`).

use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineSpec, VirtualMachineStatus};

use vmsnap_api::refusal::{Refusal, RefusalCause};

use crate::{Cause, Denial, VM_WEBHOOK};

/// While a snapshot holds the VM, its volumes and running state cannot change; while a restore
/// is in progress, its run strategy cannot change.
///
/// As in KubeVirt, only the first broken lock is reported, in this order: volumes, running state,
/// run strategy. A VM being deleted is let through, as KubeVirt's VM webhook does before any rule.
pub fn validate_vm_update(old: &VirtualMachine, new: &VirtualMachine) -> Result<(), Denial> {
    if new.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let cause = snapshot_lock(old, new).or_else(|| restore_lock(old, new));
    Denial::check(VM_WEBHOOK, cause.into_iter().collect())
}

/// KubeVirt's VM webhook refuses a run strategy it does not know, on create and update:
/// `Invalid RunStrategy (X)` on `spec.runStrategy` (vm-admitter's `validateRunStrategy`).
pub fn validate_vm_run_strategy(vm: &VirtualMachine) -> Result<(), Denial> {
    let Some(strategy) = vm.spec.run_strategy.as_deref() else { return Ok(()) };
    if vmsnap_api::kubevirt::run_strategy::ALL.contains(&strategy) {
        return Ok(());
    }
    let cause = Cause::invalid("spec.runStrategy", format!("Invalid RunStrategy ({strategy})"));
    Denial::check(VM_WEBHOOK, vec![cause])
}

/// The status the locks are read from: the new object's, as in KubeVirt (the API server has
/// copied it from the stored object); an update that carries no status keeps the stored one.
fn status<'a>(old: &'a VirtualMachine, new: &'a VirtualMachine) -> Option<&'a VirtualMachineStatus> {
    new.status.as_ref().or(old.status.as_ref())
}

fn snapshot_lock(old: &VirtualMachine, new: &VirtualMachine) -> Option<Cause> {
    let snapshot = status(old, new)?.snapshot_in_progress.as_ref()?;
    // Only the volumes are compared, not the disks: KubeVirt lets a disk's bus or boot order
    // change under a snapshot, since the volume behind it stays the same.
    let message = if old.spec.template.spec.volumes != new.spec.template.spec.volumes {
        format!("Cannot update vm disks or volumes until snapshot {snapshot:?} completes")
    } else if !same_running_spec(&old.spec, &new.spec) {
        format!("Cannot update vm running state until snapshot {snapshot:?} completes")
    } else {
        return None;
    };
    Some(not_supported(message).refused(RefusalCause::blocked_by(Refusal::SnapshotLock, snapshot)))
}

fn restore_lock(old: &VirtualMachine, new: &VirtualMachine) -> Option<Cause> {
    let restore = status(old, new)?.restore_in_progress.as_ref()?;
    if old.spec != new.spec && run_strategy(&old.spec) != run_strategy(&new.spec) {
        let message = format!("Cannot update VM runStrategy until restore {restore:?} completes");
        return Some(not_supported(message).refused(RefusalCause::blocked_by(Refusal::RestoreLock, restore)));
    }
    None
}

fn not_supported(message: String) -> Cause {
    Cause::new("FieldValueNotSupported", "spec", message)
}

/// KubeVirt's `compareRunningSpec`: `running` against `running`, else `runStrategy` against
/// `runStrategy`; switching from one field to the other is a change.
fn same_running_spec(old: &VirtualMachineSpec, new: &VirtualMachineSpec) -> bool {
    match (old.running, new.running, &old.run_strategy, &new.run_strategy) {
        (Some(old), Some(new), _, _) => old == new,
        (_, _, Some(old), Some(new)) => old == new,
        // KubeVirt never gets here: its VM webhook refuses a VM with neither field ("RunStrategy
        // must be specified") and would call any update of it a change. vmsnap accepts such a VM
        // (it runs as `Halted`), so an update that sets neither field changes nothing.
        (None, None, None, None) => true,
        _ => false,
    }
}

/// KubeVirt's `VirtualMachine.RunStrategy()`, whose error the restore rule ignores: `Unknown`
/// when both fields are set, `Always`/`Halted` from `running`, else `runStrategy`, else `Halted`.
fn run_strategy(spec: &VirtualMachineSpec) -> &str {
    match (spec.running, spec.run_strategy.as_deref()) {
        (Some(_), Some(_)) => "Unknown",
        (Some(true), None) => "Always",
        (Some(false), None) | (None, None) => "Halted",
        (None, Some(strategy)) => strategy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::kubevirt::{Disk, PersistentVolumeClaimVolumeSource, Volume};

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
    fn a_locked_vm_reports_only_its_first_broken_lock() {
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
        assert_eq!(msgs, vec!["Cannot update vm disks or volumes until snapshot \"snap\" completes"]);
        assert_eq!(denial.causes[0].refusal, Some(RefusalCause::blocked_by(Refusal::SnapshotLock, "snap")));
    }

    #[test]
    fn a_locked_vm_may_change_a_disk_but_not_the_volume_behind_it() {
        let mut old = vm(Some("snap"), None);
        old.spec.template.spec.domain.devices.disks = vec![Disk { name: "d".into(), ..Default::default() }];
        let mut new = old.clone();
        new.spec.template.spec.domain.devices.disks[0].boot_order = Some(1);
        assert_eq!(validate_vm_update(&old, &new), Ok(()));
    }

    #[test]
    fn a_locked_vm_with_neither_running_nor_run_strategy_can_be_relabelled() {
        let mut old = vm(Some("snap"), None);
        old.spec.run_strategy = None;
        let mut new = old.clone();
        new.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert_eq!(validate_vm_update(&old, &new), Ok(()));
        new.spec.running = Some(false);
        assert!(validate_vm_update(&old, &new).unwrap_err().message().contains("running state"));
    }

    #[test]
    fn a_vm_being_deleted_is_let_through() {
        let old = vm(Some("snap"), Some("r"));
        let mut new = old.clone();
        new.spec.run_strategy = Some("Always".into());
        new.metadata.deletion_timestamp =
            Some(vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        assert_eq!(validate_vm_update(&old, &new), Ok(()));
    }

    #[test]
    fn a_restore_lock_reads_both_running_and_run_strategy_as_kubevirt_does() {
        let mut old = vm(None, Some("r"));
        old.spec.run_strategy = None;
        old.spec.running = Some(false);
        let mut same = old.clone();
        same.spec.running = None;
        same.spec.run_strategy = Some("Halted".into());
        assert_eq!(validate_vm_update(&old, &same), Ok(()));
        let mut both = old.clone();
        both.spec.run_strategy = Some("Halted".into());
        assert!(validate_vm_update(&old, &both).is_err(), "both fields set is KubeVirt's Unknown strategy");
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
        let denial = validate_vm_update(&old, &started).unwrap_err();
        assert_eq!(denial.causes[0].refusal, Some(RefusalCause::blocked_by(Refusal::RestoreLock, "r")));
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
