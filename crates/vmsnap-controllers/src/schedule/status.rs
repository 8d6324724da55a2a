//! The schedule's status from what a reconcile saw and did: pure, so that its rules (results per
//! VM, last success, missed runs, conditions) are tested with fixed clocks.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmsnap_api::schedule::{ScheduledVmStatus, VirtualMachineSnapshotScheduleStatus, run_result};
use vmsnap_api::snapshot::{Condition, condition_type as condition, update_condition};

use super::backups::BackupPass;
use super::observed::{ScheduledSnapshot, SnapshotState};
use super::plan::{Tick, VmPruning, VmRun, consecutive_failures};

/// Condition reasons of a schedule.
pub mod reason {
    /// Ready: runs are scheduled.
    pub const SCHEDULED: &str = "Scheduled";
    /// Ready false: `suspend: true`.
    pub const SUSPENDED: &str = "Suspended";
    /// Ready false, Failure true: a VM's runs keep failing.
    pub const CONSECUTIVE_FAILURES: &str = "ConsecutiveFailures";
    /// Failure false.
    pub const NO_FAILURES: &str = "NoFailures";
    /// Ready false, Failure true: the spec cannot be read (created where admission did not run).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Progressing true: snapshots of a run are being taken.
    pub const RUN_IN_PROGRESS: &str = "RunInProgress";
    /// Progressing false: waiting for the next run.
    pub const AWAITING_NEXT_RUN: &str = "AwaitingNextRun";
}

/// What one reconcile saw and did, for [`next_status`].
pub struct Observation<'a> {
    /// The reconcile's clock.
    pub now: Timestamp,
    /// Its decision.
    pub tick: Tick,
    /// Each VM's part of the run it took (empty without a run).
    pub runs: &'a [VmRun],
    /// The schedule's snapshots, as read before the run.
    pub snapshots: &'a [ScheduledSnapshot],
    /// Retention's plan per VM.
    pub pruning: &'a BTreeMap<String, VmPruning>,
    /// Snapshots actually deleted now, per VM.
    pub pruned_now: &'a BTreeMap<String, usize>,
    /// `failurePolicy.consecutiveFailures`.
    pub failure_threshold: usize,
    /// What the backup part did (empty without `backupTo` and `backupKeep`).
    pub backups: &'a BackupPass,
}

/// A VM's run that failed since the last status: for events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRun {
    /// The VM.
    pub vm: String,
    /// Its snapshot.
    pub snapshot: String,
    /// Why.
    pub message: String,
    /// Failed runs of the VM in a row, this one included.
    pub consecutive: usize,
}

/// The new status and what changed that deserves an event.
pub struct Outcome {
    /// The status to write.
    pub status: VirtualMachineSnapshotScheduleStatus,
    /// Runs that failed since the old status.
    pub newly_failed: Vec<FailedRun>,
    /// VMs that reached the failure threshold with this status.
    pub newly_failing: Vec<FailedRun>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

/// The result of the VM's last run from its snapshot, `None` when the snapshot is not to be seen
/// (being deleted, or not yet in the list read before it was created).
fn result_of(snapshot: &ScheduledSnapshot) -> Option<(&'static str, Option<String>)> {
    match snapshot.state {
        SnapshotState::Succeeded => Some((run_result::SUCCEEDED, None)),
        SnapshotState::Failed => Some((
            run_result::FAILED,
            Some(snapshot.error.clone().unwrap_or_else(|| "the snapshot failed".into())),
        )),
        SnapshotState::InProgress => Some((run_result::IN_PROGRESS, snapshot.error.clone())),
        SnapshotState::Deleting => None,
    }
}

/// The VM's newest backup of this schedule, and what backup retention kept and pruned; a failed
/// newest backup makes the run's result `Failed` with the backup's error.
fn record_backups(entry: &mut ScheduledVmStatus, pass: &BackupPass) {
    let newest = pass
        .backups
        .iter()
        .filter(|b| b.vm == entry.name && b.state != SnapshotState::Deleting)
        .max_by_key(|b| b.run_time);
    if let Some(backup) = newest {
        entry.last_backup_name = Some(backup.name.clone());
        let of_last_run = entry.last_snapshot_name.as_deref() == Some(backup.name.as_str());
        if of_last_run && backup.state == SnapshotState::Failed {
            entry.last_result = Some(run_result::FAILED.into());
            entry.message = Some(format!(
                "backup {} failed: {}",
                backup.name,
                backup.error.as_deref().unwrap_or("see the backup's status")
            ));
        }
    }
    if let Some(pruning) = pass.pruning.get(&entry.name) {
        entry.backups_kept = Some(i32::try_from(pruning.kept).unwrap_or(i32::MAX));
    }
    if let Some(pruned) = pass.pruned_now.get(&entry.name).filter(|n| **n > 0) {
        let pruned = i64::try_from(*pruned).unwrap_or(i64::MAX);
        entry.backups_pruned = Some(entry.backups_pruned.unwrap_or(0).saturating_add(pruned));
    }
}

/// A VM's failed runs in a row, counted on from the old status: a run that failed since (a
/// snapshot that failed, a backup that failed, or a run refused because the VM is missing or the
/// API refused its snapshot) adds one, a success starts again from zero, and a run in progress
/// or skipped leaves the count as it was. Refused runs leave no snapshot, so the status is what
/// remembers them; the schedule's failed snapshots are the floor when the status was lost.
fn failures_in_a_row(
    last_result: Option<&str>,
    newly_failed: bool,
    old_count: Option<i32>,
    failed_snapshots_in_a_row: usize,
) -> usize {
    let old_count = old_count.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    match last_result {
        Some(run_result::SUCCEEDED) => 0,
        Some(run_result::FAILED) if newly_failed => failed_snapshots_in_a_row.max(old_count + 1),
        _ => failed_snapshots_in_a_row.max(old_count),
    }
}

/// Computes the status after a reconcile from the old one and what it saw and did.
pub fn next_status(old: &VirtualMachineSnapshotScheduleStatus, seen: &Observation<'_>) -> Outcome {
    let mut status = old.clone();
    let run_time = match seen.tick {
        Tick::Run { scheduled, .. } => Some(scheduled),
        _ => None,
    };
    match seen.tick {
        Tick::Suspended => status.next_run_time = None,
        Tick::Wait { next } => status.next_run_time = Some(time(next)),
        Tick::Run { scheduled, next, missed } | Tick::TooLate { scheduled, next, missed } => {
            status.last_schedule_time = Some(time(scheduled));
            status.next_run_time = Some(time(next));
            let missed = i64::try_from(missed).unwrap_or(i64::MAX);
            status.missed_runs = Some(status.missed_runs.unwrap_or(0).saturating_add(missed));
        }
    }
    if let Some(scheduled) = run_time {
        status.last_run_time = Some(time(scheduled));
    }

    let mut vms: BTreeMap<String, ScheduledVmStatus> =
        old.vms.iter().map(|v| (v.name.clone(), v.clone())).collect();
    let mut skipped_now = Vec::new();
    for run in seen.runs {
        let entry = vms
            .entry(run.vm().to_owned())
            .or_insert_with(|| ScheduledVmStatus { name: run.vm().to_owned(), ..Default::default() });
        entry.last_run_time = run_time.map(time);
        match run {
            VmRun::Create { name, .. } | VmRun::AlreadyMade { name, .. } => {
                entry.last_snapshot_name = Some(name.clone());
                entry.last_result = Some(run_result::IN_PROGRESS.into());
                entry.message = None;
            }
            VmRun::Skip { blocking, .. } => {
                entry.last_result = Some(run_result::SKIPPED.into());
                entry.message = Some(format!(
                    "skipped: the previous run's snapshot {blocking} is still in progress (concurrencyPolicy Forbid)"
                ));
                skipped_now.push(run.vm().to_owned());
            }
            VmRun::Refused { message, .. } => {
                entry.last_result = Some(run_result::FAILED.into());
                entry.message = Some(message.clone());
                entry.last_snapshot_name = None;
                skipped_now.push(run.vm().to_owned());
            }
        }
    }
    // VMs with snapshots of this schedule but no entry (a status lost or written by an older
    // version): their newest snapshot stands for their last run.
    for s in seen.snapshots {
        let newest_of_vm = seen.snapshots.iter().filter(|o| o.vm == s.vm).all(|o| o.run_time <= s.run_time);
        if newest_of_vm && !vms.contains_key(&s.vm) {
            vms.insert(
                s.vm.clone(),
                ScheduledVmStatus {
                    name: s.vm.clone(),
                    last_run_time: Some(time(s.run_time)),
                    last_snapshot_name: Some(s.name.clone()),
                    ..Default::default()
                },
            );
        }
    }

    let mut outcome_failed = Vec::new();
    let mut outcome_failing = Vec::new();
    for entry in vms.values_mut() {
        let old_entry = old.vms.iter().find(|v| v.name == entry.name);
        if !skipped_now.contains(&entry.name)
            && let Some(snapshot) =
                entry.last_snapshot_name.as_ref().and_then(|n| seen.snapshots.iter().find(|s| &s.name == n))
            && let Some((result, message)) = result_of(snapshot)
        {
            entry.last_result = Some(result.into());
            entry.message = message;
        }
        if let Some(pruning) = seen.pruning.get(&entry.name) {
            entry.snapshots_kept = Some(i32::try_from(pruning.kept).unwrap_or(i32::MAX));
        }
        if let Some(pruned) = seen.pruned_now.get(&entry.name).filter(|n| **n > 0) {
            let pruned = i64::try_from(*pruned).unwrap_or(i64::MAX);
            entry.snapshots_pruned = Some(entry.snapshots_pruned.unwrap_or(0).saturating_add(pruned));
        }
        record_backups(entry, seen.backups);
        let failed = entry.last_result.as_deref() == Some(run_result::FAILED);
        // The same failed run as in the old status: same run time and snapshot (a refused run has
        // none, so two refused runs in a row differ by their run time).
        let was_failed = old_entry.is_some_and(|o| {
            o.last_result.as_deref() == Some(run_result::FAILED)
                && o.last_snapshot_name == entry.last_snapshot_name
                && o.last_run_time == entry.last_run_time
        });
        let failures = failures_in_a_row(
            entry.last_result.as_deref(),
            failed && !was_failed,
            old_entry.and_then(|o| o.consecutive_failures),
            consecutive_failures(&entry.name, seen.snapshots),
        );
        entry.consecutive_failures = Some(i32::try_from(failures).unwrap_or(i32::MAX));
        if failed && !was_failed {
            let run = FailedRun {
                vm: entry.name.clone(),
                snapshot: entry.last_snapshot_name.clone().unwrap_or_default(),
                message: entry.message.clone().unwrap_or_default(),
                consecutive: failures,
            };
            let before = old_entry.and_then(|o| o.consecutive_failures).unwrap_or(0);
            if failures >= seen.failure_threshold
                && usize::try_from(before).unwrap_or(0) < seen.failure_threshold
            {
                outcome_failing.push(run.clone());
            }
            outcome_failed.push(run);
        }
    }
    status.vms = vms.into_values().collect();

    if let Some(last) = status.last_run_time.clone() {
        let of_last: Vec<&ScheduledVmStatus> =
            status.vms.iter().filter(|v| v.last_run_time.as_ref() == Some(&last)).collect();
        if !of_last.is_empty()
            && of_last.iter().all(|v| v.last_result.as_deref() == Some(run_result::SUCCEEDED))
        {
            status.last_success_time = Some(last);
        }
    }
    set_conditions(&mut status, seen);
    Outcome { status, newly_failed: outcome_failed, newly_failing: outcome_failing }
}

fn set_conditions(status: &mut VirtualMachineSnapshotScheduleStatus, seen: &Observation<'_>) {
    let now = time(seen.now);
    let next = status.next_run_time.as_ref().map(|t| t.0.to_string());
    let failing: Vec<String> = status
        .vms
        .iter()
        .filter(|v| {
            usize::try_from(v.consecutive_failures.unwrap_or(0)).unwrap_or(0) >= seen.failure_threshold
        })
        .map(|v| {
            format!(
                "VM {}: the last {} runs failed (last: {})",
                v.name,
                v.consecutive_failures.unwrap_or(0),
                v.message.as_deref().unwrap_or("no message")
            )
        })
        .collect();
    let in_progress: Vec<String> = status
        .vms
        .iter()
        .filter(|v| v.last_result.as_deref() == Some(run_result::IN_PROGRESS))
        .map(|v| {
            let name = v.last_snapshot_name.as_deref().unwrap_or_default();
            match &v.message {
                Some(m) => format!("{name} of VM {} ({m})", v.name),
                None => format!("{name} of VM {}", v.name),
            }
        })
        .collect();
    let suspended = matches!(seen.tick, Tick::Suspended);
    let ready = if suspended {
        Condition::new(condition::READY, false, reason::SUSPENDED)
            .with_message(Some("suspend is true: no runs until it is set to false".into()))
    } else if !failing.is_empty() {
        Condition::new(condition::READY, false, reason::CONSECUTIVE_FAILURES)
            .with_message(Some(failing.join("; ")))
    } else {
        Condition::new(condition::READY, true, reason::SCHEDULED)
            .with_message(next.as_ref().map(|n| format!("the next run is at {n}")))
    };
    let progressing = if !in_progress.is_empty() {
        Condition::new(condition::PROGRESSING, true, reason::RUN_IN_PROGRESS)
            .with_message(Some(format!("awaiting snapshot {}", in_progress.join(", "))))
    } else if suspended {
        Condition::new(condition::PROGRESSING, false, reason::SUSPENDED)
            .with_message(Some("awaiting suspend: false".into()))
    } else {
        Condition::new(condition::PROGRESSING, false, reason::AWAITING_NEXT_RUN)
            .with_message(next.map(|n| format!("awaiting the next run at {n}")))
    };
    let failure = if failing.is_empty() {
        Condition::new(condition::FAILURE, false, reason::NO_FAILURES)
    } else {
        Condition::new(condition::FAILURE, true, reason::CONSECUTIVE_FAILURES)
            .with_message(Some(failing.join("; ")))
    };
    for c in [progressing, ready, failure] {
        update_condition(&mut status.conditions, c, now.clone());
    }
}

/// The status of a schedule whose spec cannot be read (no run until it is fixed).
pub fn invalid_status(
    old: &VirtualMachineSnapshotScheduleStatus,
    problem: &str,
    now: Timestamp,
) -> VirtualMachineSnapshotScheduleStatus {
    let mut status = old.clone();
    status.next_run_time = None;
    let message = Some(format!("no runs until the spec is fixed: {problem}"));
    for c in [
        Condition::new(condition::PROGRESSING, false, reason::INVALID_SPEC).with_message(message.clone()),
        Condition::new(condition::READY, false, reason::INVALID_SPEC).with_message(message.clone()),
        Condition::new(condition::FAILURE, true, reason::INVALID_SPEC).with_message(message.clone()),
    ] {
        update_condition(&mut status.conditions, c, time(now));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fixtures::{self, ts};

    fn snap(vm: &str, minute: u32, state: SnapshotState, error: Option<&str>) -> ScheduledSnapshot {
        ScheduledSnapshot { error: error.map(Into::into), ..fixtures::snap(vm, minute, state) }
    }

    fn observe<'a>(
        tick: Tick,
        runs: &'a [VmRun],
        snapshots: &'a [ScheduledSnapshot],
        pruning: &'a BTreeMap<String, VmPruning>,
        pruned_now: &'a BTreeMap<String, usize>,
    ) -> Observation<'a> {
        Observation {
            now: ts("2025-01-01T10:05:00.3Z"),
            tick,
            runs,
            snapshots,
            pruning,
            pruned_now,
            failure_threshold: 2,
            backups: &NO_BACKUPS,
        }
    }

    static NO_BACKUPS: BackupPass = BackupPass {
        made: Vec::new(),
        backups: Vec::new(),
        pruning: BTreeMap::new(),
        pruned_now: BTreeMap::new(),
        snapshots_in_use: std::collections::BTreeSet::new(),
    };

    #[test]
    fn a_failed_backup_of_the_last_run_fails_the_run_and_retention_is_counted() {
        let snapshot = snap("a", 0, SnapshotState::Succeeded, None);
        let mut entry = ScheduledVmStatus {
            name: "a".into(),
            last_snapshot_name: Some(snapshot.name.clone()),
            last_result: Some(run_result::SUCCEEDED.into()),
            ..Default::default()
        };
        let mut failed = snapshot.clone();
        failed.state = SnapshotState::Failed;
        failed.error = Some("repository main: wrong passphrase".into());
        let pass = BackupPass {
            backups: vec![failed],
            pruning: BTreeMap::from([("a".to_string(), VmPruning { kept: 2, ..Default::default() })]),
            pruned_now: BTreeMap::from([("a".to_string(), 1)]),
            ..Default::default()
        };
        record_backups(&mut entry, &pass);
        assert_eq!(entry.last_backup_name.as_deref(), Some(snapshot.name.as_str()));
        assert_eq!(entry.last_result.as_deref(), Some(run_result::FAILED));
        assert!(entry.message.as_deref().unwrap().contains("wrong passphrase"), "{:?}", entry.message);
        assert_eq!((entry.backups_kept, entry.backups_pruned), (Some(2), Some(1)));
    }

    fn condition_of(status: &VirtualMachineSnapshotScheduleStatus, type_: &str) -> (String, String, String) {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
    }

    #[test]
    fn a_run_records_its_time_and_each_vms_snapshot_and_awaits_them() {
        let tick =
            Tick::Run { scheduled: ts("2025-01-01T10:05:00Z"), next: ts("2025-01-01T10:06:00Z"), missed: 2 };
        let runs = vec![
            VmRun::Create { vm: "a".into(), name: "s-a-202501011005".into() },
            VmRun::Skip { vm: "b".into(), blocking: "s-b-202501011004".into() },
        ];
        let snapshots = vec![snap("b", 4, SnapshotState::InProgress, Some("command Freeze failed"))];
        let none = BTreeMap::new();
        let out =
            next_status(&Default::default(), &observe(tick, &runs, &snapshots, &none, &BTreeMap::new()));
        let s = &out.status;
        assert_eq!(s.last_run_time, Some(time(ts("2025-01-01T10:05:00Z"))));
        assert_eq!(s.last_schedule_time, s.last_run_time);
        assert_eq!(s.next_run_time, Some(time(ts("2025-01-01T10:06:00Z"))));
        assert_eq!(s.missed_runs, Some(2));
        assert_eq!(s.last_success_time, None);
        assert_eq!(s.vms[0].last_result.as_deref(), Some("InProgress"));
        assert_eq!(s.vms[1].last_result.as_deref(), Some("Skipped"));
        assert!(s.vms[1].message.as_deref().unwrap().contains("s-b-202501011004 is still in progress"));
        assert_eq!(
            condition_of(s, "Progressing"),
            ("True".into(), "RunInProgress".into(), "awaiting snapshot s-a-202501011005 of VM a".into())
        );
        assert_eq!(condition_of(s, "Ready").0, "True");
    }

    #[test]
    fn a_run_succeeds_when_every_vm_of_it_succeeded_and_failures_are_reported_once() {
        let tick = Tick::Wait { next: ts("2025-01-01T10:06:00Z") };
        let mut old = VirtualMachineSnapshotScheduleStatus {
            last_run_time: Some(time(ts("2025-01-01T10:05:00Z"))),
            ..Default::default()
        };
        for vm in ["a", "b"] {
            old.vms.push(ScheduledVmStatus {
                name: vm.into(),
                last_run_time: old.last_run_time.clone(),
                last_snapshot_name: Some(format!("s-{vm}-202501011005")),
                last_result: Some("InProgress".into()),
                ..Default::default()
            });
        }
        let done =
            vec![snap("a", 5, SnapshotState::Succeeded, None), snap("b", 5, SnapshotState::Succeeded, None)];
        let pruning: BTreeMap<String, VmPruning> =
            [("a".to_string(), VmPruning { kept: 3, delete: vec!["x".into()], held: vec![] })].into();
        let pruned: BTreeMap<String, usize> = [("a".to_string(), 1)].into();
        let out = next_status(&old, &observe(tick, &[], &done, &pruning, &pruned));
        assert_eq!(out.status.last_success_time, Some(time(ts("2025-01-01T10:05:00Z"))));
        assert_eq!(
            (out.status.vms[0].snapshots_kept, out.status.vms[0].snapshots_pruned),
            (Some(3), Some(1))
        );
        assert_eq!(condition_of(&out.status, "Progressing").1, "AwaitingNextRun");

        let failed = vec![
            snap("a", 4, SnapshotState::Failed, Some("x")),
            snap("a", 5, SnapshotState::Succeeded, None),
            snap("b", 4, SnapshotState::Failed, Some("command Freeze failed")),
            snap("b", 5, SnapshotState::Failed, Some("snapshot deadline exceeded")),
        ];
        let out = next_status(&old, &observe(tick, &[], &failed, &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!(out.status.last_success_time, None, "b failed");
        let b = &out.status.vms[1];
        assert_eq!((b.last_result.as_deref(), b.consecutive_failures), (Some("Failed"), Some(2)));
        assert_eq!(out.newly_failed.len(), 1);
        assert_eq!(out.newly_failed[0].message, "snapshot deadline exceeded");
        assert_eq!(out.newly_failing.len(), 1, "the threshold of 2 is reached");
        let (status, reason, message) = condition_of(&out.status, "Failure");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "ConsecutiveFailures"));
        assert_eq!(message, "VM b: the last 2 runs failed (last: snapshot deadline exceeded)");
        assert_eq!(condition_of(&out.status, "Ready").1, "ConsecutiveFailures");
        let again =
            next_status(&out.status, &observe(tick, &[], &failed, &BTreeMap::new(), &BTreeMap::new()));
        assert!(again.newly_failed.is_empty() && again.newly_failing.is_empty(), "reported once");
    }

    #[test]
    fn runs_refused_for_a_missing_vm_count_as_failures_in_a_row_and_each_is_reported() {
        let mut status = VirtualMachineSnapshotScheduleStatus::default();
        let mut reported = Vec::new();
        for minute in 5..=7 {
            let tick = Tick::Run {
                scheduled: ts(&format!("2025-01-01T10:{minute:02}:00Z")),
                next: ts(&format!("2025-01-01T10:{:02}:00Z", minute + 1)),
                missed: 0,
            };
            let runs = vec![VmRun::Refused {
                vm: "gone".into(),
                message: "VM gone does not exist in namespace default".into(),
            }];
            let out = next_status(&status, &observe(tick, &runs, &[], &BTreeMap::new(), &BTreeMap::new()));
            reported.push((out.newly_failed.len(), out.newly_failing.len()));
            status = out.status;
            let wait = Tick::Wait { next: ts(&format!("2025-01-01T10:{:02}:00Z", minute + 1)) };
            let out = next_status(&status, &observe(wait, &[], &[], &BTreeMap::new(), &BTreeMap::new()));
            assert!(out.newly_failed.is_empty(), "a refused run is reported once");
            status = out.status;
        }
        let gone = &status.vms[0];
        assert_eq!((gone.last_result.as_deref(), gone.consecutive_failures), (Some("Failed"), Some(3)));
        assert_eq!(reported, vec![(1, 0), (1, 1), (1, 0)], "each run is an event; the threshold of 2 once");
        let (state, reason, message) = condition_of(&status, "Failure");
        assert_eq!((state.as_str(), reason.as_str()), ("True", "ConsecutiveFailures"));
        assert_eq!(
            message,
            "VM gone: the last 3 runs failed (last: VM gone does not exist in namespace default)"
        );

        // The VM comes back: its next snapshot fails (one more), then one succeeds (zero).
        let tick =
            Tick::Run { scheduled: ts("2025-01-01T10:08:00Z"), next: ts("2025-01-01T10:09:00Z"), missed: 0 };
        let failed = vec![snap("gone", 8, SnapshotState::Failed, Some("command Freeze failed"))];
        let runs = vec![VmRun::Create { vm: "gone".into(), name: failed[0].name.clone() }];
        let out = next_status(&status, &observe(tick, &runs, &[], &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!(out.status.vms[0].consecutive_failures, Some(3), "a run in progress changes nothing");
        let wait = Tick::Wait { next: ts("2025-01-01T10:09:00Z") };
        let out = next_status(&out.status, &observe(wait, &[], &failed, &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!(out.status.vms[0].consecutive_failures, Some(4));
        let succeeded = vec![snap("gone", 8, SnapshotState::Succeeded, None)];
        let out =
            next_status(&out.status, &observe(wait, &[], &succeeded, &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!(out.status.vms[0].consecutive_failures, Some(0));
    }

    #[test]
    fn suspended_schedules_have_no_next_run_and_say_so() {
        let old = VirtualMachineSnapshotScheduleStatus {
            next_run_time: Some(time(ts("2025-01-01T10:06:00Z"))),
            ..Default::default()
        };
        let out = next_status(&old, &observe(Tick::Suspended, &[], &[], &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!(out.status.next_run_time, None);
        assert_eq!(condition_of(&out.status, "Ready").1, "Suspended");
        let too_late = Tick::TooLate {
            scheduled: ts("2025-01-01T10:05:00Z"),
            next: ts("2025-01-01T10:06:00Z"),
            missed: 4,
        };
        let out = next_status(&out.status, &observe(too_late, &[], &[], &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!((out.status.missed_runs, out.status.last_run_time.clone()), (Some(4), None));
        assert_eq!(out.status.last_schedule_time, Some(time(ts("2025-01-01T10:05:00Z"))));
    }
}
