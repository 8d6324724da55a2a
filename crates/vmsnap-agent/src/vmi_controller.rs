//! The VMI controller (KubeVirt's virt-handler and virt-launcher): runs each
//! VirtualMachineInstance as a QEMU process, hotplugs the volumes added to
//! its spec, and shuts it down when the VMI is deleted (through the
//! `foregroundDeleteVirtualMachine` finalizer).
//!
//! Reconciles are level-triggered and safe to repeat: a VMI that already has
//! a QEMU is never launched again (the registry, then the runtime directory's
//! pid file and lock decide), and a VMI whose volumes are not ready stays
//! `Pending` with a `Synchronized=False` condition saying what it waits for.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::kubevirt::VmiPhase;
use vmsnap_api::kubevirt::{VirtualMachineInstance, VirtualMachineInstanceSpec};

use crate::agent::Agent;
use crate::domain;
use crate::error::error_chain;
use crate::kubevirt::{DEFAULT_GRACE_PERIOD, VMI_FINALIZER, condition};
use crate::running::pause::PauseState;
use crate::running::record::AttachedVolume;
use crate::running::{RunningVmi, patch_params};
use crate::vmi_status::{Problem, VmiFacts, status_fields};
use crate::volumes::{self, ResolvedVolume, VolumeError, claim_of};
use crate::{hotplug, recover};
use vmsnap_vmm::{LaunchError, VmHandle};

/// A VMI reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum VmiReconcileError {
    /// The Kubernetes API failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// A volume lookup failed for a reason that may pass.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The finalizer could not be added or removed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The VMI's QEMU could not be stopped; its runtime directory is kept.
    #[error("the VMI's QEMU (pid {0}) is still running")]
    StillRunning(i32),
    /// A QEMU runs for the VMI but the agent cannot connect to it (yet).
    #[error("cannot re-attach to the VMI's running QEMU: {0}")]
    Attach(String),
}

/// The QEMU running from the VMI's runtime directory, if any; an error when
/// one runs but cannot be attached to (the caller retries rather than guess).
async fn attach(agent: &Agent, uid: &str) -> Result<Option<VmHandle>, VmiReconcileError> {
    agent
        .attach_vmm()
        .attach(&agent.runtime_dir_of(uid))
        .await
        .map_err(|error| VmiReconcileError::Attach(error_chain(&error)))
}

/// Runs the controller until the task is aborted.
pub async fn run(agent: Arc<Agent>) {
    let client = agent.client.clone();
    let controller =
        Controller::new(Api::<VirtualMachineInstance>::all(client.clone()), watcher::Config::default())
            .with_config(vmsnap_contracts::controller::controller_config());
    volumes::watch_claims(controller, client, |vmi| &vmi.spec.volumes)
        .run(reconcile, error_policy, agent)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "VMI reconcile");
            }
        })
        .await;
}

fn error_policy(_vmi: Arc<VirtualMachineInstance>, error: &VmiReconcileError, _agent: Arc<Agent>) -> Action {
    tracing::warn!(%error, "VMI reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(vmi: Arc<VirtualMachineInstance>, agent: Arc<Agent>) -> Result<Action, VmiReconcileError> {
    let api: Api<VirtualMachineInstance> =
        Api::namespaced(agent.client.clone(), &vmi.namespace().unwrap_or_default());
    let result = finalizer(&api, VMI_FINALIZER, vmi, |event| async move {
        match event {
            FinalizerEvent::Apply(vmi) => apply(&agent, &vmi).await,
            FinalizerEvent::Cleanup(vmi) => cleanup(&agent, &vmi).await,
        }
    })
    .await;
    match result {
        Ok(action) => Ok(action),
        // A repeated cleanup of a VMI that is already gone.
        Err(FinalizerError::RemoveFinalizer(kube::Error::Api(status))) if status.is_not_found() => {
            Ok(Action::await_change())
        }
        Err(FinalizerError::ApplyFailed(error) | FinalizerError::CleanupFailed(error)) => Err(error),
        Err(other) => Err(VmiReconcileError::Finalizer(other.to_string())),
    }
}

fn ids(vmi: &VirtualMachineInstance) -> (String, String, String) {
    (vmi.namespace().unwrap_or_default(), vmi.name_any(), vmi.uid().unwrap_or_default())
}

async fn apply(agent: &Arc<Agent>, vmi: &VirtualMachineInstance) -> Result<Action, VmiReconcileError> {
    let (_, _, uid) = ids(vmi);
    if let Some(running) = agent.registry.get(&uid) {
        let stored = vmi.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if stored != running.facts().phase {
            // Someone rewrote the status: write ours again.
            running.invalidate_published().await;
            running.publish().await;
        }
        let pending = hotplug::sync(agent, &running, vmi).await;
        return Ok(if pending { Action::requeue(Duration::from_secs(2)) } else { Action::await_change() });
    }
    let phase = vmi.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    match phase {
        VmiPhase::Succeeded | VmiPhase::Failed => Ok(Action::await_change()),
        VmiPhase::Running | VmiPhase::Scheduled => {
            // Not ours in memory: an earlier agent launched it.
            if let Some(handle) = attach(agent, &uid).await? {
                recover::adopt(agent, vmi, handle).await;
                return Ok(Action::await_change());
            }
            if phase == VmiPhase::Running {
                recover::mark_gone(agent, vmi).await?;
                return Ok(Action::await_change());
            }
            launch(agent, vmi).await
        }
        _ => launch(agent, vmi).await,
    }
}

/// Why this node cannot run the VMI (its node selector asks for another node).
fn unschedulable(spec: &VirtualMachineInstanceSpec, node: &str) -> Option<Problem> {
    let fits = spec.node_selector.iter().all(|(key, value)| match key.as_str() {
        "kubernetes.io/hostname" => value == node,
        "kubernetes.io/arch" | "beta.kubernetes.io/arch" => value == "amd64",
        "kubernetes.io/os" | "beta.kubernetes.io/os" => value == "linux",
        _ => false,
    });
    (!fits).then(|| Problem {
        reason: condition::REASON_UNSCHEDULABLE,
        message: format!("0/1 nodes are available: node {node} didn't match the VMI's node selector"),
    })
}

/// Writes a status for a VMI that does not run (yet).
async fn write_status(
    agent: &Agent,
    vmi: &VirtualMachineInstance,
    facts: &mut VmiFacts,
) -> Result<(), kube::Error> {
    facts.refresh_conditions(&crate::time::now_time());
    let api: Api<VirtualMachineInstance> =
        Api::namespaced(agent.client.clone(), &vmi.namespace().unwrap_or_default());
    let patch = json!({ "status": status_fields(facts) });
    api.patch_status(&vmi.name_any(), &patch_params(), &Patch::Merge(&patch)).await.map(drop)
}

fn event(agent: &Agent, vmi: &VirtualMachineInstance, type_: EventType, reason: &str, note: String) {
    let recorder = agent.recorder.clone();
    let reference = vmi.object_ref(&());
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::debug!(%error, "could not record an event");
        }
    });
}

/// Keeps the VMI `Pending`, saying what it waits for.
async fn wait_for(
    agent: &Agent,
    vmi: &VirtualMachineInstance,
    mut facts: VmiFacts,
    problem: Problem,
    retry: Duration,
) -> Result<Action, VmiReconcileError> {
    let stored_message = vmi
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.reason.as_deref() == Some(problem.reason)))
        .and_then(|c| c.message.clone());
    if stored_message.as_deref() != Some(problem.message.as_str()) {
        event(agent, vmi, EventType::Warning, "SyncFailed", problem.message.clone());
    }
    if problem.reason == condition::REASON_UNSCHEDULABLE {
        facts.unschedulable = Some(problem);
    } else {
        facts.unsynchronized = Some(problem);
    }
    facts.set_phase(VmiPhase::Pending, &crate::time::now_time());
    write_status(agent, vmi, &mut facts).await?;
    Ok(Action::requeue(retry))
}

/// Marks the VMI `Failed` after a launch that did not work.
async fn fail(
    agent: &Agent,
    vmi: &VirtualMachineInstance,
    mut facts: VmiFacts,
    message: String,
) -> Result<Action, VmiReconcileError> {
    tracing::warn!(vmi = %vmi.name_any(), %message, "launch failed");
    event(agent, vmi, EventType::Warning, "FailedLaunch", message.clone());
    facts.unsynchronized = Some(Problem { reason: condition::REASON_LAUNCH_FAILED, message });
    facts.reason = Some(condition::REASON_LAUNCH_FAILED.into());
    facts.set_phase(VmiPhase::Failed, &crate::time::now_time());
    write_status(agent, vmi, &mut facts).await?;
    Ok(Action::await_change())
}

/// Resolves every disk's volume, in disk order; volumes of kinds the agent does not attach are listed apart.
async fn resolve_volumes(
    agent: &Agent,
    namespace: &str,
    spec: &VirtualMachineInstanceSpec,
    dir: &std::path::Path,
) -> Result<(Vec<ResolvedVolume>, Vec<String>), VolumeError> {
    let mut resolved = Vec::new();
    let mut skipped = Vec::new();
    for disk in &spec.domain.devices.disks {
        let volume = spec.volumes.iter().find(|v| v.name == disk.name).ok_or_else(|| {
            VolumeError::Unusable(format!("disk {} has no volume of the same name", disk.name))
        })?;
        let mut volume_resolved = if claim_of(volume).is_some() {
            volumes::resolve_claim(&agent.client, agent.driver.as_ref(), namespace, volume).await?
        } else if volume.empty_disk.is_some() {
            volumes::empty_disk(dir, volume).await?
        } else if volume.container_disk.is_some() {
            volumes::container_disk(&agent.config.image_cache, dir, volume).await?
        } else {
            skipped.push(volume.name.clone());
            continue;
        };
        domain::apply_disk_options(&mut volume_resolved.disk, Some(disk), volume)
            .map_err(|error| VolumeError::Unusable(error.to_string()))?;
        resolved.push(volume_resolved);
    }
    Ok((resolved, skipped))
}

async fn launch(agent: &Arc<Agent>, vmi: &VirtualMachineInstance) -> Result<Action, VmiReconcileError> {
    let (namespace, name, uid) = ids(vmi);
    let mut spec = vmi.spec.clone();
    domain::apply_defaults(&mut spec);
    let mut facts = VmiFacts::from_status(vmi.status.as_ref());
    if let Some(problem) = unschedulable(&spec, &agent.config.node_name) {
        return wait_for(agent, vmi, facts, problem, Duration::from_secs(300)).await;
    }
    let dir = agent.runtime_dir_of(&uid);
    if let Err(error) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
        return fail(
            agent,
            vmi,
            facts,
            format!("could not create the runtime directory {}: {error}", dir.display()),
        )
        .await;
    }
    let resolved = match agent.boot(spec.domain.firmware.as_ref()).await {
        Ok(boot) => resolve_volumes(agent, &namespace, &spec, &dir).await.map(|volumes| (boot, volumes)),
        Err(error) => Err(error),
    };
    let (boot, (volumes, skipped)) = match resolved {
        Ok(resolved) => resolved,
        Err(error @ VolumeError::Api { .. }) => return Err(error.into()),
        Err(error) => {
            let retry = match error {
                VolumeError::Unusable(_) | VolumeError::Image(_) => Duration::from_secs(30),
                _ => Duration::from_secs(2),
            };
            return wait_for(agent, vmi, facts, error.problem(), retry).await;
        }
    };
    let volume_ids = volumes.iter().filter_map(|v| v.claim.as_ref().map(|c| c.volume_id.clone())).collect();
    let Some(guard) = agent.registry.begin_launch(&uid, &namespace, &name, volume_ids) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let now = crate::time::now_time();
    facts.unsynchronized = None;
    facts.unschedulable = None;
    facts.reason = None;
    facts.node_name = Some(agent.config.node_name.clone());
    facts.set_phase(VmiPhase::Scheduled, &now);
    write_status(agent, vmi, &mut facts).await?;

    let disks = volumes.iter().map(|v| v.disk.clone()).collect();
    let (launch_spec, memory_raised) = match domain::launch_spec(&namespace, &name, &spec, boot, disks) {
        Ok(launched) => launched,
        Err(error) => return fail(agent, vmi, facts, format!("the VMI spec cannot be run: {error}")).await,
    };
    let lock = match lock_dir(&dir) {
        Ok(lock) => lock,
        Err(message) => return fail(agent, vmi, facts, message).await,
    };
    let handle = match agent.vmm().await.launch(&dir, launch_spec).await {
        Ok(handle) => handle,
        Err(LaunchError::AlreadyRunning { .. }) => {
            // Launched by an agent that did not live to record it: adopt that QEMU.
            drop((guard, lock));
            if let Some(handle) = attach(agent, &uid).await? {
                recover::adopt(agent, vmi, handle).await;
            }
            return Ok(Action::await_change());
        }
        Err(error) => return fail(agent, vmi, facts, error_chain(&error)).await,
    };
    drop(lock);
    let targets = volumes::target_names(volumes.iter().map(|v| &v.disk));
    let attached: Vec<AttachedVolume> =
        volumes.into_iter().zip(targets).map(|(volume, target)| AttachedVolume { volume, target }).collect();
    facts.volumes = attached.iter().map(|v| volumes::volume_status(&v.volume, &v.target)).collect();
    facts.machine = Some(handle.spec().machine.clone());
    // QEMU keeps the vCPUs stopped for `startStrategy: Paused` until a user unpauses it.
    facts.pause = if handle.spec().start_paused { PauseState::ByUser } else { PauseState::Running };
    facts.set_phase(VmiPhase::Running, &crate::time::now_time());
    let running = RunningVmi::start(handle, (&namespace, &name, &uid), facts, attached, agent.deps());
    running.write_record();
    guard.finish(running.clone());
    running.publish().await;
    running.event(EventType::Normal, "Started", "VirtualMachineInstance started.".into());
    if let Some(raised) = memory_raised {
        running.event(EventType::Normal, "MemoryRaised", raised.to_string());
    }
    if !skipped.is_empty() {
        let note = format!(
            "volumes {} are of a kind the embedded agent does not attach; ignored",
            skipped.join(", ")
        );
        running.event(EventType::Warning, "UnsupportedVolume", note);
    }
    Ok(Action::await_change())
}

/// An exclusive lock on the runtime directory while QEMU is launched from it,
/// so that two agents never launch the same VMI.
fn lock_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let path = dir.join("agent.lock");
    let file = std::fs::File::create(&path)
        .map_err(|error| format!("could not create {}: {error}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        format!("another agent is launching this VMI ({} is locked: {errno})", path.display())
    })
}

async fn cleanup(agent: &Arc<Agent>, vmi: &VirtualMachineInstance) -> Result<Action, VmiReconcileError> {
    let (_, _, uid) = ids(vmi);
    let grace = vmi
        .spec
        .termination_grace_period_seconds
        .map_or(DEFAULT_GRACE_PERIOD, |seconds| Duration::from_secs(seconds.max(0) as u64));
    let dir = agent.runtime_dir_of(&uid);
    if let Some(running) = agent.registry.get(&uid) {
        running.shut_down(grace).await;
        if running.handle.is_running() {
            return Err(VmiReconcileError::StillRunning(running.handle.pid()));
        }
        running.abort_tasks().await;
        agent.registry.remove(&running);
    } else if let Some(handle) = attach(agent, &uid).await? {
        tracing::info!(vmi = %vmi.name_any(), "stopping a QEMU the agent had lost track of");
        if let Err(error) = handle.kill().await {
            tracing::warn!(%error, "could not kill QEMU");
            return Err(VmiReconcileError::StillRunning(handle.pid()));
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), %error, "could not remove the runtime directory");
        }
        _ => {}
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_selector_for_another_node_makes_the_vmi_unschedulable() {
        let mut spec = VirtualMachineInstanceSpec::default();
        assert_eq!(unschedulable(&spec, "node1"), None);
        spec.node_selector.insert("kubernetes.io/hostname".into(), "node1".into());
        spec.node_selector.insert("kubernetes.io/arch".into(), "amd64".into());
        assert_eq!(unschedulable(&spec, "node1"), None);
        let problem = unschedulable(&spec, "node2").unwrap();
        assert_eq!(problem.reason, "Unschedulable");
        spec.node_selector.clear();
        spec.node_selector.insert("gpu".into(), "true".into());
        assert!(unschedulable(&spec, "node1").is_some());
    }
}
