//! Reconcile errors.

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
