//! VMs, snapshots and restores of the vmsnap side, through the Kubernetes API as a user makes
//! them: VirtualMachines with blank DataVolumes, VirtualMachineSnapshots, VirtualMachineRestores,
//! and commands in the guest through the `guestexec` subresource.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vmsnap_api::kubevirt::{GuestExecRequest, GuestExecResult, VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::{SnapshotPhase, VirtualMachineRestore, VirtualMachineSnapshot};

use crate::guest::{self, Guest};
use crate::lab::Lab;

/// The namespace of every benchmark object.
pub(crate) const NS: &str = "default";

/// How long a test guest may take to boot under TCG on a busy machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a snapshot or restore may take before the benchmark gives up on it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// A VM of the test guest with `disks` blank DataVolumes of `size` each (a Kubernetes quantity),
/// mounted by the guest at `/mnt/d0`, `/mnt/d1`, ...
pub(crate) fn vm_manifest(name: &str, disks: usize, size: &str, running: bool) -> Value {
    let templates: Vec<Value> = (0..disks)
        .map(|i| {
            json!({"metadata": {"name": format!("{name}-d{i}")},
                   "spec": {"source": {"blank": {}},
                            "storage": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                                        "resources": {"requests": {"storage": size}}}}})
        })
        .collect();
    let devices: Vec<Value> =
        (0..disks).map(|i| json!({"name": format!("d{i}"), "disk": {"bus": "virtio"}})).collect();
    let volumes: Vec<Value> = (0..disks)
        .map(|i| json!({"name": format!("d{i}"), "dataVolume": {"name": format!("{name}-d{i}")}}))
        .collect();
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "runStrategy": if running { "Always" } else { "Halted" },
            "dataVolumeTemplates": templates,
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": name}},
                "spec": {"domain": {"firmware": {"kernelBoot": {"container": {"image": vmsnap_guestimage::TEST_GUEST_IMAGE}}},
                                    "devices": {"disks": devices},
                                    "resources": {"requests": {"memory": "256Mi"}}},
                         "volumes": volumes}}}
    })
}

/// A running VM of a lab, seen as a guest.
pub(crate) struct LabGuest<'a> {
    /// The lab.
    pub lab: &'a Lab,
    /// The VM's name.
    pub vm: String,
}

impl Guest for LabGuest<'_> {
    async fn sh(&self, script: &str, timeout: Duration) -> anyhow::Result<String> {
        let request = GuestExecRequest {
            command: vec!["sh".into(), "-c".into(), script.into()],
            timeout_seconds: Some(timeout.as_secs().max(1)),
            stdin: None,
        };
        let url = format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/{}/guestexec",
            self.vm
        );
        let http_request = http::Request::put(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&request)?)?;
        let text = self
            .lab
            .client
            .request_text(http_request)
            .await
            .with_context(|| format!("guestexec in {}", self.vm))?;
        let result: GuestExecResult = serde_json::from_str(&text).context("the guestexec answer")?;
        if result.exit_code != Some(0) {
            bail!(
                "`{script}` in {} ended with {:?}/{:?}: {}{}",
                self.vm,
                result.exit_code,
                result.signal,
                result.stdout,
                result.stderr
            );
        }
        Ok(result.stdout)
    }
}

impl Lab {
    fn vms(&self) -> Api<VirtualMachine> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn vmis(&self) -> Api<VirtualMachineInstance> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Whether the VM exists.
    pub async fn has_vm(&self, name: &str) -> anyhow::Result<bool> {
        Ok(self.vms().get_opt(name).await?.is_some())
    }

    /// The freeze section's VM with one full data disk of `gib` GiB, running: created (after
    /// checking `scratch` has room for its disk) if an earlier section did not. Returns its name.
    pub async fn running_full_vm(&self, scratch: &std::path::Path, gib: u64) -> anyhow::Result<String> {
        let name = crate::freeze::vm_name(1, gib);
        if !self.has_vm(&name).await? {
            crate::storage::ensure_free(scratch, (gib << 30) + (2 << 30))?;
        }
        self.running_vm(&name, 1, &format!("{gib}Gi"), true).await?;
        Ok(name)
    }

    /// The VM `name` running with its guest agent and its disks mounted; created first (with
    /// `disks` blank disks of `size`, the first filled with data when `fill`) if it does not exist,
    /// started if it is stopped.
    pub async fn running_vm(
        &self,
        name: &str,
        disks: usize,
        size: &str,
        fill: bool,
    ) -> anyhow::Result<LabGuest<'_>> {
        let created = match self.vms().get_opt(name).await? {
            Some(_) => {
                self.set_run_strategy(name, "Always").await?;
                false
            }
            None => {
                let vm: VirtualMachine = serde_json::from_value(vm_manifest(name, disks, size, true))?;
                self.vms()
                    .create(&PostParams::default(), &vm)
                    .await
                    .with_context(|| format!("create VM {name}"))?;
                true
            }
        };
        self.await_agent(name).await?;
        let guest = LabGuest { lab: self, vm: name.to_owned() };
        guest::await_disks(&guest, disks).await?;
        if created && fill {
            let started = Instant::now();
            guest::fill_first_disk(&guest).await?;
            println!(
                "  (filled the {size} disk of {name} from the guest in {:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(guest)
    }

    /// Sets the VM's `spec.runStrategy`.
    pub async fn set_run_strategy(&self, name: &str, strategy: &str) -> anyhow::Result<()> {
        let patch = json!({"spec": {"runStrategy": strategy}});
        self.vms().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Waits until the VM's guest agent is connected.
    pub async fn await_agent(&self, name: &str) -> anyhow::Result<()> {
        let connected = |vmi: Option<&VirtualMachineInstance>| {
            vmi.is_some_and(|v| condition(&as_json(v), "AgentConnected"))
        };
        wait(self.vmis(), name, BOOT_TIMEOUT, connected)
            .await
            .with_context(|| format!("VM {name} did not get its guest agent connected"))
    }

    /// Stops the VM and waits until it is `Stopped` and its VMI is gone.
    pub async fn stop_vm(&self, name: &str) -> anyhow::Result<()> {
        self.set_run_strategy(name, "Halted").await?;
        wait(self.vmis(), name, BOOT_TIMEOUT, |vmi: Option<&VirtualMachineInstance>| vmi.is_none()).await?;
        let stopped = |vm: Option<&VirtualMachine>| {
            vm.is_some_and(|v| {
                v.status.as_ref().and_then(|s| s.printable_status.as_deref()) == Some("Stopped")
            })
        };
        wait(self.vms(), name, BOOT_TIMEOUT, stopped).await.with_context(|| format!("VM {name} did not stop"))
    }

    /// Deletes the VM and waits until it and the claims of its `disks` DataVolumes are gone: their
    /// disk space is free then.
    pub async fn delete_vm(&self, name: &str, disks: usize) -> anyhow::Result<()> {
        self.vms()
            .delete(name, &DeleteParams::foreground())
            .await
            .with_context(|| format!("delete VM {name}"))?;
        wait(self.vms(), name, OPERATION_TIMEOUT, |vm: Option<&VirtualMachine>| vm.is_none())
            .await
            .with_context(|| format!("VM {name} was not deleted"))?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), NS);
        for i in 0..disks {
            let claim = format!("{name}-d{i}");
            wait(claims.clone(), &claim, OPERATION_TIMEOUT, |c: Option<&PersistentVolumeClaim>| c.is_none())
                .await
                .with_context(|| format!("PersistentVolumeClaim {claim} of VM {name} was not deleted"))?;
        }
        Ok(())
    }

    /// Creates a snapshot of `vm` and waits until it is `readyToUse`; returns that time.
    pub async fn snapshot(&self, vm: &str, name: &str) -> anyhow::Result<Duration> {
        self.take_snapshot(serde_json::from_value(snapshot_manifest(vm, name))?).await
    }

    /// Creates `snapshot` and waits until it is `readyToUse`; returns that time.
    pub async fn take_snapshot(&self, snapshot: VirtualMachineSnapshot) -> anyhow::Result<Duration> {
        let api: Api<VirtualMachineSnapshot> = Api::namespaced(self.client.clone(), NS);
        let name = snapshot.metadata.name.clone().unwrap_or_default();
        let name = name.as_str();
        let started = Instant::now();
        api.create(&PostParams::default(), &snapshot)
            .await
            .with_context(|| format!("create snapshot {name}"))?;
        let done = |s: Option<&VirtualMachineSnapshot>| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|st| st.ready_to_use == Some(true) || st.phase == Some(SnapshotPhase::Failed))
        };
        let snapshot = wait_object(api, name, OPERATION_TIMEOUT, done).await?;
        let took = started.elapsed();
        let status = snapshot.status.unwrap_or_default();
        if status.ready_to_use != Some(true) {
            bail!("snapshot {name} failed: {:?}", status.error);
        }
        Ok(took)
    }

    /// Deletes a snapshot (its content and volume snapshots go with it) without waiting.
    pub async fn delete_snapshot(&self, name: &str) -> anyhow::Result<()> {
        let api: Api<VirtualMachineSnapshot> = Api::namespaced(self.client.clone(), NS);
        api.delete(name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// Deletes a snapshot and waits until it is gone (its content and volume snapshots, and so
    /// the layers only it kept, go with it).
    pub async fn remove_snapshot(&self, name: &str) -> anyhow::Result<()> {
        self.delete_snapshot(name).await?;
        let api: Api<VirtualMachineSnapshot> = Api::namespaced(self.client.clone(), NS);
        wait(api, name, OPERATION_TIMEOUT, |s: Option<&VirtualMachineSnapshot>| s.is_none())
            .await
            .with_context(|| format!("snapshot {name} was not deleted"))
    }

    /// Restores the stopped `vm` in place from `snapshot` and waits until the restore is
    /// complete; returns that time.
    pub async fn restore(&self, vm: &str, snapshot: &str, name: &str) -> anyhow::Result<Duration> {
        let api: Api<VirtualMachineRestore> = Api::namespaced(self.client.clone(), NS);
        let restore: VirtualMachineRestore = serde_json::from_value(json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm},
                     "virtualMachineSnapshotName": snapshot}
        }))?;
        let started = Instant::now();
        api.create(&PostParams::default(), &restore)
            .await
            .with_context(|| format!("create restore {name}"))?;
        let complete = |r: Option<&VirtualMachineRestore>| {
            r.and_then(|r| r.status.as_ref()).is_some_and(|s| s.complete == Some(true))
        };
        wait(api, name, OPERATION_TIMEOUT, complete)
            .await
            .with_context(|| format!("restore {name} did not complete"))?;
        Ok(started.elapsed())
    }
}

/// A VirtualMachineSnapshot of `vm`.
pub(crate) fn snapshot_manifest(vm: &str, name: &str) -> Value {
    json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}
    })
}

/// An object as JSON.
pub(crate) fn as_json(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap_or_default()
}

/// Whether the object's condition `kind` is `True`.
pub(crate) fn condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|list| list.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// Waits (with a watch) until `done` holds for the object `name`.
async fn wait<K>(
    api: Api<K>,
    name: &str,
    timeout: Duration,
    done: impl Fn(Option<&K>) -> bool,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let found = tokio::time::timeout(timeout, kube::runtime::wait::await_condition(api, name, done)).await;
    match found {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("timed out after {timeout:?} waiting on {name}"),
    }
}

/// Like [`wait`], returning the object.
pub(crate) async fn wait_object<K>(
    api: Api<K>,
    name: &str,
    timeout: Duration,
    done: impl Fn(Option<&K>) -> bool,
) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let found = tokio::time::timeout(timeout, kube::runtime::wait::await_condition(api, name, done)).await;
    match found {
        Ok(Ok(Some(object))) => Ok(object),
        Ok(Ok(None)) => bail!("{name} was deleted"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("timed out after {timeout:?} waiting on {name}"),
    }
}
