//! A VMI whose QEMU runs: the runtime handle, what the agent knows about the
//! guest ([`VmiFacts`]), and the background tasks that keep the VMI status true.
//!
//! One [`RunningVmi`] per QEMU. Its status is written from one place
//! ([`RunningVmi::publish`], serialised by an async lock, skipping writes that
//! change nothing); `fsFreezeStatus` alone is written by the freeze path
//! (`freeze.rs`). The tasks (QEMU events, agent health, the thaws the runtime makes by itself,
//! the wait for room after a pause on a full disk) are aborted with
//! [`RunningVmi::abort_tasks`] when the VMI goes or the agent shuts down; QEMU
//! itself outlives the agent.
//!
//! A status write that fails (the API's store may be on the disk that just
//! filled up) is retried in the background until one succeeds.

mod freeze;
mod monitor;
pub mod pause;
pub mod record;
mod resume;

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
use crate::volumes;
use vmsnap_vmm::{GuestAgentHealth, MacAddress, VmHandle};

/// How often the guest agent is pinged for the `AgentConnected` condition.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a guest that does not power off after the ACPI button is waited for
/// after QEMU is killed.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// The first retry of a status write that failed; each further one waits twice as long.
const REPUBLISH_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between two retries of a failed status write.
const REPUBLISH_MAX: Duration = Duration::from_secs(10);

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
    /// Held across one hotplug operation ([`crate::hotplug::devices`]).
    pub(crate) hotplug: tokio::sync::Mutex<()>,
    health: GuestAgentHealth,
    /// Whether the health loop has given its first verdict (until then its flag reads `false`).
    health_known: AtomicBool,
    stopping: AtomicBool,
    exited: watch::Sender<bool>,
    tasks: Tasks,
    /// Wakes the task that retries a failed status write.
    republish: tokio::sync::Notify,
    /// Held by a user's pause or unpause and by the agent's own resume, so that
    /// the agent never resumes a VM a user has just paused.
    pause_lock: tokio::sync::Mutex<()>,
    /// Bumped by the event monitor each time it has applied (and written) a
    /// `STOP` or `RESUME`, for a pause or unpause to wait for its effect.
    pause_applied: watch::Sender<u64>,
    /// The wait for room after a pause on a full disk.
    resumer: Mutex<resume::ResumerSlot>,
    /// When a VM paused on a full disk is resumed, and how free space is measured.
    space: pause::SpaceWatch,
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
        Self::start_with(handle, vmi, facts, volumes, deps, pause::SpaceWatch::default())
    }

    /// [`RunningVmi::start`] with the way a VM paused on a full disk is watched.
    pub fn start_with(
        handle: VmHandle,
        vmi: (&str, &str, &str),
        facts: VmiFacts,
        volumes: Vec<AttachedVolume>,
        deps: Deps,
        space: pause::SpaceWatch,
    ) -> Arc<Self> {
        let (namespace, name, uid) = vmi;
        let nics = handle.spec().nics.iter().map(|n| (n.name.clone(), n.mac)).collect();
        let events = handle.events();
        let health = handle.guest_agent_health(HEALTH_INTERVAL);
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
            republish: tokio::sync::Notify::new(),
            pause_lock: tokio::sync::Mutex::new(()),
            pause_applied: watch::channel(0).0,
            resumer: Mutex::new(resume::ResumerSlot::default()),
            space,
        });
        running.update_facts(|f| f.interfaces = vmi_status::interfaces(&running.nics, &[]));
        running.tasks.push(tokio::spawn(monitor::follow_events(running.clone(), events)));
        running.tasks.push(tokio::spawn(republish(running.clone())));
        running.tasks.push(tokio::spawn(freeze::follow_thaws(running.clone(), running.handle.frozen())));
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
            self.handle.guest_agent_ping().await.is_ok()
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

    pub(crate) fn set_volumes(&self, volumes: Vec<AttachedVolume>) {
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

    /// Writes the status fields the agent owns if they changed since the last
    /// write. A write that fails is retried in the background; returns whether
    /// the status is written.
    pub async fn publish(&self) -> bool {
        let mut published = self.published.lock().await;
        let fields = {
            let mut facts = self.facts.lock().unwrap_or_else(|p| p.into_inner());
            facts.refresh_conditions(&crate::time::now_time());
            vmi_status::status_fields(&facts)
        };
        if published.as_ref() == Some(&fields) {
            return true;
        }
        let patch = json!({ "status": fields });
        match self.api.patch_status(&self.name, &patch_params(), &Patch::Merge(&patch)).await {
            Ok(_) => *published = Some(fields),
            Err(kube::Error::Api(status)) if status.is_not_found() => *published = Some(fields),
            Err(error) => {
                tracing::warn!(vmi = %self.key(), %error, "could not write the VMI status; retrying");
                self.republish.notify_one();
                return false;
            }
        }
        true
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

    /// Records an event on the VMI and says whether the API took it. Events
    /// of the same type, reason and `action` count as a series of the first
    /// (its note is kept): give events that must each be seen their own action.
    pub async fn record_event(&self, type_: EventType, reason: &str, action: &str, note: &str) -> bool {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.to_owned()),
            action: action.into(),
            secondary: None,
        };
        match self.deps.recorder.publish(&event, &self.object_ref()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(vmi = %self.key(), %error, reason, "could not record an event");
                false
            }
        }
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
        let paused = self.facts().pause.is_paused();
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
        self.stop_resumer();
        let tasks = self.tasks.take();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Retries a status write that failed, less and less often, until one succeeds.
async fn republish(vm: Arc<RunningVmi>) {
    loop {
        vm.republish.notified().await;
        let mut wait = REPUBLISH_FIRST;
        loop {
            tokio::time::sleep(wait).await;
            if vm.publish().await {
                break;
            }
            wait = (wait * 2).min(REPUBLISH_MAX);
        }
    }
}
