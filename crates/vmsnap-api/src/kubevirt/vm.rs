//! `VirtualMachine`: the desired VM, whether it runs, and the volumes it owns.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::custom_resource::custom_resource;

use super::{AddVolumeOptions, RemoveVolumeOptions, VirtualMachineInstanceSpec};
use crate::cdi::DataVolumeSpec;

custom_resource! {
    /// The desired state of a VirtualMachine.
    #[kube(group = "kubevirt.io", version = "v1", kind = "VirtualMachine")]
    #[kube(namespaced, status = "VirtualMachineStatus")]
    #[kube(shortname = "vm", shortname = "vms", category = "all")]
    #[kube(doc = "VirtualMachine handles the VirtualMachines that are not running or are in a stopped state.")]
    #[kube(printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"))]
    #[kube(printcolumn(
        name = "Status",
        type_ = "string",
        description = "Human Readable Status",
        json_path = ".status.printableStatus"
    ))]
    #[kube(printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineSpec {
        /// Deprecated in favour of `runStrategy`: whether the VM should run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub running: Option<bool>,
        /// `Always`, `Halted`, `Manual`, `RerunOnFailure`, `Once`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub run_strategy: Option<String>,
        /// Instance type matcher (free-form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
        pub instancetype: Option<Value>,
        /// Preference matcher (free-form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
        pub preference: Option<Value>,
        /// The instance to create when the VM starts.
        #[serde(default)]
        pub template: VirtualMachineInstanceTemplateSpec,
        /// DataVolumes created for, and owned by, this VM.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub data_volume_templates: Vec<DataVolumeTemplateSpec>,
    }
}

/// The run strategies KubeVirt defines.
pub mod run_strategy {
    /// Keep the VM running; restart it whenever it stops.
    pub const ALWAYS: &str = "Always";
    /// Keep the VM stopped.
    pub const HALTED: &str = "Halted";
    /// Start and stop only on request (`start`, `stop` subresources).
    pub const MANUAL: &str = "Manual";
    /// Restart only when the guest fails; a clean shutdown stays stopped.
    pub const RERUN_ON_FAILURE: &str = "RerunOnFailure";
    /// Run once; do not restart after it stops.
    pub const ONCE: &str = "Once";
    /// Every run strategy, in KubeVirt's order.
    pub const ALL: &[&str] = &[ALWAYS, HALTED, MANUAL, RERUN_ON_FAILURE, ONCE];
}

impl VirtualMachineSpec {
    /// The effective run strategy: `runStrategy`, else `Always`/`Halted` from `running`, else `Halted`.
    pub fn effective_run_strategy(&self) -> &str {
        match (&self.run_strategy, self.running) {
            (Some(s), _) => s,
            (None, Some(true)) => run_strategy::ALWAYS,
            _ => run_strategy::HALTED,
        }
    }
}

/// `spec.template`: metadata and spec of the VMI to create.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceTemplateSpec {
    /// Labels and annotations for the VMI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::nested_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The VMI spec.
    #[serde(default)]
    pub spec: VirtualMachineInstanceSpec,
}

/// `spec.dataVolumeTemplates[]`: a DataVolume the VM creates and owns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeTemplateSpec {
    /// Optional `cdi.kubevirt.io/v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Optional `DataVolume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The DataVolume's name, labels and annotations.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::nested_metadata")]
    pub metadata: ObjectMeta,
    /// The DataVolume's spec.
    pub spec: DataVolumeSpec,
}

/// The observed state of a VirtualMachine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    /// Name of the VirtualMachineSnapshot holding the source lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_in_progress: Option<String>,
    /// Name of the VirtualMachineRestore in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_in_progress: Option<String>,
    /// A VMI exists for this VM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// The VMI is running and ready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ready: bool,
    /// Human-readable state: Stopped, Provisioning, Starting, Running, Paused, Stopping, Terminating, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printable_status: Option<String>,
    /// The run strategy in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// Conditions (`Ready`, `Paused`, `Failure`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VirtualMachineCondition>,
    /// Pending start/stop requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_change_requests: Vec<VirtualMachineStateChangeRequest>,
    /// Pending hotplug requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_requests: Vec<VirtualMachineVolumeRequest>,
    /// Whether each volume can be snapshotted, and why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_snapshot_statuses: Vec<VolumeSnapshotStatus>,
    /// Memory dump request (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub memory_dump_request: Option<Value>,
    /// Why the last start failed (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub start_failure: Option<Value>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The generation the running VMI was started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_generation: Option<i64>,
}

/// A condition of a VirtualMachine or a VMI (KubeVirt's two condition types have the same fields).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Last probe time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_probe_time: Option<Time>,
    /// Last transition time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A start or stop request recorded on the VM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStateChangeRequest {
    /// `Start` or `Stop`.
    pub action: String,
    /// Extra data.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub data: std::collections::BTreeMap<String, String>,
    /// UID of the VMI the request is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A pending hotplug request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineVolumeRequest {
    /// Add a volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_volume_options: Option<AddVolumeOptions>,
    /// Remove a volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_volume_options: Option<RemoveVolumeOptions>,
}

/// `status.volumeSnapshotStatuses[]`: whether a volume can be snapshotted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// Volume name.
    pub name: String,
    /// True when the volume can be snapshotted.
    pub enabled: bool,
    /// Why not, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
