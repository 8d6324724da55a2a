//! `VirtualMachineSnapshot`: a request for a point-in-time copy of a VM.

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

use super::{Condition, SnapshotError, SnapshotPhase};

custom_resource! {
    /// The desired snapshot.
    #[kube(group = "snapshot.kubevirt.io", version = "v1beta1", kind = "VirtualMachineSnapshot")]
    #[kube(namespaced, status = "VirtualMachineSnapshotStatus")]
    #[kube(shortname = "vmsnapshot", shortname = "vmsnapshots", category = "all")]
    #[kube(doc = "VirtualMachineSnapshot defines the operation of snapshotting a VM")]
    #[kube(printcolumn(name = "SourceKind", type_ = "string", json_path = ".spec.source.kind"))]
    #[kube(printcolumn(name = "SourceName", type_ = "string", json_path = ".spec.source.name"))]
    #[kube(printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"))]
    #[kube(printcolumn(name = "ReadyToUse", type_ = "boolean", json_path = ".status.readyToUse"))]
    #[kube(printcolumn(name = "CreationTime", type_ = "date", json_path = ".status.creationTime"))]
    #[kube(printcolumn(name = "Error", type_ = "string", json_path = ".status.error.message"))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineSnapshotSpec {
        /// The VM to snapshot (`apiGroup: kubevirt.io`, `kind: VirtualMachine`).
        pub source: TypedLocalObjectReference,
        /// `Delete` (default) or `Retain`: what happens to the content when the snapshot is deleted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::deletion_policy")]
        pub deletion_policy: Option<DeletionPolicy>,
        /// How long the snapshot may take, counted from its creation (`5m0s` by default; `0s` means no
        /// limit): a Go duration, or a number of seconds (`20`; read as the string `"20"`).
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_number")]
        #[schemars(schema_with = "crate::schema::duration_or_seconds")]
        pub failure_deadline: Option<String>,
    }
}

/// Reads a string, or a JSON number as its decimal text.
fn string_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Number(serde_json::Number),
    }
    Ok(Option::<Text>::deserialize(deserializer)?.map(|t| match t {
        Text::String(s) => s,
        Text::Number(n) => n.to_string(),
    }))
}

/// What happens to a snapshot's content when the snapshot is deleted (`spec.deletionPolicy`,
/// KubeVirt's `DeletionPolicy`; the CRD admits only these two).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Delete the content with the snapshot (the default).
    Delete,
    /// Keep a ready content after the snapshot is deleted.
    Retain,
}

impl DeletionPolicy {
    /// The string KubeVirt writes for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::Delete => "Delete",
            DeletionPolicy::Retain => "Retain",
        }
    }
}

/// The observed snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSnapshotStatus {
    /// UID of the source VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "sourceUID")]
    pub source_uid: Option<String>,
    /// Name of the content holding the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_snapshot_content_name: Option<String>,
    /// When the point in time was fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub creation_time: Option<Time>,
    /// InProgress, Succeeded, Failed, Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SnapshotPhase>,
    /// The snapshot can be restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
    /// Progressing, Ready, Failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Deprecated: the indications without messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indications: Vec<String>,
    /// The indications with their messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_indications: Vec<SourceIndication>,
    /// Which volumes are in the snapshot and which are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<SnapshotVolumesLists>,
}

/// An indication with its message.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceIndication {
    /// The indication.
    pub indication: String,
    /// What it means.
    pub message: String,
}

/// `status.snapshotVolumes`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotVolumesLists {
    /// Volumes with a VolumeSnapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_volumes: Vec<String>,
    /// Volumes without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_volumes: Vec<String>,
}
