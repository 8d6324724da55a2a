//! The benchmark behind `vmsnap bench`. Each section measures vmsnap and, in the same run, the
//! baseline it is compared with, and prints both with their ratio. Targets come from the design
//! document; every line says whether the target is met. Results are never taken from timed tests.

mod report;
mod storage;

pub use report::{Report, Row};

/// Which sections to run and where to put scratch data.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Scratch directory (needs room for three copies of the largest disk).
    pub scratch: std::path::PathBuf,
    /// Disk sizes in GiB (the design uses 1 and 16).
    pub sizes_gib: Vec<u64>,
    /// Sections to run: `storage`, ... (empty = all).
    pub sections: Vec<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { scratch: std::env::temp_dir(), sizes_gib: vec![1, 16], sections: Vec::new() }
    }
}

impl BenchOptions {
    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }
}

/// Runs the selected sections and returns their report (also printed as each section finishes).
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let mut report = Report::default();
    if options.wants("storage") {
        storage::run(options, &mut report).await?;
    }
    Ok(report)
}
