//! One reconcile of a schedule: read, decide ([`super::plan`]), act through the API, write the
//! status ([`super::status`]), publish events, and requeue at the next run time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, TypedLocalObjectReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;

use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::kubevirt::{self, VirtualMachine};
use vmsnap_api::label_selector::Selector;
use vmsnap_api::schedule::{
    VirtualMachineSnapshotSchedule, VirtualMachineSnapshotScheduleSpec, annotations, concurrency_policy,
    labels,
};
use vmsnap_api::snapshot::{VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotSpec};
use vmsnap_schedule::{Interval, KeepPolicy, KeepWithin, Schedule, When};

use super::ScheduleContext;
use super::backups::BackupPass;
use super::names::NAME_LIMIT;
use super::observed::{ScheduledSnapshot, SnapshotState};
use super::plan::{self, Tick, VmRun};
use super::status::{self, Observation};
use crate::error::ReconcileError;
use crate::kube_util::{error_message, patch_status};

/// Snapshots of one run created at once.
const CONCURRENT_CREATES: usize = 16;

/// `failurePolicy.consecutiveFailures` when unset.
const DEFAULT_FAILURE_THRESHOLD: usize = 3;

/// The spec read into `vmsnap-schedule`'s types.
struct Parsed {
    schedule: Schedule,
    keep: KeepPolicy,
    backup_keep: KeepPolicy,
}

fn count(n: Option<i32>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

fn parse(spec: &VirtualMachineSnapshotScheduleSpec) -> Result<Parsed, String> {
    let zone = spec.time_zone.as_deref();
    let schedule = match (spec.cron.as_deref(), spec.every.as_deref()) {
        (Some(cron), None) => Schedule::cron(cron, zone).map_err(|e| format!("spec.cron: {e}"))?,
        (None, Some(every)) => {
            let interval: Interval = every.parse().map_err(|e| format!("spec.every: {e}"))?;
            Schedule::new(When::Every(interval), zone).map_err(|e| format!("spec.timeZone: {e}"))?
        }
        _ => return Err("spec: set exactly one of cron and every".into()),
    };
    if spec.vm_name.is_some() == spec.selector.is_some() {
        return Err("spec: set exactly one of vmName and selector".into());
    }
    let keep = keep_policy(spec.keep.as_ref(), "spec.keep")?;
    let backup_keep = keep_policy(spec.backup_keep.as_ref(), "spec.backupKeep")?;
    Ok(Parsed { schedule, keep, backup_keep })
}

/// A keep policy of the spec (`field` names it in messages); unset keeps everything.
fn keep_policy(keep: Option<&vmsnap_api::schedule::KeepPolicy>, field: &str) -> Result<KeepPolicy, String> {
    let keep = keep.cloned().unwrap_or_default();
    let within = keep
        .within
        .as_deref()
        .map(|w| w.parse::<KeepWithin>().map_err(|e| format!("{field}.within: {e}")))
        .transpose()?;
    Ok(KeepPolicy {
        last: count(keep.last),
        hourly: count(keep.hourly),
        daily: count(keep.daily),
        weekly: count(keep.weekly),
        monthly: count(keep.monthly),
        yearly: count(keep.yearly),
        within,
    })
}

/// Reconciles one schedule.
pub async fn reconcile(
    schedule: Arc<VirtualMachineSnapshotSchedule>,
    ctx: Arc<ScheduleContext>,
) -> Result<Action, ReconcileError> {
    if schedule.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    let schedules: Api<VirtualMachineSnapshotSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let old = schedule.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let parsed = match parse(&schedule.spec) {
        Ok(parsed) => parsed,
        Err(problem) => {
            let new = status::invalid_status(&old, &problem, now);
            patch_status(&schedules, schedule.as_ref(), Some(&old), &new).await?;
            return Ok(Action::await_change());
        }
    };
    let Some(created) = schedule.metadata.creation_timestamp.as_ref().map(|t| t.0) else {
        return Ok(Action::await_change());
    };
    let spec = &schedule.spec;
    let tick = plan::tick(
        &parsed.schedule,
        spec.suspend == Some(true),
        old.last_schedule_time.as_ref().map(|t| t.0),
        created,
        now,
        spec.starting_deadline_seconds,
    );

    let snapshots_api: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), &ns);
    let by_schedule = ListParams::default().labels(&format!("{}={name}", labels::SCHEDULE));
    let snapshots: Vec<ScheduledSnapshot> = snapshots_api
        .list(&by_schedule)
        .await?
        .items
        .iter()
        .filter_map(ScheduledSnapshot::from_snapshot)
        .collect();

    let mut runs = Vec::new();
    if let Tick::Run { scheduled, next, .. } = tick {
        let targets = targets(&ctx, &ns, spec).await?;
        let forbid = spec.concurrency_policy.as_deref() != Some(concurrency_policy::ALLOW);
        let mut planned = plan::plan_run(&name, scheduled, forbid, &targets.found, &snapshots);
        planned.extend(targets.missing.into_iter().map(|(vm, message)| VmRun::Refused { vm, message }));
        // Created 16 at once: a run of 100 VMs must start within 2 s of its time, and one create
        // after the other queues each behind the admission and commit of all before it.
        let snapshots_api = &snapshots_api;
        let name = &name;
        runs = futures::stream::iter(planned)
            .map(|run| async move {
                match run {
                    VmRun::Create { vm, name: snapshot } => {
                        let object = new_snapshot(name, &vm, &snapshot, scheduled, next);
                        match snapshots_api.create(&PostParams::default(), &object).await {
                            Ok(_) => VmRun::Create { vm, name: snapshot },
                            Err(e) if vmsnap_contracts::controller::is_conflict(&e) => {
                                VmRun::AlreadyMade { vm, name: snapshot }
                            }
                            Err(e) => VmRun::Refused {
                                message: format!(
                                    "could not create snapshot {snapshot}: {}",
                                    error_message(&e)
                                ),
                                vm,
                            },
                        }
                    }
                    other => other,
                }
            })
            .buffered(CONCURRENT_CREATES)
            .collect()
            .await;
    }

    // The snapshots this run just made count as in progress: the older ones they supersede are
    // not backed up any more.
    let mut with_this_run = snapshots.clone();
    if let Tick::Run { scheduled, .. } = tick {
        for run in &runs {
            if let VmRun::Create { vm, name: made } | VmRun::AlreadyMade { vm, name: made } = run
                && !with_this_run.iter().any(|s| &s.name == made)
            {
                with_this_run.push(ScheduledSnapshot {
                    name: made.clone(),
                    vm: vm.clone(),
                    run_time: scheduled,
                    state: SnapshotState::InProgress,
                    error: None,
                });
            }
        }
    }
    let backups = BackupPass::run(
        &ctx.client,
        &ns,
        &name,
        spec.backup_to.as_deref(),
        Some(&parsed.backup_keep),
        parsed.schedule.time_zone(),
        now,
        &with_this_run,
    )
    .await?;
    let mut in_use = snapshots_in_use(&ctx, &ns).await?;
    in_use.extend(backups.snapshots_in_use.iter().cloned());
    let threshold = spec
        .failure_policy
        .as_ref()
        .and_then(|f| f.consecutive_failures)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_FAILURE_THRESHOLD);
    let pruning =
        plan::plan_pruning(&parsed.keep, parsed.schedule.time_zone(), now, threshold, &snapshots, &in_use);
    let mut pruned_now: BTreeMap<String, usize> = BTreeMap::new();
    for (vm, plan) in &pruning {
        for doomed in &plan.delete {
            match snapshots_api.delete(doomed, &DeleteParams::default()).await {
                Ok(_) => *pruned_now.entry(vm.clone()).or_default() += 1,
                Err(gone) if vmsnap_contracts::controller::is_not_found(&gone) => {}
                Err(e) => {
                    tracing::warn!(snapshot = %doomed, error = %error_message(&e), "could not prune a scheduled snapshot")
                }
            }
        }
    }

    let seen = Observation {
        now,
        tick,
        runs: &runs,
        snapshots: &snapshots,
        pruning: &pruning,
        pruned_now: &pruned_now,
        failure_threshold: threshold,
        backups: &backups,
    };
    let outcome = status::next_status(&old, &seen);
    patch_status(&schedules, schedule.as_ref(), Some(&old), &outcome.status).await?;

    let regarding = schedule.object_ref(&());
    publish_run_events(&ctx, &regarding, tick, &runs).await;
    for (pruned_vm, n) in &pruned_now {
        let note = format!("pruned {n} snapshot(s) of VM {pruned_vm} by the keep policy");
        ctx.event(&regarding, false, "SnapshotsPruned", note).await;
    }
    if !backups.made.is_empty() {
        let made: Vec<&str> = backups.made.iter().map(|(_, backup)| backup.as_str()).collect();
        let note = format!(
            "backing up to repository {}: {}",
            spec.backup_to.as_deref().unwrap_or_default(),
            made.join(", ")
        );
        ctx.event(&regarding, false, "BackupsCreated", note).await;
    }
    for (pruned_vm, n) in &backups.pruned_now {
        let note = format!("pruned {n} backup(s) of VM {pruned_vm} by the backup keep policy");
        ctx.event(&regarding, false, "BackupsPruned", note).await;
    }
    for failed in &outcome.newly_failed {
        let note = format!(
            "scheduled snapshot {} of VM {} failed ({} in a row): {}",
            failed.snapshot, failed.vm, failed.consecutive, failed.message
        );
        ctx.event(&regarding, true, "ScheduledSnapshotFailed", note.clone()).await;
        ctx.event(
            &vm_reference(&ns, &failed.vm),
            true,
            "ScheduledSnapshotFailed",
            format!("schedule {name}: {note}"),
        )
        .await;
    }
    for failing in &outcome.newly_failing {
        let suspend = spec.failure_policy.as_ref().and_then(|f| f.suspend) == Some(true);
        let note = format!(
            "VM {}: {} runs in a row failed{}",
            failing.vm,
            failing.consecutive,
            if suspend { "; suspending the schedule (failurePolicy.suspend)" } else { "" }
        );
        ctx.event(&regarding, true, "ConsecutiveFailures", note).await;
        if suspend {
            let patch = json!({"spec": {"suspend": true}});
            schedules.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
    }

    Ok(match tick {
        Tick::Suspended => Action::await_change(),
        Tick::Wait { next } | Tick::Run { next, .. } | Tick::TooLate { next, .. } => {
            Action::requeue(plan::until(next, Timestamp::now()))
        }
    })
}

/// The VMs a run covers: found (by name, or matching the selector now) and those named but missing.
struct Targets {
    found: BTreeSet<String>,
    missing: Vec<(String, String)>,
}

async fn targets(
    ctx: &ScheduleContext,
    ns: &str,
    spec: &VirtualMachineSnapshotScheduleSpec,
) -> Result<Targets, ReconcileError> {
    let vms: Api<VirtualMachine> = Api::namespaced(ctx.client.clone(), ns);
    let mut targets = Targets { found: BTreeSet::new(), missing: Vec::new() };
    if let Some(vm) = &spec.vm_name {
        match vms.get_opt(vm).await? {
            Some(found) if found.metadata.deletion_timestamp.is_none() => {
                targets.found.insert(vm.clone());
            }
            _ => targets.missing.push((vm.clone(), format!("VM {vm} does not exist in namespace {ns}"))),
        }
    } else if let Some(selector) = &spec.selector {
        // The one renderer of selectors (kubectl's text form, as `?labelSelector=` takes it).
        let query = Selector::try_from(selector).map_err(ReconcileError::BadSelector)?.to_string();
        for vm in vms.list(&ListParams::default().labels(&query)).await?.items {
            if vm.metadata.deletion_timestamp.is_none() {
                targets.found.insert(vm.name_any());
            }
        }
    }
    Ok(targets)
}

/// Snapshots named by a restore that is not complete: retention keeps them.
async fn snapshots_in_use(ctx: &ScheduleContext, ns: &str) -> Result<BTreeSet<String>, ReconcileError> {
    let restores: Api<VirtualMachineRestore> = Api::namespaced(ctx.client.clone(), ns);
    Ok(restores
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.status.as_ref().and_then(|s| s.complete) != Some(true))
        .map(|r| r.spec.virtual_machine_snapshot_name)
        .collect())
}

/// The snapshot a run makes of `vm`: labelled with the schedule (and the VM), annotated with the
/// run time, no owner reference (deleting the schedule keeps it), failing before the next run.
fn new_snapshot(
    schedule: &str,
    vm: &str,
    name: &str,
    scheduled: Timestamp,
    next: Timestamp,
) -> VirtualMachineSnapshot {
    let deadline = plan::failure_deadline(scheduled, next);
    let mut snapshot = VirtualMachineSnapshot::new(
        name,
        VirtualMachineSnapshotSpec {
            source: TypedLocalObjectReference {
                api_group: Some(kubevirt::GROUP.into()),
                kind: "VirtualMachine".into(),
                name: vm.into(),
            },
            failure_deadline: Some(vmsnap_api::duration::format(deadline)),
            ..Default::default()
        },
    );
    let mut snapshot_labels = BTreeMap::from([(labels::SCHEDULE.to_string(), schedule.to_string())]);
    if vm.len() <= NAME_LIMIT {
        snapshot_labels.insert(labels::VM.into(), vm.into());
    }
    snapshot.metadata.labels = Some(snapshot_labels);
    snapshot.metadata.annotations =
        Some(BTreeMap::from([(annotations::RUN_TIME.into(), scheduled.to_string())]));
    snapshot
}

fn vm_reference(ns: &str, vm: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(VirtualMachine::api_version(&()).into_owned()),
        kind: Some(VirtualMachine::kind(&()).into_owned()),
        name: Some(vm.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

async fn publish_run_events(ctx: &ScheduleContext, regarding: &ObjectReference, tick: Tick, runs: &[VmRun]) {
    match tick {
        Tick::Run { scheduled, missed, .. } => {
            let made: Vec<&str> = runs
                .iter()
                .filter_map(|r| match r {
                    VmRun::Create { name, .. } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            if !made.is_empty() {
                ctx.event(
                    regarding,
                    false,
                    "SnapshotsCreated",
                    format!("run of {scheduled}: created {}", made.join(", ")),
                )
                .await;
            }
            for run in runs {
                match run {
                    VmRun::Skip { vm, blocking } => {
                        let note = format!(
                            "run of {scheduled}: skipped VM {vm}: its snapshot {blocking} is still in progress (concurrencyPolicy Forbid)"
                        );
                        ctx.event(regarding, true, "RunSkipped", note).await;
                    }
                    VmRun::Refused { vm, message } => {
                        ctx.event(
                            regarding,
                            true,
                            "RunFailed",
                            format!("run of {scheduled}: VM {vm}: {message}"),
                        )
                        .await;
                    }
                    _ => {}
                }
            }
            if missed > 0 {
                let note = format!(
                    "took the run of {scheduled} late (catch-up after downtime); {missed} earlier run time(s) were not taken"
                );
                ctx.event(regarding, true, "MissedSchedule", note).await;
            }
        }
        Tick::TooLate { scheduled, missed, .. } => {
            let note = format!(
                "missed the run of {scheduled} and {} earlier: it is past startingDeadlineSeconds",
                missed.saturating_sub(1)
            );
            ctx.event(regarding, true, "MissedSchedule", note).await;
        }
        Tick::Suspended | Tick::Wait { .. } => {}
    }
}

impl ScheduleContext {
    /// Publishes an event; failures are logged, never fatal.
    async fn event(&self, regarding: &ObjectReference, warning: bool, reason: &str, note: String) {
        let event = vmsnap_contracts::controller::event(warning, reason, note);
        if let Err(e) = self.events.publish(&event, regarding).await {
            tracing::warn!(error = %e, %reason, "could not record an event");
        }
    }
}
