//! `vmsnap serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use vmsnap_server::{EmbeddedServer, ServeConfig};

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vmsnap serve --data-dir /var/lib/vmsnap --listen 127.0.0.1:7443\n  export KUBECONFIG=/var/lib/vmsnap/kubeconfig; kubectl get vms"
)]
pub struct ServeArgs {
    /// Where the store, disks and kubeconfig live [default: $VMSNAP_DATA_DIR, /var/lib/vmsnap as root, ~/.local/share/vmsnap]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on; a non-loopback address is served with TLS.
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// Number of changes kept for resuming watches (older resumptions get 410 Expired).
    #[arg(long, default_value_t = 100_000)]
    log_retention: u64,
    /// Do not run the snapshot and restore controllers in-process (run `vmsnap controller` instead).
    #[arg(long)]
    no_controllers: bool,
    /// The accelerator of VMs: `auto` (try KVM with a short probe boot, else TCG), `kvm` or `tcg`.
    #[arg(long, default_value = "auto")]
    accel: vmsnap_agent::AccelSetting,
    /// Where the test guest image is built and looked up [default: <data dir>/images]
    #[arg(long)]
    image_cache: Option<PathBuf>,
    /// A directory whose disk images DataVolumes may import with file:// URLs (repeatable) [default: <data dir>/import]
    #[arg(long = "import-dir", value_name = "DIR")]
    import_dirs: Vec<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let data_dir = args.data_dir.unwrap_or_else(super::default_data_dir);
    let mut config = ServeConfig::new(data_dir.clone());
    config.listen = args.listen;
    config.log_retention = args.log_retention;
    config.controllers = !args.no_controllers;
    config.accel = args.accel;
    if let Some(cache) = args.image_cache {
        config.image_cache = cache;
    }
    if !args.import_dirs.is_empty() {
        config.file_import_roots = args.import_dirs;
    }
    let server = EmbeddedServer::start(config)
        .await
        .with_context(|| format!("cannot start vmsnap in {}", data_dir.display()))?;
    println!("vmsnap is serving on {}", server.api.url);
    println!(
        "  kubeconfig:  {}    (export KUBECONFIG={})",
        server.api.kubeconfig_path.display(),
        server.api.kubeconfig_path.display()
    );
    println!(
        "  web console: {}    (log in with the token in {})",
        server.api.console_url,
        data_dir.join("token").display()
    );
    wait_for_stop_signal().await?;
    println!("vmsnap: stopping (virtual machines keep running and are picked up at the next start)");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot wait for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
