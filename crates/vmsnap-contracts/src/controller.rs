//! How every controller of vmsnap runs.

use kube::runtime::controller::Config;
use kube::runtime::events::{Event, EventType};

/// How many objects one controller reconciles at once: KubeVirt runs a few workers per controller,
/// and an unbounded burst (10,000 new snapshots) held the whole burst in memory.
pub const CONCURRENT_RECONCILES: u16 = 16;

/// kube-runtime's configuration for every controller of vmsnap.
pub fn controller_config() -> Config {
    Config::default().concurrency(CONCURRENT_RECONCILES)
}

/// Whether a write was refused only because the object changed since the copy it was based on was
/// read (409 Conflict: a stale `resourceVersion`). The watch brings the newer copy, and with it
/// another reconcile: a short, quiet retry is enough.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// The error of a request the API server refused with HTTP status `code`, as the client returns
/// it: what the retry rules above, and each controller's, are decided on (their tests build
/// refusals with it).
pub fn refused(code: u16) -> kube::Error {
    kube::Error::Api(Box::new(kube::core::Status::failure("refused", "").with_code(code)))
}

/// Whether kube-runtime's finalizer helper failed only because the object changed meanwhile: its
/// finalizer patch got 409, or 422 from the patch's `test` of the finalizer list (the finalizer
/// list changed since the copy was read).
pub fn finalizer_patch_was_stale<E: std::error::Error + 'static>(
    error: &kube::runtime::finalizer::Error<E>,
) -> bool {
    use kube::runtime::finalizer::Error as F;
    matches!(
        error,
        F::AddFinalizer(kube::Error::Api(status)) | F::RemoveFinalizer(kube::Error::Api(status))
            if matches!(status.code, 409 | 422)
    )
}

/// An event of a controller: Warning or Normal, its reason (also its action) and note.
pub fn event(warning: bool, reason: &str, note: String) -> Event {
    Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as F;

    #[test]
    fn only_a_stale_copy_is_a_conflict() {
        assert!(is_conflict(&refused(409)));
        assert!(!is_conflict(&refused(422)), "422 is invalid input, except from a finalizer patch's test");
        assert!(!is_conflict(&refused(500)));
        let stale = |error: F<std::io::Error>| finalizer_patch_was_stale(&error);
        assert!(stale(F::AddFinalizer(refused(422))));
        assert!(stale(F::RemoveFinalizer(refused(409))));
        assert!(!stale(F::AddFinalizer(refused(403))));
        assert!(!stale(F::ApplyFailed(std::io::Error::other("the work failed"))));
    }
}
