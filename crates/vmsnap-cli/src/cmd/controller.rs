//! `vmsnap controller`: the snapshot and restore controllers alone, against any cluster, with leader
//! election so that several replicas are safe.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vmsnap_controllers::leader::{LeaseConfig, run_elected};
use vmsnap_controllers::{ControllerConfig, Metrics};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vmsnap controller                                  # in a pod, or with $KUBECONFIG\n  vmsnap controller --kubeconfig /var/lib/vmsnap/kubeconfig --lease-namespace default"
)]
pub struct ControllerArgs {
    /// Kubeconfig to use [default: in-cluster service account, else $KUBECONFIG, else ~/.kube/config]
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the leader election Lease [default: $POD_NAMESPACE, else the kubeconfig's namespace]
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "vmsnap-controllers")]
    lease_name: String,
    /// Seconds a leader holds the lease without renewing it.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Serve /metrics and /healthz on this address.
    #[arg(long, default_value = "127.0.0.1:0")]
    metrics_listen: SocketAddr,
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = super::cluster_config(args.kubeconfig.as_deref()).await?;
    let namespace = args.lease_namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).context("cannot build the API client")?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    let identity = format!("{host}-{}", std::process::id());
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    println!("vmsnap controller {identity}: metrics on http://{}/metrics", listener.local_addr()?);
    let served = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let m = served.clone();
                async move { m.render() }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let lease = LeaseConfig {
        namespace,
        name: args.lease_name,
        identity: identity.clone(),
        duration: Duration::from_secs(args.lease_duration),
        renew_every: Duration::from_secs((args.lease_duration / 3).max(1)),
    };
    run_elected(client.clone(), lease, move || {
        let client = client.clone();
        let identity = identity.clone();
        async move {
            let _controllers = vmsnap_controllers::start(client, ControllerConfig { instance: identity });
            std::future::pending::<()>().await
        }
    })
    .await
}
