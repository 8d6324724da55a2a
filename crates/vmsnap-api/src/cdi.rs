//! `cdi.kubevirt.io/v1beta1`: DataVolume (a PVC populated from a source) and StorageProfile.

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::custom_resource::custom_resource;

/// The API group of DataVolume and StorageProfile.
pub const GROUP: &str = "cdi.kubevirt.io";

/// CDI annotations that KubeVirt and the restore controller read or write on PVCs and DataVolumes.
pub mod annotations {
    /// On a PVC: the DataVolume that will adopt it.
    pub const POPULATED_FOR: &str = "cdi.kubevirt.io/storage.populatedFor";
    /// On a DataVolume: its PVC is already populated; do not import.
    pub const PRE_POPULATED: &str = "cdi.kubevirt.io/storage.prePopulated";
    /// Content type of the PVC (`kubevirt` or `archive`).
    pub const CONTENT_TYPE: &str = "cdi.kubevirt.io/storage.contentType";
    /// On a PVC: the import or clone finished.
    pub const POD_PHASE: &str = "cdi.kubevirt.io/storage.pod.phase";
    /// On a PVC: CDI considers it populated (`Succeeded` pod phase).
    pub const CONDITION_BOUND: &str = "cdi.kubevirt.io/storage.condition.bound";
    /// On a PVC cloned without a volume populator: `<namespace>/<name>` of the source PVC.
    pub const CLONE_REQUEST: &str = "k8s.io/CloneRequest";
    /// On a PVC cloned without a volume populator: it is a clone.
    pub const CLONE_OF: &str = "k8s.io/CloneOf";
}

custom_resource! {
    /// The desired DataVolume.
    #[kube(group = "cdi.kubevirt.io", version = "v1beta1", kind = "DataVolume")]
    #[kube(namespaced, status = "DataVolumeStatus")]
    #[kube(shortname = "dv", shortname = "dvs", category = "all")]
    #[kube(doc = "DataVolume is an abstraction on top of PersistentVolumeClaims to allow easy population of those PersistentVolumeClaims with relation to VirtualMachines")]
    #[kube(printcolumn(
        name = "Phase",
        type_ = "string",
        description = "The phase the data volume is in",
        json_path = ".status.phase"
    ))]
    #[kube(printcolumn(
        name = "Progress",
        type_ = "string",
        description = "Transfer progress in percentage if known, N/A otherwise",
        json_path = ".status.progress"
    ))]
    #[kube(printcolumn(
        name = "Restarts",
        type_ = "integer",
        description = "The number of times the transfer has been restarted.",
        json_path = ".status.restartCount"
    ))]
    #[kube(printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"))]
    #[serde(rename_all = "camelCase")]
    pub struct DataVolumeSpec {
        /// Where the data comes from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source: Option<DataVolumeSource>,
        /// A DataSource to take the source from (free-form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
        pub source_ref: Option<Value>,
        /// The PVC to create, as given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::pvc_spec")]
        pub pvc: Option<PersistentVolumeClaimSpec>,
        /// The PVC to create, with defaults from the StorageProfile.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::pvc_spec")]
        pub storage: Option<PersistentVolumeClaimSpec>,
        /// `kubevirt` (a disk image) or `archive`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub content_type: Option<String>,
        /// Preallocate the disk.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub preallocation: Option<bool>,
        /// Priority class of the importer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority_class_name: Option<String>,
    }
}

impl DataVolumeSpec {
    /// The PVC spec to create: `pvc` if given, else `storage`.
    pub fn claim_spec(&self) -> Option<&PersistentVolumeClaimSpec> {
        self.pvc.as_ref().or(self.storage.as_ref())
    }
}

/// The source of a DataVolume. Exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSource {
    /// A blank disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub blank: Option<Value>,
    /// Import from a URL (`http://` or `file://`), raw or qcow2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<DataVolumeSourceHttp>,
    /// Clone a PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<DataVolumeSourceRef>,
    /// Restore from a VolumeSnapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DataVolumeSourceRef>,
    /// Import from a registry (free-form; not supported by the embedded driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub registry: Option<Value>,
    /// Wait for an upload (free-form; not supported by the embedded driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub upload: Option<Value>,
}

/// `source.http`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceHttp {
    /// The URL to import.
    pub url: String,
    /// Secret with credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// ConfigMap with a CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// Extra HTTP headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_headers: Vec<String>,
}

/// `source.pvc` and `source.snapshot`: a namespaced reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceRef {
    /// Namespace; the DataVolume's own when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// DataVolume phases (CDI's names).
pub mod dv_phase {
    /// Nothing started yet.
    pub const PENDING: &str = "Pending";
    /// The PVC is bound.
    pub const PVC_BOUND: &str = "PVCBound";
    /// Import scheduled.
    pub const IMPORT_SCHEDULED: &str = "ImportScheduled";
    /// Import running; `status.progress` moves.
    pub const IMPORT_IN_PROGRESS: &str = "ImportInProgress";
    /// Clone scheduled.
    pub const CLONE_SCHEDULED: &str = "CloneScheduled";
    /// Clone running.
    pub const CLONE_IN_PROGRESS: &str = "CloneInProgress";
    /// Restore from a snapshot running.
    pub const SNAPSHOT_RESTORE_IN_PROGRESS: &str = "CloneFromSnapshotSourceInProgress";
    /// Waiting for a consumer (WaitForFirstConsumer binding).
    pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
    /// Waiting for a populator.
    pub const PENDING_POPULATION: &str = "PendingPopulation";
    /// The PVC is ready to use.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Population failed.
    pub const FAILED: &str = "Failed";
}

/// The observed state of a DataVolume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeStatus {
    /// The PVC's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// CDI phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Progress such as `45.00%`, or `N/A`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// How many times the transfer restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// Conditions: Bound, Ready, Running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<DataVolumeCondition>,
}

/// A DataVolume condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeCondition {
    /// `Bound`, `Ready` or `Running`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Last transition time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_transition_time: Option<Time>,
    /// Last heartbeat time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_heartbeat_time: Option<Time>,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

custom_resource! {
    /// StorageProfile: CDI's per-StorageClass defaults, including the VolumeSnapshotClass to use.
    #[kube(group = "cdi.kubevirt.io", version = "v1beta1", kind = "StorageProfile")]
    #[kube(status = "StorageProfileStatus")]
    #[kube(doc = "StorageProfile provides a CDI specific recommendation for storage parameters")]
    #[serde(rename_all = "camelCase")]
    pub struct StorageProfileSpec {
        /// Clone strategy override (`copy`, `snapshot`, `csi-clone`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub clone_strategy: Option<String>,
        /// Access and volume modes override (free-form).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
        pub claim_property_sets: Vec<Value>,
        /// VolumeSnapshotClass override.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub snapshot_class: Option<String>,
    }
}

/// The observed StorageProfile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfileStatus {
    /// The StorageClass described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Its provisioner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<String>,
    /// Clone strategy in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_strategy: Option<String>,
    /// Access and volume modes (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub claim_property_sets: Vec<Value>,
    /// The VolumeSnapshotClass to use for this StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_class: Option<String>,
}
