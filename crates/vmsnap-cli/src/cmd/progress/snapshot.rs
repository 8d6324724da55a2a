//! The steps of a VirtualMachineSnapshot, as its watches show them: the VM's
//! `status.snapshotInProgress` (source locked), the VMI's `fsFreezeStatus` (guest frozen, thawed),
//! the VolumeSnapshots' `creationTime` (volumes cut), the snapshot's `readyToUse` (ready).

use std::collections::BTreeSet;
use std::time::Duration;

use kube::ResourceExt;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::{
    SnapshotPhase, VirtualMachineSnapshot, VirtualMachineSnapshotContent, condition_type, content_name,
    find_condition, reason,
};
use vmsnap_api::volumesnapshot::VolumeSnapshot;

use super::watch::{Change, Seen, Signal, Tracker};
use super::{Outcome, Report, Sequence, StepState};
use crate::cmd::errors::Kind;
use crate::cmd::output::seconds;

const STEPS: &[&str] = &["source locked", "guest frozen", "volumes cut", "guest thawed", "ready"];
const LOCKED: usize = 0;
const FROZEN: usize = 1;
const CUT: usize = 2;
const THAWED: usize = 3;
const READY: usize = 4;

/// What the merged watches of a snapshot saw: the snapshot, its VM and VMI, the contents and the
/// VolumeSnapshots of the VM (one watch each, in this order).
pub enum SnapshotSeen {
    /// The snapshot.
    Snapshot(Change<VirtualMachineSnapshot>),
    /// Its source VM.
    Vm(Change<VirtualMachine>),
    /// The VM's instance.
    Vmi(Change<VirtualMachineInstance>),
    /// The snapshot contents.
    Content(Change<VirtualMachineSnapshotContent>),
    /// The VolumeSnapshots of the VM's snapshots.
    VolumeSnapshot(Change<VolumeSnapshot>),
}

/// The VolumeSnapshot watch: optional, a cluster user may not be allowed to read them.
pub const VOLUME_SNAPSHOT_WATCH: usize = 4;

impl Seen for SnapshotSeen {
    fn signal(&self) -> (usize, Signal<'_>) {
        match self {
            SnapshotSeen::Snapshot(c) => (0, c.signal()),
            SnapshotSeen::Vm(c) => (1, c.signal()),
            SnapshotSeen::Vmi(c) => (2, c.signal()),
            SnapshotSeen::Content(c) => (3, c.signal()),
            SnapshotSeen::VolumeSnapshot(c) => (VOLUME_SNAPSHOT_WATCH, c.signal()),
        }
    }
}

/// Follows one snapshot from its creation to `readyToUse` (or failure).
#[derive(Debug)]
pub struct SnapshotTracker {
    name: String,
    uid: Option<String>,
    expect_freeze: bool,
    seen: [Option<Duration>; 5],
    steps: Sequence,
    backups: Option<Vec<String>>,
    cut_volumes: BTreeSet<String>,
    /// The last version of the snapshot seen.
    pub last: Option<VirtualMachineSnapshot>,
}

impl SnapshotTracker {
    /// Tracks snapshot `name`; `expect_freeze` when the VM runs with a guest agent and is not paused.
    pub fn new(name: &str, expect_freeze: bool) -> SnapshotTracker {
        SnapshotTracker {
            name: name.to_owned(),
            uid: None,
            expect_freeze,
            seen: [None; 5],
            steps: Sequence::new(STEPS),
            backups: None,
            cut_volumes: BTreeSet::new(),
            last: None,
        }
    }

    /// The guest was frozen for this long (measured by this client from watch events).
    pub fn freeze_window(&self) -> Option<Duration> {
        Some(self.seen[THAWED]?.saturating_sub(self.seen[FROZEN]?))
    }

    /// A version of the snapshot.
    pub fn on_snapshot(&mut self, s: &VirtualMachineSnapshot, at: Duration) -> Vec<Report> {
        if self.uid.is_none() || s.uid() != self.uid {
            return Vec::new();
        }
        self.last = Some(s.clone());
        let mut out = Vec::new();
        let Some(st) = &s.status else { return out };
        if st.ready_to_use == Some(true) {
            self.seen[READY].get_or_insert(at);
        }
        if st.creation_time.is_some() {
            self.seen[CUT].get_or_insert(at);
        }
        match &st.phase {
            Some(SnapshotPhase::Failed) => {
                let why = find_condition(&st.conditions, condition_type::FAILURE)
                    .and_then(|c| c.reason.clone())
                    .or_else(|| st.error.as_ref().and_then(|e| e.message.clone()))
                    .unwrap_or_else(|| "failed".into());
                let error = st.error.as_ref().and_then(|e| e.message.as_deref()).filter(|m| *m != why);
                self.steps.fail(match error {
                    Some(e) => format!("{why} ({e})"),
                    None => why,
                });
            }
            Some(SnapshotPhase::Deleting) => self.steps.fail("the snapshot is being deleted".into()),
            _ => {}
        }
        let progressing = find_condition(&st.conditions, condition_type::PROGRESSING);
        let note = match (&st.error, progressing) {
            (Some(e), _) if !self.steps.has_failed() => {
                e.message.as_ref().map(|m| format!("error (the controller retries): {m}"))
            }
            (_, Some(c)) if !c.is_true() => c
                .reason
                .as_deref()
                .filter(|r| {
                    ![reason::OPERATION_COMPLETE, reason::SOURCE_NOT_LOCKED, reason::IN_ERROR_STATE]
                        .contains(r)
                })
                .map(|r| format!("waiting: {r}")),
            _ => None,
        };
        out.extend(self.steps.note(note));
        out.extend(self.advance());
        out
    }

    /// A version of the source VM.
    pub fn on_vm(&mut self, vm: &VirtualMachine, at: Duration) -> Vec<Report> {
        let holder = vm.status.as_ref().and_then(|s| s.snapshot_in_progress.as_deref());
        if self.uid.is_some() && holder == Some(self.name.as_str()) {
            self.seen[LOCKED].get_or_insert(at);
        }
        self.advance()
    }

    /// The VMI changed (`None`: it is gone).
    pub fn on_vmi(&mut self, vmi: Option<&VirtualMachineInstance>, at: Duration) -> Vec<Report> {
        if self.uid.is_none() {
            return Vec::new();
        }
        let frozen =
            vmi.and_then(|v| v.status.as_ref()).and_then(|s| s.fs_freeze_status.as_deref()) == Some("frozen");
        if frozen {
            self.seen[FROZEN].get_or_insert(at);
        } else if self.seen[FROZEN].is_some() {
            self.seen[THAWED].get_or_insert(at);
        }
        self.advance()
    }

    /// A version of a VirtualMachineSnapshotContent.
    pub fn on_content(&mut self, content: &VirtualMachineSnapshotContent, at: Duration) -> Vec<Report> {
        let Some(uid) = &self.uid else { return Vec::new() };
        if content.name_any() != content_name(uid) {
            return Vec::new();
        }
        self.backups =
            Some(content.spec.volume_backups.iter().filter_map(|b| b.volume_snapshot_name.clone()).collect());
        if content.status.as_ref().is_some_and(|s| s.creation_time.is_some()) {
            self.seen[CUT].get_or_insert(at);
        }
        self.check_cut(at);
        self.advance()
    }

    /// A version of a VolumeSnapshot.
    pub fn on_volume_snapshot(&mut self, vs: &VolumeSnapshot, at: Duration) -> Vec<Report> {
        let Some(uid) = &self.uid else { return Vec::new() };
        let name = vs.name_any();
        if name.starts_with(&format!("vmsnapshot-{uid}-volume-"))
            && vs.status.as_ref().is_some_and(|s| s.creation_time.is_some())
        {
            self.cut_volumes.insert(name);
        }
        self.check_cut(at);
        self.advance()
    }

    fn check_cut(&mut self, at: Duration) {
        if let Some(backups) = &self.backups
            && !backups.is_empty()
            && backups.iter().all(|b| self.cut_volumes.contains(b))
        {
            self.seen[CUT].get_or_insert(at);
        }
    }

    fn advance(&mut self) -> Vec<Report> {
        let seen = self.seen;
        let expect_freeze = self.expect_freeze;
        let frozen_printed = self.steps.printed(FROZEN);
        let volumes = self.backups.as_ref().map(Vec::len);
        let over = seen[READY].is_some() || self.steps.has_failed();
        let implied = |steps: &[usize]| steps.iter().filter_map(|&s| seen[s]).min();
        self.steps.advance(|i| match i {
            LOCKED => StepState::seen(implied(&[LOCKED, FROZEN, CUT, READY]), None),
            FROZEN if !expect_freeze => StepState::Skip,
            FROZEN => match seen[FROZEN] {
                Some(at) => StepState::Reached(at, None),
                None if over => StepState::Skip,
                None => StepState::Wait,
            },
            CUT => StepState::seen(implied(&[CUT, READY]), volumes.map(super::volumes)),
            THAWED if !frozen_printed => StepState::Skip,
            THAWED => StepState::seen(
                seen[THAWED],
                seen[THAWED]
                    .zip(seen[FROZEN])
                    .map(|(t, f)| format!("frozen for {}", seconds(t.saturating_sub(f)))),
            ),
            _ => StepState::seen(seen[READY], None),
        })
    }
}

impl Tracker for SnapshotTracker {
    type Seen = SnapshotSeen;
    type Object = VirtualMachineSnapshot;
    const KIND: Kind = Kind::Snapshot;
    const WAITING_FOR: &'static str = "the snapshot";
    const OPTIONAL_WATCHES: &'static [usize] = &[VOLUME_SNAPSHOT_WATCH];

    /// The snapshot was created with this UID: from now on, observations count.
    fn created(&mut self, snapshot: &VirtualMachineSnapshot) -> Vec<Report> {
        self.uid = snapshot.uid();
        self.on_snapshot(snapshot, Duration::ZERO)
    }

    fn observe(&mut self, seen: SnapshotSeen, at: Duration) -> Vec<Report> {
        match seen {
            SnapshotSeen::Snapshot(Change::Applied(s)) => self.on_snapshot(&s, at),
            SnapshotSeen::Vm(Change::Applied(vm)) => self.on_vm(&vm, at),
            SnapshotSeen::Vmi(c) => c.object().map(|vmi| self.on_vmi(vmi, at)).unwrap_or_default(),
            SnapshotSeen::Content(Change::Applied(c)) => self.on_content(&c, at),
            SnapshotSeen::VolumeSnapshot(Change::Applied(vs)) => self.on_volume_snapshot(&vs, at),
            _ => Vec::new(),
        }
    }

    /// The end, if reached: ready (and thawed, if it was frozen), or failed.
    fn outcome(&self) -> Option<Outcome> {
        self.steps.outcome()
    }

    /// Ready, but the thaw of a frozen guest was not seen yet.
    fn lingers(&self) -> bool {
        self.seen[READY].is_some() && self.steps.printed(FROZEN) && self.seen[THAWED].is_none()
    }

    /// Gives up waiting for the thaw event (the snapshot is ready).
    fn give_up(&mut self) -> Vec<Report> {
        self.expect_freeze = false;
        let mut out = vec![Report::Note("the thaw of the guest was not observed".into())];
        self.seen[THAWED] = None;
        out.extend(self.steps.advance(|i| if i == THAWED { StepState::Skip } else { StepState::Wait }));
        out.extend(self.advance());
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cmd::progress::step_labels;

    fn snapshot(status: serde_json::Value) -> VirtualMachineSnapshot {
        serde_json::from_value(json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": "s1", "uid": "u1"},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db"}},
            "status": status
        }))
        .unwrap()
    }

    fn vmi(frozen: bool) -> VirtualMachineInstance {
        let status = if frozen { json!({"fsFreezeStatus": "frozen"}) } else { json!({}) };
        serde_json::from_value(json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "db"}, "spec": {"domain": {"devices": {}}}, "status": status}))
        .unwrap()
    }

    fn vm(lock: Option<&str>) -> VirtualMachine {
        serde_json::from_value(json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "db"}, "spec": {"template": {"spec": {"domain": {"devices": {}}}}},
            "status": {"snapshotInProgress": lock}}))
        .unwrap()
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn an_online_snapshot_reports_lock_freeze_cut_thaw_ready_and_the_freeze_window() {
        let mut t = SnapshotTracker::new("s1", true);
        let mut all = t.created(&snapshot(json!({"phase": "InProgress"})));
        all.extend(t.on_vm(&vm(Some("s1")), MS(10)));
        all.extend(t.on_vmi(Some(&vmi(true)), MS(20)));
        all.extend(t.on_snapshot(&snapshot(json!({"creationTime": "2025-01-01T00:00:00Z"})), MS(40)));
        assert_eq!(
            step_labels(&all),
            vec!["source locked", "guest frozen", "volumes cut"],
            "ready waits for the thaw"
        );
        all.extend(t.on_vmi(Some(&vmi(false)), MS(35)));
        all.extend(t.on_snapshot(&snapshot(json!({"phase": "Succeeded", "readyToUse": true})), MS(50)));
        assert_eq!(step_labels(&all), STEPS.to_vec());
        assert_eq!(t.freeze_window(), Some(MS(15)));
        assert_eq!(t.outcome(), Some(Outcome::Done));
    }

    #[test]
    fn an_offline_snapshot_skips_the_freeze_steps() {
        let mut t = SnapshotTracker::new("s1", false);
        t.created(&snapshot(json!({})));
        let all = t.on_snapshot(
            &snapshot(
                json!({"phase": "Succeeded", "readyToUse": true, "creationTime": "2025-01-01T00:00:00Z"}),
            ),
            MS(5),
        );
        assert_eq!(step_labels(&all), vec!["source locked", "volumes cut", "ready"]);
        assert_eq!(t.freeze_window(), None);
    }

    #[test]
    fn a_failed_snapshot_ends_with_its_failure_reason_and_error() {
        let mut t = SnapshotTracker::new("s1", true);
        t.created(&snapshot(json!({})));
        t.on_snapshot(
            &snapshot(json!({"phase": "Failed", "error": {"message": "command Freeze failed"},
                "conditions": [{"type": "Failure", "status": "True", "reason": "snapshot deadline exceeded"}]})),
            MS(5),
        );
        assert_eq!(
            t.outcome(),
            Some(Outcome::Failed("snapshot deadline exceeded (command Freeze failed)".into()))
        );
    }

    #[test]
    fn a_lock_wait_with_a_cause_is_noted_once() {
        let mut t = SnapshotTracker::new("s1", false);
        t.created(&snapshot(json!({})));
        let waiting = json!({"conditions": [{"type": "Progressing", "status": "False", "reason": "Source not locked source default/db volume not bound: data"}]});
        let first = t.on_snapshot(&snapshot(waiting.clone()), MS(5));
        let second = t.on_snapshot(&snapshot(waiting), MS(6));
        assert_eq!(
            first,
            vec![Report::Note("waiting: Source not locked source default/db volume not bound: data".into())]
        );
        assert!(second.is_empty());
    }

    #[test]
    fn observations_before_the_creation_are_ignored() {
        let mut t = SnapshotTracker::new("s1", true);
        assert!(t.on_vm(&vm(Some("s1")), MS(1)).is_empty());
        assert!(t.on_vmi(Some(&vmi(true)), MS(1)).is_empty());
    }
}
