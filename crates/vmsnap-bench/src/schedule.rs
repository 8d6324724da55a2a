//! Schedule section, two parts:
//! - On time: 100 stopped VMs (a small DataVolume each) selected by label by one schedule that
//!   runs every minute and keeps the last 3, for 10 runs. A watch on the schedule's snapshots
//!   measures how late each one appears after its run time (target p99 <= 2 s), while the API
//!   probe measures the API's latency (target p99 <= 50 ms; baseline: idle).
//! - Under pruning: one running VM with a full data disk; 100 snapshots made on a schedule's
//!   behalf (labelled with it, a minute of run time apart) while the schedule keeps the last 5 and
//!   compaction runs every 5 s. Then the volume's layer chain length and the guest's read
//!   throughput (target >= 90 % of before the snapshots).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::schedule::{VirtualMachineSnapshotSchedule, annotations, labels};
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use crate::guest;
use crate::lab::Lab;
use crate::probe::{Probed, all, join, spawn_probe};
use crate::stats::percentile;
use crate::vms::{NS, snapshot_manifest, vm_manifest};
use crate::{BenchOptions, Report, Row};

const SECTION: &str = "schedule";
const VMS: usize = 100;
const RUNS: usize = 10;
const PROBED: Probed = Probed { vm_prefix: "sv", count: VMS };
const PRUNED_SNAPSHOTS: usize = 100;
const KEEP_LAST: usize = 5;
const COMPACTION: Duration = Duration::from_secs(5);

/// Runs the section.
pub(crate) async fn run(options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    report.section(&format!(
        "schedule: {VMS} VMs on a 1-minute schedule for {RUNS} runs (lateness, API latency); {PRUNED_SNAPSHOTS} scheduled snapshots of a running VM with keep-last {KEEP_LAST} (chain length, read throughput)"
    ));
    let lab = options.start_lab(true, Some(COMPACTION)).await?;
    let on_time = on_time(&lab, report).await;
    let pruning = match on_time {
        Ok(()) => under_pruning(&lab, options, report).await,
        Err(e) => Err(e),
    };
    lab.shutdown().await;
    pruning
}

async fn on_time(lab: &Lab, report: &mut Report) -> anyhow::Result<()> {
    let vms: Api<VirtualMachine> = Api::namespaced(lab.client.clone(), NS);
    futures::stream::iter(0..VMS)
        .map(|i| {
            let vms = vms.clone();
            async move {
                let mut manifest = vm_manifest(&format!("sv{i}"), 1, "16Mi", false);
                manifest["metadata"]["labels"] = json!({"bench": "schedule"});
                let vm: VirtualMachine = serde_json::from_value(manifest)?;
                vms.create(&PostParams::default(), &vm).await.with_context(|| format!("create VM sv{i}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let dvs: Api<DataVolume> = Api::namespaced(lab.client.clone(), NS);
    let started = Instant::now();
    loop {
        let ready = dvs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|dv| dv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
            .count();
        if ready >= VMS {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {ready} of {VMS} DataVolumes succeeded after 10 minutes");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let idle = join(spawn_probe(lab, PROBED, Some(Duration::from_secs(5)), Arc::new(AtomicBool::new(false))))
        .await?;

    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(lab.client.clone(), NS);
    let watched = watcher::Config::default().labels(&format!("{}=every-minute", labels::SCHEDULE));
    let mut events = watcher::watcher(snapshots.clone(), watched).boxed();
    let schedule: VirtualMachineSnapshotSchedule = serde_json::from_value(json!({
        "apiVersion": "schedule.vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshotSchedule",
        "metadata": {"name": "every-minute", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"bench": "schedule"}}, "every": "1m", "keep": {"last": 3}}
    }))?;
    let schedules: Api<VirtualMachineSnapshotSchedule> = Api::namespaced(lab.client.clone(), NS);
    schedules.create(&PostParams::default(), &schedule).await.context("create the schedule")?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = spawn_probe(lab, PROBED, None, stop.clone());

    // Lateness of each snapshot: when the watch first shows it, after its run time.
    let mut first_seen: BTreeMap<String, f64> = BTreeMap::new();
    let mut run_times = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60 * (RUNS as u64 + 1) + 30);
    while run_times.len() < RUNS || first_seen.len() < RUNS * VMS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(event)) = tokio::time::timeout(remaining, events.next()).await else { break };
        let seen_at = jiff::Timestamp::now();
        let object = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => object,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("  (the snapshot watch failed: {e}; it restarts)");
                continue;
            }
        };
        let Some(name) = object.metadata.name.clone() else { continue };
        let Some(run_time) = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::RUN_TIME))
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        if run_times.len() >= RUNS && !run_times.contains(&run_time) {
            continue;
        }
        run_times.insert(run_time);
        first_seen
            .entry(name)
            .or_insert_with(|| (seen_at - run_time).total(jiff::Unit::Second).unwrap_or(f64::MAX));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let busy = join(prober).await?;
    let late: Vec<f64> = first_seen.values().copied().collect();
    if late.len() < RUNS * VMS {
        report.note(SECTION, format!("only {} of {} scheduled snapshots were seen", late.len(), RUNS * VMS));
    }
    if late.is_empty() {
        bail!("no scheduled snapshot appeared");
    }
    let p99 = percentile(&late, 99.0);
    report.add(
        Row::new(
            SECTION,
            format!("run lateness p99 ({} snapshots of {} runs)", late.len(), run_times.len()),
            p99,
            "s",
        )
        .target("<= 2 s", p99 <= 2.0),
    );
    report.add(Row::new(SECTION, "run lateness p50", percentile(&late, 50.0), "s"));
    let (busy, idle) = (all(&busy), all(&idle));
    let api_p99 = percentile(&busy, 99.0);
    report.add(
        Row::new(
            SECTION,
            format!("API latency p99 meanwhile ({} requests; baseline: idle)", busy.len()),
            api_p99,
            "ms",
        )
        .baseline(percentile(&idle, 99.0))
        .target("<= 50 ms", api_p99 <= 50.0),
    );
    let kept = snapshots
        .list(&ListParams::default().labels(&format!("{}=every-minute", labels::SCHEDULE)))
        .await?
        .items
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .count();
    println!("  ({kept} snapshots of the schedule left for {VMS} VMs with keep-last 3)");
    schedules.delete("every-minute", &Default::default()).await?;
    Ok(())
}

async fn under_pruning(lab: &Lab, options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    let gib = options.sizes_gib.iter().copied().min().unwrap_or(1);
    let name = "pruned";
    let guest = lab.running_vm(name, 1, &format!("{gib}Gi"), true).await?;
    let (dev, mib) = guest::first_disk_device(&guest).await?;
    let before = guest::read_throughput(&guest, &dev, mib, options.runs).await?;

    // A suspended schedule takes no snapshot itself, but prunes those labelled with it.
    let schedule: VirtualMachineSnapshotSchedule = serde_json::from_value(json!({
        "apiVersion": "schedule.vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshotSchedule",
        "metadata": {"name": "keep-five", "namespace": NS},
        "spec": {"vmName": name, "every": "1m", "suspend": true, "keep": {"last": KEEP_LAST}}
    }))?;
    let schedules: Api<VirtualMachineSnapshotSchedule> = Api::namespaced(lab.client.clone(), NS);
    schedules.create(&PostParams::default(), &schedule).await.context("create the schedule")?;
    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(lab.client.clone(), NS);
    let first_run = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(PRUNED_SNAPSHOTS as i64);
    for i in 0..PRUNED_SNAPSHOTS {
        let run_time = first_run + jiff::SignedDuration::from_mins(i as i64);
        let mut manifest = snapshot_manifest(name, &format!("keep-five-{i:03}"));
        manifest["metadata"]["labels"] = json!({labels::SCHEDULE: "keep-five", labels::VM: name});
        manifest["metadata"]["annotations"] = json!({annotations::RUN_TIME: run_time.to_string()});
        lab.take_snapshot(serde_json::from_value(manifest)?).await?;
    }
    let by_schedule = ListParams::default().labels(&format!("{}=keep-five", labels::SCHEDULE));
    let started = Instant::now();
    let left = loop {
        let left = snapshots.list(&by_schedule).await?.items.len();
        if left <= KEEP_LAST || started.elapsed() > Duration::from_secs(120) {
            break left;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    tokio::time::sleep(COMPACTION * 3).await;
    let depth = lab.deepest_chain().await?;
    report.add(
        Row::new(
            SECTION,
            format!("layer chain length after {PRUNED_SNAPSHOTS} scheduled snapshots, keep-last {KEEP_LAST} ({left} left)"),
            depth as f64,
            "files",
        )
        .target("<= 8 (the compaction threshold)", depth <= 8),
    );
    let after = guest::read_throughput(&guest, &dev, mib, options.runs).await?;
    report.add(
        Row::new(SECTION, "guest read throughput after them (baseline: before)", after, "MiB/s")
            .baseline(before)
            .target(">= 90 % of before", after >= 0.9 * before),
    );
    Ok(())
}
