//! Storage section: snapshot and restore of disks full of data with the qcow2 layer driver, beside
//! the copying driver, at each size, with the large/small ratio of each.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use vmsnap_storage::{CopyDriver, LayeredDriver, SnapshotId, StorageOptions, VolumeDriver, VolumeId};

use crate::stats::ms;
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

/// Fails unless the file system of `dir` has `bytes` free, saying how much it has.
pub(crate) fn ensure_free(dir: &Path, bytes: u64) -> anyhow::Result<()> {
    let stat = nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    anyhow::ensure!(
        free >= bytes,
        "needs {:.1} GiB free in {} but it has {:.1} GiB; free some space or pass --scratch DIR",
        bytes as f64 / GIB,
        dir.display(),
        free as f64 / GIB
    );
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

/// The full-copy baseline of a restore: the median time of `cp` of a disk file full of data, then
/// fsync of the copy. The file is `source` if given (the file holding a VM disk's data), else a
/// raw file of `gib` GiB written with `qemu-io` here first. Returns the time and the bytes copied.
pub(crate) async fn copy_baseline(
    scratch: &Path,
    source: Option<&Path>,
    gib: u64,
    runs: usize,
) -> anyhow::Result<(Duration, u64)> {
    let size = match source {
        Some(path) => std::fs::metadata(path)?.len(),
        None => gib << 30,
    };
    let copies = if source.is_some() { 1 } else { 2 };
    ensure_free(scratch, copies * size + (1 << 30))?;
    let dir = tempfile::Builder::new().prefix("vb-copy").tempdir_in(scratch)?;
    let source = match source {
        Some(path) => path.to_owned(),
        None => {
            let path = dir.path().join("disk.raw");
            std::fs::File::create(&path)?.set_len(size)?;
            let filler = path.clone();
            tokio::task::spawn_blocking(move || fill(&filler, size)).await??;
            path
        }
    };
    let target = dir.path().join("copy");
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let status = tokio::process::Command::new("cp").arg(&source).arg(&target).status().await?;
        anyhow::ensure!(status.success(), "cp failed");
        let status = tokio::process::Command::new("sync").arg(&target).status().await?;
        anyhow::ensure!(status.success(), "sync failed");
        times.push(start.elapsed());
        std::fs::remove_file(&target)?;
    }
    Ok((median(times), size))
}

/// Runs the section.
pub(crate) async fn run(options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    report.section(
        "storage: driver-level snapshot and restore of full disks (median), qcow2 layers vs whole-file copy",
    );
    let mut results = Vec::new();
    for &gib in &options.sizes_gib {
        let size = gib << 30;
        if let Err(e) = ensure_free(&options.scratch, 3 * size + (1 << 30)) {
            report.note("storage", format!("{gib} GiB not measured: {e}"));
            continue;
        }
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
