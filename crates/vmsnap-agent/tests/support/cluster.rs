//! An API server, a storage driver and the node agent, wired as in embedded
//! mode, with fixtures that provision volumes the way the storage controllers
//! will (a driver volume, a CSI PersistentVolume naming it, a bound PVC).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use vmsnap_agent::{Agent, AgentConfig};
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_guestimage::test_cache_root;
use vmsnap_storage::{LayeredDriver, StorageOptions, VolumeDriver, VolumeId};
use vmsnap_testing::TestServer;
use vmsnap_vmm::{Accel, AccelSetting, Vmm};

use super::Env;

/// The namespace the tests use.
pub const NS: &str = "default";
/// The resource of VirtualMachines, as the cluster's calls name it.
pub const VMS: &str = "virtualmachines";
/// The resource of VirtualMachineInstances.
pub const VMIS: &str = "virtualmachineinstances";

/// A control plane with a node agent, and the QEMU processes it starts (killed on drop).
pub struct Cluster {
    pub server: TestServer,
    pub client: Client,
    pub driver: Arc<LayeredDriver>,
    pub agent: Arc<Agent>,
    pub config: AgentConfig,
    _dirs: tempfile::TempDir,
}

impl Cluster {
    /// Everything started, or `None` (after saying why) without QEMU or the guest.
    pub async fn start() -> Result<Option<Self>> {
        let Some(env) = Env::new().await? else { return Ok(None) };
        let accel = match env.accel {
            Accel::Kvm => AccelSetting::Kvm,
            Accel::Tcg => AccelSetting::Tcg,
        };
        Self::start_with(accel).await.map(Some)
    }

    /// Everything but QEMU and the guest image, for tests in which no VM boots.
    pub async fn start_without_guests() -> Result<Self> {
        super::init_tracing();
        Self::start_with(AccelSetting::Tcg).await
    }

    async fn start_with(accel: AccelSetting) -> Result<Self> {
        let server = TestServer::start().await?;
        let client = server.client().await?;
        // Short: QEMU's unix socket paths must fit 107 bytes.
        let dirs = tempfile::Builder::new().prefix("va").tempdir_in("/tmp")?;
        let driver =
            Arc::new(LayeredDriver::open(dirs.path().join("volumes"), StorageOptions::default()).await?);
        driver.recover(None).await?;
        let config = AgentConfig {
            runtime_dir: dirs.path().join("vms"),
            image_cache: test_cache_root(),
            accel,
            node_name: "node1".into(),
        };
        let agent = Agent::start(client.clone(), driver.clone(), config.clone()).await?;
        server.api.set_subresources(agent.clone());
        Ok(Self { server, client, driver, agent, config, _dirs: dirs })
    }

    /// Stops the agent (its VMs keep running) and starts a new one on the same directories.
    pub async fn restart_agent(&mut self) -> Result<Duration> {
        self.agent.shutdown().await;
        let started = Instant::now();
        self.agent = Agent::start(self.client.clone(), self.driver.clone(), self.config.clone()).await?;
        self.server.api.set_subresources(self.agent.clone());
        Ok(started.elapsed())
    }

    /// Stops the agent without starting a new one.
    pub async fn stop_agent(&self) {
        self.agent.shutdown().await;
    }

    /// Starts a new agent after [`Cluster::stop_agent`].
    pub async fn start_agent(&mut self) -> Result<()> {
        self.agent = Agent::start(self.client.clone(), self.driver.clone(), self.config.clone()).await?;
        self.server.api.set_subresources(self.agent.clone());
        Ok(())
    }

    pub fn vms(&self) -> Api<VirtualMachine> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn vmis(&self) -> Api<VirtualMachineInstance> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// A storage volume of `size` bytes, a CSI PV naming it and PVC `claim` bound to it.
    pub async fn volume(&self, claim: &str, size: u64) -> Result<VolumeId> {
        let id = VolumeId::new(format!("pvc-{claim}"))?;
        self.driver.create_volume(&id, size).await?;
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": format!("pv-{claim}")},
            "spec": {
                "capacity": {"storage": size.to_string()},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "local",
                "claimRef": {"namespace": NS, "name": claim},
                "csi": {"driver": "local.storage.vmsnap.io", "volumeHandle": id.as_str()},
            },
        }))?;
        Api::<PersistentVolume>::all(self.client.clone()).create(&PostParams::default(), &pv).await?;
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local",
                "resources": {"requests": {"storage": size.to_string()}},
                "volumeName": format!("pv-{claim}"),
            },
        }))?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), NS);
        pvcs.create(&PostParams::default(), &pvc).await?;
        let status = json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": size.to_string()}}});
        pvcs.patch_status(claim, &PatchParams::default(), &Patch::Merge(&status)).await?;
        Ok(id)
    }

    /// A DataVolume `name` in `phase` whose PVC (of the same name) is provisioned and bound.
    pub async fn data_volume(&self, name: &str, size: u64, phase: &str) -> Result<VolumeId> {
        let dv: DataVolume = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": size.to_string()}}}},
        }))?;
        let dvs: Api<DataVolume> = Api::namespaced(self.client.clone(), NS);
        dvs.create(&PostParams::default(), &dv).await?;
        let id = self.volume(name, size).await?;
        self.set_data_volume_phase(name, phase).await?;
        Ok(id)
    }

    /// Sets the DataVolume's phase, as CDI would.
    pub async fn set_data_volume_phase(&self, name: &str, phase: &str) -> Result<()> {
        let dvs: Api<DataVolume> = Api::namespaced(self.client.clone(), NS);
        let status = json!({"status": {"phase": phase, "claimName": name}});
        dvs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        Ok(())
    }

    /// `kubectl apply -f -` of `yaml`.
    pub async fn apply(&self, yaml: &str) -> Result<String> {
        let kubectl = self.server.kubectl();
        let yaml = yaml.to_owned();
        let out =
            tokio::task::spawn_blocking(move || kubectl.run_with_stdin(&["apply", "-f", "-"], Some(&yaml)))
                .await?;
        anyhow::ensure!(out.code == 0, "kubectl apply failed: {}{}", out.stdout, out.stderr);
        Ok(out.stdout)
    }

    /// `kubectl ARGS`, which must succeed; returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.server.kubectl().run_async(args).await;
        anyhow::ensure!(out.code == 0, "kubectl {args:?} failed: {}{}", out.stdout, out.stderr);
        Ok(out.stdout)
    }

    /// `PUT` a `subresources.kubevirt.io` action; returns how long the round trip took.
    pub async fn subresource(
        &self,
        plural: &str,
        name: &str,
        action: &str,
        body: Option<Value>,
    ) -> Result<Duration, kube::Error> {
        let url = format!("/apis/subresources.kubevirt.io/v1/namespaces/{NS}/{plural}/{name}/{action}");
        let body = body.map(|b| serde_json::to_vec(&b).expect("a JSON body")).unwrap_or_default();
        let request =
            http::Request::put(url).header("content-type", "application/json").body(body).expect("a request");
        let started = Instant::now();
        self.client.request_text(request).await?;
        Ok(started.elapsed())
    }

    /// Runs `script` with `sh -c` in the guest of VMI `name`; fails on a non-zero exit.
    pub async fn sh(&self, name: &str, script: &str) -> Result<String> {
        let command = ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let output = self.agent.exec(NS, name, &command, Duration::from_secs(30)).await?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(
            output.success(),
            "`{script}` failed with {:?}: {stdout}{}",
            output.exit_code,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    }

    /// The VMI's QEMU pid.
    pub fn pid(&self, name: &str) -> Result<i32> {
        self.agent.qemu_pid(NS, name).context("the VMI has no QEMU")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.config.runtime_dir.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Whatever the test did, no QEMU outlives it.
        for vm in Vmm::list_running(&self.config.runtime_dir).unwrap_or_default() {
            let _ = kill(Pid::from_raw(vm.pid), Signal::SIGKILL);
        }
    }
}

/// The condition `type_` of a VMI, if present: `(status, reason)`.
pub fn vmi_condition(vmi: &VirtualMachineInstance, type_: &str) -> Option<(String, Option<String>)> {
    vmi.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The phase of a VMI.
pub fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// Whether the VMI runs with its guest agent connected.
pub fn running_with_agent(vmi: &VirtualMachineInstance) -> bool {
    phase(vmi) == "Running" && vmi_condition(vmi, "AgentConnected").is_some_and(|(s, _)| s == "True")
}

/// The VM's printable status.
pub fn printable(vm: &VirtualMachine) -> &str {
    vm.status.as_ref().and_then(|s| s.printable_status.as_deref()).unwrap_or_default()
}

pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}
