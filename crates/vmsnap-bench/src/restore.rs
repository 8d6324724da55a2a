//! Restore section: VirtualMachineRestore create -> `complete` of a stopped VM from a snapshot of
//! its one data disk full of data, at each size, beside the full-copy baseline (`cp` of the file
//! that holds that disk's data, then fsync), and the large/small ratios.

use crate::stats::{median, ms};
use crate::{Report, Row, SharedLab};

const SECTION: &str = "restore";

/// Runs the section.
pub(crate) async fn run(shared: &mut SharedLab<'_>, report: &mut Report) -> anyhow::Result<()> {
    let options = shared.options;
    report.section(&format!(
        "restore: VirtualMachineRestore create -> complete, stopped VM, one data disk full of data (median of {} runs), vs a full copy of the disk",
        options.runs
    ));
    let lab = shared.get().await?;
    let mut results = Vec::new();
    for &gib in &options.sizes_gib {
        let name = lab.running_full_vm(&options.scratch, gib).await?;
        lab.stop_vm(&name).await?;
        let snapshot = format!("{name}-r");
        lab.snapshot(&name, &snapshot).await?;
        let mut times = Vec::new();
        for i in 0..options.runs {
            times.push(ms(lab.restore(&name, &snapshot, &format!("{name}-r{i}")).await?));
        }
        let value = median(&times);
        let copy_runs = if gib > 4 { 1 } else { options.runs.min(3) };
        // The file holding the VM disk's data (a little over 95 % of the disk: see the fill).
        let layer = lab.largest_layer((gib << 30) + (gib << 30) / 10);
        let copied = crate::storage::copy_baseline(&options.scratch, layer.as_deref(), gib, copy_runs);
        let (baseline, copied) = match copied.await {
            Ok((took, bytes)) => (Some(ms(took)), format!(", {:.2} GiB", bytes as f64 / (1u64 << 30) as f64)),
            Err(e) => {
                report.note(SECTION, format!("full-copy baseline at {gib} GiB not measured: {e:#}"));
                (None, String::new())
            }
        };
        let mut row = Row::new(
            SECTION,
            format!(
                "create -> complete, {gib} GiB full disk (baseline: cp + fsync of its data file{copied})"
            ),
            value,
            "ms",
        )
        .target("<= 1000 ms", value <= 1000.0);
        if let Some(b) = baseline {
            row = row.baseline(b);
        }
        report.add(row);
        results.push((gib, value, baseline));
    }
    if let Some(row) =
        options.size_ratio_row(SECTION, |l, s| format!("time ratio {l} GiB / {s} GiB"), "<= 1.2", &results)
    {
        report.add(row);
    }
    Ok(())
}
