//! `failureDeadline`: counted from the snapshot's creation; `0s` means no deadline.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use vmsnap_api::duration;
use vmsnap_api::snapshot::{DEFAULT_FAILURE_DEADLINE, SnapshotPhase, VirtualMachineSnapshot};

/// The snapshot's deadline (default 5m); `None` for `0s`.
pub fn failure_deadline(snap: &VirtualMachineSnapshot) -> Option<Duration> {
    let d = match snap.spec.failure_deadline.as_deref() {
        None => DEFAULT_FAILURE_DEADLINE,
        // Admission refuses anything else at create; an object stored before that rule keeps the default.
        Some(text) => duration::parse_deadline(text).unwrap_or(DEFAULT_FAILURE_DEADLINE),
    };
    (!d.is_zero()).then_some(d)
}

/// The deadline as KubeVirt passes it to `freeze` (`unfreezeTimeout`): Go formatting, `0s` kept.
pub fn unfreeze_timeout(snap: &VirtualMachineSnapshot) -> String {
    duration::format(failure_deadline(snap).unwrap_or(Duration::ZERO))
}

/// The phase is neither Failed nor Succeeded.
pub fn progressing(snap: &VirtualMachineSnapshot) -> bool {
    let phase = snap.status.as_ref().and_then(|s| s.phase.as_ref());
    !matches!(phase, Some(SnapshotPhase::Failed | SnapshotPhase::Succeeded))
}

/// How long until the deadline passes (`None`: no deadline, not progressing, or already passed).
pub fn time_until_deadline(snap: &VirtualMachineSnapshot, now: Timestamp) -> Option<Duration> {
    let deadline = failure_deadline(snap)?;
    if !progressing(snap) {
        return None;
    }
    let created = snap.metadata.creation_timestamp.as_ref()?.0;
    let elapsed = now.duration_since(created);
    let remaining = deadline.as_secs_f64() - elapsed.as_secs_f64();
    (remaining > 0.0).then(|| Duration::from_secs_f64(remaining))
}

/// Failed already, or still progressing past `creationTimestamp + failureDeadline`.
pub fn deadline_exceeded(snap: &VirtualMachineSnapshot, now: Timestamp) -> bool {
    if snap.status.as_ref().and_then(|s| s.phase.as_ref()) == Some(&SnapshotPhase::Failed) {
        return true;
    }
    if !progressing(snap) || failure_deadline(snap).is_none() {
        return false;
    }
    time_until_deadline(snap, now).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn snap(deadline: Option<&str>, created_secs_ago: i64) -> VirtualMachineSnapshot {
        let mut s = VirtualMachineSnapshot::new("s", Default::default());
        s.spec.failure_deadline = deadline.map(Into::into);
        s.metadata.creation_timestamp =
            Some(Time(Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(created_secs_ago)));
        s
    }

    #[test]
    fn the_default_deadline_is_five_minutes() {
        assert_eq!(unfreeze_timeout(&snap(None, 0)), "5m0s");
        assert!(!deadline_exceeded(&snap(None, 299), Timestamp::now()));
        assert!(deadline_exceeded(&snap(None, 301), Timestamp::now()));
    }

    #[test]
    fn zero_means_no_deadline_and_no_auto_thaw() {
        assert_eq!(unfreeze_timeout(&snap(Some("0s"), 0)), "0s");
        assert!(!deadline_exceeded(&snap(Some("0s"), 100_000), Timestamp::now()));
        assert_eq!(time_until_deadline(&snap(Some("0s"), 0), Timestamp::now()), None);
    }

    #[test]
    fn a_succeeded_snapshot_never_expires() {
        let mut s = snap(Some("1s"), 100);
        s.status = Some(vmsnap_api::snapshot::VirtualMachineSnapshotStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert!(!deadline_exceeded(&s, Timestamp::now()));
    }
}
