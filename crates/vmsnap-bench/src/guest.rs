//! What the benchmark does inside a test guest, the same way for vmsnap's VMs and libvirt's
//! domains: fill a disk, run `tswriter` around a snapshot, time a read of a whole disk.

use std::time::Duration;

use anyhow::Context;

use crate::stats::FreezeTrace;

/// A running test guest whose agent runs shell commands.
pub(crate) trait Guest {
    /// Runs `script` with `sh -c` in the guest; fails unless it exits 0; returns its stdout.
    async fn sh(&self, script: &str, timeout: Duration) -> anyhow::Result<String>;
}

/// How long a short guest command may take under TCG on a busy machine.
pub(crate) const SHORT: Duration = Duration::from_secs(60);

/// Where the first data disk (serial `d0`) is mounted in the guest.
pub(crate) const FIRST_DISK: &str = "/mnt/d0";

/// Waits until the guest has mounted its data disks `d0..d{count}` (blank disks are formatted
/// first, which takes a moment).
pub(crate) async fn await_disks<G: Guest>(guest: &G, count: usize) -> anyhow::Result<()> {
    let checks: Vec<String> = (0..count).map(|i| format!("grep -q ' /mnt/d{i} ' /proc/mounts")).collect();
    let script =
        format!("for i in $(seq 1 600); do {} && exit 0; sleep 0.2; done; exit 1", checks.join(" && "));
    guest.sh(&script, Duration::from_secs(180)).await.context("the guest did not mount its data disks")?;
    Ok(())
}

/// Fills the file system of the first data disk with zeros written from inside the guest, so that
/// the clusters of the disk hold data, then syncs. 64 MiB stay free for the benchmark's writers,
/// and the 5 % that ext4 reserves for root stay unwritten.
pub(crate) async fn fill_first_disk<G: Guest>(guest: &G) -> anyhow::Result<()> {
    let script = format!(
        "cd {FIRST_DISK} && n=$(df -m . | awk 'NR == 2 {{print $4 - 64}}') && \
         {{ dd if=/dev/zero of=fill bs=1M count=$n 2>/dev/null; sync; }}"
    );
    guest.sh(&script, Duration::from_secs(3000)).await.context("fill the data disk from the guest")?;
    Ok(())
}

/// Starts `tswriter` (1 ms interval, fsync per line) on the first data disk after clearing the
/// hook log; returns the writer's pid.
pub(crate) async fn start_writer<G: Guest>(guest: &G) -> anyhow::Result<u32> {
    let script =
        format!(": > /run/fsfreeze-hook.log; rm -f {FIRST_DISK}/ts; tswriter -s {FIRST_DISK}/ts 1000");
    let out = guest.sh(&script, SHORT).await.context("start tswriter in the guest")?;
    out.trim().parse().with_context(|| format!("tswriter printed {out:?}, not a pid"))
}

/// Stops the writer and reads what the guest recorded.
pub(crate) async fn stop_writer<G: Guest>(guest: &G, pid: u32) -> anyhow::Result<FreezeTrace> {
    let script = format!(
        "kill {pid}; cat /run/fsfreeze-hook.log; echo ---; cat {FIRST_DISK}/ts; rm -f {FIRST_DISK}/ts"
    );
    let out = guest.sh(&script, SHORT).await.context("read the timestamps of tswriter")?;
    let trace = FreezeTrace::parse(&out);
    anyhow::ensure!(
        trace.stamps.len() >= 2,
        "tswriter wrote fewer than two timestamps: {:?}",
        &out[..out.len().min(300)]
    );
    Ok(trace)
}

/// One online snapshot seen from the guest: runs `tswriter` for a second, takes the snapshot with
/// `take` (which returns how long it took), lets the writer run half a second more and returns the
/// trace and the time `take` reported.
pub(crate) async fn traced_snapshot<G: Guest>(
    guest: &G,
    take: impl AsyncFnOnce() -> anyhow::Result<Duration>,
) -> anyhow::Result<(FreezeTrace, Duration)> {
    let pid = start_writer(guest).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let took = take().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let trace = stop_writer(guest, pid).await?;
    Ok((trace, took?))
}

/// The block device mounted at [`FIRST_DISK`] and its size in MiB, after the host wrote back what
/// it holds for it (so reads measure the guest, not a write-back in flight).
pub(crate) async fn first_disk_device<G: Guest>(guest: &G) -> anyhow::Result<(String, f64)> {
    tokio::process::Command::new("sync").status().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let script = format!(
        "d=$(awk '$2 == \"{FIRST_DISK}\" {{print $1}}' /proc/mounts); echo $d $(cat /sys/class/block/${{d#/dev/}}/size)"
    );
    let out = guest.sh(&script, SHORT).await?;
    let (dev, sectors) = out.trim().split_once(' ').context("no device mounted at /mnt/d0")?;
    let bytes = sectors.parse::<u64>().with_context(|| format!("the guest said {out:?}"))? * 512;
    Ok((dev.to_owned(), bytes as f64 / f64::from(1u32 << 20)))
}

/// The guest's read throughput of the whole device `dev` of `mib` MiB, in MiB/s: one warm-up read,
/// then the median of `runs` reads.
pub(crate) async fn read_throughput<G: Guest>(
    guest: &G,
    dev: &str,
    mib: f64,
    runs: usize,
) -> anyhow::Result<f64> {
    timed_read(guest, dev).await?;
    let mut samples = Vec::new();
    for _ in 0..runs {
        samples.push(mib / timed_read(guest, dev).await?.as_secs_f64());
    }
    Ok(crate::stats::median(&samples))
}

/// Reads the whole block device `dev` once with the guest's page cache dropped first; returns
/// the time the guest measured.
pub(crate) async fn timed_read<G: Guest>(guest: &G, dev: &str) -> anyhow::Result<Duration> {
    let script = format!(
        "sync; echo 3 > /proc/sys/vm/drop_caches; a=$(tswriter --now); \
         dd if={dev} of=/dev/null bs=1M 2>/dev/null; b=$(tswriter --now); echo $((b - a))"
    );
    let out = guest.sh(&script, Duration::from_secs(900)).await.context("read the disk in the guest")?;
    let micros: u64 = out.trim().parse().with_context(|| format!("the guest printed {out:?}"))?;
    Ok(Duration::from_micros(micros))
}
