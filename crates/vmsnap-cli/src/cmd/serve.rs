//! `vmsnap serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use vmsnap_server::{EmbeddedServer, ServeConfig};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vmsnap serve --data-dir /var/lib/vmsnap --listen 127.0.0.1:7443\n  export KUBECONFIG=/var/lib/vmsnap/kubeconfig; kubectl get vms\n  vmsnap serve --listen 0.0.0.0:7443 --tls-san vmsnap.example.com    # reachable from other machines\n\nThe data directory is private to the user vmsnap runs as (directories 0700, files 0600): a start\nmakes it so, and refuses a directory that another user owns."
)]
pub struct ServeArgs {
    /// Where the store, disks and kubeconfig live [default: $VMSNAP_DATA_DIR, /var/lib/vmsnap as root, ~/.local/share/vmsnap]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on; 0.0.0.0 or [::] exposes the API on every address of the host.
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// Another name for the API's TLS certificate: an IP address or DNS name clients use to reach this host (repeatable)
    #[arg(long = "tls-san", value_name = "NAME", value_parser = parse_tls_san)]
    tls_sans: Vec<String>,
    /// Number of changes kept for resuming watches (older resumptions get 410 Expired).
    #[arg(long, default_value_t = 100_000)]
    log_retention: u64,
    /// Do not run the snapshot, restore and schedule controllers in-process (run `vmsnap controller` instead); the backup controllers stay, beside this node's disks
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
    // First, so that every file made from here on (by vmsnap, SQLite, qemu-img, QEMU) is private.
    vmsnap_server::privacy::restrict_umask();
    super::init_logging();
    match vmsnap_server::limits::raise_open_files_limit() {
        Ok((before, after)) if before != after => {
            tracing::debug!(before, after, "raised the open files limit")
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    let data_dir = args.data_dir.unwrap_or_else(super::default_data_dir);
    let mut config = ServeConfig::new(data_dir.clone());
    config.listen = args.listen;
    config.log_retention = args.log_retention;
    config.controllers = !args.no_controllers;
    config.accel = args.accel;
    config.tls_sans = args.tls_sans;
    if let Some(cache) = args.image_cache {
        config.image_cache = cache;
    }
    if !args.import_dirs.is_empty() {
        config.file_import_roots = args.import_dirs;
    }
    let server = EmbeddedServer::start(config)
        .await
        .with_context(|| format!("cannot start vmsnap in {}", data_dir.display()))?;
    print_addresses(&server, &data_dir);
    wait_for_stop_signal().await?;
    println!("vmsnap: stopping (virtual machines keep running and are picked up at the next start)");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Where to reach the API and the web console: on every address of the host when listening on
/// all of them (the kubeconfig names the loopback address, which works on this host only).
fn print_addresses(server: &EmbeddedServer, data_dir: &std::path::Path) {
    let api = &server.api;
    let token = data_dir.join("token");
    let kubeconfig = api.kubeconfig_path.display();
    if !api.addr.ip().is_unspecified() {
        println!("vmsnap is serving on {}", api.url);
        println!("  kubeconfig:  {kubeconfig}    (export KUBECONFIG={kubeconfig})");
        println!("  web console: {}    (log in with the token in {})", api.console_url, token.display());
        return;
    }
    let port = api.addr.port();
    let urls: Vec<String> =
        server.host_addresses.iter().map(|ip| format!("https://{}/", SocketAddr::new(*ip, port))).collect();
    println!("vmsnap is serving on every address of this host, port {port}: {}", urls.join(" "));
    println!(
        "  kubeconfig:  {kubeconfig}    (export KUBECONFIG={kubeconfig}; it names {}, for this host; \
         elsewhere, set its server to one of the addresses above)",
        api.url
    );
    let console = urls.first().cloned().unwrap_or_else(|| api.console_url.clone());
    println!(
        "  web console: {console}    (log in with the token in {}; trust the CA in the kubeconfig)",
        token.display()
    );
}

/// A `--tls-san`: an IP address, or a DNS name (letters, digits, hyphens and dots, an optional
/// leading `*.` wildcard).
fn parse_tls_san(text: &str) -> Result<String, String> {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    let name = text.strip_prefix("*.").unwrap_or(text);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("{text:?} is neither an IP address nor a DNS name (like vmsnap.example.com)"))
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub(super) async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot wait for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_san_is_an_ip_address_or_a_dns_name() {
        assert_eq!(parse_tls_san("192.0.2.10").unwrap(), "192.0.2.10");
        assert_eq!(parse_tls_san("fd00::10").unwrap(), "fd00::10");
        assert_eq!(parse_tls_san("VMsnap.Example.com").unwrap(), "vmsnap.example.com");
        assert_eq!(parse_tls_san("*.example.com").unwrap(), "*.example.com");
        for bad in ["", "exa mple.com", "-bad.example", "https://vmsnap.example.com", "a..b", "x_y.example"] {
            let error = parse_tls_san(bad).unwrap_err();
            assert!(error.contains("neither an IP address nor a DNS name"), "{bad:?}: {error}");
        }
    }
}
