//! `vmsnap bench`. The benchmark harness (libvirt, full copies, guests filling 16 GiB disks) is not
//! part of the product: it is linked only into a binary built with the `bench` feature, which
//! `./x bench` builds. Without it, `vmsnap bench` says how to get it.

#[cfg(feature = "bench")]
pub use super::bench_run::{BenchArgs, run};

#[cfg(not(feature = "bench"))]
pub use without::{BenchArgs, run};

#[cfg(not(feature = "bench"))]
mod without {
    use std::process::ExitCode;

    use clap::Args;

    /// `vmsnap bench` in a binary built without the benchmark.
    #[derive(Args, Debug)]
    #[command(after_help = "This vmsnap was built without the benchmark. Example, from the repository:
  ./x bench --sections freeze,snapshot --sizes 1")]
    pub struct BenchArgs {
        /// The benchmark's arguments (see `./x bench -- --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    }

    /// Explains how to run the benchmark.
    pub async fn run(_: BenchArgs) -> anyhow::Result<ExitCode> {
        anyhow::bail!(
            "this vmsnap was built without the benchmark, which is not part of the product; run `./x bench` \
             from the repository, or build with `cargo build --release -p vmsnap-cli --features bench`"
        )
    }
}
