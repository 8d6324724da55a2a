//! The disk both tools back up: an ext4 image holding the test guest's own files (its kernel and
//! initramfs, in `/boot`) and random, incompressible data filling [`RANDOM_SHARE`] of the disk (in
//! `/data`, 64 MiB files), made on the host with `mke2fs -d` (filling 16 GiB from inside a TCG
//! guest would take far longer than the backups measured); and what the guest does to it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::guest::{FIRST_DISK, Guest};

/// The share of the disk filled with random data.
pub(crate) const RANDOM_SHARE: f64 = 0.7;
const FILE_MIB: u64 = 64;
/// Bytes the guest writes to measure its write throughput.
const WRITE_MIB: u64 = 128;

/// A disk image made for the section.
pub(crate) struct DiskImage {
    /// The raw image.
    pub path: PathBuf,
    /// Random bytes in it.
    pub random_bytes: u64,
    /// Bytes of the guest's own files in it.
    pub os_bytes: u64,
}

/// Fails unless `mke2fs` runs, naming its package.
pub(crate) fn require_mke2fs() -> anyhow::Result<()> {
    std::process::Command::new("mke2fs").arg("-V").output().context(
        "mke2fs is not installed (apt-get install e2fsprogs): the backup section makes its disk with it",
    )?;
    Ok(())
}

/// Makes the `gib` GiB image `name` in `dir`, from files staged in `scratch` (removed after).
pub(crate) async fn build(
    dir: &Path,
    name: &str,
    gib: u64,
    scratch: &Path,
    guest_cache: &Path,
) -> anyhow::Result<DiskImage> {
    let guest = crate::lab::ensure_guest_image(guest_cache).await?;
    let staging = tempfile::Builder::new().prefix("vb-image").tempdir_in(scratch)?;
    let root = staging.path().join("root");
    let boot = root.join("boot");
    std::fs::create_dir_all(&boot)?;
    let mut os_bytes = 0;
    for file in [&guest.kernel, &guest.initrd] {
        let name = file.file_name().context("a file name")?;
        os_bytes +=
            std::fs::copy(file, boot.join(name)).with_context(|| format!("copy {}", file.display()))?;
    }
    let files = ((gib << 10) as f64 * RANDOM_SHARE / FILE_MIB as f64) as u64;
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let writer = data.clone();
    tokio::task::spawn_blocking(move || write_random_files(&writer, files)).await??;
    let path = dir.join(name);
    let out = tokio::process::Command::new("mke2fs")
        // Inode tables and journal written now: the guest kernel would otherwise zero them in the
        // background after mounting (ext4lazyinit), changing the disk under the measurements.
        .args(["-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d"])
        .arg(&root)
        .arg(&path)
        .arg(format!("{gib}G"))
        .output()
        .await
        .context("run mke2fs")?;
    anyhow::ensure!(out.status.success(), "mke2fs -d failed: {}", String::from_utf8_lossy(&out.stderr));
    staging.close()?;
    Ok(DiskImage { path, random_bytes: files * (FILE_MIB << 20), os_bytes })
}

fn write_random_files(dir: &Path, count: u64) -> anyhow::Result<()> {
    let mut random = std::fs::File::open("/dev/urandom")?;
    for i in 0..count {
        let mut file = std::fs::File::create(dir.join(format!("r{i:04}")))?;
        std::io::copy(&mut Read::take(&mut random, FILE_MIB << 20), &mut file)?;
        file.flush()?;
    }
    Ok(())
}

/// The MiB the guest writes for a change of 1 % of a `gib` GiB disk (rounded up).
pub(crate) fn one_percent_mib(gib: u64) -> u64 {
    (gib << 10).div_ceil(100)
}

/// The guest writes `mib` MiB of random data to a new file `change-{round}` and syncs.
pub(crate) async fn change<G: Guest>(guest: &G, mib: u64, round: usize) -> anyhow::Result<()> {
    let script = format!(
        "dd if=/dev/urandom of={FIRST_DISK}/change-{round} bs=1M count={mib} conv=fsync 2>/dev/null && sync"
    );
    guest.sh(&script, Duration::from_secs(1800)).await.context("change 1 % of the disk in the guest")?;
    Ok(())
}

/// `count` of the guest's write throughputs ([`write_throughput`]), one after another.
pub(crate) async fn write_throughputs<G: Guest>(guest: &G, count: usize) -> anyhow::Result<Vec<f64>> {
    let mut throughputs = Vec::with_capacity(count);
    for _ in 0..count {
        throughputs.push(write_throughput(guest).await?);
    }
    Ok(throughputs)
}

/// The guest's write throughput in MiB/s: [`WRITE_MIB`] MiB written with `dd` and fsync'd, timed
/// by the guest, the file removed after.
pub(crate) async fn write_throughput<G: Guest>(guest: &G) -> anyhow::Result<f64> {
    let script = format!(
        "sync; a=$(tswriter --now); dd if=/dev/zero of={FIRST_DISK}/wt bs=1M count={WRITE_MIB} conv=fsync 2>/dev/null; \
         b=$(tswriter --now); rm -f {FIRST_DISK}/wt; sync; echo $((b - a))"
    );
    let out = guest.sh(&script, Duration::from_secs(600)).await.context("write in the guest")?;
    let micros: u64 = out.trim().parse().with_context(|| format!("the guest printed {out:?}"))?;
    Ok(WRITE_MIB as f64 / Duration::from_micros(micros).as_secs_f64())
}
