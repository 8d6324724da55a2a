//! Reconcile errors.

use std::time::Duration;

/// When a reconcile whose write met a newer object runs again, unless the watch brings that
/// object first.
pub const STALE_RETRY: Duration = Duration::from_millis(500);

/// Why a reconcile did not finish; the error policy requeues with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API refused or failed a request.
    #[error("{}", crate::kube_util::error_message(.0))]
    Kube(#[from] kube::Error),
    /// The VM's ControllerRevision that the running VMI was started from is gone.
    #[error("vm revision {0} doesn't exist")]
    RevisionMissing(String),
    /// The VM's ControllerRevision does not hold a VM spec.
    #[error("vm revision {name} holds no VM spec: {source}")]
    RevisionInvalid {
        /// The revision.
        name: String,
        /// Why its data is not a VM spec.
        source: serde_json::Error,
    },
    /// The snapshot's source is not a VirtualMachine.
    #[error("unknown source {0}")]
    UnknownSource(String),
    /// The unfreeze answered that the guest held its file systems frozen longer than Windows
    /// VSS allows (`VSSFreezeLimitReached`): the point in time is not application-consistent.
    /// The message is the agent's, as KubeVirt reports it.
    #[error("{0}")]
    FreezeLimitReached(String),
    /// A freeze was asked for a VM the snapshot has not locked.
    #[error("attempting to freeze unlocked VM")]
    FreezeUnlocked,
    /// A content that names no snapshot.
    #[error("VirtualMachineSnapshotName is not initialized in vm snapshot content")]
    ContentWithoutSnapshot,
    /// A VolumeSnapshot for a PVC without a storage class.
    #[error("{pvc} VolumeSnapshot requested but no storage class")]
    NoStorageClass {
        /// `namespace/name` of the PVC.
        pvc: String,
    },
    /// A VolumeSnapshot for a PVC whose storage class has no VolumeSnapshotClass.
    #[error("{pvc} VolumeSnapshot requested but no VolumeSnapshotClass for storage class {storage_class}")]
    NoSnapshotClass {
        /// `namespace/name` of the PVC.
        pvc: String,
        /// Its storage class.
        storage_class: String,
    },
    /// Several VolumeSnapshotClasses match a storage class and none is the default.
    #[error("{count} matching VolumeSnapshotClasses for {storage_class}")]
    AmbiguousSnapshotClass {
        /// How many match.
        count: usize,
        /// The storage class.
        storage_class: String,
    },
    /// A restore's `patches` do not apply to the VM.
    #[error("error patching VM {vm}: {reason}")]
    Patch {
        /// The VM.
        vm: String,
        /// What is wrong.
        reason: String,
    },
    /// A restore's volume names no VolumeSnapshot, or one that does not exist.
    #[error("missing volumeSnapshot {0}")]
    VolumeSnapshotMissing(String),
    /// A restore step found a name it should have set earlier unset (KubeVirt's invariant checks).
    #[error("{0} should have been set already")]
    NotYetSet(String),
    /// The storage class of a restored PVC does not exist.
    #[error("StorageClass {0} does not exist")]
    StorageClassMissing(String),
    /// A restored PVC is neither bound nor waiting for its first consumer.
    #[error("PVC {pvc} in status {phase:?}")]
    PvcNotBound {
        /// `namespace/name`.
        pvc: String,
        /// Its phase.
        phase: String,
    },
    /// A restored PVC that a DataVolume should adopt is gone.
    #[error("pvc {0} does not exist and should")]
    RestoredPvcMissing(String),
    /// A schedule's label selector with an operator a list query has no form for.
    #[error("{0}")]
    BadSelector(vmsnap_api::label_selector::SelectorError),
    /// A failure already reported on the object (its conditions and a Warning event): the
    /// reconcile is retried with backoff.
    #[error("{0}")]
    Reported(String),
    /// Deletion waits for something else (the source lock, the content) before the finalizer goes.
    #[error("waiting: {0}")]
    Waiting(String),
}

/// What an error of kube-runtime's finalizer helper calls for when it says nothing is wrong: the
/// object is gone (404: nothing left to do), or the reconcile worked on a stale copy (409, or 422
/// from the finalizer patch's `test`: retry soon). `None` for real failures.
pub fn quiet_finalizer_outcome(
    error: &kube::runtime::finalizer::Error<ReconcileError>,
) -> Option<kube::runtime::controller::Action> {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::Error as F;
    match error {
        stale if vmsnap_contracts::controller::finalizer_patch_was_stale(stale) => {
            Some(Action::requeue(STALE_RETRY))
        }
        F::AddFinalizer(e) | F::RemoveFinalizer(e) if vmsnap_contracts::controller::is_not_found(e) => {
            Some(Action::await_change())
        }
        F::ApplyFailed(e) | F::CleanupFailed(e) if e.is_stale() => Some(Action::requeue(STALE_RETRY)),
        _ => None,
    }
}

impl ReconcileError {
    /// A write was refused because the reconcile worked on a stale copy: the watch brings the
    /// newer one and with it another reconcile, so a short retry is enough and nothing is wrong.
    pub fn is_stale(&self) -> bool {
        matches!(self, ReconcileError::Kube(e) if vmsnap_contracts::controller::is_conflict(e))
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::Error as F;
    use vmsnap_contracts::controller::refused;

    use super::*;

    #[test]
    fn a_gone_object_ends_quietly_a_stale_copy_retries_soon_and_real_failures_are_reported() {
        let outcome = |e: F<ReconcileError>| quiet_finalizer_outcome(&e);
        assert_eq!(outcome(F::RemoveFinalizer(refused(404))), Some(Action::await_change()));
        assert_eq!(outcome(F::AddFinalizer(refused(422))), Some(Action::requeue(STALE_RETRY)));
        assert_eq!(
            outcome(F::ApplyFailed(ReconcileError::Kube(refused(409)))),
            Some(Action::requeue(STALE_RETRY))
        );
        assert_eq!(outcome(F::RemoveFinalizer(refused(500))), None);
        assert_eq!(outcome(F::ApplyFailed(ReconcileError::FreezeUnlocked)), None);
    }
}
