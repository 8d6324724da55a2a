//! The error of a reconcile, and how soon it is retried.

use std::error::Error as StdError;
use std::fmt::Write as _;

use kube::runtime::finalizer;
use vmsnap_storage::StorageError;

/// A reconcile did not finish; the controller retries it (see [`ReconcileError::retry_kind`]).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Kubernetes API request failed.
    #[error("a Kubernetes API request failed")]
    Api(#[from] kube::Error),
    /// The storage engine failed an operation.
    #[error("could not {action}")]
    Storage {
        /// What was being done, with the object (`create volume pvc-…`).
        action: String,
        /// The engine's error.
        #[source]
        source: StorageError,
    },
    /// The volume is attached to a running VM; the operation waits until it is not.
    #[error("{0}")]
    InUse(String),
    /// Waiting for another object or task; retried soon.
    #[error("{0}")]
    Waiting(String),
    /// The object cannot be handled as it is; retried with backoff in case it is fixed.
    #[error("{0}")]
    Invalid(String),
    /// Adding or removing a finalizer failed, or the work inside the finalizer helper did.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<ReconcileError>>),
}

/// How a failed reconcile is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// Poll at the in-use interval: nothing announces that a VM stopped using a volume.
    InUse,
    /// Retry soon, without growing the delay.
    Soon,
    /// Retry with exponential backoff.
    Backoff,
}

impl ReconcileError {
    /// A storage error with what was being done.
    pub fn storage(action: impl Into<String>) -> impl FnOnce(StorageError) -> Self {
        let action = action.into();
        move |source| Self::Storage { action, source }
    }

    /// The error inside the finalizer helper's wrapping, if any.
    pub fn innermost(&self) -> &ReconcileError {
        match self {
            Self::Finalizer(boxed) => match boxed.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.innermost()
                }
                _ => self,
            },
            _ => self,
        }
    }

    /// How this error is retried.
    pub fn retry_kind(&self) -> RetryKind {
        if self.is_conflict() {
            return RetryKind::Soon;
        }
        match self.innermost() {
            Self::InUse(_) => RetryKind::InUse,
            Self::Waiting(_) => RetryKind::Soon,
            Self::Storage { source: StorageError::InUse { .. }, .. } => RetryKind::InUse,
            _ => RetryKind::Backoff,
        }
    }

    /// Whether a write was refused only because the object changed since the pass read it (409,
    /// or a finalizer patch's failed `test`): the newer copy is reconciled next, nothing is wrong.
    pub fn is_conflict(&self) -> bool {
        match self.innermost() {
            Self::Api(error) => vmsnap_contracts::controller::is_conflict(error),
            Self::Finalizer(error) => vmsnap_contracts::controller::finalizer_patch_was_stale(error),
            _ => false,
        }
    }

    /// Whether the API server said `object` itself is gone: deleted while this pass worked on a
    /// copy of it. Nothing is left to do, and its deletion comes through the watch.
    pub fn is_gone<K: kube::Resource<DynamicType = ()>>(&self, object: &K) -> bool {
        match self.innermost() {
            Self::Api(error) => vmsnap_contracts::controller::is_gone(error, object),
            Self::Finalizer(error) => {
                vmsnap_contracts::controller::finalizer_patch_found_it_gone(error, object)
            }
            _ => false,
        }
    }

    /// The whole message with its causes, for statuses and events.
    pub fn message(&self) -> String {
        full_message(self.innermost())
    }
}

impl From<finalizer::Error<ReconcileError>> for ReconcileError {
    fn from(error: finalizer::Error<ReconcileError>) -> Self {
        Self::Finalizer(Box::new(error))
    }
}

/// `error: cause: cause…`, skipping a cause whose text the previous message already contains.
pub fn full_message(error: &(dyn StdError + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            let _ = write!(message, ": {text}");
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_contracts::controller::refused;
    use vmsnap_storage::VolumeId;

    #[test]
    fn the_message_of_a_storage_error_names_the_action_and_the_cause() {
        let volume = VolumeId::new("pvc-1").unwrap();
        let error = ReconcileError::storage("create volume pvc-1")(StorageError::VolumeExists { volume });
        assert_eq!(
            error.message(),
            "could not create volume pvc-1: volume pvc-1 already exists; delete it first or choose another id"
        );
        assert_eq!(error.retry_kind(), RetryKind::Backoff);
    }

    #[test]
    fn errors_inside_the_finalizer_helper_keep_their_retry_kind() {
        let inner = ReconcileError::InUse("volume pvc-1 is attached to a running VM".into());
        let wrapped = ReconcileError::from(finalizer::Error::CleanupFailed(inner));
        assert_eq!(wrapped.retry_kind(), RetryKind::InUse);
        assert_eq!(wrapped.message(), "volume pvc-1 is attached to a running VM");
    }

    #[test]
    fn a_write_on_a_stale_copy_is_retried_soon_and_a_refused_one_backs_off() {
        let finalizer = |error| ReconcileError::from(finalizer::Error::<ReconcileError>::AddFinalizer(error));
        // The finalizer patch's `test` failed: the finalizer list changed since the copy was read.
        assert_eq!(finalizer(refused(422)).retry_kind(), RetryKind::Soon);
        assert!(ReconcileError::Api(refused(409)).is_conflict());
        let inside = ReconcileError::from(finalizer::Error::ApplyFailed(ReconcileError::Api(refused(409))));
        assert_eq!(inside.retry_kind(), RetryKind::Soon);
        assert_eq!(finalizer(refused(403)).retry_kind(), RetryKind::Backoff);
        assert_eq!(ReconcileError::Api(refused(422)).retry_kind(), RetryKind::Backoff, "invalid, not stale");
    }
}
