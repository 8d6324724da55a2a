//! `vmsnap guest-image`: build the small test guest (kernel + initramfs with the QEMU guest agent).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct GuestImageArgs {
    #[command(subcommand)]
    command: GuestImageCommand,
}

#[derive(Subcommand, Debug)]
enum GuestImageCommand {
    /// Build the test guest image if its recipe changed (cached; a no-op otherwise).
    #[command(
        after_help = "Example:\n  vmsnap guest-image build\n  vmsnap guest-image build --cache-dir target/guest-cache"
    )]
    Build {
        /// Image cache directory [default: <data dir>/images]
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Data directory whose image cache to use [default: as for `vmsnap serve`]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// The image cache of a data directory.
pub fn image_cache(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("images")
}

pub async fn run(args: GuestImageArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        GuestImageCommand::Build { cache_dir, data_dir } => {
            let cache =
                cache_dir.unwrap_or_else(|| image_cache(&data_dir.unwrap_or_else(super::default_data_dir)));
            let image = tokio::task::spawn_blocking(move || {
                vmsnap_guestimage::ensure_built(&cache, &mut |step| errln!("guest-image: {step}"))
            })
            .await?
            .context("cannot build the test guest image")?;
            println!("test guest image {} ready:", image.image_name);
            println!("  kernel: {}", image.kernel.display());
            println!("  initrd: {}", image.initrd.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
