//! Snapshot schedules with real guests (issue 16's "done when"): a one-minute schedule on VMs
//! selected by label takes every run within 2 s of its minute, keeps exactly the last three
//! snapshots per VM, and takes in a VM labelled in the middle at the next run; `vmsnap serve` down
//! for three ticks takes one catch-up run, not three; a VM whose guest freeze fails is reported on
//! the schedule and the VM while the other VMs' runs go on. The three run side by side.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use vmsnap_api::k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::support::*;

/// `examples/vm.yaml` renamed to `name`, with `labels` on the VM.
fn vm_yaml(name: &str, labels: &[(&str, &str)]) -> String {
    let text = std::fs::read_to_string(example("vm.yaml")).unwrap().replace("demo", name);
    let labels: String = labels.iter().map(|(k, v)| format!("\n    {k}: \"{v}\"")).collect();
    if labels.is_empty() {
        text
    } else {
        text.replacen(&format!("  name: {name}\n"), &format!("  name: {name}\n  labels:{labels}\n"), 1)
    }
}

async fn create_vms(vmsnap: &Vmsnap, vms: &[(&str, &[(&str, &str)])]) {
    for (name, labels) in vms {
        vmsnap.kubectl().run_stdin_async(&["apply", "-f", "-"], &vm_yaml(name, labels)).await.ok();
    }
    for (name, _) in vms {
        await_running_with_agent(vmsnap, name).await;
    }
}

/// Creates the VirtualMachineSnapshotSchedule `name` with `spec`.
async fn create_schedule(vmsnap: &Vmsnap, name: &str, spec: Value) {
    let schedule = json!({
        "apiVersion": "schedule.vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshotSchedule",
        "metadata": {"name": name}, "spec": spec,
    });
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &schedule.to_string()).await.ok();
}

/// A scheduled snapshot as seen: (VM, run time, lateness of its creation, phase).
#[derive(Clone, Debug)]
struct Seen {
    vm: String,
    run_time: Timestamp,
    late: SignedDuration,
    phase: String,
}

/// The schedule's snapshots now, by name.
async fn scheduled_snapshots(vmsnap: &Vmsnap, schedule: &str) -> BTreeMap<String, Seen> {
    let selector = format!("schedule.vmsnap.io/schedule={schedule}");
    let list: Value =
        serde_json::from_str(&kubectl(vmsnap, &["get", "vmsnapshot", "-l", &selector, "-o", "json"]).await)
            .unwrap();
    let time = |v: &Value| v.as_str().and_then(|t| t.parse::<Timestamp>().ok());
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let run_time = time(&s["metadata"]["annotations"]["schedule.vmsnap.io/run-time"])
                .expect("a run-time annotation");
            let created = time(&s["metadata"]["creationTimestamp"]).unwrap();
            let seen = Seen {
                vm: s["spec"]["source"]["name"].as_str().unwrap().to_owned(),
                run_time,
                late: created.duration_since(run_time),
                phase: s["status"]["phase"].as_str().unwrap_or_default().to_owned(),
            };
            (s["metadata"]["name"].as_str().unwrap().to_owned(), seen)
        })
        .collect()
}

/// Seconds until the next whole minute.
fn to_next_minute() -> Duration {
    let now = Timestamp::now();
    Duration::from_millis(60_000 - (now.as_millisecond().rem_euclid(60_000)) as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_minute_schedule_runs_on_time_keeps_the_last_three_and_takes_in_a_vm_labelled_later() {
    let Some(vmsnap) = start("tcg") else { return };
    let labelled: &[(&str, &str)] = &[("tier", "scheduled")];
    create_vms(
        &vmsnap,
        &[("sched-a", labelled), ("sched-b", labelled), ("sched-c", labelled), ("sched-d", &[])],
    )
    .await;
    let spec =
        json!({"selector": {"matchLabels": {"tier": "scheduled"}}, "every": "1m", "keep": {"last": 3}});
    create_schedule(&vmsnap, "minutely", spec).await;

    // Six runs; the fourth VM is labelled between the second and the third.
    let mut ever: BTreeMap<String, Seen> = BTreeMap::new();
    let mut labelled_at = None;
    let started = Timestamp::now();
    let observe_until = started
        + SignedDuration::from_secs(6 * 60)
        + SignedDuration::from_millis(to_next_minute().as_millis() as i64);
    while Timestamp::now() < observe_until {
        ever.extend(scheduled_snapshots(&vmsnap, "minutely").await);
        let runs: BTreeSet<Timestamp> = ever.values().map(|s| s.run_time).collect();
        if labelled_at.is_none() && runs.len() >= 2 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            kubectl(&vmsnap, &["label", "vm", "sched-d", "tier=scheduled"]).await;
            labelled_at = Some(Timestamp::now());
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let labelled_at = labelled_at.expect("two runs within six minutes");
    let runs: Vec<Timestamp> =
        ever.values().map(|s| s.run_time).collect::<BTreeSet<_>>().into_iter().collect();
    assert!(runs.len() >= 6, "six runs in six minutes, got {runs:?}");
    for pair in runs.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]),
            SignedDuration::from_mins(1),
            "a run every minute: {runs:?}"
        );
    }
    let lateness: Vec<f64> = ever.values().map(|s| s.late.as_secs_f64()).collect();
    println!("run lateness (creationTimestamp - run time, s, second resolution): {lateness:?}");
    for (name, seen) in &ever {
        assert!(
            seen.late >= SignedDuration::ZERO && seen.late <= SignedDuration::from_secs(2),
            "{name} was created {} s after its run time",
            seen.late.as_secs_f64()
        );
    }
    for run in &runs {
        let vms: BTreeSet<&str> =
            ever.values().filter(|s| s.run_time == *run).map(|s| s.vm.as_str()).collect();
        let mut expected: BTreeSet<&str> = ["sched-a", "sched-b", "sched-c"].into();
        if *run > labelled_at {
            expected.insert("sched-d");
        }
        assert_eq!(vms, expected, "the VMs of the run of {run} (sched-d labelled at {labelled_at})");
    }

    // The last run done and pruned: exactly the last three succeeded snapshots of each VM remain.
    let last = *runs.last().unwrap();
    until(
        "the last run to succeed and the older snapshots to be pruned",
        Duration::from_secs(150),
        async || {
            let now = scheduled_snapshots(&vmsnap, "minutely").await;
            let per_vm = |vm: &str| now.values().filter(|s| s.vm == vm).count();
            now.values().all(|s| s.phase == "Succeeded")
                && now.values().any(|s| s.run_time == last)
                && ["sched-a", "sched-b", "sched-c", "sched-d"].iter().all(|vm| per_vm(vm) == 3)
        },
    )
    .await;
    let now = scheduled_snapshots(&vmsnap, "minutely").await;
    // A run may have come while waiting: it is one of the last three then.
    ever.extend(now.clone());
    for vm in ["sched-a", "sched-b", "sched-c", "sched-d"] {
        let kept: Vec<Timestamp> = now
            .values()
            .filter(|s| s.vm == vm)
            .map(|s| s.run_time)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let newest: Vec<Timestamp> = ever
            .values()
            .filter(|s| s.vm == vm)
            .map(|s| s.run_time)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .rev()
            .take(3)
            .rev()
            .collect();
        assert_eq!(kept, newest, "{vm} keeps its last three");
    }
    let schedule = get_json(&vmsnap, "vmschedule", "minutely").await.unwrap();
    let vms = schedule["status"]["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 4, "{schedule:#}");
    for vm in vms {
        assert_eq!(vm["lastResult"], "Succeeded", "{schedule:#}");
        assert_eq!(vm["snapshotsKept"], 3, "{schedule:#}");
    }
    assert!(vms[0]["snapshotsPruned"].as_i64().unwrap() >= 3, "{schedule:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_for_three_ticks_takes_one_catch_up_run() {
    let Some(mut vmsnap) = start("tcg") else { return };
    create_vms(&vmsnap, &[("catchup", &[])]).await;
    let spec = json!({"vmName": "catchup", "every": "1m", "startingDeadlineSeconds": 120});
    create_schedule(&vmsnap, "catchup", spec).await;
    until("the first run", Duration::from_secs(75), async || {
        !scheduled_snapshots(&vmsnap, "catchup").await.is_empty()
    })
    .await;
    let first: Vec<Timestamp> =
        scheduled_snapshots(&vmsnap, "catchup").await.values().map(|s| s.run_time).collect();
    assert_eq!(first.len(), 1);

    // Down from just after the first run until 10 s after the third tick it misses.
    tokio::time::sleep(Duration::from_secs(5)).await;
    vmsnap.stop();
    let back_at = first[0] + SignedDuration::from_secs(3 * 60 + 10);
    tokio::time::sleep(Duration::try_from(back_at.duration_since(Timestamp::now())).unwrap()).await;
    vmsnap.restart().expect("vmsnap serve starts again");

    until("the catch-up run", Duration::from_secs(60), async || {
        scheduled_snapshots(&vmsnap, "catchup").await.len() == 2
    })
    .await;
    let missed_tick = first[0] + SignedDuration::from_mins(3);
    let runs: BTreeSet<Timestamp> =
        scheduled_snapshots(&vmsnap, "catchup").await.values().map(|s| s.run_time).collect();
    assert_eq!(runs, [first[0], missed_tick].into(), "one catch-up run, for the latest missed tick");
    let schedule = get_json(&vmsnap, "vmschedule", "catchup").await.unwrap();
    assert_eq!(schedule["status"]["missedRuns"], 2, "{schedule:#}");
    // And the schedule goes on from there, without the older missed ticks.
    until("the next regular run", Duration::from_secs(75), async || {
        scheduled_snapshots(&vmsnap, "catchup").await.len() == 3
    })
    .await;
    let runs: BTreeSet<Timestamp> =
        scheduled_snapshots(&vmsnap, "catchup").await.values().map(|s| s.run_time).collect();
    assert_eq!(runs, [first[0], missed_tick, missed_tick + SignedDuration::from_mins(1)].into());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_whose_freeze_fails_is_reported_while_the_others_runs_go_on() {
    let Some(vmsnap) = start("tcg") else { return };
    let labelled: &[(&str, &str)] = &[("backup", "yes")];
    create_vms(&vmsnap, &[("frozen-ok", labelled), ("frozen-bad", labelled)]).await;
    let fail_freeze = "printf '#!/bin/sh\\n[ \"$1\" != freeze ]\\n' > /etc/qemu/fsfreeze-hook.d/00-fail && \
                       chmod +x /etc/qemu/fsfreeze-hook.d/00-fail";
    vmsnap.sh("frozen-bad", fail_freeze).await.unwrap();
    let spec = json!({
        "selector": {"matchLabels": {"backup": "yes"}}, "every": "1m",
        "failurePolicy": {"consecutiveFailures": 2},
    });
    create_schedule(&vmsnap, "freezing", spec).await;
    let vm_status = |schedule: &Value, vm: &str| -> Value {
        schedule["status"]["vms"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == vm)
            .cloned()
            .unwrap_or_default()
    };
    // The first run: the bad VM's snapshot shows the freeze error while it is retried, the good one succeeds.
    until("the bad VM's freeze error on the schedule", Duration::from_secs(120), async || {
        let schedule = get_json(&vmsnap, "vmschedule", "freezing").await.unwrap();
        let bad = vm_status(&schedule, "frozen-bad");
        bad["lastResult"] == "InProgress" && bad["message"].as_str().is_some_and(|m| m.contains("Freeze"))
    })
    .await;
    // Two failed runs (each fails at its deadline, before the next run): a Failure condition and
    // events on the schedule and on the VM; the good VM succeeds at every run meanwhile.
    until("two failed runs of the bad VM", Duration::from_secs(200), async || {
        let schedule = get_json(&vmsnap, "vmschedule", "freezing").await.unwrap();
        conditions(&schedule).contains(&("Failure".into(), "True".into(), "ConsecutiveFailures".into()))
    })
    .await;
    let schedule = get_json(&vmsnap, "vmschedule", "freezing").await.unwrap();
    let bad = vm_status(&schedule, "frozen-bad");
    assert_eq!(
        (bad["lastResult"].as_str(), bad["consecutiveFailures"].as_i64()),
        (Some("Failed"), Some(2)),
        "{schedule:#}"
    );
    let good = vm_status(&schedule, "frozen-ok");
    assert_eq!(good["consecutiveFailures"], 0, "{schedule:#}");
    let snapshots = scheduled_snapshots(&vmsnap, "freezing").await;
    let good_runs = snapshots.values().filter(|s| s.vm == "frozen-ok" && s.phase == "Succeeded").count();
    assert!(good_runs >= 2, "the good VM's runs went on: {snapshots:#?}");
    let events = kubectl(
        &vmsnap,
        &["get", "events", "--field-selector", "reason=ScheduledSnapshotFailed", "-o", "json"],
    )
    .await;
    let events: Value = serde_json::from_str(&events).unwrap();
    let regarding: BTreeSet<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["involvedObject"]["kind"].as_str().unwrap_or_default(),
                e["involvedObject"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(regarding.contains("VirtualMachine/frozen-bad"), "{events:#}");
    assert!(regarding.contains("VirtualMachineSnapshotSchedule/freezing"), "{events:#}");
}
