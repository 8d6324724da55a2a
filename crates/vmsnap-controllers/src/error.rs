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
    /// A condition of KubeVirt's algorithm, with its message.
    #[error("{0}")]
    Message(String),
    /// Deletion waits for something else (the source lock, the content) before the finalizer goes.
    #[error("waiting: {0}")]
    Waiting(String),
}

impl ReconcileError {
    /// A write was refused because the reconcile worked on a stale copy: the watch brings the
    /// newer one and with it another reconcile, so a short retry is enough and nothing is wrong.
    pub fn is_stale(&self) -> bool {
        matches!(self, ReconcileError::Kube(e) if crate::kube_util::is_conflict(e))
    }
}
