//! What `vmsnap restore` checks before creating a VirtualMachineRestore, where a client-side check
//! gives a better message than the controller would (or saves a five-minute wait for nothing).
//! Each check restates a rule the controller enforces anyway; none adds a rule of its own.

use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::{SnapshotPhase, VirtualMachineSnapshot};

use crate::cmd::errors::{CliError, Exit};

/// What to do about a running target, as asked on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunningTarget {
    /// Neither flag: a running target is refused here (the server would wait 5 minutes, then fail).
    Refuse,
    /// `--stop-target`: the controller stops it (`StopTarget`).
    Stop,
    /// `--fail-if-running`: the controller fails at once (`FailImmediate`).
    Fail,
}

/// The snapshot must be of `vm`, and ready (the controller waits for an unready one, and refuses a
/// failed one, forever).
pub fn check_snapshot(snapshot: &VirtualMachineSnapshot, name: &str, vm: &str) -> Result<(), CliError> {
    let source = &snapshot.spec.source.name;
    if source != vm {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "snapshot \"{name}\" is of VM \"{source}\", not of VM \"{vm}\": restore it with: vmsnap restore {source} --snapshot {name} [--to NEW_VM]"
            ),
        ));
    }
    let st = snapshot.status.clone().unwrap_or_default();
    let phase = st.phase.as_deref().unwrap_or("Pending");
    if st.phase == Some(SnapshotPhase::Failed) {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "snapshot \"{name}\" failed and cannot be restored: take a new one with: vmsnap snapshot create {vm}"
            ),
        ));
    }
    if st.ready_to_use != Some(true) {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "snapshot \"{name}\" is not ready (phase {phase}): wait for it with: vmsnap snapshot describe {name}"
            ),
        ));
    }
    Ok(())
}

/// A restore to another VM must not land on an existing VM that is not the snapshot's source
/// (the controller refuses "restore source and restore target are different but restore target
/// already exists").
pub fn check_new_target(
    snapshot: &VirtualMachineSnapshot,
    target: Option<&VirtualMachine>,
    to: &str,
    vm: &str,
) -> Result<(), CliError> {
    let Some(existing) = target else { return Ok(()) };
    let source_uid = snapshot.status.as_ref().and_then(|s| s.source_uid.as_deref());
    if existing.metadata.uid.as_deref() == source_uid {
        return Ok(());
    }
    Err(CliError::new(
        Exit::Conflict,
        format!(
            "VM \"{to}\" already exists: pick another --to name, or restore VM \"{vm}\" in place (without --to)"
        ),
    ))
}

/// A running target needs `--stop-target` or `--fail-if-running`.
pub fn check_running(
    target: &str,
    vmi: Option<&VirtualMachineInstance>,
    policy: RunningTarget,
) -> Result<(), CliError> {
    if vmi.is_some() && policy == RunningTarget::Refuse {
        return Err(CliError::new(
            Exit::Conflict,
            format!("VM \"{target}\" is running: stop it, or pass --stop-target"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot(status: serde_json::Value) -> VirtualMachineSnapshot {
        serde_json::from_value(json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": "s1"},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db"}}, "status": status
        }))
        .unwrap()
    }

    #[test]
    fn an_unready_snapshot_is_refused_with_its_phase() {
        let e = check_snapshot(&snapshot(json!({"phase": "InProgress"})), "s1", "db").unwrap_err();
        assert_eq!(e.exit, Exit::Conflict);
        assert_eq!(
            e.message,
            "snapshot \"s1\" is not ready (phase InProgress): wait for it with: vmsnap snapshot describe s1"
        );
    }

    #[test]
    fn a_snapshot_of_another_vm_is_refused() {
        let e = check_snapshot(&snapshot(json!({"readyToUse": true})), "s1", "web").unwrap_err();
        assert!(e.message.starts_with("snapshot \"s1\" is of VM \"db\", not of VM \"web\""), "{}", e.message);
    }

    #[test]
    fn a_ready_snapshot_passes() {
        assert!(
            check_snapshot(&snapshot(json!({"phase": "Succeeded", "readyToUse": true})), "s1", "db").is_ok()
        );
    }
}
