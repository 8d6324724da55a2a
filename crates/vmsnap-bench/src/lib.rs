//! The benchmark behind `vmsnap bench`. Each section measures vmsnap and, in the same run, the
//! baseline it is compared with, and prints both with their ratio. Targets come from the design
//! document; every line says whether the target is met. Results are never taken from timed tests.
//!
//! The sections that run guests share one embedded control plane (`freeze`, `snapshot`,
//! `restore` reuse the same VMs); every other section starts its own. A section that fails, or
//! whose prerequisite is missing, leaves a note in the report and the next section runs.

mod backup;
mod controlplane;
mod freeze;
mod guest;
mod lab;
mod libvirt;
mod memory;
mod probe;
mod reads;
mod report;
mod restore;
mod schedule;
mod snapshot;
mod stats;
mod storage;
mod vms;

use std::path::PathBuf;

pub use report::{Note, Report, Row};

/// Every section, in the order they run.
pub const SECTIONS: &[&str] =
    &["freeze", "snapshot", "restore", "reads", "controlplane", "schedule", "memory", "storage", "backup"];

/// The sections that share the VMs of one embedded control plane.
const SHARING: &[&str] = &["freeze", "snapshot", "restore"];

/// Which sections to run and where to put scratch data.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Scratch directory (needs room for the disks: about 2.5 times the largest size).
    pub scratch: PathBuf,
    /// Disk sizes in GiB (the design uses 1 and 16).
    pub sizes_gib: Vec<u64>,
    /// Sections to run, from [`SECTIONS`] (empty = all).
    pub sections: Vec<String>,
    /// Runs per measurement (the median is reported).
    pub runs: usize,
    /// The test guest image cache (built there if missing).
    pub guest_cache: PathBuf,
    /// The `vmsnap` binary whose `serve` the memory section runs.
    pub binary: PathBuf,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            scratch: std::env::temp_dir(),
            sizes_gib: vec![1, 16],
            sections: Vec::new(),
            runs: 5,
            guest_cache: vmsnap_guestimage::test_cache_root(),
            binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vmsnap")),
        }
    }
}

impl BenchOptions {
    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }

    /// Starts a control plane of its own for a section, in the scratch directory of the run
    /// (guests need the test guest image; `compaction`: how often layer chains are compacted).
    async fn start_lab(
        &self,
        guests: bool,
        compaction: Option<std::time::Duration>,
    ) -> anyhow::Result<lab::Lab> {
        lab::Lab::start(lab::LabConfig {
            scratch: &self.scratch,
            image_cache: &self.guest_cache,
            guests,
            compaction,
        })
        .await
    }

    /// The smallest and the largest size, in GiB, when they differ.
    fn size_pair(&self) -> Option<(u64, u64)> {
        let small = *self.sizes_gib.iter().min()?;
        let large = *self.sizes_gib.iter().max()?;
        (large > small).then_some((small, large))
    }

    /// The row of large-size over small-size (the cost must not grow with the disk), when the run
    /// covers two sizes and both were measured. `points` holds `(GiB, vmsnap, baseline)` medians;
    /// `what` names the row from the large and the small size.
    fn size_ratio_row(
        &self,
        section: &str,
        what: impl FnOnce(u64, u64) -> String,
        target: &str,
        points: &[(u64, f64, Option<f64>)],
    ) -> Option<Row> {
        let (small, large) = self.size_pair()?;
        let at = |gib| points.iter().find(|p| p.0 == gib);
        let (s, l) = (at(small)?, at(large)?);
        let ratio = l.1 / s.1;
        let row = Row::new(section, what(large, small), ratio, "x").target(target, ratio <= 1.2);
        Some(match (s.2, l.2) {
            (Some(sb), Some(lb)) => row.baseline(lb / sb),
            _ => row,
        })
    }
}

/// The embedded control plane whose VMs the guest sections share, started on first use, with the
/// options of the run.
pub(crate) struct SharedLab<'a> {
    options: &'a BenchOptions,
    lab: Option<lab::Lab>,
}

impl<'a> SharedLab<'a> {
    fn new(options: &'a BenchOptions) -> Self {
        SharedLab { options, lab: None }
    }

    /// The lab, started now if need be.
    pub(crate) async fn get(&mut self) -> anyhow::Result<&lab::Lab> {
        let options = self.options;
        if self.lab.is_none() {
            // Compaction off: it would copy whole disks under the measurements (see `reads`).
            self.lab = Some(options.start_lab(true, None).await?);
        }
        Ok(self.lab.as_ref().expect("started above"))
    }

    async fn shutdown(&mut self) {
        if let Some(lab) = self.lab.take() {
            lab.shutdown().await;
        }
    }
}

/// Runs the selected sections and returns their report (also printed as each row comes).
pub async fn run(options: &BenchOptions) -> Report {
    let mut report = Report::default();
    let mut shared = SharedLab::new(options);
    let selected: Vec<&str> = SECTIONS.iter().copied().filter(|s| options.wants(s)).collect();
    for (i, &section) in selected.iter().enumerate() {
        let result = match section {
            "freeze" => freeze::run(&mut shared, &mut report).await,
            "snapshot" => snapshot::run(&mut shared, &mut report).await,
            "restore" => restore::run(&mut shared, &mut report).await,
            "reads" => reads::run(options, &mut report).await,
            "controlplane" => controlplane::run(options, &mut report).await,
            "schedule" => schedule::run(options, &mut report).await,
            "memory" => memory::run(options, &mut report).await,
            "storage" => storage::run(options, &mut report).await,
            "backup" => backup::run(options, &mut report).await,
            _ => unreachable!("every section is listed"),
        };
        if let Err(error) = result {
            report.note(section, format!("the section failed: {error:#}"));
        }
        if !selected[i + 1..].iter().any(|s| SHARING.contains(s)) {
            // No later section uses the shared VMs: give their disk space and CPU back.
            shared.shutdown().await;
        }
    }
    shared.shutdown().await;
    report
}
