//! What a schedule does now, decided without I/O from what was read: whether a run is due, what
//! each VM's part of it is, and which snapshots retention removes. The reconcile carries it out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use vmsnap_schedule::{Decision, KeepPolicy, Schedule, catch_up};

use super::names::snapshot_name;
use super::observed::{ScheduledSnapshot, SnapshotState};

/// What the schedule does at this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// `suspend: true`: no run, no next run.
    Suspended,
    /// Nothing due before `next`.
    Wait {
        /// The next run time.
        next: Timestamp,
    },
    /// Take the run of `scheduled` now; `missed` older due runs are not taken.
    Run {
        /// The run time taken.
        scheduled: Timestamp,
        /// The run after it.
        next: Timestamp,
        /// Due runs not taken (downtime).
        missed: u64,
    },
    /// The most recent due run is past the starting deadline: none is taken.
    TooLate {
        /// The run time missed last.
        scheduled: Timestamp,
        /// The next run time.
        next: Timestamp,
        /// Due runs not taken, this one included.
        missed: u64,
    },
}

/// Decides what a schedule does at `now`, as a CronJob would ([`catch_up`]): `last_schedule` is
/// the last run time dealt with, `created` the schedule's creation time.
pub fn tick(
    schedule: &Schedule,
    suspended: bool,
    last_schedule: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
    starting_deadline_seconds: Option<i64>,
) -> Tick {
    if suspended {
        return Tick::Suspended;
    }
    let deadline = starting_deadline_seconds.map(SignedDuration::from_secs);
    let outcome = catch_up(schedule, last_schedule, created, now, deadline);
    match outcome.decision {
        Decision::Wait { next } => Tick::Wait { next },
        Decision::Run { scheduled, next } => Tick::Run { scheduled, next, missed: outcome.missed },
        Decision::TooLate { scheduled, next } => Tick::TooLate { scheduled, next, missed: outcome.missed },
    }
}

/// How long to sleep until `next`: the reconcile is requeued to run then.
pub fn until(next: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// The `failureDeadline` of the snapshots of a run: the gap to the next run less a margin, so
/// that a hung run (a freeze hook that never returns) fails before the next one is due instead
/// of making it skip under `Forbid`; between 30 s and KubeVirt's default of 5 minutes.
pub fn failure_deadline(scheduled: Timestamp, next: Timestamp) -> Duration {
    let gap = until(next, scheduled).saturating_sub(Duration::from_secs(10));
    gap.clamp(Duration::from_secs(30), Duration::from_secs(300))
}

/// One VM's part of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmRun {
    /// Create snapshot `name`.
    Create {
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
    /// Snapshot `name` of this run exists already (a retry after a crash or a conflict).
    AlreadyMade {
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
    /// `Forbid`: the VM's snapshot `blocking` of an earlier run is still being taken.
    Skip {
        /// The VM.
        vm: String,
        /// The snapshot still in progress.
        blocking: String,
    },
    /// The run could not start for the VM (it does not exist, the API refused the snapshot).
    Refused {
        /// The VM.
        vm: String,
        /// Why.
        message: String,
    },
}

impl VmRun {
    /// The VM.
    pub fn vm(&self) -> &str {
        match self {
            VmRun::Create { vm, .. }
            | VmRun::AlreadyMade { vm, .. }
            | VmRun::Skip { vm, .. }
            | VmRun::Refused { vm, .. } => vm,
        }
    }
}

/// Each target VM's part of the run of `run_time`: its deterministic snapshot, unless it exists
/// already or (`forbid`) an earlier snapshot of the VM by this schedule is still in progress.
pub fn plan_run(
    schedule: &str,
    run_time: Timestamp,
    forbid: bool,
    targets: &BTreeSet<String>,
    snapshots: &[ScheduledSnapshot],
) -> Vec<VmRun> {
    targets
        .iter()
        .map(|vm| {
            let name = snapshot_name(schedule, vm, run_time);
            if snapshots.iter().any(|s| s.name == name) {
                return VmRun::AlreadyMade { vm: vm.clone(), name };
            }
            let running = snapshots.iter().find(|s| &s.vm == vm && s.state == SnapshotState::InProgress);
            match running {
                Some(blocking) if forbid => VmRun::Skip { vm: vm.clone(), blocking: blocking.name.clone() },
                _ => VmRun::Create { vm: vm.clone(), name },
            }
        })
        .collect()
}

/// What retention does for one VM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmPruning {
    /// Succeeded snapshots kept (by the policy, or held by a restore).
    pub kept: usize,
    /// Snapshots to delete now (succeeded ones the policy drops, failed ones no longer telling).
    pub delete: Vec<String>,
    /// Snapshots the policy drops but a restore in progress uses: kept until it is done.
    pub held: Vec<String>,
}

/// Retention over a schedule's snapshots, per VM.
///
/// - Succeeded snapshots: `keep` applied as restic does, bucketed in `zone` by run time; those it
///   drops are deleted unless `in_use` (a restore in progress names them).
/// - Failed snapshots stay while they tell something: those newer than the VM's newest success,
///   at most `failures_kept` of them (the failure policy's threshold, so consecutive failures can
///   still be counted); the others go.
/// - Snapshots in progress or being deleted are left alone.
pub fn plan_pruning(
    keep: &KeepPolicy,
    zone: &TimeZone,
    now: Timestamp,
    failures_kept: usize,
    snapshots: &[ScheduledSnapshot],
    in_use: &BTreeSet<String>,
) -> BTreeMap<String, VmPruning> {
    let mut per_vm: BTreeMap<String, Vec<&ScheduledSnapshot>> = BTreeMap::new();
    for s in snapshots {
        per_vm.entry(s.vm.clone()).or_default().push(s);
    }
    per_vm
        .into_iter()
        .map(|(vm, list)| {
            let succeeded = list.iter().filter(|s| s.state == SnapshotState::Succeeded);
            let retention = keep.apply(succeeded.map(|s| (s.name.clone(), s.run_time)), zone, now);
            let mut pruning = VmPruning { kept: retention.keep.len(), ..Default::default() };
            for verdict in retention.remove {
                if in_use.contains(&verdict.id) {
                    pruning.kept += 1;
                    pruning.held.push(verdict.id);
                } else {
                    pruning.delete.push(verdict.id);
                }
            }
            let newest_success =
                list.iter().filter(|s| s.state == SnapshotState::Succeeded).map(|s| s.run_time).max();
            let mut failed: Vec<&&ScheduledSnapshot> =
                list.iter().filter(|s| s.state == SnapshotState::Failed).collect();
            failed.sort_by_key(|s| std::cmp::Reverse(s.run_time));
            for (index, s) in failed.into_iter().enumerate() {
                let superseded = newest_success.is_some_and(|t| t > s.run_time);
                if (superseded || index >= failures_kept) && !in_use.contains(&s.name) {
                    pruning.delete.push(s.name.clone());
                }
            }
            (vm, pruning)
        })
        .collect()
}

/// How many of the VM's finished runs failed in a row, newest first (runs in progress do not
/// count either way).
pub fn consecutive_failures(vm: &str, snapshots: &[ScheduledSnapshot]) -> usize {
    let mut finished: Vec<&ScheduledSnapshot> = snapshots
        .iter()
        .filter(|s| s.vm == vm && matches!(s.state, SnapshotState::Succeeded | SnapshotState::Failed))
        .collect();
    finished.sort_by_key(|s| std::cmp::Reverse(s.run_time));
    finished.iter().take_while(|s| s.state == SnapshotState::Failed).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fixtures::{snap, ts};

    fn every_minute() -> Schedule {
        Schedule::every("1m").unwrap()
    }

    #[test]
    fn a_run_is_due_at_its_minute_and_not_a_moment_before() {
        let created = ts("2025-01-01T10:00:30Z");
        let before = tick(&every_minute(), false, None, created, ts("2025-01-01T10:00:59.999Z"), None);
        assert_eq!(before, Tick::Wait { next: ts("2025-01-01T10:01:00Z") });
        let at = tick(&every_minute(), false, None, created, ts("2025-01-01T10:01:00Z"), None);
        assert_eq!(
            at,
            Tick::Run { scheduled: ts("2025-01-01T10:01:00Z"), next: ts("2025-01-01T10:02:00Z"), missed: 0 }
        );
        let taken = tick(
            &every_minute(),
            false,
            Some(ts("2025-01-01T10:01:00Z")),
            created,
            ts("2025-01-01T10:01:00.4Z"),
            None,
        );
        assert_eq!(taken, Tick::Wait { next: ts("2025-01-01T10:02:00Z") }, "a run is taken once");
        assert_eq!(
            until(ts("2025-01-01T10:02:00Z"), ts("2025-01-01T10:01:00.4Z")),
            Duration::from_millis(59_600)
        );
    }

    #[test]
    fn after_three_missed_ticks_one_catch_up_run_then_none_past_the_deadline() {
        let created = ts("2025-01-01T09:00:00Z");
        let last = Some(ts("2025-01-01T10:01:00Z"));
        let back = ts("2025-01-01T10:04:20Z");
        assert_eq!(
            tick(&every_minute(), false, last, created, back, Some(60)),
            Tick::Run { scheduled: ts("2025-01-01T10:04:00Z"), next: ts("2025-01-01T10:05:00Z"), missed: 2 }
        );
        assert_eq!(
            tick(&every_minute(), false, last, created, back, Some(10)),
            Tick::TooLate {
                scheduled: ts("2025-01-01T10:04:00Z"),
                next: ts("2025-01-01T10:05:00Z"),
                missed: 3
            }
        );
        assert_eq!(tick(&every_minute(), true, last, created, back, None), Tick::Suspended);
    }

    #[test]
    fn run_deadlines_fit_between_runs_within_bounds() {
        let at = ts("2025-01-01T10:00:00Z");
        assert_eq!(failure_deadline(at, ts("2025-01-01T10:01:00Z")), Duration::from_secs(50));
        assert_eq!(failure_deadline(at, ts("2025-01-01T11:00:00Z")), Duration::from_secs(300));
        assert_eq!(failure_deadline(at, ts("2025-01-01T10:00:20Z")), Duration::from_secs(30));
    }

    #[test]
    fn forbid_skips_a_vm_whose_earlier_run_is_in_progress_and_a_retry_finds_its_snapshot() {
        let run = ts("2025-01-01T10:05:00Z");
        let targets: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let made = ScheduledSnapshot {
            name: snapshot_name("s", "c", run),
            vm: "c".into(),
            run_time: run,
            state: SnapshotState::InProgress,
            error: None,
        };
        let snapshots =
            vec![snap("a", 4, SnapshotState::InProgress), snap("b", 4, SnapshotState::Failed), made];
        let plan = plan_run("s", run, true, &targets, &snapshots);
        assert_eq!(
            plan,
            vec![
                VmRun::Skip { vm: "a".into(), blocking: "s-a-202501011004".into() },
                VmRun::Create { vm: "b".into(), name: "s-b-202501011005".into() },
                VmRun::AlreadyMade { vm: "c".into(), name: "s-c-202501011005".into() },
            ]
        );
        let allow = plan_run("s", run, false, &targets, &snapshots);
        assert_eq!(allow[0], VmRun::Create { vm: "a".into(), name: "s-a-202501011005".into() });
    }

    #[test]
    fn keep_last_three_prunes_older_successes_per_vm_but_not_one_a_restore_uses() {
        use SnapshotState::*;
        let snapshots: Vec<ScheduledSnapshot> = (0..6)
            .map(|m| snap("a", m, Succeeded))
            .chain([snap("b", 0, Succeeded), snap("b", 1, InProgress), snap("a", 6, InProgress)])
            .collect();
        let keep = KeepPolicy { last: 3, ..Default::default() };
        let in_use: BTreeSet<String> = ["s-a-202501011001".to_string()].into();
        let plan = plan_pruning(&keep, &TimeZone::UTC, ts("2025-01-01T10:07:00Z"), 3, &snapshots, &in_use);
        assert_eq!(plan["a"].delete, vec!["s-a-202501011002", "s-a-202501011000"]);
        assert_eq!(plan["a"].held, vec!["s-a-202501011001"]);
        assert_eq!(plan["a"].kept, 4);
        assert_eq!(plan["b"], VmPruning { kept: 1, delete: vec![], held: vec![] });
    }

    #[test]
    fn failed_runs_stay_until_a_success_supersedes_them_at_most_the_failure_threshold() {
        use SnapshotState::*;
        let snapshots = vec![
            snap("a", 0, Failed),
            snap("a", 1, Succeeded),
            snap("a", 2, Failed),
            snap("a", 3, Failed),
            snap("a", 4, Failed),
            snap("a", 5, InProgress),
        ];
        let plan = plan_pruning(
            &KeepPolicy::default(),
            &TimeZone::UTC,
            ts("2025-01-01T10:06:00Z"),
            2,
            &snapshots,
            &BTreeSet::new(),
        );
        assert_eq!(plan["a"].delete, vec!["s-a-202501011002", "s-a-202501011000"]);
        assert_eq!(plan["a"].kept, 1, "an empty policy keeps every success");
        assert_eq!(consecutive_failures("a", &snapshots), 3);
        assert_eq!(consecutive_failures("b", &snapshots), 0);
    }
}
