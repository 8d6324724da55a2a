//! `vmsnap bench` (feature `bench`): measures vmsnap and, in the same run, its baselines (libvirt's snapshots, full
//! copies of disks), and prints both with their ratios and whether each design target is met.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use clap::builder::PossibleValuesParser;
use vmsnap_bench::{BenchOptions, SECTIONS};

/// `vmsnap bench`.
#[derive(Args, Debug)]
#[command(
    after_help = "Sections: freeze, snapshot, restore, reads, controlplane, schedule, memory, storage, backup
(all by default). The guest sections run real QEMU guests under TCG and take a while (the 16 GiB
disks are filled with data); the freeze section installs and starts libvirt for its baseline if it
is missing; the backup section needs restic (apt-get install restic) and weed (SeaweedFS).

Example:
  vmsnap bench --sections freeze,snapshot,restore --sizes 1,16
  vmsnap bench --sections controlplane,memory --scratch /var/tmp"
)]
pub struct BenchArgs {
    /// Sections to run, comma-separated [default: all]
    #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(SECTIONS.iter().copied()))]
    sections: Vec<String>,
    /// Disk sizes in GiB, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    sizes: Vec<u64>,
    /// Where disks and data directories go (needs about 2.5 times the largest size free) [default: the temp dir]
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// The test guest image cache (built there if missing) [default: $VMSNAP_GUEST_CACHE, else target/guest-cache of the build tree]
    #[arg(long)]
    image_cache: Option<PathBuf>,
}

/// Runs `vmsnap bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    // Only errors from the embedded control plane (its retries log warnings): the report is the
    // output. VMSNAP_LOG overrides.
    let filter = tracing_subscriber::EnvFilter::try_from_env("VMSNAP_LOG").unwrap_or_else(|_| "error".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let mut options = BenchOptions {
        sections: args.sections,
        sizes_gib: args.sizes,
        runs: args.runs as usize,
        ..Default::default()
    };
    if let Some(scratch) = args.scratch {
        options.scratch = scratch;
    }
    if let Some(cache) = args.image_cache {
        options.guest_cache = cache;
    }
    let started = std::time::Instant::now();
    // On Ctrl-C the run is dropped, which kills the QEMU processes and libvirt domains it started
    // and removes its files.
    let report = tokio::select! {
        report = vmsnap_bench::run(&options) => report,
        _ = tokio::signal::ctrl_c() => {
            errln!("vmsnap bench: interrupted; cleaned up");
            return Ok(ExitCode::from(130));
        }
    };
    println!(
        "\n# Summary ({:.0} s)\n\n{}\n{}",
        started.elapsed().as_secs_f64(),
        report.table(),
        report.summary()
    );
    Ok(ExitCode::SUCCESS)
}
