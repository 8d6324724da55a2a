//! `VirtualMachineInstance`: a running VM.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::custom_resource::custom_resource;

use super::{DomainSpec, Network, Volume};

custom_resource! {
    /// The spec of a running VM.
    #[kube(group = "kubevirt.io", version = "v1", kind = "VirtualMachineInstance")]
    #[kube(namespaced, status = "VirtualMachineInstanceStatus")]
    #[kube(shortname = "vmi", shortname = "vmis", category = "all")]
    #[kube(doc = "VirtualMachineInstance is *the* VirtualMachineInstance Definition. It represents a virtual machine in the runtime environment of kubernetes.")]
    #[kube(printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"))]
    #[kube(printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"))]
    #[kube(printcolumn(name = "IP", type_ = "string", json_path = ".status.interfaces[0].ipAddress"))]
    #[kube(printcolumn(name = "NodeName", type_ = "string", json_path = ".status.nodeName"))]
    #[kube(printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ))]
    #[kube(printcolumn(
        name = "Live-Migratable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='LiveMigratable')].status",
        priority = "1"
    ))]
    #[kube(printcolumn(
        name = "Paused",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Paused')].status",
        priority = "1"
    ))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineInstanceSpec {
        /// The domain: CPU, memory, firmware and devices.
        #[serde(default)]
        pub domain: DomainSpec,
        /// Volumes backing the disks.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub volumes: Vec<Volume>,
        /// Networks backing the interfaces.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub networks: Vec<Network>,
        /// Seconds to wait for a clean guest shutdown before forcing it off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub termination_grace_period_seconds: Option<i64>,
        /// Start paused (`Paused`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub start_strategy: Option<String>,
        /// Eviction strategy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub eviction_strategy: Option<String>,
        /// Node selector.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub node_selector: BTreeMap<String, String>,
        /// Guest hostname.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hostname: Option<String>,
        /// Guest subdomain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub subdomain: Option<String>,
        /// Priority class.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority_class_name: Option<String>,
        /// Scheduler name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub scheduler_name: Option<String>,
        /// Affinity (free-form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
        pub affinity: Option<Value>,
        /// Tolerations (free-form).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
        pub tolerations: Vec<Value>,
        /// Liveness probe (free-form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
        pub liveness_probe: Option<Value>,
        /// Readiness probe (free-form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
        pub readiness_probe: Option<Value>,
        /// Access credentials (free-form).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
        pub access_credentials: Vec<Value>,
        /// CPU architecture.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub architecture: Option<String>,
    }
}

crate::wire_enum::wire_enum! {
    /// Where a VirtualMachineInstance is in its life (`status.phase`, KubeVirt's
    /// `VirtualMachineInstancePhase`).
    VmiPhase {
        /// Not set yet (KubeVirt's `VmPhaseUnset`, the empty string).
        Unset = "",
        /// Accepted, waiting for what it needs (its volumes) before it is scheduled.
        Pending = "Pending",
        /// Being scheduled on a node.
        Scheduling = "Scheduling",
        /// Scheduled: the hypervisor process is starting.
        Scheduled = "Scheduled",
        /// The hypervisor runs the guest.
        Running = "Running",
        /// The guest shut down cleanly; final.
        Succeeded = "Succeeded",
        /// The guest or its hypervisor failed; final.
        Failed = "Failed",
        /// Waiting for a migration source to sync (KubeVirt's; never set by vmsnap).
        WaitingForSync = "WaitingForSync",
        /// The state cannot be obtained (KubeVirt's; never set by vmsnap).
        Unknown = "Unknown",
    }
}

/// VMI condition types used by vmsnap.
pub mod vmi_condition {
    /// The guest is running and usable.
    pub const READY: &str = "Ready";
    /// The guest agent answers.
    pub const AGENT_CONNECTED: &str = "AgentConnected";
    /// The VMI is paused.
    pub const PAUSED: &str = "Paused";
}

/// The observed state of a VMI.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceStatus {
    /// Pending, Scheduling, Scheduled, Running, Succeeded, Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VmiPhase>,
    /// When each phase was entered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_transition_timestamps: Vec<PhaseTransitionTimestamp>,
    /// Why the VMI is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The node running the VMI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Conditions: Ready, AgentConnected, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VirtualMachineInstanceCondition>,
    /// Network interfaces as the guest sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<VirtualMachineInstanceNetworkInterface>,
    /// The guest OS, as reported by the guest agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_os_info: Option<GuestOsInfo>,
    /// `frozen` while the guest file systems are frozen; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_freeze_status: Option<String>,
    /// The state of each volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_status: Vec<VolumeStatus>,
    /// ControllerRevision holding the VM spec this VMI started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_revision_name: Option<String>,
    /// Machine type in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub machine: Option<Value>,
    /// QoS class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    /// The launcher (here: the hypervisor) version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher_container_image_version: Option<String>,
}

/// When a phase was entered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTransitionTimestamp {
    /// The phase.
    pub phase: VmiPhase,
    /// When it was entered.
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub phase_transition_timestamp: Time,
}

/// A condition of a VMI: KubeVirt's `VirtualMachineInstanceCondition` has the same fields as the VM's.
pub type VirtualMachineInstanceCondition = super::VirtualMachineCondition;

/// A network interface of a running VMI.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceNetworkInterface {
    /// Interface name in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Primary IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// All IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// Interface name inside the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// Where the information comes from (`domain`, `guest-agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_source: Option<String>,
}

/// The guest OS, from the guest agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestOsInfo {
    /// OS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kernel release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// Kernel version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    /// OS version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Pretty name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// Version id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Machine (architecture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// OS id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The state of one volume of a VMI.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// Volume name.
    pub name: String,
    /// Target device in the guest (e.g. `vdb`).
    #[serde(default)]
    pub target: String,
    /// Hotplug phase (`Ready` once attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Reason for the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Message for the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Claim details for PVC-backed volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_info: Option<PersistentVolumeClaimInfo>,
    /// Present for hotplugged volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub hotplug_volume: Option<Value>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

/// Claim details of a PVC-backed VMI volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimInfo {
    /// Claim name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// Access modes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// `Filesystem` or `Block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    /// Capacity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::quantity_map")]
    pub capacity: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
}
