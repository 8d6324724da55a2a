//! Storage section: snapshot and restore of disks full of data with the qcow2 layer driver, beside
//! the copying driver, at each size, with the large/small ratio of each.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use vmsnap_storage::{CopyDriver, LayeredDriver, SnapshotId, StorageOptions, VolumeDriver, VolumeId};

use crate::{BenchOptions, Report, Row};

const CHUNK: u64 = 256 << 20;

/// Fills a detached volume's file with data, chunk by chunk, through qemu-io.
fn fill(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("qemu-io");
    cmd.arg("-f").arg(if path.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" });
    let mut offset = 0;
    let mut pattern = 1u8;
    while offset < size {
        let len = CHUNK.min(size - offset);
        cmd.arg("-c").arg(format!("write -q -P {pattern} {offset} {len}"));
        offset += len;
        pattern = pattern.wrapping_add(1).max(1);
    }
    let out = cmd.arg(path).output().context("run qemu-io (install qemu-utils)")?;
    anyhow::ensure!(out.status.success(), "qemu-io failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Picks one of the measured times.
type Pick = fn(&Times) -> Duration;

struct Times {
    snapshot: Duration,
    restore: Duration,
}

async fn measure(driver: &dyn VolumeDriver, size: u64, runs: usize) -> anyhow::Result<Times> {
    let vol = VolumeId::new("bench")?;
    let info = driver.create_volume(&vol, size).await?;
    fill(&info.path, size)?;
    let mut snaps = Vec::new();
    let mut restores = Vec::new();
    for i in 0..runs {
        let snap = SnapshotId::new(format!("s{i}"))?;
        let start = Instant::now();
        driver.snapshot_volumes(&[(vol.clone(), snap.clone())], None).await?;
        snaps.push(start.elapsed());
        let restored = VolumeId::new(format!("r{i}"))?;
        let start = Instant::now();
        driver.restore_volume(&snap, &restored, size).await?;
        restores.push(start.elapsed());
        driver.delete_volume(&restored).await?;
        driver.delete_snapshot(&snap).await?;
    }
    driver.delete_volume(&vol).await?;
    Ok(Times { snapshot: median(snaps), restore: median(restores) })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the section.
pub async fn run(options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    println!("\n## storage: snapshot and restore of full disks (median), qcow2 layers vs whole-file copy");
    let mut results = Vec::new();
    for &gib in &options.sizes_gib {
        let size = gib << 30;
        let dir = tempfile::tempdir_in(&options.scratch)?;
        let layered = LayeredDriver::open(dir.path().join("layers"), StorageOptions::default()).await?;
        let l = measure(&layered, size, 5).await?;
        drop(layered);
        let copy = CopyDriver::open(dir.path().join("copy"), StorageOptions::default()).await?;
        let c = measure(&copy, size, if gib > 4 { 1 } else { 3 }).await?;
        report.add(Row {
            section: "storage".into(),
            what: format!("snapshot, {gib} GiB full disk"),
            vmsnap: ms(l.snapshot),
            baseline: Some(ms(c.snapshot)),
            unit: "ms".into(),
            target: None,
        });
        report.add(Row {
            section: "storage".into(),
            what: format!("restore, {gib} GiB full disk"),
            vmsnap: ms(l.restore),
            baseline: Some(ms(c.restore)),
            unit: "ms".into(),
            target: None,
        });
        results.push((gib, l, c));
    }
    if let (Some(small), Some(large)) = (results.first(), results.last())
        && large.0 > small.0
    {
        let label = format!("{} GiB / {} GiB", large.0, small.0);
        let pick: [(&str, Pick); 2] = [("snapshot", |t| t.snapshot), ("restore", |t| t.restore)];
        for (what, f) in pick {
            let vm = ms(f(&large.1)) / ms(f(&small.1));
            let base = ms(f(&large.2)) / ms(f(&small.2));
            report.add(Row {
                section: "storage".into(),
                what: format!("{what} time ratio {label}"),
                vmsnap: vm,
                baseline: Some(base),
                unit: "x".into(),
                target: Some(("<= 1.2".into(), vm <= 1.2)),
            });
        }
    }
    Ok(())
}
