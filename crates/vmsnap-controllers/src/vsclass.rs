//! Choosing the VolumeSnapshotClass for a StorageClass (`getVolumeSnapshotClassName`).

use kube::Client;
use kube::api::Api;
use vmsnap_api::cdi::StorageProfile;
use vmsnap_api::k8s_openapi::api::storage::v1::StorageClass;
use vmsnap_api::volumesnapshot::{IS_DEFAULT_CLASS_ANNOTATION, VolumeSnapshotClass};

use crate::error::ReconcileError;

/// The VolumeSnapshotClass for `storage_class`: the StorageProfile's `status.snapshotClass` if set
/// (and existing), else the only class of the provisioner, else its default class. `None` when there
/// is none; an error when several match and none is the default.
pub async fn class_for(client: &Client, storage_class: &str) -> Result<Option<String>, ReconcileError> {
    let scs: Api<StorageClass> = Api::all(client.clone());
    let Some(sc) = scs.get_opt(storage_class).await? else { return Ok(None) };
    let vscs: Api<VolumeSnapshotClass> = Api::all(client.clone());
    let profiles: Api<StorageProfile> = Api::all(client.clone());
    if let Some(profile) = profiles.get_opt(storage_class).await?
        && let Some(name) = profile.status.and_then(|s| s.snapshot_class).filter(|n| !n.is_empty())
    {
        return Ok(vscs.get_opt(&name).await?.map(|_| name));
    }
    let matching: Vec<VolumeSnapshotClass> = vscs
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.driver == sc.provisioner)
        .collect();
    match matching.len() {
        0 => Ok(None),
        1 => Ok(matching[0].metadata.name.clone()),
        n => {
            let default = matching.iter().find(|c| {
                c.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(IS_DEFAULT_CLASS_ANNOTATION))
            });
            match default {
                Some(c) => Ok(c.metadata.name.clone()),
                None => Err(ReconcileError::AmbiguousSnapshotClass {
                    count: n,
                    storage_class: storage_class.to_owned(),
                }),
            }
        }
    }
}
