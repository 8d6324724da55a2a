//! `snapshot.storage.k8s.io/v1`: VolumeSnapshot, VolumeSnapshotClass and VolumeSnapshotContent (the CSI snapshot API).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

/// The API group of the CSI snapshot kinds.
pub const GROUP: &str = "snapshot.storage.k8s.io";
/// Annotation marking the default VolumeSnapshotClass (its presence counts, not its value).
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "snapshot.storage.kubernetes.io/is-default-class";

custom_resource! {
    /// A request for a point-in-time copy of a PVC.
    #[kube(group = "snapshot.storage.k8s.io", version = "v1", kind = "VolumeSnapshot")]
    #[kube(namespaced, status = "VolumeSnapshotStatus")]
    #[kube(shortname = "vs")]
    #[kube(doc = "VolumeSnapshot is a user's request for either creating a point-in-time snapshot of a persistent volume, or binding to a pre-existing snapshot.")]
    #[kube(printcolumn(
        name = "ReadyToUse",
        type_ = "boolean",
        description = "Indicates if the snapshot is ready to be used to restore a volume.",
        json_path = ".status.readyToUse"
    ))]
    #[kube(printcolumn(
        name = "SourcePVC",
        type_ = "string",
        description = "If a new snapshot needs to be created, this contains the name of the source PVC from which this snapshot was (or will be) created.",
        json_path = ".spec.source.persistentVolumeClaimName"
    ))]
    #[kube(printcolumn(
        name = "SourceSnapshotContent",
        type_ = "string",
        description = "If a snapshot already exists, this contains the name of the existing VolumeSnapshotContent object representing the existing snapshot.",
        json_path = ".spec.source.volumeSnapshotContentName"
    ))]
    #[kube(printcolumn(
        name = "RestoreSize",
        type_ = "string",
        description = "Represents the minimum size of volume required to rehydrate from this snapshot.",
        json_path = ".status.restoreSize"
    ))]
    #[kube(printcolumn(
        name = "SnapshotClass",
        type_ = "string",
        description = "The name of the VolumeSnapshotClass requested by the VolumeSnapshot.",
        json_path = ".spec.volumeSnapshotClassName"
    ))]
    #[kube(printcolumn(
        name = "SnapshotContent",
        type_ = "string",
        description = "Name of the VolumeSnapshotContent object to which the VolumeSnapshot object intends to bind to. Please note that verification of binding actually requires checking both VolumeSnapshot and VolumeSnapshotContent to ensure both are pointing at each other. Binding MUST be verified prior to usage of this object.",
        json_path = ".status.boundVolumeSnapshotContentName"
    ))]
    #[kube(printcolumn(
        name = "CreationTime",
        type_ = "date",
        description = "Timestamp when the point-in-time snapshot was taken by the underlying storage system.",
        json_path = ".status.creationTime"
    ))]
    #[kube(printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"))]
    #[serde(rename_all = "camelCase")]
    pub struct VolumeSnapshotSpec {
        /// What to snapshot, or which existing snapshot to bind.
        pub source: VolumeSnapshotSource,
        /// The class to use; the default class of the PVC's driver when empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub volume_snapshot_class_name: Option<String>,
    }
}

/// `spec.source`: exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    /// Snapshot this PVC (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    /// Bind this pre-existing content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

/// The observed state of a VolumeSnapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// The bound VolumeSnapshotContent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    /// When the point in time was fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub creation_time: Option<Time>,
    /// The snapshot can be used to restore a volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Minimum size of a volume restored from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::quantity")]
    pub restore_size: Option<Quantity>,
    /// The last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// An error of the snapshot machinery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotError {
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub time: Option<Time>,
    /// What happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

custom_resource! {
    /// How to take snapshots for one CSI driver (cluster-scoped; fields at the top level).
    #[kube(group = "snapshot.storage.k8s.io", version = "v1", kind = "VolumeSnapshotClass")]
    #[kube(no_spec)]
    #[kube(shortname = "vsclass", shortname = "vsclasses")]
    #[kube(doc = "VolumeSnapshotClass specifies parameters that a underlying storage system uses when creating a volume snapshot.")]
    #[kube(printcolumn(name = "Driver", type_ = "string", json_path = ".driver"))]
    #[kube(printcolumn(
        name = "DeletionPolicy",
        type_ = "string",
        description = "Determines whether a VolumeSnapshotContent created through the VolumeSnapshotClass should be deleted when its bound VolumeSnapshot is deleted.",
        json_path = ".deletionPolicy"
    ))]
    #[kube(printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"))]
    #[serde(rename_all = "camelCase")]
    pub struct VolumeSnapshotClassFields {
        /// The CSI driver (the StorageClass provisioner it serves).
        pub driver: String,
        /// Driver parameters.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub parameters: BTreeMap<String, String>,
        /// `Delete` or `Retain`: what happens to the content when its VolumeSnapshot is deleted.
        #[schemars(schema_with = "crate::schema::deletion_policy")]
        pub deletion_policy: String,
    }
}

custom_resource! {
    /// The actual snapshot on the storage system (cluster-scoped).
    #[kube(group = "snapshot.storage.k8s.io", version = "v1", kind = "VolumeSnapshotContent")]
    #[kube(status = "VolumeSnapshotContentStatus")]
    #[kube(shortname = "vsc", shortname = "vscs")]
    #[kube(doc = "VolumeSnapshotContent represents the actual \"on-disk\" snapshot object in the underlying storage system")]
    #[kube(printcolumn(name = "ReadyToUse", type_ = "boolean", json_path = ".status.readyToUse"))]
    #[kube(printcolumn(name = "RestoreSize", type_ = "integer", json_path = ".status.restoreSize"))]
    #[kube(printcolumn(name = "DeletionPolicy", type_ = "string", json_path = ".spec.deletionPolicy"))]
    #[kube(printcolumn(name = "Driver", type_ = "string", json_path = ".spec.driver"))]
    #[kube(printcolumn(
        name = "VolumeSnapshotClass",
        type_ = "string",
        json_path = ".spec.volumeSnapshotClassName"
    ))]
    #[kube(printcolumn(
        name = "VolumeSnapshot",
        type_ = "string",
        json_path = ".spec.volumeSnapshotRef.name"
    ))]
    #[kube(printcolumn(
        name = "VolumeSnapshotNamespace",
        type_ = "string",
        json_path = ".spec.volumeSnapshotRef.namespace"
    ))]
    #[kube(printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"))]
    #[serde(rename_all = "camelCase")]
    pub struct VolumeSnapshotContentSpec {
        /// The VolumeSnapshot bound to this content.
        pub volume_snapshot_ref: ObjectReference,
        /// `Delete` or `Retain`.
        #[schemars(schema_with = "crate::schema::deletion_policy")]
        pub deletion_policy: String,
        /// The CSI driver.
        pub driver: String,
        /// The class it was created with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub volume_snapshot_class_name: Option<String>,
        /// The volume or the existing snapshot handle.
        pub source: VolumeSnapshotContentSource,
        /// Volume mode of the source.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source_volume_mode: Option<String>,
    }
}

/// `spec.source` of a content: exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSource {
    /// The volume to snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// A pre-existing snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

/// The observed state of a content.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    /// The driver's snapshot handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// When the point in time was fixed, in nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<i64>,
    /// Minimum restore size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<i64>,
    /// The snapshot can be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}
