//! `vmsnap console-server`: the web console for another cluster (one with KubeVirt and vmsnap's
//! controllers), served locally and talking to that cluster's API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vmsnap console-server --kubeconfig ~/.kube/config --listen 127.0.0.1:8080\n  # then open http://127.0.0.1:8080/ and log in with a bearer token of that cluster"
)]
pub struct ConsoleServerArgs {
    /// The cluster's kubeconfig (its current context names the API server and its CA) [default: $KUBECONFIG, else ~/.kube/config]
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Address the console listens on (plain HTTP: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

pub async fn run(args: ConsoleServerArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let kubeconfig = match args.kubeconfig {
        Some(path) => path,
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".kube/config"))
            .context("no kubeconfig: pass --kubeconfig or set KUBECONFIG")?,
    };
    let upstream = Arc::new(vmsnap_console::proxy::Upstream::from_kubeconfig(&kubeconfig)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (pick another --listen address)", args.listen))?;
    let addr = listener.local_addr()?;
    println!("vmsnap web console on http://{addr}/ for the cluster at {}", upstream.url());
    println!("  log in with a bearer token of that cluster (for example: kubectl create token NAME)");
    axum::serve(listener, vmsnap_console::proxy::router(upstream))
        .await
        .context("the console server stopped")?;
    Ok(ExitCode::SUCCESS)
}
