//! Helpers of the ported KubeVirt admitter tests: a denial's causes as comparable tuples.

use vmsnap_admission::Denial;

/// A cause as (type, field, message).
pub type CauseTuple = (&'static str, String, String);

/// The causes of a denial as (type, field, message); empty when allowed.
pub fn causes(result: Result<(), Denial>) -> Vec<CauseTuple> {
    match result {
        Ok(()) => Vec::new(),
        Err(denial) => {
            assert_eq!(denial.error, None, "KubeVirt answers with causes here, not an error");
            denial.causes.into_iter().map(|c| (c.reason, c.field, c.message)).collect()
        }
    }
}

/// The cause (type, field, message) a test expects.
pub fn cause(reason: &'static str, field: &str, message: &str) -> CauseTuple {
    (reason, field.into(), message.into())
}
