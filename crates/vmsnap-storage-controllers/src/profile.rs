//! The StorageProfile controller: one cluster-scoped StorageProfile per
//! StorageClass, of the same name, whose status tells CDI and KubeVirt how to
//! use the class (access and volume modes, clone strategy, snapshot class).
//!
//! The profile is owned by its class, so deleting the class garbage-collects
//! it. Overrides in the profile's spec win over the computed values, as in CDI.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::cdi::{StorageProfile, StorageProfileSpec, StorageProfileStatus};
use vmsnap_api::volumesnapshot::VolumeSnapshotClass;

use super::PROVISIONER;
use super::context::{Context, already_exists, error_policy, tracked};
use super::error::ReconcileError;

/// Runs the controller until the task is aborted.
pub async fn run(ctx: Arc<Context>) {
    let controller = Controller::new(ctx.cluster::<StorageClass>(), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config());
    let classes = controller.store();
    controller
        .owns(ctx.cluster::<StorageProfile>(), watcher::Config::default())
        .watches(ctx.cluster::<VolumeSnapshotClass>(), watcher::Config::default(), move |snapshot_class| {
            // A snapshot class changes the profiles of its driver's storage classes.
            classes
                .state()
                .into_iter()
                .filter(|class| class.provisioner == snapshot_class.spec.driver)
                .map(|class| ObjectRef::from_obj(class.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(class: Arc<StorageClass>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    tracked(class.as_ref(), &ctx, apply(&class, &ctx)).await
}

async fn apply(class: &StorageClass, ctx: &Context) -> Result<Action, ReconcileError> {
    if class.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = class.name_any();
    let profiles = ctx.cluster::<StorageProfile>();
    let owner = class.controller_owner_ref(&()).map(|mut owner| {
        owner.block_owner_deletion = None;
        owner
    });
    let profile = match profiles.get_opt(&name).await? {
        Some(profile) => profile,
        None => {
            let new = StorageProfile {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: owner.clone().map(|owner| vec![owner]),
                    ..Default::default()
                },
                spec: StorageProfileSpec::default(),
                status: None,
            };
            match profiles.create(&PostParams::default(), &new).await {
                Ok(created) => created,
                Err(error) if already_exists(&error) => profiles.get(&name).await?,
                Err(error) => return Err(error.into()),
            }
        }
    };
    if let Some(owner) = owner
        && !owned_by(&profile, &owner)
    {
        let mut owners = profile.metadata.owner_references.clone().unwrap_or_default();
        owners.push(owner);
        let patch = json!({"metadata": {"ownerReferences": owners}});
        profiles.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    let desired = desired_status(class, &profile.spec, ctx);
    if profile.status.as_ref() != Some(&desired) {
        let patch = json!({"status": desired});
        profiles.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(Action::await_change())
}

fn owned_by(profile: &StorageProfile, owner: &OwnerReference) -> bool {
    profile.owner_references().iter().any(|existing| existing.uid == owner.uid)
}

/// The status CDI would compute for `class`, with the profile's overrides.
fn desired_status(class: &StorageClass, spec: &StorageProfileSpec, ctx: &Context) -> StorageProfileStatus {
    let ours = class.provisioner == PROVISIONER;
    let snapshot_class = spec.snapshot_class.clone().or_else(|| {
        ctx.classes.default_snapshot_class(&class.provisioner).and_then(|c| c.metadata.name.clone())
    });
    let claim_property_sets = if !spec.claim_property_sets.is_empty() {
        spec.claim_property_sets.clone()
    } else if ours {
        // The engine backs both volume modes with a disk image; Filesystem is what CDI picks by default.
        vec![json!({"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"})]
    } else {
        // Unknown provisioners get no recommendation, as in CDI: the user must give modes.
        Vec::new()
    };
    let clone_strategy = spec.clone_strategy.clone().or_else(|| ours.then(|| "snapshot".to_owned()));
    StorageProfileStatus {
        storage_class: class.metadata.name.clone(),
        provisioner: Some(class.provisioner.clone()),
        clone_strategy,
        claim_property_sets,
        snapshot_class,
    }
}
