//! What a starting agent finds: QEMU processes launched by an earlier agent
//! (re-attached, like libvirt's domains, and never started twice), VMIs whose
//! QEMU ended while no agent watched (marked `Succeeded` or `Failed`), and
//! runtime directories nothing refers to any more (removed).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kube::api::{Api, ListParams, Patch};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use vmsnap_api::kubevirt::VirtualMachineInstance;
use vmsnap_api::kubevirt::VmiPhase;

use crate::agent::Agent;
use crate::error::AgentStartError;
use crate::running::record::AgentRecord;
use crate::running::{RunningVmi, patch_params};
use crate::vmi_status::{VmiFacts, status_fields};
use crate::volumes;
use vmsnap_vmm::{VmHandle, Vmm};

/// How much of the end of `console.log` tells how the guest ended.
const CONSOLE_TAIL: usize = 16 * 1024;

/// How the guest of a QEMU that ended unwatched went: the kernel prints
/// `reboot: Power down` when it powers off cleanly (and the test guest's
/// shutdown script `vmsnap-guest: shutdown (poweroff)` before), so without
/// either line the process crashed or was killed.
pub fn phase_from_console(console: &str) -> (VmiPhase, Option<&'static str>) {
    let start = console.len().saturating_sub(CONSOLE_TAIL);
    let tail = console.get(start..).unwrap_or(console);
    if tail.contains("reboot: Power down") || tail.contains("vmsnap-guest: shutdown (poweroff)") {
        (VmiPhase::Succeeded, None)
    } else {
        (VmiPhase::Failed, Some("HypervisorStoppedWhileAgentDown"))
    }
}

/// Reconciles what runs with what the API says, before the controllers start.
pub async fn recover(agent: &Arc<Agent>) -> Result<(), AgentStartError> {
    let root = &agent.config.runtime_dir;
    let api: Api<VirtualMachineInstance> = Api::all(agent.client.clone());
    let vmis = api.list(&ListParams::default()).await.map_err(AgentStartError::Api)?;
    let by_uid: HashMap<String, &VirtualMachineInstance> =
        vmis.items.iter().filter_map(|vmi| vmi.uid().map(|uid| (uid, vmi))).collect();
    let running = Vmm::list_running(root)
        .map_err(|source| AgentStartError::RuntimeDir { path: root.clone(), source })?;
    let mut alive = Vec::new();
    for found in running {
        let uid = found.dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        alive.push(uid.clone());
        let handle = match agent.attach_vmm().attach(&found.dir).await {
            Ok(Some(handle)) => handle,
            Ok(None) => continue,
            Err(error) => {
                tracing::error!(dir = %found.dir.display(), %error, "cannot re-attach to a running QEMU; leaving it alone");
                continue;
            }
        };
        match by_uid.get(&uid) {
            Some(vmi) if !is_final(vmi) => adopt(agent, vmi, handle).await,
            _ => {
                tracing::warn!(vm = %found.name, pid = found.pid, "QEMU runs for a VMI that is gone or finished; stopping it");
                if let Err(error) = handle.kill().await {
                    tracing::warn!(%error, "could not stop an orphaned QEMU");
                }
            }
        }
    }
    for vmi in &vmis.items {
        let uid = vmi.uid().unwrap_or_default();
        let phase = vmi.status.as_ref().and_then(|s| s.phase.as_ref());
        let ours =
            vmi.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(agent.config.node_name.as_str());
        // A QEMU that runs but could not be attached is not gone: the VMI controller retries.
        let gone = agent.registry.get(&uid).is_none() && !alive.contains(&uid);
        if phase == Some(&VmiPhase::Running) && ours && gone {
            mark_gone(agent, vmi).await.map_err(AgentStartError::Api)?;
        }
    }
    remove_stale_dirs(root, &by_uid);
    Ok(())
}

fn is_final(vmi: &VirtualMachineInstance) -> bool {
    matches!(vmi.status.as_ref().and_then(|s| s.phase.as_ref()), Some(VmiPhase::Succeeded | VmiPhase::Failed))
}

/// Runtime directories of VMIs that no longer exist (their QEMU was stopped above).
fn remove_stale_dirs(root: &Path, vmis: &HashMap<String, &VirtualMachineInstance>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_vmi_dir = entry.file_type().is_ok_and(|t| t.is_dir()) && uuid::Uuid::parse_str(&name).is_ok();
        if is_vmi_dir && !vmis.contains_key(&name) {
            tracing::info!(dir = %entry.path().display(), "removing the runtime directory of a deleted VMI");
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(%error, "could not remove a stale runtime directory");
            }
        }
    }
}

/// Takes over a QEMU launched by an earlier agent for `vmi`.
pub async fn adopt(agent: &Arc<Agent>, vmi: &VirtualMachineInstance, handle: VmHandle) {
    let (namespace, name, uid) =
        (vmi.namespace().unwrap_or_default(), vmi.name_any(), vmi.uid().unwrap_or_default());
    if agent.registry.get(&uid).is_some() {
        return;
    }
    let attached = match AgentRecord::read(handle.runtime_dir()) {
        Some(record) => record.volumes,
        None => {
            tracing::warn!(vmi = %name, "no agent record next to the running QEMU; its volumes are not known for live snapshots");
            Vec::new()
        }
    };
    let mut facts = VmiFacts::from_status(vmi.status.as_ref());
    facts.node_name = Some(agent.config.node_name.clone());
    facts.machine = Some(handle.spec().machine.clone());
    facts.volumes = attached.iter().map(|v| volumes::volume_status(&v.volume, &v.target)).collect();
    if let Ok(status) = handle.status().await {
        facts.pause = crate::running::pause::PauseState::from_status(&status);
    }
    // Keep the stored verdict until the new health loop has one.
    facts.agent_connected = vmi.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == crate::kubevirt::condition::AGENT_CONNECTED && c.status == "True")
    });
    facts.set_phase(VmiPhase::Running, &crate::time::now_time());
    let pid = handle.pid();
    let running = RunningVmi::start(handle, (&namespace, &name, &uid), facts, attached, agent.deps());
    agent.registry.insert_running(running.clone());
    let stored_frozen = vmi.status.as_ref().and_then(|s| s.fs_freeze_status.as_deref()) == Some("frozen");
    running.adopt_freeze(stored_frozen).await;
    running.publish().await;
    tracing::info!(vmi = %running.key(), pid, "re-attached to the VMI's QEMU");
}

/// Marks a VMI whose QEMU is gone `Succeeded` or `Failed` (from its console log).
pub async fn mark_gone(agent: &Agent, vmi: &VirtualMachineInstance) -> Result<(), kube::Error> {
    let uid = vmi.uid().unwrap_or_default();
    let console = std::fs::read(agent.runtime_dir_of(&uid).join("console.log")).unwrap_or_default();
    let (phase, reason) = phase_from_console(&String::from_utf8_lossy(&console));
    tracing::warn!(vmi = %vmi.name_any(), %phase, "the VMI's QEMU ended while no agent watched");
    let now = crate::time::now_time();
    let mut facts = VmiFacts::from_status(vmi.status.as_ref());
    facts.set_phase(phase, &now);
    facts.reason = reason.map(Into::into);
    facts.refresh_conditions(&now);
    let api: Api<VirtualMachineInstance> =
        Api::namespaced(agent.client.clone(), &vmi.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": status_fields(&facts) });
    api.patch_status(&vmi.name_any(), &patch_params(), &Patch::Merge(&patch)).await?;
    let (type_, reason, note) = match reason {
        None => (
            EventType::Normal,
            "Stopped",
            "The VirtualMachineInstance was shut down while the agent was not running.",
        ),
        Some(_) => (
            EventType::Warning,
            "Failed",
            "The VirtualMachineInstance's QEMU ended while the agent was not running.",
        ),
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: reason.into(),
        secondary: None,
    };
    if let Err(error) = agent.recorder.publish(&event, &vmi.object_ref(&())).await {
        tracing::debug!(%error, "could not record an event");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_power_off_on_the_console_means_succeeded() {
        let clean = "vmsnap-guest: ready\n[   12.1] reboot: Power down\n";
        assert_eq!(phase_from_console(clean), (VmiPhase::Succeeded, None));
        let killed = "vmsnap-guest: ready\n";
        assert_eq!(phase_from_console(killed).0, VmiPhase::Failed);
        assert_eq!(phase_from_console("").0, VmiPhase::Failed);
    }
}
