//! Level-triggered hotplug: the hotpluggable volumes of a running VMI's spec
//! are attached, and the hotplugged disks no longer in it detached. The VMI
//! controller runs it on every change of the VMI; the `addvolume` and
//! `removevolume` subresources run it at once after changing the spec.

use std::sync::Arc;

use kube::runtime::events::EventType;
use vmsnap_api::kubevirt::VirtualMachineInstance;

use crate::agent::Agent;
use crate::domain;
use crate::error::error_chain;
use crate::running::RunningVmi;
use crate::volumes;

/// Attaches the hotpluggable volumes of the VMI spec that are not attached,
/// and detaches the hotplugged ones no longer in it. True when something is left to do.
pub async fn sync(agent: &Agent, running: &Arc<RunningVmi>, vmi: &VirtualMachineInstance) -> bool {
    let _hotplug = running.hotplug_lock().await;
    let attached = running.volumes();
    let mut pending = false;
    for volume in vmi.spec.volumes.iter().filter(|v| v.is_hotpluggable()) {
        if attached.iter().any(|a| a.name() == volume.name) {
            continue;
        }
        let resolved =
            volumes::resolve_claim(&agent.client, agent.driver.as_ref(), &running.namespace, volume).await;
        let mut resolved = match resolved {
            Ok(resolved) => resolved,
            Err(error) => {
                tracing::info!(vmi = %running.key(), volume = %volume.name, %error, "hotplug volume not ready");
                pending = true;
                continue;
            }
        };
        let disk = vmi.spec.domain.devices.disks.iter().find(|d| d.name == volume.name);
        if let Err(error) = domain::apply_disk_options(&mut resolved.disk, disk, volume) {
            tracing::warn!(vmi = %running.key(), volume = %volume.name, %error, "cannot hotplug");
            running.event(
                EventType::Warning,
                "HotplugFailed",
                format!("Failed to attach volume {}: {error}", volume.name),
            );
            continue;
        }
        match running.attach(resolved).await {
            Ok(()) => {
                running.event(EventType::Normal, "VolumeAttached", format!("Attached volume {}", volume.name))
            }
            Err(error) => {
                let message = error_chain(&error);
                running.event(
                    EventType::Warning,
                    "HotplugFailed",
                    format!("Failed to attach volume {}: {message}", volume.name),
                );
                pending = true;
            }
        }
    }
    for gone in attached
        .iter()
        .filter(|a| a.volume.hotplugged && !vmi.spec.volumes.iter().any(|v| v.name == a.name()))
    {
        if let Err(error) = running.detach(gone.name()).await {
            let message = error_chain(&error);
            running.event(
                EventType::Warning,
                "HotplugFailed",
                format!("Failed to detach volume {}: {message}", gone.name()),
            );
            pending = true;
        }
    }
    pending
}
