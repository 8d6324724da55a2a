//! Fake peers for controller tests: a node agent that answers the VMI freeze subresources, and a CSI
//! snapshotter that fixes the point in time of VolumeSnapshots.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use vmsnap_api::kubevirt::VirtualMachineInstance;
use vmsnap_api::volumesnapshot::VolumeSnapshot;
use vmsnap_apiserver::{ApiError, VmSubresources};

/// A node agent that records subresource calls and keeps `fsFreezeStatus` like the real one.
pub struct FakeAgent {
    client: Client,
    /// Every call, as `vmi/<ns>/<name>/<action>` or `vm/<ns>/<name>/<action>`.
    pub calls: Mutex<Vec<String>>,
    /// When set, `freeze` fails with this message (a 400, as a guest-agent failure does).
    pub fail_freeze: Mutex<Option<String>>,
}

impl FakeAgent {
    /// A fake agent writing through `client`.
    pub fn new(client: Client) -> Arc<FakeAgent> {
        Arc::new(FakeAgent { client, calls: Mutex::new(Vec::new()), fail_freeze: Mutex::new(None) })
    }

    /// The calls made so far whose action is `action`.
    pub fn calls_of(&self, action: &str) -> usize {
        self.calls.lock().unwrap().iter().filter(|c| c.ends_with(&format!("/{action}"))).count()
    }
}

#[async_trait]
impl VmSubresources for FakeAgent {
    async fn vmi(&self, namespace: &str, name: &str, action: &str, body: Value) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push(format!("vmi/{namespace}/{name}/{action}"));
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(self.client.clone(), namespace);
        let freeze_status = match action {
            "freeze" => {
                if body.get("unfreezeTimeout").is_none() {
                    return Err(ApiError::bad_request("unfreezeTimeout is required"));
                }
                if let Some(msg) = self.fail_freeze.lock().unwrap().clone() {
                    return Err(ApiError::bad_request(msg));
                }
                json!("frozen")
            }
            "unfreeze" => Value::Null,
            _ => return Ok(()),
        };
        let patch = json!({"status": {"fsFreezeStatus": freeze_status}});
        vmis.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(())
    }

    async fn vm(&self, namespace: &str, name: &str, action: &str, _body: Value) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push(format!("vm/{namespace}/{name}/{action}"));
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
                            owner_references: Some(vec![
                                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                                    api_version: "cdi.kubevirt.io/v1beta1".into(),
                                    kind: "DataVolume".into(),
                                    name: name.clone(),
                                    uid: dv.uid().unwrap_or_default(),
                                    controller: Some(true),
                                    block_owner_deletion: Some(true),
                                },
                            ]),
                            ..Default::default()
                        },
                        spec: Some(spec),
                        status: None,
                    };
                    let _ = pvc_api.create(&Default::default(), &pvc).await;
                } else if let Some(mut pvc) = pvc_api.get_opt(&name).await.ok().flatten()
                    && pvc.metadata.owner_references.as_ref().is_none_or(|o| o.is_empty())
                {
                    pvc.metadata.owner_references =
                        Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                            api_version: "cdi.kubevirt.io/v1beta1".into(),
                            kind: "DataVolume".into(),
                            name: name.clone(),
                            uid: dv.uid().unwrap_or_default(),
                            controller: Some(true),
                            block_owner_deletion: Some(true),
                        }]);
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
