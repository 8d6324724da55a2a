//! `vmsnap serve` killed with SIGKILL in the middle of a stream of writes loses no acknowledged write
//! and invents none.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use rand::Rng;
use serde_json::json;
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_testing::{ServerProcess, client_for};

#[derive(Default)]
struct Ledger {
    attempted: BTreeSet<String>,
    acknowledged: BTreeSet<String>,
    /// Highest acknowledged and highest attempted `step` label per object.
    steps: BTreeMap<String, (u64, u64)>,
}

fn snapshot(name: &str) -> VirtualMachineSnapshot {
    serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
        "metadata": {"name": name, "labels": {"step": "0"}},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}
    }))
    .unwrap()
}

async fn writer(api: Api<VirtualMachineSnapshot>, prefix: String, ledger: Arc<Mutex<Ledger>>) {
    for i in 0.. {
        let name = format!("{prefix}-{i}");
        ledger.lock().unwrap().attempted.insert(name.clone());
        if api.create(&PostParams::default(), &snapshot(&name)).await.is_err() {
            return;
        }
        ledger.lock().unwrap().acknowledged.insert(name.clone());
        for step in 1..=3u64 {
            ledger.lock().unwrap().steps.entry(name.clone()).or_default().1 = step;
            let patch = json!({"metadata": {"labels": {"step": step.to_string()}}});
            if api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_err() {
                return;
            }
            ledger.lock().unwrap().steps.entry(name.clone()).or_default().0 = step;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_nothing_else_appears() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(env!("CARGO_BIN_EXE_vmsnap").as_ref(), dir.path(), &[]).unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..3 {
        let client = client_for(&server.kubeconfig()).await.unwrap();
        let api: Api<VirtualMachineSnapshot> = Api::namespaced(client, "default");
        let tasks: Vec<_> = (0..4)
            .map(|t| tokio::spawn(writer(api.clone(), format!("r{round}w{t}"), ledger.clone())))
            .collect();
        let wait_ms = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        server.kill9();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        server.restart().unwrap();

        let client = client_for(&server.kubeconfig()).await.unwrap();
        let api: Api<VirtualMachineSnapshot> = Api::namespaced(client, "default");
        let stored = api.list(&Default::default()).await.unwrap();
        let names: BTreeSet<String> = stored.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
        let l = ledger.lock().unwrap();
        assert!(l.acknowledged.len() > round * 4, "round {round}: too few writes happened before the kill");
        let lost: Vec<_> = l.acknowledged.difference(&names).collect();
        assert!(lost.is_empty(), "round {round}: acknowledged creates lost: {lost:?}");
        let invented: Vec<_> = names.difference(&l.attempted).collect();
        assert!(invented.is_empty(), "round {round}: objects nobody wrote: {invented:?}");
        for s in &stored.items {
            let name = s.metadata.name.clone().unwrap();
            let step: u64 = s.metadata.labels.as_ref().unwrap()["step"].parse().unwrap();
            let (acked, attempted) = l.steps.get(&name).copied().unwrap_or_default();
            assert!(
                step >= acked && step <= attempted,
                "round {round}: {name} has step {step}, acknowledged {acked}, attempted {attempted}"
            );
        }
    }
}
