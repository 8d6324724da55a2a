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

impl ReconcileError {
    /// Whether the API refused a write because the object changed since the pass read it (409
    /// Conflict, see [`crate::status::StatusWrites`], or a finalizer patch's failed `test`): the
    /// pass runs again on the newer copy.
    pub fn is_conflict(&self) -> bool {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            ReconcileError::Api(error) => vmsnap_contracts::controller::is_conflict(error),
            ReconcileError::Finalizer(error) => match error.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner.is_conflict(),
                stale => vmsnap_contracts::controller::finalizer_patch_was_stale(stale),
            },
            _ => false,
        }
    }

    /// Whether the API server said `object` itself is gone: deleted while the pass worked on a
    /// copy of it.
    pub fn is_gone<K: kube::Resource<DynamicType = ()>>(&self, object: &K) -> bool {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            ReconcileError::Api(error) => vmsnap_contracts::controller::is_gone(error, object),
            ReconcileError::Finalizer(error) => match error.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner.is_gone(object),
                patch => vmsnap_contracts::controller::finalizer_patch_found_it_gone(patch, object),
            },
            _ => false,
        }
    }
}

/// When a failed pass over `object` runs again: not at all if the object was deleted under it
/// (its deletion comes through the watch), a conflict soon and quietly (the object changed
/// meanwhile; its newer copy decides), any other failure after `backoff`, logged.
pub(crate) fn retry_after<K: kube::Resource<DynamicType = ()>>(
    object: &K,
    error: &ReconcileError,
    backoff: std::time::Duration,
) -> kube::runtime::controller::Action {
    use kube::runtime::controller::Action;
    let kind = K::kind(&());
    let name = object.meta().name.as_deref().unwrap_or_default();
    if error.is_gone(object) {
        tracing::debug!(%kind, object = name, "deleted while it was reconciled: nothing left to do");
        return Action::await_change();
    }
    if error.is_conflict() {
        tracing::debug!(%kind, object = name, %error, "changed since read; reconciling the newer copy");
        return Action::requeue(CONFLICT_RETRY);
    }
    tracing::warn!(%kind, object = name, %error, "reconcile failed; retrying");
    Action::requeue(backoff)
}

/// How soon a pass that met a conflict runs again (the watch usually wakes it sooner).
const CONFLICT_RETRY: std::time::Duration = std::time::Duration::from_millis(200);
