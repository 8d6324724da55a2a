//! Times snapshot, restore and clone of a small and a large volume with each
//! driver: `cargo run --release -p vmsnap-storage --example storage_bench [DIR]`.
//!
//! Volumes are created blank (sparse) and get 4 MiB of data written with
//! `qemu-io` before each measured operation, so the layered driver always has
//! something to seal. Prints the median of a few runs, in milliseconds, then
//! the time to take [`MANY`] snapshots of as many detached volumes at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vmsnap_storage::{CopyDriver, LayeredDriver, SnapshotId, StorageOptions, VolumeDriver, VolumeId};

const RUNS: usize = 5;
const SIZES: [(u64, &str); 2] = [(16 << 20, "16 MiB"), (1 << 30, "1 GiB")];
/// Snapshots requested at the same time in the concurrency measurement.
const MANY: usize = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    println!("| driver | volume | snapshot (ms) | restore (ms) | clone (ms) | delete snapshot (ms) |");
    println!("|---|---|---|---|---|---|");
    for driver_name in ["qcow2-layers", "copy"] {
        for (size, label) in SIZES {
            let dir = tempfile::tempdir_in(&base)?;
            let driver: Box<dyn VolumeDriver> = match driver_name {
                "copy" => Box::new(CopyDriver::open(dir.path(), StorageOptions::default()).await?),
                _ => Box::new(LayeredDriver::open(dir.path(), StorageOptions::default()).await?),
            };
            let times = measure(driver.as_ref(), size).await?;
            let median = |mut v: Vec<Duration>| {
                v.sort();
                v[v.len() / 2].as_secs_f64() * 1000.0
            };
            println!(
                "| {driver_name} | {label} | {:.1} | {:.1} | {:.1} | {:.1} |",
                median(times.0),
                median(times.1),
                median(times.2),
                median(times.3)
            );
        }
    }
    let dir = tempfile::tempdir_in(&base)?;
    let driver = std::sync::Arc::new(LayeredDriver::open(dir.path(), StorageOptions::default()).await?);
    let ids: Vec<(VolumeId, SnapshotId)> = (0..MANY)
        .map(|i| Ok((VolumeId::new(format!("v{i}"))?, SnapshotId::new(format!("s{i}"))?)))
        .collect::<anyhow::Result<_>>()?;
    for (volume, _) in &ids {
        driver.create_volume(volume, 1 << 30).await?;
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for pair in ids {
        let driver = driver.clone();
        tasks.spawn(async move { driver.snapshot_volumes(&[pair], None).await.map(drop) });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!(
        "\n{MANY} snapshots of {MANY} detached 1 GiB volumes requested at once: all done in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

type Times = (Vec<Duration>, Vec<Duration>, Vec<Duration>, Vec<Duration>);

async fn measure(driver: &dyn VolumeDriver, size: u64) -> anyhow::Result<Times> {
    let volume = VolumeId::new("bench")?;
    driver.create_volume(&volume, size).await?;
    let mut times: Times = Default::default();
    for run in 0..RUNS {
        let info = driver.volume(&volume).await?.expect("created above");
        write(&info.path, info.format.as_str(), run, size)?;
        let snapshot = SnapshotId::new(format!("s{run}"))?;
        let start = Instant::now();
        driver.snapshot_volumes(&[(volume.clone(), snapshot.clone())], None).await?;
        times.0.push(start.elapsed());

        let restored = VolumeId::new(format!("r{run}"))?;
        let start = Instant::now();
        driver.restore_volume(&snapshot, &restored, size).await?;
        times.1.push(start.elapsed());

        let cloned = VolumeId::new(format!("c{run}"))?;
        let start = Instant::now();
        driver.clone_volume(&volume, &cloned, size, None).await?;
        times.2.push(start.elapsed());

        driver.delete_volume(&restored).await?;
        driver.delete_volume(&cloned).await?;
        let start = Instant::now();
        driver.delete_snapshot(&snapshot).await?;
        times.3.push(start.elapsed());
    }
    Ok(times)
}

fn write(path: &Path, format: &str, run: usize, size: u64) -> anyhow::Result<()> {
    let command = format!("write -P {} {} 4M", run + 1, (run as u64 * (4 << 20)) % size);
    let status = Command::new("qemu-io").args(["-f", format, "-c", &command]).arg(path).output()?.status;
    anyhow::ensure!(status.success(), "qemu-io {command} failed");
    Ok(())
}
