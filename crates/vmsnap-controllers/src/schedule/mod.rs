//! The VirtualMachineSnapshotSchedule controller (vmsnap's own kind): at each run time it takes a
//! VirtualMachineSnapshot of each VM the schedule covers at that moment, then prunes the
//! schedule's snapshots per VM by its keep policy, and reports runs, results and failures.
//!
//! The decisions are pure ([`plan`], [`status`], unit-tested with fixed clocks); [`reconcile`]
//! reads, carries them out through the API and requeues itself at the next run time.
//!
//! - When: [`vmsnap_schedule::catch_up`], as a CronJob: after downtime one run (the latest due),
//!   within `startingDeadlineSeconds`, the others counted in `missedRuns`.
//! - Exactly once: a run's snapshots have deterministic names (schedule, VM, run minute), so a
//!   reconcile retried after a crash or a stale read finds them instead of making more; the run
//!   is recorded (`lastScheduleTime`) with the status write, which carries the `resourceVersion`
//!   it was computed from.
//! - What it makes it keeps: snapshots carry no owner reference to the schedule, so deleting the
//!   schedule leaves them (and their data) in place.

mod backups;
#[cfg(test)]
mod fixtures;
mod names;
mod observed;
mod plan;
mod reconcile;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use vmsnap_api::backup::VirtualMachineRepositoryBackup;
use vmsnap_api::schedule::{VirtualMachineSnapshotSchedule, labels};
use vmsnap_api::snapshot::VirtualMachineSnapshot;

pub use names::snapshot_name;

use crate::error::ReconcileError;

/// What the schedule reconciles share.
pub struct ScheduleContext {
    client: Client,
    events: Recorder,
}

/// Runs the controller until the stream ends; `instance` is the events' `reportingInstance`.
pub async fn run(client: Client, instance: String) {
    let reporter = Reporter { controller: "schedule-controller".into(), instance: Some(instance) };
    let ctx =
        Arc::new(ScheduleContext { events: Recorder::new(client.clone(), reporter), client: client.clone() });
    let made_by_a_schedule = watcher::Config::default().labels(labels::SCHEDULE);
    Controller::new(Api::<VirtualMachineSnapshotSchedule>::all(client.clone()), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config())
        .watches(Api::<VirtualMachineSnapshot>::all(client.clone()), made_by_a_schedule.clone(), |snapshot| {
            let schedule = snapshot.labels().get(labels::SCHEDULE)?;
            Some(ObjectRef::new(schedule).within(&snapshot.namespace().unwrap_or_default()))
        })
        .watches(Api::<VirtualMachineRepositoryBackup>::all(client), made_by_a_schedule, |backup| {
            let schedule = backup.labels().get(labels::SCHEDULE)?;
            Some(ObjectRef::new(schedule).within(&backup.namespace().unwrap_or_default()))
        })
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(
    schedule: Arc<VirtualMachineSnapshotSchedule>,
    error: &ReconcileError,
    _ctx: Arc<ScheduleContext>,
) -> Action {
    if error.is_stale() {
        return Action::requeue(crate::error::STALE_RETRY);
    }
    tracing::warn!(schedule = %schedule.name_any(), error = %error, "VirtualMachineSnapshotSchedule reconcile failed; retrying");
    // Soon: a run is due within 2 s of its time.
    Action::requeue(Duration::from_millis(500))
}
