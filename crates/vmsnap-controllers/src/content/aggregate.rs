//! The content's readiness from its VolumeSnapshots (steps 4-5 and 7 of `updateVMSnapshotContent`). Pure.

use vmsnap_api::snapshot::{SnapshotError, VolumeSnapshotStatus};

/// What the VolumeSnapshots add up to.
#[derive(Debug, PartialEq)]
pub struct Aggregate {
    /// Every VolumeSnapshot has a creation time (the point in time is fixed).
    pub created: bool,
    /// Every VolumeSnapshot is ready to use.
    pub ready: bool,
    /// The error to report, if any.
    pub error_message: Option<String>,
}

/// Combines the VolumeSnapshot statuses with the names found deleted or skipped.
pub fn aggregate(statuses: &[VolumeSnapshotStatus], deleted: &[String], skipped: &[String]) -> Aggregate {
    if !deleted.is_empty() {
        return Aggregate {
            created: false,
            ready: false,
            error_message: Some(format!("VolumeSnapshots ({}) missing", deleted.join(","))),
        };
    }
    if !skipped.is_empty() {
        return Aggregate {
            created: false,
            ready: false,
            error_message: Some(format!(
                "VolumeSnapshots ({}) skipped because vm snapshot is deleted",
                skipped.join(",")
            )),
        };
    }
    let created = statuses.iter().all(|s| s.creation_time.is_some());
    let ready = statuses.iter().all(|s| s.ready_to_use == Some(true));
    let error_message = statuses.iter().find_map(|s| {
        let msg = s.error.as_ref()?.message.as_ref()?;
        Some(format!("VolumeSnapshot {} error: {msg}", s.volume_snapshot_name))
    });
    Aggregate { created, ready, error_message }
}

/// The content's new `error`: set (keeping the old time if the message is unchanged) when there is a
/// message and the content is not ready; cleared otherwise (a VolumeSnapshot error does not fail a
/// ready content).
pub fn next_error(
    old: Option<&SnapshotError>,
    message: Option<&str>,
    ready: bool,
    now: vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<SnapshotError> {
    match message {
        Some(m) if !ready => {
            if old.and_then(|e| e.message.as_deref()) == Some(m) {
                old.cloned()
            } else {
                Some(SnapshotError { time: Some(now), message: Some(m.to_owned()) })
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn vs(name: &str, created: bool, ready: bool, error: Option<&str>) -> VolumeSnapshotStatus {
        VolumeSnapshotStatus {
            volume_snapshot_name: name.into(),
            creation_time: created.then(|| Time(Timestamp::now())),
            ready_to_use: Some(ready),
            error: error.map(|m| SnapshotError { time: None, message: Some(m.into()) }),
        }
    }

    #[test]
    fn no_volume_snapshots_means_created_and_ready() {
        assert_eq!(aggregate(&[], &[], &[]), Aggregate { created: true, ready: true, error_message: None });
    }

    #[test]
    fn created_before_ready() {
        let a = aggregate(&[vs("a", true, false, None), vs("b", true, true, None)], &[], &[]);
        assert!(a.created && !a.ready);
    }

    #[test]
    fn missing_volume_snapshots_are_named() {
        let a = aggregate(&[], &["x".into(), "y".into()], &[]);
        assert_eq!(a.error_message.as_deref(), Some("VolumeSnapshots (x,y) missing"));
        assert!(!a.created && !a.ready);
    }

    #[test]
    fn a_volume_snapshot_error_is_reported_but_does_not_fail_a_ready_content() {
        let a = aggregate(&[vs("a", true, false, Some("boom"))], &[], &[]);
        assert_eq!(a.error_message.as_deref(), Some("VolumeSnapshot a error: boom"));
        let now = Time(Timestamp::now());
        assert!(next_error(None, a.error_message.as_deref(), false, now.clone()).is_some());
        assert!(next_error(None, a.error_message.as_deref(), true, now).is_none());
    }
}
