//! Reads section: the guest's read throughput of a data disk full of data before and after 100
//! snapshots of that disk, with the server's layer compaction running (every 5 s) as
//! `vmsnap serve` runs it. Each read is of the whole block device with the guest's page cache
//! dropped first, after a warm-up read (the host's page cache is warm for both).

use std::time::Duration;

use crate::guest;
use crate::lab::Lab;
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
    let lab = options.start_lab(true, Some(COMPACTION)).await?;
    let result = measure(&lab, gib, options.runs, report).await;
    lab.shutdown().await;
    result
}

async fn measure(lab: &Lab, gib: u64, runs: usize, report: &mut Report) -> anyhow::Result<()> {
    let name = "reads";
    let guest = lab.running_vm(name, 1, &format!("{gib}Gi"), true).await?;
    // The host writes the fill back meanwhile: let that finish first.
    let (dev, mib) = guest::first_disk_device(&guest).await?;
    let before = guest::read_throughput(&guest, &dev, mib, runs).await?;
    for i in 0..SNAPSHOTS {
        lab.snapshot(name, &format!("{name}-{i}")).await?;
    }
    // Let compaction catch up with the last snapshots.
    tokio::time::sleep(COMPACTION * 3).await;
    let after = guest::read_throughput(&guest, &dev, mib, runs).await?;
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
