//! Control-plane section: 1,000 VirtualMachineSnapshots of stopped VMs (each with one small
//! DataVolume) created at once: the time until all are `readyToUse`, and the latency of API
//! requests (GETs of single objects and LISTs of 50) that a separate client makes meanwhile,
//! beside the same client's latency on the idle server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{ListParams, PostParams};
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use crate::lab::Lab;
use crate::probe::{Probed, all, by_kind, join, spawn_probe};
use crate::stats::percentile;
use crate::vms::{NS, snapshot_manifest, vm_manifest};
use crate::{BenchOptions, Report, Row};

const SECTION: &str = "controlplane";
const COUNT: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(900);
/// What the API probe reads: the VMs `cp0` .. `cp999` and their disks.
const PROBED: Probed = Probed { vm_prefix: "cp", count: COUNT };

/// Runs the section.
pub(crate) async fn run(options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    report.section(&format!(
        "controlplane: {COUNT} VirtualMachineSnapshots of stopped VMs created at once; API latency of a separate client meanwhile (baseline: idle)"
    ));
    let lab = options.start_lab(false, None).await?;
    let result = measure(&lab, report).await;
    lab.shutdown().await;
    result
}

async fn measure(lab: &Lab, report: &mut Report) -> anyhow::Result<()> {
    let vms: Api<VirtualMachine> = Api::namespaced(lab.client.clone(), NS);
    let started = Instant::now();
    futures::stream::iter(0..COUNT)
        .map(|i| {
            let vms = vms.clone();
            async move {
                let vm: VirtualMachine =
                    serde_json::from_value(vm_manifest(&format!("cp{i}"), 1, "16Mi", false))?;
                vms.create(&PostParams::default(), &vm).await.with_context(|| format!("create VM cp{i}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let dvs: Api<DataVolume> = Api::namespaced(lab.client.clone(), NS);
    until_count("DataVolumes Succeeded", || async {
        let list = dvs.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|dv| dv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
            .count())
    })
    .await?;
    println!(
        "  ({COUNT} stopped VMs with a populated DataVolume each, set up in {:.0} s)",
        started.elapsed().as_secs_f64()
    );

    let idle = join(spawn_probe(lab, PROBED, Some(Duration::from_secs(5)), Arc::new(AtomicBool::new(false))))
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = spawn_probe(lab, PROBED, None, stop.clone());
    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(lab.client.clone(), NS);
    let started = Instant::now();
    let created = futures::stream::iter(0..COUNT)
        .map(|i| {
            let snapshots = snapshots.clone();
            async move {
                let snapshot: VirtualMachineSnapshot =
                    serde_json::from_value(snapshot_manifest(&format!("cp{i}"), &format!("cp{i}-snap")))?;
                snapshots
                    .create(&PostParams::default(), &snapshot)
                    .await
                    .with_context(|| format!("create snapshot cp{i}-snap"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(100)
        .try_collect::<Vec<()>>()
        .await;
    let created_in = started.elapsed();
    let ready = match created {
        Ok(_) => {
            until_count("snapshots readyToUse", || async {
                let list = snapshots.list(&ListParams::default()).await?;
                Ok(list
                    .items
                    .iter()
                    .filter(|s| s.status.as_ref().and_then(|s| s.ready_to_use) == Some(true))
                    .count())
            })
            .await
        }
        Err(e) => Err(e),
    };
    let all_ready = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let busy = join(prober).await?;
    ready?;
    println!("  (the {COUNT} creates returned in {:.1} s)", created_in.as_secs_f64());
    let secs = all_ready.as_secs_f64();
    report.add(
        Row::new(SECTION, format!("{COUNT} snapshots created at once -> all readyToUse"), secs, "s")
            .target("<= 60 s", secs <= 60.0),
    );
    println!("  (p99 by request meanwhile: {}; idle: {})", by_kind(&busy), by_kind(&idle));
    let (busy, idle) = (all(&busy), all(&idle));
    let (p99, idle_p99) = (percentile(&busy, 99.0), percentile(&idle, 99.0));
    report.add(
        Row::new(
            SECTION,
            format!("API latency p99 meanwhile ({} GETs/LISTs; baseline: idle)", busy.len()),
            p99,
            "ms",
        )
        .baseline(idle_p99)
        .target("<= 50 ms", p99 <= 50.0),
    );
    report.add(
        Row::new(SECTION, "API latency p50 meanwhile (baseline: idle)", percentile(&busy, 50.0), "ms")
            .baseline(percentile(&idle, 50.0)),
    );
    Ok(())
}

/// Polls `count` every second until it reaches [`COUNT`].
async fn until_count<F, Fut>(what: &str, count: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let started = Instant::now();
    loop {
        let n = count().await?;
        if n >= COUNT {
            return Ok(());
        }
        if started.elapsed() > TIMEOUT {
            bail!("only {n} of {COUNT} {what} after {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
