//! Volumes (`spec.volumes[]`): what backs each disk.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A volume of a VirtualMachineInstance. Exactly one source field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Name, matched by a disk.
    pub name: String,
    /// A PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    /// A DataVolume (its PVC has the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<DataVolumeSource>,
    /// An ephemeral disk from a container image (changes are lost at shutdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_disk: Option<ContainerDiskSource>,
    /// A blank ephemeral disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_disk: Option<EmptyDiskSource>,
    /// A memory dump target PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_dump: Option<PersistentVolumeClaimVolumeSource>,
    /// cloud-init NoCloud data (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub cloud_init_no_cloud: Option<Value>,
    /// cloud-init ConfigDrive data (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub cloud_init_config_drive: Option<Value>,
    /// A host disk (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub host_disk: Option<Value>,
    /// A ConfigMap (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub config_map: Option<Value>,
    /// A Secret (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub secret: Option<Value>,
    /// A ServiceAccount (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub service_account: Option<Value>,
    /// Sysprep data (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub sysprep: Option<Value>,
    /// Downward metrics (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub downward_metrics: Option<Value>,
}

impl Volume {
    /// The PVC that backs this volume, for the volume kinds the snapshot API can snapshot
    /// (PVC, DataVolume, MemoryDump); `None` for every other kind.
    pub fn claim_name(&self) -> Option<&str> {
        if let Some(pvc) = &self.persistent_volume_claim {
            return Some(&pvc.claim_name);
        }
        if let Some(dv) = &self.data_volume {
            return Some(&dv.name);
        }
        self.memory_dump.as_ref().map(|m| m.claim_name.as_str())
    }

    /// Whether this volume is hotpluggable (attached after boot).
    pub fn is_hotpluggable(&self) -> bool {
        self.persistent_volume_claim.as_ref().is_some_and(|p| p.hotpluggable == Some(true))
            || self.data_volume.as_ref().is_some_and(|d| d.hotpluggable == Some(true))
    }
}

/// `persistentVolumeClaim` and `memoryDump` volume sources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimVolumeSource {
    /// The claim's name, in the VM's namespace.
    pub claim_name: String,
    /// Attach read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Attached by hotplug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotpluggable: Option<bool>,
}

/// `dataVolume` volume source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSource {
    /// The DataVolume's name, in the VM's namespace.
    pub name: String,
    /// Attached by hotplug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotpluggable: Option<bool>,
}

/// `containerDisk` volume source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDiskSource {
    /// Image name.
    pub image: String,
    /// Path of the disk image inside the container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Pull secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// Pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
}

/// `emptyDisk` volume source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDiskSource {
    /// Size of the blank disk.
    #[schemars(schema_with = "crate::schema::quantity")]
    pub capacity: Quantity,
}
