//! Command-line definitions and dispatch.

mod controller;
mod guest_image;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// vmsnap: VM snapshots and restores with KubeVirt's API, on one machine or in a cluster.
#[derive(Parser, Debug)]
#[command(name = "vmsnap", version, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the embedded control plane: API server, node agent, storage driver, controllers, web console.
    Serve(serve::ServeArgs),
    /// Run only the snapshot and restore controllers against a cluster (with leader election).
    Controller(controller::ControllerArgs),
    /// Build the test guest image (a small Linux with the QEMU guest agent) used by the examples.
    GuestImage(guest_image::GuestImageArgs),
}

/// The default data directory: `$VMSNAP_DATA_DIR`, else `/var/lib/vmsnap` for root, else `~/.local/share/vmsnap`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VMSNAP_DATA_DIR") {
        return PathBuf::from(d);
    }
    if nix_is_root() {
        return PathBuf::from("/var/lib/vmsnap");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/vmsnap")
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a command; the exit code is the command's.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::GuestImage(args) => guest_image::run(args).await,
        Command::Controller(args) => controller::run(args).await,
    }
}

/// Logs to stderr, filtered by `VMSNAP_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VMSNAP_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
