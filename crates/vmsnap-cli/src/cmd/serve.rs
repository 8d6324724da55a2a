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
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let data_dir = args.data_dir.unwrap_or_else(super::default_data_dir);
    let mut config = ServeConfig::new(data_dir.clone());
    config.listen = args.listen;
    config.log_retention = args.log_retention;
    config.controllers = !args.no_controllers;
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
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    println!("vmsnap: stopping (virtual machines keep running and are picked up at the next start)");
    Ok(ExitCode::SUCCESS)
}
