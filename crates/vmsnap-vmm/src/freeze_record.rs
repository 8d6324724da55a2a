//! The persisted freeze record: when the agent froze the guest and when it
//! must thaw it, so that the safety auto-thaw survives an agent restart.
//!
//! The record is written *before* `guest-fsfreeze-freeze` is sent and removed
//! after a successful thaw, so a crash at any point between leaves a record
//! behind and the next [`crate::Vmm::attach`] finishes the job. It is not
//! fsynced: it only has to survive the agent process, and a host crash takes
//! the VM with it.

use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use vmsnap_qemu::qga::types::FsfreezeStatus;

/// The version of the record format.
const FORMAT_VERSION: u32 = 1;

/// `freeze.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FreezeRecord {
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// When the freeze was requested, in milliseconds since the Unix epoch.
    pub(crate) frozen_at_ms: u64,
    /// When to thaw at the latest, in milliseconds since the Unix epoch; `None` for no auto-thaw.
    pub(crate) thaw_deadline_ms: Option<u64>,
    /// The mountpoints frozen, `None` for all.
    pub(crate) mountpoints: Option<Vec<String>>,
}

/// What to do about a record found when attaching to a running VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The guest is thawed: drop the record.
    Forget,
    /// Frozen without auto-thaw: remember it, so `unfreeze` and a second `freeze` behave.
    KeepFrozen,
    /// The deadline passed while nobody watched: thaw now.
    ThawNow,
    /// Thaw when this much more time has passed.
    Rearm(Duration),
}

impl FreezeRecord {
    /// A record for a freeze requested at `now` with `unfreeze_timeout` (zero: no auto-thaw).
    pub(crate) fn new(now: SystemTime, unfreeze_timeout: Duration, mountpoints: Option<Vec<String>>) -> Self {
        let now_ms = millis(now);
        let deadline =
            (!unfreeze_timeout.is_zero()).then(|| now_ms.saturating_add(unfreeze_timeout.as_millis() as u64));
        Self { format_version: FORMAT_VERSION, frozen_at_ms: now_ms, thaw_deadline_ms: deadline, mountpoints }
    }

    /// The auto-thaw deadline.
    pub(crate) fn deadline(&self) -> Option<SystemTime> {
        self.thaw_deadline_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Moves the deadline to `at` (to retry a failed thaw).
    pub(crate) fn set_deadline(&mut self, at: SystemTime) {
        self.thaw_deadline_ms = Some(millis(at));
    }

    /// Reads the record at `path`. A record that cannot be parsed is taken
    /// as overdue: without a trustworthy deadline, the safe choice is to thaw.
    pub(crate) fn read(path: &Path) -> std::io::Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        match serde_json::from_slice::<Self>(&bytes) {
            Ok(record) if record.format_version == FORMAT_VERSION => Ok(Some(record)),
            other => {
                tracing::warn!(path = %path.display(), ?other, "unreadable freeze record; treating its deadline as passed");
                Ok(Some(Self {
                    format_version: FORMAT_VERSION,
                    frozen_at_ms: 0,
                    thaw_deadline_ms: Some(0),
                    mountpoints: None,
                }))
            }
        }
    }

    /// Writes the record to `path` atomically (a temporary file renamed over it).
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        let temp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&temp, bytes)?;
        std::fs::rename(&temp, path)
    }

    /// Removes the record at `path`; a missing one is fine.
    pub(crate) fn remove(path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// What to do with this record at `now`, given what the agent says about
    /// the guest (`None` when it did not answer).
    pub(crate) fn recovery(&self, guest: Option<FsfreezeStatus>, now: SystemTime) -> Recovery {
        if guest == Some(FsfreezeStatus::Thawed) {
            return Recovery::Forget;
        }
        match self.deadline() {
            None => Recovery::KeepFrozen,
            Some(deadline) => match deadline.duration_since(now) {
                Ok(left) if !left.is_zero() => Recovery::Rearm(left),
                _ => Recovery::ThawNow,
            },
        }
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn a_record_round_trips_through_its_file_and_removal_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("freeze.json");
        let record = FreezeRecord::new(at(0), 5 * SECOND, Some(vec!["/mnt/data".into()]));

        record.write(&path).unwrap();

        assert_eq!(FreezeRecord::read(&path).unwrap(), Some(record.clone()));
        assert_eq!(record.deadline(), Some(at(5)));
        FreezeRecord::remove(&path).unwrap();
        FreezeRecord::remove(&path).unwrap();
        assert_eq!(FreezeRecord::read(&path).unwrap(), None);
    }

    #[test]
    fn a_zero_unfreeze_timeout_means_no_deadline() {
        let record = FreezeRecord::new(at(0), Duration::ZERO, None);

        assert_eq!(record.deadline(), None);
        assert_eq!(record.recovery(Some(FsfreezeStatus::Frozen), at(3600)), Recovery::KeepFrozen);
    }

    #[test]
    fn recovery_thaws_overdue_freezes_and_rearms_pending_ones() {
        let record = FreezeRecord::new(at(0), 10 * SECOND, None);

        assert_eq!(record.recovery(Some(FsfreezeStatus::Frozen), at(4)), Recovery::Rearm(6 * SECOND));
        assert_eq!(record.recovery(None, at(4)), Recovery::Rearm(6 * SECOND));
        assert_eq!(record.recovery(Some(FsfreezeStatus::Frozen), at(10)), Recovery::ThawNow);
        assert_eq!(record.recovery(None, at(11)), Recovery::ThawNow);
        assert_eq!(record.recovery(Some(FsfreezeStatus::Thawed), at(4)), Recovery::Forget);
        assert_eq!(record.recovery(Some(FsfreezeStatus::Thawed), at(11)), Recovery::Forget);
    }

    #[test]
    fn a_moved_deadline_is_what_recovery_uses() {
        let mut record = FreezeRecord::new(at(0), 60 * SECOND, None);

        record.set_deadline(at(2));

        assert_eq!(record.recovery(Some(FsfreezeStatus::Frozen), at(3)), Recovery::ThawNow);
    }

    #[test]
    fn an_unreadable_record_is_taken_as_overdue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("freeze.json");
        std::fs::write(&path, b"{ not json").unwrap();

        let record = FreezeRecord::read(&path).unwrap().unwrap();

        assert_eq!(record.recovery(Some(FsfreezeStatus::Frozen), at(0)), Recovery::ThawNow);
    }
}
