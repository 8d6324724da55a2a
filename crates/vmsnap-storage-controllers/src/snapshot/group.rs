//! Grouping the VolumeSnapshots of one VM so that they are cut at one point in time.
//!
//! KubeVirt's content controller creates one VolumeSnapshot per disk, back to
//! back, each with a controller reference to the VM's
//! `VirtualMachineSnapshotContent`, whose `spec.volumeBackups` lists them all.
//! A VolumeSnapshot so owned waits (its reconcile is requeued, nothing polls)
//! until every listed VolumeSnapshot exists, or until
//! [`super::super::ControllerConfig::group_wait`] has passed since the first
//! one was seen; the reconcile that finds the group complete cuts all of them
//! with one engine call. A per-group lock keeps two reconciles from cutting
//! the same group twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Client, ResourceExt};
use vmsnap_api::snapshot::VirtualMachineSnapshotContent;
use vmsnap_api::volumesnapshot::VolumeSnapshot;

use crate::error::ReconcileError;

/// Groups being gathered: when each was first seen, and its lock.
#[derive(Default)]
pub struct Groups {
    first_seen: Mutex<HashMap<String, Instant>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Entries older than this are dropped (a group is cut long before).
const FORGET_AFTER: Duration = Duration::from_secs(600);

impl Groups {
    /// How long the group `key` has been waiting (zero the first time).
    pub fn waited(&self, key: &str) -> Duration {
        let mut first_seen = self.first_seen.lock().expect("not poisoned");
        first_seen.retain(|_, seen| seen.elapsed() < FORGET_AFTER);
        first_seen.entry(key.to_owned()).or_insert_with(Instant::now).elapsed()
    }

    /// The lock of group `key`, held while it is cut.
    pub fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("not poisoned");
        locks.retain(|name, lock| name == key || Arc::strong_count(lock) > 1);
        locks.entry(key.to_owned()).or_default().clone()
    }
}

/// The VM snapshot content a VolumeSnapshot belongs to, and the VolumeSnapshots it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The content's UID: the group's key.
    pub key: String,
    /// Every VolumeSnapshot the content lists, this one included.
    pub members: Vec<String>,
}

/// The group of `snapshot`: `None` if no `VirtualMachineSnapshotContent`
/// controls it, the content is gone, or it does not list this VolumeSnapshot.
pub async fn group_of(client: &Client, snapshot: &VolumeSnapshot) -> Result<Option<Group>, ReconcileError> {
    let Some(owner) = snapshot.owner_references().iter().find(|owner| {
        owner.controller == Some(true)
            && owner.kind == "VirtualMachineSnapshotContent"
            && owner.api_version.split('/').next() == Some(vmsnap_api::snapshot::GROUP)
    }) else {
        return Ok(None);
    };
    // Read loosely: only `spec.volumeBackups[].volumeSnapshotName` matters here.
    let resource = ApiResource::erase::<VirtualMachineSnapshotContent>(&());
    let namespace = snapshot.namespace().unwrap_or_default();
    let contents: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let Some(content) = contents.get_opt(&owner.name).await? else { return Ok(None) };
    if content.uid().as_deref() != Some(owner.uid.as_str()) {
        return Ok(None);
    }
    let members: Vec<String> = content.data["spec"]["volumeBackups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|backup| backup["volumeSnapshotName"].as_str().map(str::to_owned))
        .collect();
    if !members.iter().any(|name| *name == snapshot.name_any()) {
        return Ok(None);
    }
    Ok(Some(Group { key: owner.uid.clone(), members }))
}
