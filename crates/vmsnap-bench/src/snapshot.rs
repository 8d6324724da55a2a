//! Snapshot section: VirtualMachineSnapshot create -> `readyToUse` of a running VM whose one data
//! disk is full of data, at each size, and the large/small ratio (the cost must not grow with the
//! disk). Uses the same VMs as the freeze section.

use std::time::Duration;

use crate::stats::{median, ms};
use crate::{Report, Row, SharedLab};

const SECTION: &str = "snapshot";

/// Runs the section.
pub(crate) async fn run(shared: &mut SharedLab<'_>, report: &mut Report) -> anyhow::Result<()> {
    let options = shared.options;
    report.section(&format!(
        "snapshot: VirtualMachineSnapshot create -> readyToUse, running VM, one data disk full of data (median of {} runs)",
        options.runs
    ));
    let lab = shared.get().await?;
    let mut medians = Vec::new();
    for &gib in &options.sizes_gib {
        let name = lab.running_full_vm(&options.scratch, gib).await?;
        let mut times = Vec::new();
        for i in 0..options.runs {
            let snapshot = format!("{name}-s{i}");
            times.push(ms(lab.snapshot(&name, &snapshot).await?));
            lab.delete_snapshot(&snapshot).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        lab.stop_vm(&name).await?;
        let value = median(&times);
        report.add(
            Row::new(SECTION, format!("create -> readyToUse, {gib} GiB full disk"), value, "ms")
                .target("<= 500 ms", value <= 500.0),
        );
        medians.push((gib, value, None));
    }
    if let Some(row) =
        options.size_ratio_row(SECTION, |l, s| format!("time ratio {l} GiB / {s} GiB"), "<= 1.2", &medians)
    {
        report.add(row);
    }
    Ok(())
}
