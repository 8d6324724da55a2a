//! Fake peers for controller tests: a node agent that answers the VMI freeze subresources (and one
//! that also starts and stops fake VMs), and a CSI snapshotter that fixes the point in time of
//! VolumeSnapshots.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::refusal::{Refusal, RefusalCause};
use vmsnap_api::volumesnapshot::VolumeSnapshot;
use vmsnap_contracts::owner::controller_reference;
use vmsnap_contracts::subresources::{SubresourceError as ApiError, VmAction, VmSubresources, VmiAction};

/// virt-api's 409 with its `message`, and the cause that tells clients which refusal it is, as the
/// node agent answers.
fn refused(refusal: Refusal, message: &str) -> ApiError {
    ApiError::refused(message, &RefusalCause::new(refusal))
}

/// A node agent that records subresource calls and keeps `fsFreezeStatus` like the real one.
pub struct FakeAgent {
    client: Client,
    /// Every call, as `vmi/<ns>/<name>/<action>` or `vm/<ns>/<name>/<action>`.
    pub calls: Mutex<Vec<String>>,
    /// When set, `freeze` fails with this message (a 400, as a guest-agent failure does).
    pub fail_freeze: Mutex<Option<String>>,
    /// Also plays the VM controller and the guest: see [`FakeAgent::with_lifecycle`].
    lifecycle: bool,
    /// Serial console sockets (lifecycle mode): their directory and the ones listening.
    consoles: Mutex<(Option<tempfile::TempDir>, BTreeSet<PathBuf>)>,
}

impl FakeAgent {
    /// A fake agent writing through `client`.
    pub fn new(client: Client) -> Arc<FakeAgent> {
        Arc::new(Self::build(client, false))
    }

    /// A fake agent that also plays the VM controller and the guest, for CLI tests: `start`,
    /// `stop` and `restart` set the run strategy and create or delete a running VMI (with a guest
    /// agent) as the real agent would, `pause`/`unpause` set the VMI's `Paused` condition, the VM's
    /// `printableStatus` follows; `guestexec` knows `echo`, `cat` (stdin) and `false`; the serial
    /// console echoes what it receives.
    pub fn with_lifecycle(client: Client) -> Arc<FakeAgent> {
        Arc::new(Self::build(client, true))
    }

    fn build(client: Client, lifecycle: bool) -> FakeAgent {
        FakeAgent {
            client,
            calls: Mutex::new(Vec::new()),
            fail_freeze: Mutex::new(None),
            lifecycle,
            consoles: Mutex::new((None, BTreeSet::new())),
        }
    }

    /// The calls made so far whose action is `action`.
    pub fn calls_of(&self, action: &str) -> usize {
        self.calls.lock().unwrap().iter().filter(|c| c.ends_with(&format!("/{action}"))).count()
    }
}

#[async_trait]
impl VmSubresources for FakeAgent {
    async fn vmi(&self, namespace: &str, name: &str, action: VmiAction, body: Value) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push(format!("vmi/{namespace}/{name}/{action}"));
        if self.lifecycle && matches!(action, VmiAction::Pause | VmiAction::Unpause) {
            return lifecycle::set_paused(&self.client, namespace, name, action == VmiAction::Pause).await;
        }
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(self.client.clone(), namespace);
        let freeze_status = match action {
            VmiAction::Freeze => {
                if body.get("unfreezeTimeout").is_none() {
                    return Err(ApiError::bad_request("unfreezeTimeout is required"));
                }
                if let Some(msg) = self.fail_freeze.lock().unwrap().clone() {
                    return Err(ApiError::bad_request(msg));
                }
                json!("frozen")
            }
            VmiAction::Unfreeze => Value::Null,
            _ => return Ok(()),
        };
        let patch = json!({"status": {"fsFreezeStatus": freeze_status}});
        vmis.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(())
    }

    async fn vm(&self, namespace: &str, name: &str, action: VmAction, _body: Value) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push(format!("vm/{namespace}/{name}/{action}"));
        if !self.lifecycle {
            return Ok(());
        }
        match action {
            VmAction::Start => lifecycle::start(&self.client, namespace, name).await,
            VmAction::Stop => lifecycle::stop(&self.client, namespace, name).await,
            VmAction::Restart => {
                lifecycle::running_vmi(&self.client, namespace, name).await?;
                lifecycle::stop(&self.client, namespace, name).await?;
                lifecycle::start(&self.client, namespace, name).await
            }
            _ => Ok(()),
        }
    }

    async fn guest_exec(
        &self,
        namespace: &str,
        name: &str,
        request: vmsnap_api::kubevirt::GuestExecRequest,
    ) -> Result<vmsnap_api::kubevirt::GuestExecResult, ApiError> {
        self.calls.lock().unwrap().push(format!("vmi/{namespace}/{name}/guestexec"));
        if !self.lifecycle {
            return Err(ApiError::unavailable("this node agent cannot run commands in guests"));
        }
        lifecycle::running_vmi(&self.client, namespace, name).await?;
        Ok(lifecycle::exec(&request))
    }

    async fn console_socket(&self, namespace: &str, name: &str) -> Result<PathBuf, ApiError> {
        if !self.lifecycle {
            return Err(ApiError::unavailable("this node agent has no serial consoles"));
        }
        lifecycle::running_vmi(&self.client, namespace, name).await?;
        let mut consoles = self.consoles.lock().unwrap();
        if consoles.0.is_none() {
            consoles.0 = Some(tempfile::tempdir().map_err(|e| ApiError::internal(e.to_string()))?);
        }
        let path =
            consoles.0.as_ref().expect("created above").path().join(format!("{namespace}_{name}.sock"));
        if consoles.1.insert(path.clone()) {
            lifecycle::echo_console(&path).map_err(|e| ApiError::internal(e.to_string()))?;
        }
        Ok(path)
    }
}

/// What the lifecycle mode of [`FakeAgent`] does, as the real agent's VM controller and guest would.
mod lifecycle {
    use kube::Client;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};
    use serde_json::json;
    use vmsnap_api::kubevirt::{GuestExecRequest, GuestExecResult, VirtualMachine, VirtualMachineInstance};
    use vmsnap_api::refusal::Refusal;
    use vmsnap_api::registry::registry;
    use vmsnap_contracts::subresources::SubresourceError as ApiError;

    use super::refused;
    use crate::fixtures::{VmiState, create_running_vmi};

    fn not_found(kind: &str, name: &str) -> ApiError {
        let rt = registry().by_kind("kubevirt.io/v1", kind).expect("KubeVirt kinds are registered");
        ApiError::not_found(&rt.qualified_plural(), name)
    }

    /// A kube client error as the API server's, keeping code and message (admission denials pass through).
    fn api_error(error: kube::Error) -> ApiError {
        match error {
            kube::Error::Api(s) => ApiError::from_status(&s),
            other => ApiError::internal(other.to_string()),
        }
    }

    async fn vm(client: &Client, ns: &str, name: &str) -> Result<VirtualMachine, ApiError> {
        let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
        vms.get_opt(name).await.map_err(api_error)?.ok_or_else(|| not_found("VirtualMachine", name))
    }

    /// The VMI, or 404.
    pub async fn running_vmi(
        client: &Client,
        ns: &str,
        name: &str,
    ) -> Result<VirtualMachineInstance, ApiError> {
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
        vmis.get_opt(name).await.map_err(api_error)?.ok_or_else(|| not_found("VirtualMachineInstance", name))
    }

    async fn set_vm(
        client: &Client,
        ns: &str,
        name: &str,
        run_strategy: &str,
        printable: &str,
    ) -> Result<(), ApiError> {
        let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
        let spec = json!({"spec": {"runStrategy": run_strategy}});
        vms.patch(name, &PatchParams::default(), &Patch::Merge(&spec)).await.map_err(api_error)?;
        set_printable(client, ns, name, printable).await
    }

    async fn set_printable(client: &Client, ns: &str, name: &str, printable: &str) -> Result<(), ApiError> {
        let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
        let ready = if printable == "Running" { "True" } else { "False" };
        let status = json!({"status": {"printableStatus": printable, "conditions": [{"type": "Ready", "status": ready}]}});
        vms.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.map_err(api_error)?;
        Ok(())
    }

    /// The run strategy of `start` (`running`) or `stop`, after checking that the VM is in the
    /// other state (409 otherwise, with virt-api's message).
    async fn set_running(client: &Client, ns: &str, name: &str, running: bool) -> Result<(), ApiError> {
        vm(client, ns, name).await?;
        match (running, running_vmi(client, ns, name).await.is_ok()) {
            (true, true) => return Err(refused(Refusal::AlreadyRunning, "VM is already running")),
            (false, false) => return Err(refused(Refusal::NotRunning, "VM is not running")),
            _ => {}
        }
        let (strategy, printable) = if running { ("Always", "Running") } else { ("Halted", "Stopped") };
        set_vm(client, ns, name, strategy, printable).await
    }

    /// `start`: 409 if running; else runStrategy Always and a running VMI with a guest agent.
    pub async fn start(client: &Client, ns: &str, name: &str) -> Result<(), ApiError> {
        set_running(client, ns, name, true).await?;
        let vm = vm(client, ns, name).await?;
        create_running_vmi(client, &vm, VmiState { agent: true, paused: false }, Vec::new())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(())
    }

    /// `stop`: 409 if not running; else runStrategy Halted and the VMI deleted.
    pub async fn stop(client: &Client, ns: &str, name: &str) -> Result<(), ApiError> {
        set_running(client, ns, name, false).await?;
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
        vmis.delete(name, &DeleteParams::default()).await.map_err(api_error)?;
        Ok(())
    }

    /// `pause` / `unpause`: the VMI's `Paused` condition.
    pub async fn set_paused(client: &Client, ns: &str, name: &str, pause: bool) -> Result<(), ApiError> {
        let vmi = running_vmi(client, ns, name).await?;
        let mut conditions = vmi.status.clone().unwrap_or_default().conditions;
        let paused = conditions.iter().any(|c| c.type_ == "Paused" && c.status == "True");
        match (pause, paused) {
            (true, true) => return Err(refused(Refusal::AlreadyPaused, "VMI is already paused")),
            (false, false) => return Err(refused(Refusal::NotPaused, "VMI is not paused")),
            _ => {}
        }
        conditions.retain(|c| c.type_ != "Paused");
        let mut list = serde_json::to_value(&conditions).map_err(|e| ApiError::internal(e.to_string()))?;
        if pause {
            list.as_array_mut()
                .expect("a list")
                .push(json!({"type": "Paused", "status": "True", "reason": "PausedByUser"}));
        }
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
        let status = json!({"status": {"conditions": list}});
        vmis.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.map_err(api_error)?;
        set_printable(client, ns, name, if pause { "Paused" } else { "Running" }).await
    }

    /// A guest that knows `echo`, `cat` and `false`.
    pub fn exec(request: &GuestExecRequest) -> GuestExecResult {
        let (program, args) = request.command.split_first().map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
        let (exit_code, stdout, stderr) = match program {
            "echo" => (0, format!("{}\n", args.join(" ")), String::new()),
            "cat" => (0, request.stdin.clone().unwrap_or_default(), String::new()),
            "false" => (1, String::new(), String::new()),
            other => (127, String::new(), format!("sh: {other}: not found\n")),
        };
        GuestExecResult { exit_code: Some(exit_code), signal: None, stdout, stderr }
    }

    /// Listens on `path` and echoes every byte back, like a guest shell echoing what is typed.
    pub fn echo_console(path: &std::path::Path) -> std::io::Result<()> {
        let listener = tokio::net::UnixListener::bind(path)?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut rd, mut wr) = stream.into_split();
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                });
            }
        });
        Ok(())
    }
}

/// A CSI snapshotter: fixes the point in time of every new VolumeSnapshot (setting `creationTime`),
/// and marks it ready after `ready_after`. Stops when dropped.
pub struct FakeSnapshotter {
    task: tokio::task::JoinHandle<()>,
    /// Names of the VolumeSnapshots it cut.
    pub cut: Arc<Mutex<Vec<String>>>,
}

impl FakeSnapshotter {
    /// Starts watching all namespaces.
    pub fn start(client: Client, ready_after: Duration) -> FakeSnapshotter {
        let cut = Arc::new(Mutex::new(Vec::new()));
        let seen = cut.clone();
        let task = tokio::spawn(async move {
            let api: Api<VolumeSnapshot> = Api::all(client.clone());
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                let (watcher::Event::Apply(vs) | watcher::Event::InitApply(vs)) = event else { continue };
                if vs.status.as_ref().is_some_and(|s| s.creation_time.is_some()) {
                    continue;
                }
                let ns = vs.namespace().unwrap_or_default();
                let name = vs.name_any();
                seen.lock().unwrap().push(name.clone());
                let api: Api<VolumeSnapshot> = Api::namespaced(client.clone(), &ns);
                let now = vmsnap_api::k8s_openapi::jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let ready = ready_after.is_zero();
                let status = json!({"status": {"creationTime": now, "readyToUse": ready, "restoreSize": "1Gi",
                                               "boundVolumeSnapshotContentName": format!("snapcontent-{name}")}});
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                if !ready {
                    let api = api.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(ready_after).await;
                        let _ = api
                            .patch_status(
                                &name,
                                &PatchParams::default(),
                                &Patch::Merge(&json!({"status": {"readyToUse": true}})),
                            )
                            .await;
                    });
                }
            }
        });
        FakeSnapshotter { task, cut }
    }
}

impl Drop for FakeSnapshotter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A provisioner: binds every Pending PVC and completes every DataVolume, as the storage driver
/// would (without any data). Stops when dropped.
pub struct FakeProvisioner {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeProvisioner {
    /// Starts watching all namespaces.
    pub fn start(client: Client) -> FakeProvisioner {
        let pvc_client = client.clone();
        let pvcs = tokio::spawn(async move {
            let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::all(pvc_client.clone());
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                let (watcher::Event::Apply(pvc) | watcher::Event::InitApply(pvc)) = event else { continue };
                if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                    || pvc.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                let ns = pvc.namespace().unwrap_or_default();
                let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
                    Api::namespaced(pvc_client.clone(), &ns);
                let size = pvc
                    .spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .cloned();
                let status = json!({"status": {"phase": "Bound", "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"]}});
                let _ =
                    api.patch_status(&pvc.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await;
            }
        });
        let dvs = tokio::spawn(async move {
            let api: Api<vmsnap_api::cdi::DataVolume> = Api::all(client.clone());
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                let (watcher::Event::Apply(dv) | watcher::Event::InitApply(dv)) = event else { continue };
                if dv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded") {
                    continue;
                }
                let ns = dv.namespace().unwrap_or_default();
                let name = dv.name_any();
                let pvc_api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
                    Api::namespaced(client.clone(), &ns);
                if pvc_api.get_opt(&name).await.ok().flatten().is_none() {
                    let mut spec = dv.spec.claim_spec().cloned().unwrap_or_default();
                    if spec.access_modes.as_ref().is_none_or(|m| m.is_empty()) {
                        spec.access_modes = Some(vec!["ReadWriteOnce".into()]);
                    }
                    let pvc = k8s_openapi::api::core::v1::PersistentVolumeClaim {
                        metadata: kube::api::ObjectMeta {
                            name: Some(name.clone()),
                            owner_references: Some(vec![controller_reference(&dv)]),
                            ..Default::default()
                        },
                        spec: Some(spec),
                        status: None,
                    };
                    let _ = pvc_api.create(&Default::default(), &pvc).await;
                } else if let Some(mut pvc) = pvc_api.get_opt(&name).await.ok().flatten()
                    && pvc.metadata.owner_references.as_ref().is_none_or(|o| o.is_empty())
                {
                    pvc.metadata.owner_references = Some(vec![controller_reference(&dv)]);
                    let _ = pvc_api.replace(&name, &Default::default(), &pvc).await;
                }
                let dv_api: Api<vmsnap_api::cdi::DataVolume> = Api::namespaced(client.clone(), &ns);
                let status =
                    json!({"status": {"phase": "Succeeded", "progress": "100.0%", "claimName": name}});
                let _ = dv_api
                    .patch_status(&dv.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        });
        FakeProvisioner { tasks: vec![pvcs, dvs] }
    }
}

impl Drop for FakeProvisioner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A node agent that also runs VMs, for tests that drive VMs as a user does (the web console):
/// `start` and `stop` change `spec.runStrategy` as virt-api does and `restart` deletes the VMI;
/// a VM controller keeps one fake Running VMI (owned by its VM) for each VM that should run, and
/// writes the VM status an agent reports: `printableStatus`, `created`, `ready`, and the VMI's
/// conditions (`Ready`, `AgentConnected`). VMI subresources (freeze, unfreeze) are answered by
/// the inner [`FakeAgent`]. Stops when dropped.
pub struct FakeVmRunner {
    /// The inner agent: records every call and answers the VMI subresources.
    pub agent: Arc<FakeAgent>,
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl FakeVmRunner {
    /// Starts the VM controller; every VMI it creates reports `vmi` (guest agent, paused).
    pub fn start(client: Client, vmi: crate::fixtures::VmiState) -> Arc<FakeVmRunner> {
        let agent = FakeAgent::new(client.clone());
        let task = tokio::spawn(run_vms(client.clone(), vmi));
        Arc::new(FakeVmRunner { agent, client, task })
    }
}

impl Drop for FakeVmRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kube error as the API error the subresource answers (a webhook refusal keeps its message).
fn to_api_error(error: kube::Error) -> ApiError {
    match error {
        kube::Error::Api(status) => ApiError::from_status(&status),
        other => ApiError::internal(other.to_string()),
    }
}

#[async_trait]
impl VmSubresources for FakeVmRunner {
    async fn vmi(&self, namespace: &str, name: &str, action: VmiAction, body: Value) -> Result<(), ApiError> {
        self.agent.vmi(namespace, name, action, body).await
    }

    async fn vm(&self, namespace: &str, name: &str, action: VmAction, body: Value) -> Result<(), ApiError> {
        self.agent.vm(namespace, name, action, body).await?;
        let vms: Api<VirtualMachine> = Api::namespaced(self.client.clone(), namespace);
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(self.client.clone(), namespace);
        let running = vmis.get_opt(name).await.map_err(to_api_error)?.is_some();
        let strategy = match action {
            VmAction::Start if running => {
                return Err(refused(Refusal::AlreadyRunning, "VM is already running"));
            }
            VmAction::Stop | VmAction::Restart if !running => {
                return Err(refused(Refusal::NotRunning, "VM is not running"));
            }
            VmAction::Start => vmsnap_api::kubevirt::run_strategy::ALWAYS,
            VmAction::Stop => vmsnap_api::kubevirt::run_strategy::HALTED,
            VmAction::Restart => {
                vmis.delete(name, &Default::default()).await.map_err(to_api_error)?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        let patch = json!({"spec": {"running": null, "runStrategy": strategy}});
        vms.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(to_api_error)?;
        Ok(())
    }
}

/// The VM controller of [`FakeVmRunner`]: reconciles a VM on every change of it or of its VMI.
async fn run_vms(client: Client, state: crate::fixtures::VmiState) {
    let vm_keys = watcher::watcher(Api::<VirtualMachine>::all(client.clone()), watcher::Config::default())
        .filter_map(|e| async move { e.ok() })
        .flat_map(|e| futures::stream::iter(event_keys(e)));
    let vmi_keys =
        watcher::watcher(Api::<VirtualMachineInstance>::all(client.clone()), watcher::Config::default())
            .filter_map(|e| async move { e.ok() })
            .flat_map(|e| futures::stream::iter(event_keys(e)));
    let mut keys = futures::stream::select(vm_keys, vmi_keys).boxed();
    while let Some((ns, name)) = keys.next().await {
        for _ in 0..20 {
            if reconcile_vm(&client, &ns, &name, state).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn event_keys<K: kube::Resource>(event: watcher::Event<K>) -> Vec<(String, String)> {
    let key =
        |o: &K| (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default());
    match event {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => vec![key(&o)],
        watcher::Event::Init | watcher::Event::InitDone => Vec::new(),
    }
}

async fn reconcile_vm(
    client: &Client,
    ns: &str,
    name: &str,
    state: crate::fixtures::VmiState,
) -> Result<(), kube::Error> {
    use vmsnap_api::kubevirt::run_strategy;
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    // A VMI whose VM is gone is garbage-collected through its owner reference.
    let Some(vm) = vms.get_opt(name).await? else { return Ok(()) };
    if vm.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let mut vmi = vmis.get_opt(name).await?;
    let should_run = match vm.spec.effective_run_strategy() {
        run_strategy::ALWAYS | run_strategy::RERUN_ON_FAILURE => Some(true),
        run_strategy::HALTED => Some(false),
        _ => None, // Manual, Once: left as they are.
    };
    match (should_run, &vmi) {
        (Some(true), None) => vmi = Some(create_owned_vmi(client, &vm, state).await?),
        (Some(false), Some(_)) => {
            vmis.delete(name, &Default::default()).await?;
            vmi = vmis.get_opt(name).await?;
        }
        _ => {}
    }
    let (printable, created, ready) = match &vmi {
        Some(v) if v.metadata.deletion_timestamp.is_some() => ("Stopping", true, false),
        Some(_) => ("Running", true, true),
        None => ("Stopped", false, false),
    };
    let conditions = match &vmi {
        Some(v) => v.status.as_ref().map(|s| json!(s.conditions)).unwrap_or_else(|| json!([])),
        None => {
            json!([{"type": "Ready", "status": "False", "reason": "VMINotExists", "message": "VMI does not exist"}])
        }
    };
    // `false` is written as a removal: the VM status leaves false flags out.
    let flag = |b: bool| if b { json!(true) } else { Value::Null };
    let (created, ready) = (flag(created), flag(ready));
    let status = json!({"status": {"printableStatus": printable, "created": created, "ready": ready,
                                   "runStrategy": vm.spec.effective_run_strategy(), "conditions": conditions}});
    vms.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

/// A Running VMI for `vm`, owned by it, with the conditions `state` asks for.
async fn create_owned_vmi(
    client: &Client,
    vm: &VirtualMachine,
    state: crate::fixtures::VmiState,
) -> Result<VirtualMachineInstance, kube::Error> {
    use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let ns = vm.namespace().unwrap_or_default();
    let name = vm.name_any();
    let mut vmi = VirtualMachineInstance::new(&name, vm.spec.template.spec.clone());
    vmi.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        name: name.clone(),
        uid: vm.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    crate::fixtures::create_vmi_as_running(client, &ns, &vmi, state).await
}
