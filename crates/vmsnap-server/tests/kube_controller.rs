//! A kube-runtime `Controller` (with `.owns()`, the finalizer helper, `patch_status` and the event
//! `Recorder`) runs against the embedded server, and keeps converging through a server restart and a
//! log compaction that makes its watch resumption expire (410 inside the stream).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::snapshot::{SnapshotPhase, VirtualMachineSnapshot};
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec};
use vmsnap_store::{Mutation, ObjectKey, Store, StoreConfig};
use vmsnap_testing::{TestServer, eventually};

const FINALIZER: &str = "test.vmsnap.io/cleanup";

#[derive(Default)]
struct Observed {
    reconciles: HashMap<String, usize>,
    cleaned: HashSet<String>,
    errors: Vec<String>,
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    seen: Arc<Mutex<Observed>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(String);

async fn reconcile(
    snap: Arc<VirtualMachineSnapshot>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    let name = snap.name_any();
    *ctx.seen.lock().unwrap().reconciles.entry(name.clone()).or_default() += 1;
    let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), "default");
    finalizer(&snaps, FINALIZER, snap, |event| async {
        match event {
            FinalizerEvent::Apply(snap) => {
                apply(&snap, &ctx).await.map_err(|e| ReconcileError(e.to_string()))
            }
            FinalizerEvent::Cleanup(snap) => {
                ctx.seen.lock().unwrap().cleaned.insert(snap.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
}

async fn apply(snap: &VirtualMachineSnapshot, ctx: &Ctx) -> Result<Action, kube::Error> {
    let name = snap.name_any();
    let children: Api<VolumeSnapshot> = Api::namespaced(ctx.client.clone(), "default");
    let child_name = format!("child-{name}");
    if children.get_opt(&child_name).await?.is_none() {
        let child = VolumeSnapshot {
            metadata: ObjectMeta {
                name: Some(child_name.clone()),
                owner_references: Some(vec![snap.controller_owner_ref(&()).expect("snapshot has a uid")]),
                ..Default::default()
            },
            spec: VolumeSnapshotSpec {
                source: VolumeSnapshotSource {
                    persistent_volume_claim_name: Some("pvc".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            status: None,
        };
        children.create(&PostParams::default(), &child).await?;
        let event = Event {
            type_: EventType::Normal,
            reason: "ChildCreated".into(),
            note: Some(format!("created {child_name}")),
            action: "Create".into(),
            secondary: None,
        };
        ctx.recorder.publish(&event, &snap.object_ref(&())).await?;
    }
    if snap.status.as_ref().and_then(|s| s.phase.as_ref()) != Some(&SnapshotPhase::Succeeded) {
        let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), "default");
        let status = json!({"status": {"phase": "Succeeded", "readyToUse": true}});
        snaps.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    }
    Ok(Action::await_change())
}

fn snapshot(name: &str) -> VirtualMachineSnapshot {
    serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}
    }))
    .unwrap()
}

fn start_controller(client: Client, seen: Arc<Mutex<Observed>>) -> tokio::task::JoinHandle<()> {
    let reporter = Reporter { controller: "test-controller".into(), instance: Some("test".into()) };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        seen: seen.clone(),
    });
    let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(client.clone(), "default");
    let children: Api<VolumeSnapshot> = Api::namespaced(client, "default");
    tokio::spawn(async move {
        Controller::new(snaps, watcher::Config::default())
            .owns(children, watcher::Config::default())
            .run(reconcile, |_obj, _err, _ctx| Action::requeue(Duration::from_millis(200)), ctx)
            .for_each(|result| {
                if let Err(e) = result {
                    seen.lock().unwrap().errors.push(format!("{e:?}"));
                }
                futures::future::ready(())
            })
            .await;
    })
}

async fn converged(api: &Api<VirtualMachineSnapshot>, children: &Api<VolumeSnapshot>, name: &str) -> bool {
    let Ok(Some(s)) = api.get_opt(name).await else { return false };
    let ready = s.status.as_ref().and_then(|st| st.phase.as_ref()) == Some(&SnapshotPhase::Succeeded);
    let has_finalizer = s.finalizers().iter().any(|f| f == FINALIZER);
    ready && has_finalizer && children.get_opt(&format!("child-{name}")).await.ok().flatten().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_controller_converges_and_survives_restart_and_compaction() {
    let mut server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let seen = Arc::new(Mutex::new(Observed::default()));
    let controller = start_controller(client.clone(), seen.clone());
    let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(client.clone(), "default");
    let children: Api<VolumeSnapshot> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        snaps.create(&PostParams::default(), &snapshot(&format!("s{i}"))).await.unwrap();
    }
    for i in 0..5 {
        let name = format!("s{i}");
        eventually(&format!("{name} to converge"), Duration::from_secs(30), || async {
            converged(&snaps, &children, &name).await.then_some(())
        })
        .await
        .unwrap();
    }
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let recorded = events.list(&Default::default()).await.unwrap();
    assert_eq!(recorded.items.iter().filter(|e| e.reason.as_deref() == Some("ChildCreated")).count(), 5);

    // No loop: once converged, nothing triggers more reconciles.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: usize = seen.lock().unwrap().reconciles.values().sum();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: usize = seen.lock().unwrap().reconciles.values().sum();
    assert_eq!(before, after, "the controller kept reconciling converged objects");

    // Stop the server; while it is down, change things behind the controller's back and compact the
    // log past what its watches have seen, so that resuming them gets 410 Expired.
    let data_dir = server.data_dir.path().to_owned();
    server.api.shutdown();
    let store = Store::open(&data_dir.join("store"), StoreConfig::default()).unwrap();
    let key = |n: &str| ObjectKey::new("snapshot.kubevirt.io/virtualmachinesnapshots", "default", n);
    let mut outage = serde_json::to_value(snapshot("during-outage")).unwrap();
    outage["metadata"]["uid"] = json!("0b6f5d88-0000-4000-8000-000000000001");
    outage["metadata"]["creationTimestamp"] = json!("2026-11-25T03:00:00Z");
    store
        .mutate(key("during-outage"), move |_| Ok::<_, std::convert::Infallible>(Mutation::Put(outage)))
        .await
        .unwrap()
        .unwrap();
    store
        .mutate(key("s0"), |cur| {
            let mut v = cur.unwrap().clone();
            v["metadata"]["deletionTimestamp"] = json!("2026-11-25T03:00:00Z");
            Ok::<_, std::convert::Infallible>(Mutation::Put(v))
        })
        .await
        .unwrap()
        .unwrap();
    store.compact(store.revision()).await.unwrap();
    drop(store);
    server.restart().await.unwrap();

    eventually("the object created during the outage to converge", Duration::from_secs(60), || async {
        converged(&snaps, &children, "during-outage").await.then_some(())
    })
    .await
    .unwrap();
    eventually(
        "the object deleted during the outage to be cleaned up and gone",
        Duration::from_secs(60),
        || async {
            let gone = snaps.get_opt("s0").await.ok().flatten().is_none();
            (gone && seen.lock().unwrap().cleaned.contains("s0")).then_some(())
        },
    )
    .await
    .unwrap();
    eventually(
        "the garbage collector to remove the deleted snapshot's child",
        Duration::from_secs(30),
        || async { children.get_opt("child-s0").await.ok().flatten().is_none().then_some(()) },
    )
    .await
    .unwrap();
    let errors = seen.lock().unwrap().errors.join("\n");
    assert!(
        errors.contains("410") || errors.contains("Expired"),
        "the watch never saw 410 Expired; errors: {errors}"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: usize = seen.lock().unwrap().reconciles.values().sum();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: usize = seen.lock().unwrap().reconciles.values().sum();
    assert_eq!(before, after, "the controller kept reconciling after the restart");
    controller.abort();
}
