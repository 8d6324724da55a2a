//! `VirtualMachineSnapshotSchedule` (`schedule.vmsnap.io/v1alpha1`): snapshots (and optionally
//! backups) of VMs taken on a cron schedule or an interval, pruned by a restic-style keep policy.
//! vmsnap's own kind (KubeVirt has no snapshot schedule); the semantics of its fields live in the
//! `vmsnap-schedule` crate (when it runs, missed runs, retention).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

use crate::snapshot::Condition;

custom_resource! {
    /// The desired schedule. Exactly one of `vmName` and `selector`, and exactly one of `cron` and
    /// `every`, must be set (checked at admission).
    #[kube(group = "schedule.vmsnap.io", version = "v1alpha1", kind = "VirtualMachineSnapshotSchedule")]
    #[kube(namespaced, status = "VirtualMachineSnapshotScheduleStatus")]
    #[kube(shortname = "vmschedule", shortname = "vmschedules", category = "all")]
    #[kube(doc = "VirtualMachineSnapshotSchedule takes snapshots of VMs on a schedule and prunes them by a keep policy")]
    #[kube(printcolumn(name = "Cron", type_ = "string", json_path = ".spec.cron"))]
    #[kube(printcolumn(name = "Every", type_ = "string", json_path = ".spec.every"))]
    #[kube(printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"))]
    #[kube(printcolumn(name = "LastSuccess", type_ = "date", json_path = ".status.lastSuccessTime"))]
    #[kube(printcolumn(name = "NextRun", type_ = "string", json_path = ".status.nextRunTime"))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineSnapshotScheduleSpec {
        /// The one VM (in the schedule's namespace) to snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub vm_name: Option<String>,
        /// The VMs to snapshot: those of the namespace matching this selector at each run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub selector: Option<LabelSelector>,
        /// A five-field cron expression (`30 2 * * *`, `@daily`), minute granularity, in `timeZone`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cron: Option<String>,
        /// A fixed interval of elapsed time (`15m`, `1h`, `1d`; whole minutes, at least `1m`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub every: Option<String>,
        /// The IANA time zone of `cron` (`Europe/Berlin`); UTC when unset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub time_zone: Option<String>,
        /// How many seconds late a run may still start after downtime; unset means no limit. Runs
        /// missed during downtime are taken once (the latest), as Kubernetes CronJobs do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub starting_deadline_seconds: Option<i64>,
        /// No new runs while true; runs in progress go on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub suspend: Option<bool>,
        /// `Forbid` (default): skip a VM's run while its previous run is still going; `Allow`: start
        /// it anyway.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub concurrency_policy: Option<String>,
        /// What happens after repeated failures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub failure_policy: Option<FailurePolicy>,
        /// Which snapshots made by this schedule to keep (per VM); unset or empty keeps all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keep: Option<KeepPolicy>,
        /// The backup repository to back each new snapshot up to; unset takes snapshots only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub backup_to: Option<String>,
        /// Which backups made by this schedule to keep (per VM), separately from `keep`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub backup_keep: Option<KeepPolicy>,
    }
}

/// Concurrency policies.
pub mod concurrency_policy {
    /// Skip a VM's run while its previous one runs (the default).
    pub const FORBID: &str = "Forbid";
    /// Start a VM's run even if its previous one still runs.
    pub const ALLOW: &str = "Allow";
}

/// What happens after consecutive failed runs of a VM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailurePolicy {
    /// After this many consecutive failures of a VM's runs, the schedule gets a `Failure`
    /// condition and an event (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    /// Also suspend the schedule then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// A keep policy with the semantics of `restic forget --keep-*`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeepPolicy {
    /// Keep the newest N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<i32>,
    /// Keep the newest of each of the newest N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<i32>,
    /// ... days (in the schedule's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<i32>,
    /// ... ISO weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<i32>,
    /// ... months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<i32>,
    /// ... years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<i32>,
    /// Keep all within this duration of the newest (`1y2m3d4h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

impl KeepPolicy {
    /// The counts by their flag's name (`last`, `hourly`, ... `yearly`), in restic's order.
    pub fn counts(&self) -> [(&'static str, Option<i32>); 6] {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }
}

/// The observed schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSnapshotScheduleStatus {
    /// The last run time dealt with: run, or missed past the starting deadline (the CronJob's
    /// field). Catch-up after downtime counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_schedule_time: Option<Time>,
    /// The run time of the last run started (the scheduled time, not the wall-clock start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_run_time: Option<Time>,
    /// The run time of the last run in which every VM succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_success_time: Option<Time>,
    /// The next run time (unset while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub next_run_time: Option<Time>,
    /// Run times that passed without a run (downtime, a starting deadline), in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_runs: Option<i64>,
    /// Per VM: its last result and what retention did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<ScheduledVmStatus>,
    /// `Ready` (scheduled, or why not), `Progressing` (a run's snapshots are being taken, or the
    /// next run awaited) and `Failure` (a VM's runs failed `failurePolicy.consecutiveFailures`
    /// times in a row), KubeVirt's condition types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One VM's part of a schedule's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledVmStatus {
    /// The VM.
    pub name: String,
    /// The run time of its last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_run_time: Option<Time>,
    /// `InProgress`, `Succeeded`, `Failed` or `Skipped` (previous run still going under `Forbid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The snapshot its last run made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot_name: Option<String>,
    /// The backup its last run made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_name: Option<String>,
    /// Failed runs in a row (reset by a success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    /// Snapshots of this schedule kept for this VM after the last pruning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_kept: Option<i32>,
    /// Snapshots of this schedule pruned for this VM, in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_pruned: Option<i64>,
    /// Backups kept after the last pruning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups_kept: Option<i32>,
    /// Backups pruned, in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups_pruned: Option<i64>,
}

/// Run results of [`ScheduledVmStatus::last_result`].
pub mod run_result {
    /// The snapshot is being taken (its message says what it awaits or what went wrong so far).
    pub const IN_PROGRESS: &str = "InProgress";
    /// The snapshot (and backup) was made.
    pub const SUCCEEDED: &str = "Succeeded";
    /// It failed; see the message.
    pub const FAILED: &str = "Failed";
    /// Not started: the previous run of the VM still runs (`Forbid`).
    pub const SKIPPED: &str = "Skipped";
}

/// Labels on what a schedule makes.
pub mod labels {
    /// On snapshots and backups made by a schedule: the schedule's name.
    pub const SCHEDULE: &str = "schedule.vmsnap.io/schedule";
    /// On snapshots made by a schedule: the VM's name (when it fits in a label value).
    pub const VM: &str = "schedule.vmsnap.io/vm";
}

/// Annotations on what a schedule makes.
pub mod annotations {
    /// The run time (RFC 3339, UTC) a snapshot was made for: retention buckets it by this time.
    pub const RUN_TIME: &str = "schedule.vmsnap.io/run-time";
}
