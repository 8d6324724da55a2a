//! A VMI whose QEMU runs: the runtime handle, what the agent knows about the
//! guest ([`VmiFacts`]), and the background tasks that keep the VMI status true.
//!
//! One [`RunningVmi`] per QEMU. Its status is written from one place
//! ([`RunningVmi::publish`], serialised by an async lock, skipping writes that
//! change nothing); `fsFreezeStatus` alone is written by the freeze path
//! (`freeze.rs`). The tasks (QEMU events, agent health, auto-thaw watcher)
//! are aborted with [`RunningVmi::abort_tasks`] when the VMI goes or the agent
//! shuts down; QEMU itself outlives the agent.

mod freeze;
mod hotplug;
mod monitor;
pub mod record;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vmsnap_api::kubevirt::VirtualMachineInstance;
use vmsnap_storage::VolumeId;

pub use self::freeze::{FreezeFailure, FreezeSlot};
use self::record::{AgentRecord, AttachedVolume};
use crate::kubevirt::FIELD_MANAGER;
use crate::registry::Registry;
use crate::vmi_status::{self, VmiFacts};
use crate::vmm::{AgentHealth, MacAddress, VmHandle};
use crate::volumes;

/// How often the guest agent is pinged for the `AgentConnected` condition.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a guest that does not power off after the ACPI button is waited for
/// after QEMU is killed.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// What a [`RunningVmi`] needs from the agent.
#[derive(Clone)]
pub struct Deps {
    /// The API client.
    pub client: Client,
    /// The event recorder.
    pub recorder: Recorder,
    /// The registry the VMI removes itself from when QEMU exits.
    pub registry: Weak<Registry>,
}

/// The parameters of the agent's patches.
pub fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() }
}

/// Background tasks, aborted together.
#[derive(Default)]
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Tasks {
    fn push(&self, task: JoinHandle<()>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    }

    fn take(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A VMI whose QEMU runs.
pub struct RunningVmi {
    /// The VMI's namespace.
    pub namespace: String,
    /// The VMI's name.
    pub name: String,
    /// The VMI's uid.
    pub uid: String,
    /// The QEMU process.
    pub handle: VmHandle,
    deps: Deps,
    api: Api<VirtualMachineInstance>,
    facts: Mutex<VmiFacts>,
    volumes: Mutex<Vec<AttachedVolume>>,
    nics: Vec<(String, Option<MacAddress>)>,
    /// The status fields last written, so that unchanged ones are not written again.
    published: tokio::sync::Mutex<Option<Map<String, Value>>>,
    freeze: Arc<tokio::sync::Mutex<FreezeSlot>>,
    hotplug: tokio::sync::Mutex<()>,
    health: AgentHealth,
    /// Whether the health loop has given its first verdict (until then its flag reads `false`).
    health_known: AtomicBool,
    stopping: AtomicBool,
    exited: watch::Sender<bool>,
    tasks: Tasks,
}

impl RunningVmi {
    /// Wraps a running QEMU and starts following it. `facts` should already say `Running`.
    pub fn start(
        handle: VmHandle,
        vmi: (&str, &str, &str),
        facts: VmiFacts,
        volumes: Vec<AttachedVolume>,
        deps: Deps,
    ) -> Arc<Self> {
        let (namespace, name, uid) = vmi;
        let nics = handle.spec().nics.iter().map(|n| (n.name.clone(), n.mac)).collect();
        let events = handle.events();
        let health = handle.agent_health(HEALTH_INTERVAL);
        let running = Arc::new(Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            api: Api::namespaced(deps.client.clone(), namespace),
            handle,
            deps,
            facts: Mutex::new(facts),
            volumes: Mutex::new(volumes),
            nics,
            published: tokio::sync::Mutex::new(None),
            freeze: Arc::new(tokio::sync::Mutex::new(FreezeSlot::default())),
            hotplug: tokio::sync::Mutex::new(()),
            health,
            health_known: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            exited: watch::channel(false).0,
            tasks: Tasks::default(),
        });
        running.update_facts(|f| f.interfaces = vmi_status::interfaces(&running.nics, &[]));
        running.tasks.push(tokio::spawn(monitor::follow_events(running.clone(), events)));
        running.tasks.push(tokio::spawn(monitor::follow_agent(running.clone(), running.health.subscribe())));
        running
            .tasks
            .push(tokio::spawn(monitor::follow_guest_info(running.clone(), running.health.subscribe())));
        running
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the guest agent answered its last ping. Before the health loop
    /// has a verdict (just after launch or re-attach) the agent is pinged now.
    pub async fn agent_connected(&self) -> bool {
        if self.health_known.load(Ordering::SeqCst) {
            self.health.is_connected()
        } else {
            self.handle.agent_ping().await.is_ok()
        }
    }

    /// A copy of what the agent knows about the VMI.
    pub fn facts(&self) -> VmiFacts {
        self.facts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the facts (without writing them; see [`RunningVmi::publish`]).
    pub fn update_facts(&self, change: impl FnOnce(&mut VmiFacts)) {
        change(&mut self.facts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The attached volumes.
    pub fn volumes(&self) -> Vec<AttachedVolume> {
        self.volumes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_volumes(&self, volumes: Vec<AttachedVolume>) {
        let statuses = volumes.iter().map(|v| volumes::volume_status(&v.volume, &v.target)).collect();
        *self.volumes.lock().unwrap_or_else(|p| p.into_inner()) = volumes;
        self.update_facts(|f| f.volumes = statuses);
        self.write_record();
    }

    /// The disk that has storage volume `id` attached, if any.
    pub fn disk_of_volume(&self, id: &VolumeId) -> Option<String> {
        let volumes = self.volumes.lock().unwrap_or_else(|p| p.into_inner());
        volumes
            .iter()
            .find(|v| v.volume.claim.as_ref().is_some_and(|c| &c.volume_id == id))
            .map(|v| v.name().to_owned())
    }

    /// Persists which volumes the VMI has, for an agent that restarts.
    pub fn write_record(&self) {
        let record = AgentRecord::new(&self.namespace, &self.name, &self.uid, self.volumes());
        if let Err(error) = record.write(self.handle.runtime_dir()) {
            tracing::warn!(vmi = %self.key(), %error, "could not write the agent record");
        }
    }

    /// Writes the status fields the agent owns if they changed since the last write.
    pub async fn publish(&self) {
        let mut published = self.published.lock().await;
        let fields = {
            let mut facts = self.facts.lock().unwrap_or_else(|p| p.into_inner());
            facts.refresh_conditions(&crate::time::now_time());
            vmi_status::status_fields(&facts)
        };
        if published.as_ref() == Some(&fields) {
            return;
        }
        let patch = json!({ "status": fields });
        match self.api.patch_status(&self.name, &patch_params(), &Patch::Merge(&patch)).await {
            Ok(_) => *published = Some(fields),
            Err(kube::Error::Api(status)) if status.is_not_found() => *published = Some(fields),
            Err(error) => tracing::warn!(vmi = %self.key(), %error, "could not write the VMI status"),
        }
    }

    /// Forgets what was written, so that the next [`RunningVmi::publish`] writes everything.
    pub async fn invalidate_published(&self) {
        *self.published.lock().await = None;
    }

    /// Records an event on the VMI, without waiting for the API.
    pub fn event(&self, type_: EventType, reason: &str, note: String) {
        let recorder = self.deps.recorder.clone();
        let reference = self.object_ref();
        let event =
            Event { type_, reason: reason.into(), note: Some(note), action: reason.into(), secondary: None };
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::debug!(%error, "could not record an event");
            }
        });
    }

    /// A reference to the VMI for events.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("kubevirt.io/v1".into()),
            kind: Some("VirtualMachineInstance".into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }

    /// Shuts the guest down: thaws it if frozen, presses the ACPI power
    /// button and waits up to `grace`, then kills QEMU. Returns once QEMU is gone.
    pub async fn shut_down(self: &Arc<Self>, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut exited = self.exited.subscribe();
        if *exited.borrow() {
            return;
        }
        if self.handle.frozen_by_runtime().is_some()
            && let Err(error) = self.unfreeze().await
        {
            tracing::warn!(vmi = %self.key(), %error, "could not thaw the guest before shutting it down");
        }
        let paused = self.facts().paused;
        if !grace.is_zero() && !paused {
            self.event(EventType::Normal, "ShuttingDown", "Signaled Graceful Shutdown".into());
            match self.handle.powerdown().await {
                Ok(()) => {
                    let _ = tokio::time::timeout(grace, exited.wait_for(|gone| *gone)).await;
                }
                Err(error) => tracing::warn!(vmi = %self.key(), %error, "ACPI power-down failed"),
            }
        }
        if !*exited.borrow() {
            tracing::info!(vmi = %self.key(), ?grace, "the guest did not power off in time; killing QEMU");
            if let Err(error) = self.handle.kill().await {
                tracing::warn!(vmi = %self.key(), %error, "could not kill QEMU");
            }
            let _ = tokio::time::timeout(EXIT_WAIT, exited.wait_for(|gone| *gone)).await;
        }
    }

    /// Stops the background tasks and waits for them to be gone; QEMU keeps running.
    pub async fn abort_tasks(&self) {
        let tasks = self.tasks.take();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}
