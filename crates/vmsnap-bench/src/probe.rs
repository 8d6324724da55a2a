//! The API latency probe: a separate client, on a thread and runtime of its own, that loops over
//! GET of a VM, GET of its DataVolume and LIST of 50 snapshots while a section loads the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use crate::lab::Lab;
use crate::stats::{ms, percentile};
use crate::vms::NS;

/// The VMs the probe reads: `<vm_prefix>0` .. `<vm_prefix><count - 1>`, each with a DataVolume
/// `<vm>-d0`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probed {
    /// The VMs' name prefix.
    pub vm_prefix: &'static str,
    /// How many there are.
    pub count: usize,
}

/// Runs the probe on a thread and runtime of its own, with its own connections, as a separate
/// client process (kubectl) would: its latencies are the API server's, not the queue of this
/// process's other tasks (the embedded control plane runs in this process).
pub(crate) fn spawn_probe(
    lab: &Lab,
    probed: Probed,
    duration: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<Latencies>> {
    let kubeconfig = lab.kubeconfig.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let client = crate::lab::client_for(&kubeconfig, Some(Duration::from_secs(30))).await?;
            probe_with(client, probed, duration, stop).await
        })
    })
}

pub(crate) async fn join(
    probe: std::thread::JoinHandle<anyhow::Result<Latencies>>,
) -> anyhow::Result<Latencies> {
    tokio::task::spawn_blocking(move || probe.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the API probe panicked"))?
}

/// The probe's requests, in the order it makes them.
const KINDS: [&str; 3] = ["GET vm", "GET datavolume", "LIST 50 snapshots"];

/// The latencies of each of the probe's [`KINDS`] of request, in ms.
pub(crate) type Latencies = [Vec<f64>; 3];

pub(crate) fn all(latencies: &Latencies) -> Vec<f64> {
    latencies.concat()
}

pub(crate) fn by_kind(latencies: &Latencies) -> String {
    let p99 =
        |l: &Vec<f64>| if l.is_empty() { "-".to_owned() } else { format!("{:.1} ms", percentile(l, 99.0)) };
    KINDS.iter().zip(latencies).map(|(kind, l)| format!("{kind} {}", p99(l))).collect::<Vec<_>>().join(", ")
}

/// Requests in a loop (GET a VM, GET a DataVolume, LIST 50 snapshots) until `duration` passed or
/// `stop` is set; the latency of each, in ms, by kind.
async fn probe_with(
    client: kube::Client,
    probed: Probed,
    duration: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Latencies> {
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), NS);
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), NS);
    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(client, NS);
    let started = Instant::now();
    let mut latencies = Latencies::default();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        let name = format!("{}{}", probed.vm_prefix, (i * 7919) % probed.count);
        let t = Instant::now();
        match i % 3 {
            0 => drop(vms.get(&name).await?),
            1 => drop(dvs.get(&format!("{name}-d0")).await?),
            _ => drop(snapshots.list(&ListParams::default().limit(50)).await?),
        }
        latencies[i % 3].push(ms(t.elapsed()));
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(latencies)
}
