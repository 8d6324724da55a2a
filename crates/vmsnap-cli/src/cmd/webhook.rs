//! `vmsnap webhook`: KubeVirt's snapshot, restore and VM-lock admission rules as a validating
//! webhook (AdmissionReview v1 over TLS) for a cluster, as `deploy/webhook.yaml` runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use vmsnap_webhook::{KubeLookup, RESTORE_PATH, SNAPSHOT_PATH, VM_PATH, WebhookConfig};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vmsnap webhook --listen 0.0.0.0:8443 --tls-dir /tls        # in a pod, with a kubernetes.io/tls Secret mounted at /tls\n  vmsnap webhook --listen 127.0.0.1:8443 --kubeconfig ~/.kube/config   # a self-signed certificate, printed at start"
)]
pub struct WebhookArgs {
    /// Kubeconfig to read snapshots, restores and VMs with [default: in-cluster service account, else $KUBECONFIG, else ~/.kube/config]
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Directory with tls.crt and tls.key (a mounted kubernetes.io/tls Secret) [default: a self-signed certificate for --host, printed at start]
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// DNS name of the self-signed certificate: the webhook Service's name.
    #[arg(long, default_value = "vmsnap-webhook.vmsnap-system.svc")]
    host: String,
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = super::cluster_config(args.kubeconfig.as_deref()).await?;
    let client = kube::Client::try_from(config).context("cannot build the API client")?;
    let running = vmsnap_webhook::serve(
        Arc::new(KubeLookup(client)),
        WebhookConfig { listen: args.listen, tls_dir: args.tls_dir.clone(), host: args.host.clone() },
    )
    .await
    .context("cannot start the webhook")?;
    println!(
        "vmsnap webhook: serving KubeVirt's admission rules on https://{} ({SNAPSHOT_PATH}, {RESTORE_PATH}, {VM_PATH})",
        running.addr
    );
    if let Some(pem) = &running.self_signed_pem {
        println!(
            "self-signed certificate for {} (set its base64 as caBundle in the ValidatingWebhookConfiguration):\n{pem}",
            args.host
        );
    }
    super::serve::wait_for_stop_signal().await?;
    println!("vmsnap webhook: stopping");
    Ok(ExitCode::SUCCESS)
}
