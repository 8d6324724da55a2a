//! Deterministic names of scheduled snapshots.

use jiff::Timestamp;

use crate::naming::get_name;

/// Kubernetes' limit for a label value, and the length scheduled snapshot names are cut to so
/// that they can stand in one (and read well in `kubectl get`).
pub const NAME_LIMIT: usize = 63;

/// The snapshot a run of `schedule` at `run_time` makes of `vm`: `<schedule>-<vm>-<yyyymmddhhmm>`
/// (UTC), cut to [`NAME_LIMIT`] with a hash of the whole base as KubeVirt's `naming.GetName` does.
/// The same inputs always give the same name, so a run retried after a crash finds the snapshot
/// it made instead of making a second one.
pub fn snapshot_name(schedule: &str, vm: &str, run_time: Timestamp) -> String {
    let stamp = run_time.strftime("%Y%m%d%H%M").to_string();
    get_name(&format!("{schedule}-{vm}"), &stamp, NAME_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_run_minute_in_utc_and_fit_the_limit() {
        let at: Timestamp = "2025-03-30T01:07:59+02:00".parse().unwrap();
        assert_eq!(snapshot_name("nightly", "db", at), "nightly-db-202503292307");
        let long = snapshot_name(&"s".repeat(40), &"v".repeat(40), at);
        assert_eq!(long.len(), NAME_LIMIT);
        assert!(long.ends_with("-202503292307"), "{long}");
        assert_eq!(long, snapshot_name(&"s".repeat(40), &"v".repeat(40), at), "deterministic");
        assert_ne!(long, snapshot_name(&"s".repeat(40), &"w".repeat(40), at), "the hash tells VMs apart");
    }
}
