//! Timestamps as the Kubernetes API writes them: whole seconds, UTC.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Now, truncated to the second (`metav1.Time` has second precision on the wire).
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// [`now`] as a `metav1.Time`.
pub fn now_time() -> Time {
    Time(now())
}
