//! Shared set-up of the controller tests: an API server with storage classes, the controllers, a
//! fake node agent and a fake CSI snapshotter.

#![allow(dead_code, missing_docs)] // Each test file uses a different part; test helpers need no rustdoc.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_controllers::{ControllerConfig, Controllers};
use vmsnap_testing::TestServer;
use vmsnap_testing::fakes::{FakeAgent, FakeProvisioner, FakeSnapshotter};
use vmsnap_testing::fixtures;

pub struct Env {
    pub server: TestServer,
    pub client: Client,
    pub agent: Arc<FakeAgent>,
    pub snapshotter: Option<FakeSnapshotter>,
    pub provisioner: FakeProvisioner,
    pub controllers: Option<Controllers>,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with_ready_delay(Duration::ZERO).await
    }

    /// An environment whose controllers the test starts itself (e.g. with a tagged client).
    pub async fn start_untagged_controllers() -> Env {
        let mut env = Self::start().await;
        env.controllers = None;
        env
    }

    pub async fn start_with_ready_delay(ready_after: Duration) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("VMSNAP_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let server = TestServer::start_with_seed(fixtures::storage_objects()).await.unwrap();
        let client = server.client().await.unwrap();
        let agent = FakeAgent::new(client.clone());
        server.api.set_subresources(agent.clone());
        let snapshotter = Some(FakeSnapshotter::start(client.clone(), ready_after));
        let provisioner = FakeProvisioner::start(client.clone());
        let controllers = Some(vmsnap_controllers::start(client.clone(), ControllerConfig::default()));
        Env { server, client, agent, snapshotter, provisioner, controllers }
    }

    pub fn snapshots(&self) -> Api<VirtualMachineSnapshot> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn vms(&self) -> Api<VirtualMachine> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create_vm(&self, vm: &VirtualMachine) -> VirtualMachine {
        self.vms().create(&PostParams::default(), vm).await.unwrap()
    }

    pub async fn create_snapshot(
        &self,
        name: &str,
        vm: &str,
        extra_spec: serde_json::Value,
    ) -> VirtualMachineSnapshot {
        let mut spec = json!({"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}});
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        let snap: VirtualMachineSnapshot = serde_json::from_value(json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        self.snapshots().create(&PostParams::default(), &snap).await.unwrap()
    }

    pub async fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> VirtualMachineSnapshot {
        let want = phase.to_owned();
        vmsnap_testing::await_value(&self.snapshots(), name, timeout, move |s: &VirtualMachineSnapshot| {
            (s.status.as_ref()?.phase.as_deref() == Some(want.as_str())).then(|| s.clone())
        })
        .await
        .unwrap()
    }

    pub fn conditions(s: &VirtualMachineSnapshot) -> Vec<(String, String, String)> {
        s.status
            .as_ref()
            .map(|st| {
                st.conditions
                    .iter()
                    .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}
