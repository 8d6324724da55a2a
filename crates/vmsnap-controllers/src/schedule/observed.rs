//! What the controller reads about a schedule's snapshots, in the few fields its decisions use.

use jiff::Timestamp;
use kube::ResourceExt;
use vmsnap_api::schedule::annotations;
use vmsnap_api::snapshot::SnapshotPhase;
use vmsnap_api::snapshot::VirtualMachineSnapshot;

/// A snapshot made by a schedule, as its decisions see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledSnapshot {
    /// Its name.
    pub name: String,
    /// The VM it is of.
    pub vm: String,
    /// The run time it was made for (its annotation; its creation time if that is missing).
    pub run_time: Timestamp,
    /// Where it is.
    pub state: SnapshotState,
    /// Its `status.error.message`, if any.
    pub error: Option<String>,
}

/// A scheduled snapshot's state, from its phase and deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotState {
    /// Being taken (no phase yet, `InProgress` or `Unknown`).
    InProgress,
    /// Ready to restore.
    Succeeded,
    /// Failed for good (its deadline passed).
    Failed,
    /// Being deleted: counts for nothing any more.
    Deleting,
}

impl ScheduledSnapshot {
    /// Reads a snapshot; `None` for one without a name or creation time (not from the API).
    pub fn from_snapshot(snapshot: &VirtualMachineSnapshot) -> Option<Self> {
        let created = snapshot.metadata.creation_timestamp.as_ref()?.0;
        let run_time = snapshot
            .annotations()
            .get(annotations::RUN_TIME)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or(created);
        let status = snapshot.status.as_ref();
        let state = if snapshot.metadata.deletion_timestamp.is_some() {
            SnapshotState::Deleting
        } else {
            match status.and_then(|s| s.phase.as_ref()) {
                Some(SnapshotPhase::Succeeded) => SnapshotState::Succeeded,
                Some(SnapshotPhase::Failed) => SnapshotState::Failed,
                Some(SnapshotPhase::Deleting) => SnapshotState::Deleting,
                _ => SnapshotState::InProgress,
            }
        };
        Some(ScheduledSnapshot {
            name: snapshot.metadata.name.clone()?,
            vm: snapshot.spec.source.name.clone(),
            run_time,
            state,
            error: status.and_then(|s| s.error.as_ref()).and_then(|e| e.message.clone()),
        })
    }
}
