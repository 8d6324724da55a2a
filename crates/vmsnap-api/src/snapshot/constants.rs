//! Names, labels, annotations, reasons and messages of KubeVirt's snapshot contract, copied exactly.

use std::time::Duration;

/// Default `failureDeadline` of a VirtualMachineSnapshot.
pub const DEFAULT_FAILURE_DEADLINE: Duration = Duration::from_secs(300);
/// Grace period of the `WaitGracePeriod` target readiness policy.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(300);

/// Finalizers.
pub mod finalizer {
    /// On a VirtualMachineSnapshot.
    pub const VMSNAPSHOT: &str = "snapshot.kubevirt.io/vmsnapshot-protection";
    /// On a VirtualMachineSnapshotContent.
    pub const CONTENT: &str = "snapshot.kubevirt.io/vmsnapshotcontent-protection";
    /// On the source VM while a snapshot holds its lock.
    pub const SOURCE: &str = "snapshot.kubevirt.io/snapshot-source-protection";
    /// On a VirtualMachineRestore.
    pub const RESTORE: &str = "snapshot.kubevirt.io/vmrestore-protection";
}

/// Labels.
pub mod label {
    /// On VolumeSnapshots: the source VM's name.
    pub const SOURCE_VM_NAME: &str = "snapshot.kubevirt.io/source-vm-name";
    /// On VolumeSnapshots: the source VM's namespace.
    pub const SOURCE_VM_NAMESPACE: &str = "snapshot.kubevirt.io/source-vm-namespace";
    /// On restored PVCs: the snapshot's source VM name.
    pub const RESTORE_SOURCE_VM_NAME: &str = "restore.kubevirt.io/source-vm-name";
    /// On restored PVCs: the snapshot's source VM namespace.
    pub const RESTORE_SOURCE_VM_NAMESPACE: &str = "restore.kubevirt.io/source-vm-namespace";
    /// Marks an old backend PVC for garbage collection.
    pub const CLEANUP_BACKEND_PVC: &str = "restore.kubevirt.io/cleanup-backend-pvc";
    /// Marks the backend-storage PVC of a VM.
    pub const PERSISTENT_STATE_FOR: &str = "persistent-state-for";
}

/// Annotations.
pub mod annotation {
    /// On PVCs and DataVolumes created by a restore: the restore's name.
    pub const RESTORE_NAME: &str = "restore.kubevirt.io/name";
    /// On the VM and restored PVCs: `<restore name>-<restore uid>`.
    pub const LAST_RESTORE_UID: &str = "restore.kubevirt.io/lastRestoreUID";
    /// On a restored PVC whose source PVC was owned by the source VM (named as a label upstream).
    pub const OWNED_BY_VM: &str = "restore.kubevirt.io/owned-by-vm";
    /// vmsnap's, on a content: why the API refused one of its VolumeSnapshots (`VolumeSnapshot NAME:
    /// could not be created: MESSAGE`); the snapshot shows it in its conditions' messages. An
    /// annotation, because KubeVirt leaves the content's status unset in that state and its tests
    /// check it.
    pub const VOLUME_SNAPSHOT_REFUSED: &str = "snapshot.vmsnap.io/volume-snapshot-refused";
}

/// The wire strings of [`SnapshotPhase`], for code that matches on `phase.as_deref()`.
pub mod phase {
    /// Not yet set.
    pub const UNSET: &str = "";
    /// Locking the source, freezing, cutting the volumes.
    pub const IN_PROGRESS: &str = "InProgress";
    /// The point in time is fixed.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The deadline passed before the point in time was fixed.
    pub const FAILED: &str = "Failed";
    /// Deleted while in progress.
    pub const DELETING: &str = "Deleting";
    /// Never set by the controller.
    pub const UNKNOWN: &str = "Unknown";
}

crate::wire_enum::wire_enum! {
    /// Where a VirtualMachineSnapshot is in its life (`status.phase`, KubeVirt's
    /// `VirtualMachineSnapshotPhase`).
    SnapshotPhase {
        /// Not set yet (KubeVirt's `PhaseUnset`, the empty string).
        Unset = phase::UNSET,
        /// Locking the source, freezing the guest, cutting the volumes.
        InProgress = phase::IN_PROGRESS,
        /// The point in time is fixed: the snapshot succeeded (it is ready once its volume
        /// snapshots are).
        Succeeded = phase::SUCCEEDED,
        /// The failure deadline passed before the point in time was fixed; final.
        Failed = phase::FAILED,
        /// Deleted while in progress: the controller is unwinding it.
        Deleting = phase::DELETING,
        /// KubeVirt's placeholder; never set by the controller.
        Unknown = phase::UNKNOWN,
    }
}

/// Condition types.
pub mod condition_type {
    /// The snapshot or restore can be used / is done.
    pub const READY: &str = "Ready";
    /// Work is going on.
    pub const PROGRESSING: &str = "Progressing";
    /// The operation failed for good.
    pub const FAILURE: &str = "Failure";
}

/// Condition reasons of the snapshot controller.
pub mod reason {
    /// Source lock not obtained.
    pub const SOURCE_NOT_LOCKED: &str = "Source not locked";
    /// Source locked.
    pub const SOURCE_LOCKED: &str = "Source locked and operation in progress";
    /// The source VM does not exist.
    pub const SOURCE_DOES_NOT_EXIST: &str = "Source does not exist";
    /// Deleted while in progress.
    pub const DELETING: &str = "VM snapshot is deleting";
    /// Done.
    pub const OPERATION_COMPLETE: &str = "Operation complete";
    /// Deadline passed.
    pub const OPERATION_FAILED: &str = "Operation failed";
    /// The Failure condition's reason when the deadline passed.
    pub const DEADLINE_EXCEEDED: &str = "snapshot deadline exceeded";
    /// The content reports an error.
    pub const IN_ERROR_STATE: &str = "In error state";
    /// Ready condition, true.
    pub const READY: &str = "Ready";
    /// Ready condition, false.
    pub const NOT_READY: &str = "Not ready";
}

/// Indications.
pub mod indication {
    /// The VM was running.
    pub const ONLINE: &str = "Online";
    /// No guest agent: crash-consistent.
    pub const NO_GUEST_AGENT: &str = "NoGuestAgent";
    /// The guest agent quiesced the file systems.
    pub const GUEST_AGENT: &str = "GuestAgent";
    /// The freeze window timed out (Windows VSS limit).
    pub const QUIESCE_TIMEOUT: &str = "QuiesceTimeout";
    /// The VM was paused: no freeze.
    pub const PAUSED: &str = "Paused";
    /// Some snapshottable volumes were excluded.
    pub const PARTIAL_SNAPSHOT: &str = "PartialSnapshot";

    /// KubeVirt's message for an indication (`snapshotIndicationMessages`).
    pub fn message(indication: &str) -> &'static str {
        match indication {
            ONLINE => {
                "Snapshot taken while the VM was running. Consistency depends on guest-agent quiescing."
            }
            GUEST_AGENT => {
                "Guest agent was active and attempted to quiesce the filesystem for application consistency."
            }
            NO_GUEST_AGENT => {
                "Guest agent was not available. Snapshot is crash-consistent and may not be application-consistent."
            }
            QUIESCE_TIMEOUT => {
                "Guest agent quiesced the filesystem, but the freeze window timed out before completion. Snapshot is crash-consistent and may not be application-consistent."
            }
            PAUSED => {
                "Snapshot taken while the VM was paused. Snapshot is crash-consistent and may not be application-consistent."
            }
            PARTIAL_SNAPSHOT => {
                "Not all snapshotable volumes were included in the snapshot. Check status.snapshotVolumes for excluded volumes and VM VolumeSnapshotStatus for details."
            }
            _ => "Unknown indication",
        }
    }

    /// Whether an unfreeze error or a snapshot error is Windows VSS's 10-second freeze limit
    /// ("fsfreeze is limited up to 10 seconds", `VSSFreezeLimitReached`). The guest agent reports
    /// it only as text, and KubeVirt recognizes it by this text (the content controller's
    /// unfreeze, and [`QUIESCE_TIMEOUT`]); this is the one place vmsnap does.
    pub fn is_freeze_limit_reached(message: &str) -> bool {
        message.contains("fsfreeze is limited")
    }
}

/// Event reasons.
pub mod event {
    /// Normal, on the VMSnapshot.
    pub const CONTENT_CREATED: &str = "SuccessfulVirtualMachineSnapshotContentCreate";
    /// Normal, on the content.
    pub const VOLUME_SNAPSHOT_CREATED: &str = "SuccessfulVolumeSnapshotCreate";
    /// Warning, on the content and its VMSnapshot: the API refused a VolumeSnapshot (vmsnap's; KubeVirt
    /// retries silently).
    pub const VOLUME_SNAPSHOT_CREATE_FAILED: &str = "FailedVolumeSnapshotCreate";
    /// Warning, on the content.
    pub const VOLUME_SNAPSHOT_MISSING: &str = "VolumeSnapshotMissing";
    /// Warning, on the VMI.
    pub const FREEZE_ERROR: &str = "FreezeError";
    /// Normal, on the restore.
    pub const RESTORE_COMPLETE: &str = "VirtualMachineRestoreComplete";
    /// Warning, on the restore.
    pub const RESTORE_ERROR: &str = "VirtualMachineRestoreError";
    /// Warning, on the restore (the reason has a space in it upstream).
    pub const RESTORE_FAILED: &str = "Operation failed";
    /// Warning, on the restore.
    pub const RESTORE_TARGET_NOT_READY: &str = "RestoreTargetNotReady";
    /// Warning, on the restore.
    pub const RESTORE_DATA_VOLUME_CREATE_ERROR: &str = "RestoreDataVolumeCreateError";
}

/// Content name for a snapshot UID.
pub fn content_name(snapshot_uid: &str) -> String {
    format!("vmsnapshot-content-{snapshot_uid}")
}

/// VolumeSnapshot name for a snapshot UID and a volume name.
pub fn volume_snapshot_name(snapshot_uid: &str, volume_name: &str) -> String {
    format!("vmsnapshot-{snapshot_uid}-volume-{volume_name}")
}
