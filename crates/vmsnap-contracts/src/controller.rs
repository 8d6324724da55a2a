//! How every controller of vmsnap runs.

use kube::Resource;
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

/// Whether the API server answered 404: what a request named does not exist (any more).
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether `error` is the API server's 404 for `object` itself: it was deleted while a reconcile
/// worked on a copy of it. Its deletion comes through the watch, and there is nothing to retry. A
/// 404 for another object (a source that does not exist yet, say) is not this.
pub fn is_gone<K: Resource<DynamicType = ()>>(error: &kube::Error, object: &K) -> bool {
    let kube::Error::Api(status) = error else { return false };
    status.code == 404
        && status.details.as_ref().is_some_and(|details| {
            details.name == object.meta().name.as_deref().unwrap_or_default()
                && details.kind == K::plural(&())
                && details.group == K::group(&())
        })
}

/// [`is_gone`] for kube-runtime's finalizer helper: its patch of `object`'s finalizers found the
/// object gone.
pub fn finalizer_patch_found_it_gone<E, K>(error: &kube::runtime::finalizer::Error<E>, object: &K) -> bool
where
    E: std::error::Error + 'static,
    K: Resource<DynamicType = ()>,
{
    use kube::runtime::finalizer::Error as F;
    matches!(error, F::AddFinalizer(e) | F::RemoveFinalizer(e) if is_gone(e, object))
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

    /// The 404 the API server (ours, and Kubernetes' `NewNotFound`) returns for `name` of
    /// `resource` in `group`: details name the resource's plural, not its kind.
    fn not_found(group: &str, resource: &str, name: &str) -> kube::Error {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{resource}.{group} \"{name}\" not found"), "reason": "NotFound",
            "details": {"name": name, "group": group, "kind": resource}, "code": 404
        });
        kube::Error::Api(Box::new(serde_json::from_value(status).unwrap()))
    }

    #[test]
    fn only_the_404_of_the_object_itself_says_it_is_gone() {
        use vmsnap_api::cdi::DataVolume;
        let mut volume: DataVolume = serde_json::from_value(serde_json::json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "d0", "namespace": "default"}, "spec": {}
        }))
        .unwrap();
        assert!(is_gone(&not_found("cdi.kubevirt.io", "datavolumes", "d0"), &volume));
        assert!(is_not_found(&not_found("cdi.kubevirt.io", "datavolumes", "d0")));
        // Another object's 404, of the same kind or of another one with the same name.
        assert!(!is_gone(&not_found("cdi.kubevirt.io", "datavolumes", "d1"), &volume));
        assert!(!is_gone(&not_found("", "persistentvolumeclaims", "d0"), &volume));
        assert!(!is_gone(&not_found("other.io", "datavolumes", "d0"), &volume));
        // A 404 that names nothing (a path the server does not serve), and other refusals.
        assert!(!is_gone(&refused(404), &volume));
        assert!(is_not_found(&refused(404)));
        assert!(!is_gone(&refused(409), &volume) && !is_not_found(&refused(409)));
        let gone = |error: F<std::io::Error>, of: &DataVolume| finalizer_patch_found_it_gone(&error, of);
        assert!(gone(F::AddFinalizer(not_found("cdi.kubevirt.io", "datavolumes", "d0")), &volume));
        assert!(gone(F::RemoveFinalizer(not_found("cdi.kubevirt.io", "datavolumes", "d0")), &volume));
        assert!(!gone(F::AddFinalizer(refused(409)), &volume));
        volume.metadata.name = Some("d1".into());
        assert!(!gone(F::RemoveFinalizer(not_found("cdi.kubevirt.io", "datavolumes", "d0")), &volume));
    }
}
