//! Freeze section: the freeze window a guest process sees during an online snapshot, vmsnap's
//! VirtualMachineSnapshot against libvirt's quiesced atomic disk-only snapshot of the same guest,
//! with 1 and 4 data disks at each size. A guest process (`tswriter`) appends a timestamp every
//! millisecond with an fsync per line; the largest gap between two lines around the guest's
//! freeze..thaw (from its fsfreeze hook log) is the window the process saw.

use std::time::Duration;

use vmsnap_guestimage::GuestImage;

use crate::guest::{self, Guest};
use crate::lab::{self, Lab};
use crate::libvirt::{self, Domain};
use crate::stats::{FreezeTrace, median, ms};
use crate::{BenchOptions, Report, Row, SharedLab};

const SECTION: &str = "freeze";

/// The name of the shared VM with `disks` disks of `gib` GiB (the first one full when `disks` is 1).
pub(crate) fn vm_name(disks: usize, gib: u64) -> String {
    format!("b{disks}d{gib}g")
}

/// The medians of one side for one configuration, in milliseconds.
#[derive(Default)]
struct Samples {
    window: Vec<f64>,
    hook: Vec<f64>,
    took: Vec<f64>,
}

impl Samples {
    fn push(&mut self, trace: &FreezeTrace, took: Duration) -> anyhow::Result<()> {
        let window =
            trace.window().ok_or_else(|| anyhow::anyhow!("tswriter wrote fewer than two timestamps"))?;
        self.window.push(ms(window));
        if let Some(hook) = trace.hook_window() {
            self.hook.push(ms(hook));
        }
        self.took.push(ms(took));
        Ok(())
    }
}

/// Runs the section.
pub(crate) async fn run(shared: &mut SharedLab<'_>, report: &mut Report) -> anyhow::Result<()> {
    let options = shared.options;
    report.section(&format!(
        "freeze: freeze window seen by a guest process during an online snapshot (median of {} runs, TCG), vmsnap vs libvirt",
        options.runs
    ));
    let image = lab::ensure_guest_image(&options.guest_cache).await?;
    let lab = shared.get().await?;
    let libvirt = libvirt::ensure_running().await;
    if let Err(what) = &libvirt {
        report.note(SECTION, format!("libvirt baseline not measured: {what}"));
    }
    let mut windows = Vec::new();
    for disks in [1usize, 4] {
        for &gib in &options.sizes_gib {
            let fill = disks == 1;
            let label = format!(
                "{disks} disk{} x {gib} GiB ({})",
                if disks == 1 { "" } else { "s" },
                if fill { "full: filled from the guest" } else { "thin: blank, formatted" }
            );
            let need = if fill { gib << 30 } else { 0 } + (2 << 30);
            if let Err(e) = crate::storage::ensure_free(&options.scratch, need) {
                report.note(SECTION, format!("{label} not measured: {e}"));
                continue;
            }
            let ours = match measure_vmsnap(lab, disks, gib, fill, options.runs).await {
                Ok(samples) => samples,
                Err(e) => {
                    report.note(SECTION, format!("vmsnap, {label}: {e:#}"));
                    continue;
                }
            };
            let theirs = match &libvirt {
                Ok(()) => match measure_libvirt(options, &image, disks, gib, fill).await {
                    Ok(samples) => Some(samples),
                    Err(e) => {
                        report.note(SECTION, format!("libvirt, {label}: {e:#}"));
                        None
                    }
                },
                Err(_) => None,
            };
            add_rows(report, &label, &ours, theirs.as_ref());
            windows.push((disks, gib, median(&ours.window), theirs.map(|t| median(&t.window))));
        }
    }
    for disks in [1usize, 4] {
        let points: Vec<_> = windows.iter().filter(|w| w.0 == disks).map(|w| (w.1, w.2, w.3)).collect();
        let what = |l, s| format!("freeze window {l} GiB / {s} GiB, {disks} disk(s)");
        if let Some(row) = options.size_ratio_row(SECTION, what, "<= 1.2 (the same at both sizes)", &points) {
            report.add(row);
        }
    }
    Ok(())
}

fn add_rows(report: &mut Report, label: &str, ours: &Samples, theirs: Option<&Samples>) {
    let window = median(&ours.window);
    let mut row = Row::new(SECTION, format!("freeze window, {label}"), window, "ms");
    if let Some(t) = theirs {
        let base = median(&t.window);
        row = row.baseline(base).target("<= libvirt", window <= base);
    }
    report.add(row);
    let mut row = Row::new(
        SECTION,
        format!("guest freeze -> thaw (fsfreeze hook log), {label}"),
        median(&ours.hook),
        "ms",
    );
    if let Some(t) = theirs {
        row = row.baseline(median(&t.hook));
    }
    report.add(row);
    let mut row = Row::new(
        SECTION,
        format!("create -> readyToUse (libvirt: virsh snapshot-create-as), {label}"),
        median(&ours.took),
        "ms",
    );
    if let Some(t) = theirs {
        row = row.baseline(median(&t.took));
    }
    report.add(row);
}

async fn measure_vmsnap(
    lab: &Lab,
    disks: usize,
    gib: u64,
    fill: bool,
    runs: usize,
) -> anyhow::Result<Samples> {
    let name = vm_name(disks, gib);
    let guest = lab.running_vm(&name, disks, &format!("{gib}Gi"), fill).await?;
    let result = snapshots(&guest, runs, async |i| {
        let snapshot = format!("{name}-f{i}");
        let took = lab.snapshot(&name, &snapshot).await;
        // Deleting is cheap and keeps the VM's later snapshots alone on its chain.
        let _ = lab.delete_snapshot(&snapshot).await;
        took
    })
    .await;
    // The guest sections share VMs: stopped, it does not take CPU from the next measurements.
    lab.stop_vm(&name).await?;
    result
}

async fn measure_libvirt(
    options: &BenchOptions,
    image: &GuestImage,
    disks: usize,
    gib: u64,
    fill: bool,
) -> anyhow::Result<Samples> {
    let name = format!("vmsnap-bench-{}-{}", std::process::id(), vm_name(disks, gib));
    let domain = Domain::start(&options.scratch, image, &name, disks, gib).await?;
    let result = async {
        guest::await_disks(&domain, disks).await?;
        if fill {
            guest::fill_first_disk(&domain).await?;
        }
        snapshots(&domain, options.runs, async |i| domain.snapshot(&format!("s{i}")).await).await
    }
    .await;
    domain.destroy().await;
    result
}

/// `runs` traced snapshots taken with `take(run)`.
async fn snapshots<G: Guest>(
    guest: &G,
    runs: usize,
    take: impl AsyncFn(usize) -> anyhow::Result<Duration>,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for i in 0..runs {
        let (trace, took) = guest::traced_snapshot(guest, async || take(i).await).await?;
        samples.push(&trace, took)?;
    }
    Ok(samples)
}
