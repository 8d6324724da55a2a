//! Reads section: the guest's read throughput of a data disk full of data before and after 100
//! snapshots of that disk, with the server's layer compaction running (every 5 s) as
//! `vmsnap serve` runs it. Each read is of the whole block device with the guest's page cache
//! dropped first, after a warm-up read (the host's page cache is warm for both).

use std::time::Duration;

use anyhow::Context;

use crate::guest::{self, FIRST_DISK, Guest};
use crate::lab::{Lab, LabConfig};
use crate::stats::median;
use crate::{BenchOptions, Report, Row};

const SECTION: &str = "reads";
const SNAPSHOTS: usize = 100;
const COMPACTION: Duration = Duration::from_secs(5);

/// Runs the section.
pub(crate) async fn run(options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    let gib = options.sizes_gib.iter().copied().min().unwrap_or(1);
    report.section(&format!(
        "reads: guest read throughput of a {gib} GiB full data disk before and after {SNAPSHOTS} snapshots (compaction every {}s, median of {} reads)",
        COMPACTION.as_secs(),
        options.runs
    ));
    crate::storage::ensure_free(&options.scratch, (gib << 30) * 2 + (1 << 30))?;
    let lab = Lab::start(LabConfig {
        scratch: &options.scratch,
        image_cache: &options.guest_cache,
        guests: true,
        compaction: Some(COMPACTION),
    })
    .await?;
    let result = measure(&lab, gib, options.runs, report).await;
    lab.shutdown().await;
    result
}

async fn measure(lab: &Lab, gib: u64, runs: usize, report: &mut Report) -> anyhow::Result<()> {
    let name = "reads";
    let guest = lab.running_vm(name, 1, &format!("{gib}Gi"), true).await?;
    // The host writes the fill back meanwhile: let that finish first.
    tokio::process::Command::new("sync").status().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let script = format!(
        "d=$(awk '$2 == \"{FIRST_DISK}\" {{print $1}}' /proc/mounts); echo $d $(cat /sys/class/block/${{d#/dev/}}/size)"
    );
    let out = guest.sh(&script, guest::SHORT).await?;
    let (dev, sectors) = out.trim().split_once(' ').context("no device mounted at /mnt/d0")?;
    let bytes = sectors.parse::<u64>().with_context(|| format!("the guest said {out:?}"))? * 512;
    let mib = bytes as f64 / f64::from(1u32 << 20);
    let throughput = async |runs: usize| -> anyhow::Result<f64> {
        guest::timed_read(&guest, dev).await?;
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(mib / guest::timed_read(&guest, dev).await?.as_secs_f64());
        }
        Ok(median(&samples))
    };
    let before = throughput(runs).await?;
    for i in 0..SNAPSHOTS {
        lab.snapshot(name, &format!("{name}-{i}")).await?;
    }
    // Let compaction catch up with the last snapshots.
    tokio::time::sleep(COMPACTION * 3).await;
    let after = throughput(runs).await?;
    report.add(
        Row::new(
            SECTION,
            format!("read throughput after {SNAPSHOTS} snapshots (baseline: before them)"),
            after,
            "MiB/s",
        )
        .baseline(before)
        .target(">= 90 % of before", after >= 0.9 * before),
    );
    Ok(())
}
