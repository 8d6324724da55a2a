//! Memory section: the resident memory of a `vmsnap serve` child process (this binary) holding
//! 10,000 VirtualMachineSnapshots (of VMs that do not exist, so that the controllers keep them
//! all in their caches), beside the same process idle.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{ListParams, PostParams};
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use crate::vms::{NS, snapshot_manifest};
use crate::{BenchOptions, Report, Row};

const SECTION: &str = "memory";
const COUNT: usize = 10_000;

/// Runs the section.
pub(crate) async fn run(options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    report.section(&format!(
        "memory: RSS of `vmsnap serve` holding {COUNT} VirtualMachineSnapshots (baseline: the same process idle)"
    ));
    let dir = tempfile::Builder::new().prefix("vb-mem").tempdir_in(&options.scratch)?;
    let data = dir.path().join("d");
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let mut child = tokio::process::Command::new(&options.binary)
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--accel", "tcg", "--image-cache"])
        .arg(&options.guest_cache)
        .env("VMSNAP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} serve", options.binary.display()))?;
    let pid = child.id().context("the child has a pid")?;
    let result = measure(&data, pid, report).await;
    let _ = child.kill().await;
    if result.is_err() {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        eprintln!("vmsnap serve's log ends with:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    result
}

async fn measure(data: &Path, pid: u32, report: &mut Report) -> anyhow::Result<()> {
    let client = connect(data).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid)?;
    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(client, NS);
    let started = Instant::now();
    futures::stream::iter(0..COUNT)
        .map(|i| {
            let snapshots = snapshots.clone();
            async move {
                let snapshot: VirtualMachineSnapshot = serde_json::from_value(snapshot_manifest(
                    &format!("absent-vm-{i}"),
                    &format!("held-{i}"),
                ))?;
                snapshots
                    .create(&PostParams::default(), &snapshot)
                    .await
                    .with_context(|| format!("create held-{i}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    println!("  ({COUNT} snapshots created in {:.1} s)", started.elapsed().as_secs_f64());
    // The controllers reconcile each one; let them settle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = rss_mib(pid)?;
    let listed = snapshots.list(&ListParams::default()).await?.items.len();
    anyhow::ensure!(listed >= COUNT, "only {listed} snapshots are listed");
    let after_list = rss_mib(pid)?;
    report.add(
        Row::new(SECTION, "RSS holding 10,000 objects, settled (baseline: idle)", held, "MiB")
            .baseline(idle)
            .target("<= 150 MiB", held <= 150.0),
    );
    report.add(
        Row::new(
            SECTION,
            "RSS holding 10,000 objects, after a LIST of all of them (baseline: idle)",
            after_list,
            "MiB",
        )
        .baseline(idle)
        .target("<= 150 MiB", after_list <= 150.0),
    );
    Ok(())
}

/// A client of the child's API server, once it answers.
async fn connect(data: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = data.join("kubeconfig");
    let started = Instant::now();
    loop {
        if let Ok(kc) = kube::config::Kubeconfig::read_from(&kubeconfig)
            && let Ok(config) = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await
            && let Ok(client) = kube::Client::try_from(config)
            && client.apiserver_version().await.is_ok()
        {
            return Ok(client);
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("vmsnap serve did not answer within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `VmRSS` of a process, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("vmsnap serve exited")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib / 1024.0)
}
