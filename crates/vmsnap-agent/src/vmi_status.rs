//! The VirtualMachineInstance status the agent owns, as plain data
//! ([`VmiFacts`]) turned into a merge patch body. Pure.
//!
//! The agent writes every VMI status field except `fsFreezeStatus` from one
//! place, [`status_fields`]; `fsFreezeStatus` is written only by the freeze
//! path, so that the two writers never race on a field.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};
use vmsnap_api::kubevirt::{
    GuestOsInfo, PhaseTransitionTimestamp, VirtualMachineInstanceCondition,
    VirtualMachineInstanceNetworkInterface, VmiPhase, VolumeStatus,
};

use crate::kubevirt::{condition, launcher_version};
use crate::running::pause::PauseState;
use vmsnap_vmm::{GuestNetworkInterface, MacAddress};

/// A condition the agent sets to `False` with a reason (`Synchronized`, `PodScheduled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The reason, e.g. `FailedPvcNotFound`.
    pub reason: &'static str,
    /// What is wrong, for a user.
    pub message: String,
}

/// What the agent knows about a VMI: the input of its status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmiFacts {
    /// The phase.
    pub phase: VmiPhase,
    /// Why the VMI is in a final phase.
    pub reason: Option<String>,
    /// When each phase was entered.
    pub transitions: Vec<PhaseTransitionTimestamp>,
    /// The node running it.
    pub node_name: Option<String>,
    /// The guest agent answered its last ping. Shown as `AgentConnected` only
    /// while the vCPUs run: a stopped guest's agent cannot answer anything.
    pub agent_connected: bool,
    /// Whether the vCPUs run, and if not, who stopped them.
    pub pause: PauseState,
    /// Volumes or images that keep the VMI from starting.
    pub unsynchronized: Option<Problem>,
    /// Why the VMI cannot run on this node.
    pub unschedulable: Option<Problem>,
    /// The guest OS, from the agent.
    pub guest_os: Option<GuestOsInfo>,
    /// The NICs, with what the agent reports about them.
    pub interfaces: Vec<VirtualMachineInstanceNetworkInterface>,
    /// The attached volumes.
    pub volumes: Vec<VolumeStatus>,
    /// The QEMU machine type, once launched.
    pub machine: Option<String>,
    /// The conditions as last computed, for their transition times.
    pub conditions: Vec<VirtualMachineInstanceCondition>,
}

impl VmiFacts {
    /// Facts for a VMI as stored: phase, transitions, node and conditions are
    /// kept, so that a restarted agent continues rather than rewrites them.
    pub fn from_status(status: Option<&vmsnap_api::kubevirt::VirtualMachineInstanceStatus>) -> Self {
        let Some(status) = status else { return Self::default() };
        Self {
            phase: status.phase.clone().unwrap_or_default(),
            reason: status.reason.clone(),
            transitions: status.phase_transition_timestamps.clone(),
            node_name: status.node_name.clone(),
            guest_os: status.guest_os_info.clone(),
            interfaces: status.interfaces.clone(),
            volumes: status.volume_status.clone(),
            machine: status
                .machine
                .as_ref()
                .and_then(|m| m.get("type"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            conditions: status.conditions.clone(),
            ..Self::default()
        }
    }

    /// Enters `phase` (recording when) unless already in it.
    pub fn set_phase(&mut self, phase: VmiPhase, now: &Time) {
        if self.phase != phase {
            self.transitions.retain(|t| t.phase != phase);
            self.transitions.push(PhaseTransitionTimestamp {
                phase: phase.clone(),
                phase_transition_timestamp: now.clone(),
            });
            self.phase = phase;
        }
    }

    /// Recomputes [`VmiFacts::conditions`] from the facts, keeping the
    /// transition time of every condition whose status and reason did not change.
    pub fn refresh_conditions(&mut self, now: &Time) {
        let running = self.phase == VmiPhase::Running;
        let mut wanted = vec![if running {
            new_condition(condition::READY, "True", None, None, now)
        } else {
            new_condition(
                condition::READY,
                "False",
                Some("GuestNotRunning"),
                Some("the guest is not running"),
                now,
            )
        }];
        if running && self.agent_connected && !self.pause.is_paused() {
            wanted.push(new_condition(condition::AGENT_CONNECTED, "True", None, None, now));
        }
        let paused = match &self.pause {
            _ if !running => None,
            PauseState::Running => None,
            PauseState::ByUser => Some((condition::REASON_PAUSED_BY_USER, "VMI was paused by user")),
            PauseState::IoError(_) => {
                Some((condition::REASON_PAUSED_IO_ERROR, "VMI was paused, low-level IO error detected"))
            }
        };
        if let Some((reason, message)) = paused {
            wanted.push(new_condition(condition::PAUSED, "True", Some(reason), Some(message), now));
        }
        if let Some(problem) = &self.unsynchronized {
            let (reason, message) = (Some(problem.reason), Some(problem.message.as_str()));
            wanted.push(new_condition(condition::SYNCHRONIZED, "False", reason, message, now));
        }
        if let Some(problem) = &self.unschedulable {
            let (reason, message) = (Some(problem.reason), Some(problem.message.as_str()));
            wanted.push(new_condition(condition::POD_SCHEDULED, "False", reason, message, now));
        }
        for new in &mut wanted {
            if let Some(old) = self.conditions.iter().find(|c| c.type_ == new.type_)
                && old.status == new.status
                && old.reason == new.reason
                && old.last_transition_time.is_some()
            {
                new.last_transition_time = old.last_transition_time.clone();
            }
        }
        self.conditions = wanted;
    }
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &Time,
) -> VirtualMachineInstanceCondition {
    VirtualMachineInstanceCondition {
        type_: type_.into(),
        status: status.into(),
        last_probe_time: None,
        last_transition_time: Some(now.clone()),
        reason: reason.map(Into::into),
        message: message.map(Into::into),
    }
}

/// The status fields the agent owns, as a merge patch body (`null` clears a field).
/// `virtualMachineRevisionName` is never set: vmsnap serves no ControllerRevisions.
pub fn status_fields(facts: &VmiFacts) -> Map<String, Value> {
    let mut fields = Map::new();
    let or_null = |value: Value, empty: bool| if empty { Value::Null } else { value };
    fields.insert("phase".into(), json!(facts.phase));
    fields.insert("reason".into(), json!(facts.reason));
    fields.insert(
        "phaseTransitionTimestamps".into(),
        serde_json::to_value(&facts.transitions).unwrap_or_default(),
    );
    fields.insert("nodeName".into(), json!(facts.node_name));
    fields.insert("conditions".into(), serde_json::to_value(&facts.conditions).unwrap_or_default());
    fields.insert("guestOsInfo".into(), serde_json::to_value(&facts.guest_os).unwrap_or_default());
    let interfaces = serde_json::to_value(&facts.interfaces).unwrap_or_default();
    fields.insert("interfaces".into(), or_null(interfaces, facts.interfaces.is_empty()));
    let volumes = serde_json::to_value(&facts.volumes).unwrap_or_default();
    fields.insert("volumeStatus".into(), or_null(volumes, facts.volumes.is_empty()));
    let launched = facts.machine.is_some();
    fields.insert("machine".into(), facts.machine.as_ref().map_or(Value::Null, |m| json!({ "type": m })));
    fields.insert("qosClass".into(), if launched { json!("Burstable") } else { Value::Null });
    fields.insert(
        "launcherContainerImageVersion".into(),
        if launched { json!(launcher_version()) } else { Value::Null },
    );
    fields
}

/// The guest OS as the API shows it.
pub fn guest_os(info: &vmsnap_vmm::GuestOsInfo) -> GuestOsInfo {
    GuestOsInfo {
        name: info.name.clone(),
        kernel_release: info.kernel_release.clone(),
        kernel_version: info.kernel_version.clone(),
        version: info.version.clone(),
        pretty_name: info.pretty_name.clone(),
        version_id: info.version_id.clone(),
        machine: info.machine.clone(),
        id: info.id.clone(),
    }
}

/// `status.interfaces`: one entry per NIC (`(name, MAC)`), with the guest
/// agent's name and addresses for it when the agent reports its MAC.
pub fn interfaces(
    nics: &[(String, Option<MacAddress>)],
    guest: &[GuestNetworkInterface],
) -> Vec<VirtualMachineInstanceNetworkInterface> {
    nics.iter()
        .map(|(name, mac)| {
            let mac_text = mac.map(|m| m.to_string());
            let seen = guest.iter().find(|g| {
                g.hardware_address.as_deref().map(str::to_ascii_lowercase).as_deref() == mac_text.as_deref()
            });
            let addresses: Vec<String> = seen
                .map(|g| {
                    g.ip_addresses
                        .iter()
                        .filter(|a| !a.ip_address.starts_with("fe80"))
                        .map(|a| a.ip_address.clone())
                        .collect()
                })
                .unwrap_or_default();
            VirtualMachineInstanceNetworkInterface {
                name: Some(name.clone()),
                mac: mac_text.clone(),
                ip_address: addresses.first().cloned(),
                ip_addresses: addresses,
                interface_name: seen.map(|g| g.name.clone()),
                info_source: Some(if seen.is_some() { "domain, guest-agent" } else { "domain" }.into()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use vmsnap_qemu::qga::types::GuestIpAddress;

    use super::*;
    use crate::running::pause::IoErrorPause;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).unwrap())
    }

    fn types(facts: &VmiFacts) -> Vec<String> {
        facts.conditions.iter().map(|c| format!("{}={}", c.type_, c.status)).collect()
    }

    #[test]
    fn agent_connected_is_present_only_while_the_agent_answers() {
        let mut facts = VmiFacts::default();
        facts.set_phase(VmiPhase::Running, &at(1));
        facts.agent_connected = true;
        facts.refresh_conditions(&at(1));
        assert_eq!(types(&facts), ["Ready=True", "AgentConnected=True"]);

        facts.agent_connected = false;
        facts.pause = PauseState::ByUser;
        facts.refresh_conditions(&at(2));
        assert_eq!(types(&facts), ["Ready=True", "Paused=True"]);
        assert_eq!(facts.conditions[1].reason.as_deref(), Some("PausedByUser"));
        // Ready did not change, so it keeps its transition time.
        assert_eq!(facts.conditions[0].last_transition_time, Some(at(1)));

        facts.set_phase(VmiPhase::Succeeded, &at(3));
        facts.refresh_conditions(&at(3));
        assert_eq!(types(&facts), ["Ready=False"]);
        let phases: Vec<&str> = facts.transitions.iter().map(|t| t.phase.as_str()).collect();
        assert_eq!(phases, ["Running", "Succeeded"]);
    }

    #[test]
    fn an_io_error_pause_is_shown_as_kubevirt_shows_it_and_hides_the_agent() {
        let mut facts = VmiFacts::default();
        facts.set_phase(VmiPhase::Running, &at(1));
        facts.agent_connected = true;
        facts.pause = PauseState::IoError(IoErrorPause {
            episode: 1,
            disks: ["data".to_owned()].into(),
            no_space: true,
        });
        facts.refresh_conditions(&at(2));

        // The strings of KubeVirt's virt-handler (calculatePausedCondition).
        assert_eq!(
            types(&facts),
            ["Ready=True", "Paused=True"],
            "no AgentConnected while the vCPUs are stopped"
        );
        let paused = &facts.conditions[1];
        assert_eq!(paused.reason.as_deref(), Some("PausedIOError"));
        assert_eq!(paused.message.as_deref(), Some("VMI was paused, low-level IO error detected"));

        // A user's unpause, or the agent's own once there is room: the condition goes, the agent is shown again.
        facts.pause = PauseState::Running;
        facts.refresh_conditions(&at(3));
        assert_eq!(types(&facts), ["Ready=True", "AgentConnected=True"]);
    }

    #[test]
    fn problems_become_false_conditions() {
        let mut facts = VmiFacts { phase: "Pending".into(), ..Default::default() };
        facts.unsynchronized =
            Some(Problem { reason: "FailedPvcNotFound", message: "PVC data not found".into() });
        facts.refresh_conditions(&at(1));
        assert_eq!(types(&facts), ["Ready=False", "Synchronized=False"]);
        assert_eq!(facts.conditions[1].message.as_deref(), Some("PVC data not found"));
    }

    #[test]
    fn status_fields_clear_what_does_not_apply() {
        let mut facts = VmiFacts::default();
        facts.set_phase(VmiPhase::Pending, &at(1));
        let pending = status_fields(&facts);
        assert_eq!(
            (&pending["phase"], &pending["machine"], &pending["interfaces"]),
            (&json!("Pending"), &Value::Null, &Value::Null)
        );
        facts.machine = Some("q35".into());
        let running = status_fields(&facts);
        assert_eq!(
            (&running["machine"], &running["qosClass"]),
            (&json!({"type": "q35"}), &json!("Burstable"))
        );
        assert!(running["launcherContainerImageVersion"].as_str().unwrap().starts_with("vmsnap.local/"));
        // What the server stores: a merge patch's nulls remove fields.
        let stored: Map<String, Value> = running.into_iter().filter(|(_, v)| !v.is_null()).collect();
        let parsed: vmsnap_api::kubevirt::VirtualMachineInstanceStatus =
            serde_json::from_value(Value::Object(stored)).unwrap();
        assert_eq!(VmiFacts::from_status(Some(&parsed)).phase, VmiPhase::Pending);
    }

    #[test]
    fn interfaces_take_names_and_addresses_from_the_agent_by_mac() {
        let mac: MacAddress = "02:00:00:00:00:01".parse().unwrap();
        let guest = vec![GuestNetworkInterface {
            name: "eth0".into(),
            hardware_address: Some("02:00:00:00:00:01".into()),
            ip_addresses: vec![
                GuestIpAddress { ip_address: "10.0.2.15".into(), ip_address_type: "ipv4".into(), prefix: 24 },
                GuestIpAddress { ip_address: "fe80::1".into(), ip_address_type: "ipv6".into(), prefix: 64 },
            ],
        }];
        let nics = [("default".to_owned(), Some(mac)), ("other".to_owned(), None)];

        let status = interfaces(&nics, &guest);

        assert_eq!(status[0].ip_address.as_deref(), Some("10.0.2.15"));
        assert_eq!(status[0].ip_addresses, ["10.0.2.15"]);
        assert_eq!(status[0].interface_name.as_deref(), Some("eth0"));
        assert_eq!(status[1].info_source.as_deref(), Some("domain"));
        assert_eq!(status[1].ip_address, None);
    }
}
