//! Why a reconcile failed.

/// A reconcile's failure; it is retried with a backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The repository engine failed.
    #[error(transparent)]
    Repository(#[from] vmsnap_backup::Error),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] vmsnap_storage::StorageError),
    /// A finalizer could not be added or removed, or what it guards failed.
    #[error(transparent)]
    Finalizer(Box<kube::runtime::finalizer::Error<ReconcileError>>),
    /// The repository could not be opened.
    #[error(transparent)]
    Open(#[from] super::OpenError),
}
