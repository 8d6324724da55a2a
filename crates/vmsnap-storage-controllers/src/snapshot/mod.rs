//! The VolumeSnapshot controller: what snapshot-controller and
//! external-snapshotter do for this driver.
//!
//! A new VolumeSnapshot is cut straight from its watch event, before its
//! finalizer is added: the content (created first, with its own finalizer)
//! already makes the engine snapshot reclaimable, and every write before
//! `creationTime` is guest freeze time. Then the finalizer helper takes over:
//! deleting the VolumeSnapshot deletes its content when the policy is `Delete`.
//!
//! A VolumeSnapshot that names an existing content
//! (`spec.source.volumeSnapshotContentName`) is bound to it when the content
//! is this driver's and its engine snapshot exists.

mod cut;
mod group;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotContent};
use vmsnap_contracts::controller::is_not_found;
use vmsnap_storage::SnapshotId;

use self::cut::{Member, Resolution, publish_content, publish_snapshot, publish_snapshot_error, resolve};
pub use self::group::Groups;
use self::group::group_of;
use super::PROVISIONER;
use super::context::{Context, error_policy, tracked};
use super::error::ReconcileError;
use super::names::{VOLUME_SNAPSHOT_FINALIZER, content_name_for, snapshot_id_for};

/// Runs the controller until the task is aborted.
pub async fn run(ctx: Arc<Context>) {
    let controller = Controller::new(ctx.watched::<VolumeSnapshot>(), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config());
    let store = controller.store();
    let waiting = controller.store();
    controller
        .watches(ctx.watched::<PersistentVolumeClaim>(), watcher::Config::default(), move |claim| {
            // VolumeSnapshots waiting for this PVC to be bound.
            let (namespace, name) = (claim.namespace(), claim.name_any());
            waiting
                .state()
                .iter()
                .filter(|s| s.namespace() == namespace && needs_cut(s))
                .filter(|s| s.spec.source.persistent_volume_claim_name.as_deref() == Some(name.as_str()))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(move |snapshot, ctx| reconcile(snapshot, ctx, store.clone()), error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Whether the point in time of a VolumeSnapshot of a PVC is still to be fixed.
fn needs_cut(snapshot: &VolumeSnapshot) -> bool {
    snapshot.meta().deletion_timestamp.is_none()
        && snapshot.spec.source.persistent_volume_claim_name.is_some()
        && snapshot.status.as_ref().is_none_or(|s| s.creation_time.is_none())
}

async fn reconcile(
    snapshot: Arc<VolumeSnapshot>,
    ctx: Arc<Context>,
    store: Store<VolumeSnapshot>,
) -> Result<Action, ReconcileError> {
    tracked(snapshot.as_ref(), &ctx, async {
        if needs_cut(&snapshot) {
            tracing::debug!(snapshot = %snapshot.name_any(), "VolumeSnapshot to cut");
            match cut_with_group(&ctx, &store, snapshot.clone()).await? {
                CutStep::Done => {}
                CutStep::NotOurs => return Ok(Action::await_change()),
                CutStep::WaitForGroup(delay) => return Ok(Action::requeue(delay)),
            }
        } else if snapshot.meta().deletion_timestamp.is_none() && !ours_or_bound(&snapshot, &ctx).await? {
            return Ok(Action::await_change());
        }
        let snapshots = ctx.namespaced::<VolumeSnapshot>(&snapshot.namespace().unwrap_or_default());
        let action = finalizer(&snapshots, VOLUME_SNAPSHOT_FINALIZER, snapshot.clone(), |event| async {
            match event {
                Finalizer::Apply(snapshot) => apply(&snapshot, &ctx).await,
                Finalizer::Cleanup(snapshot) => cleanup(&snapshot, &ctx).await,
            }
        })
        .await?;
        Ok(action)
    })
    .await
}

/// What the cut path did.
enum CutStep {
    /// The snapshot is cut (now or by an earlier run).
    Done,
    /// Another driver's snapshot.
    NotOurs,
    /// Other members of its group are still missing: look again after this delay.
    WaitForGroup(std::time::Duration),
}

async fn cut_with_group(
    ctx: &Context,
    store: &Store<VolumeSnapshot>,
    snapshot: Arc<VolumeSnapshot>,
) -> Result<CutStep, ReconcileError> {
    let namespace = snapshot.namespace().unwrap_or_default();
    let Some(group) = group_of(&ctx.client, &snapshot).await? else {
        return cut_members(ctx, snapshot, Vec::new()).await;
    };
    let others: Vec<Arc<VolumeSnapshot>> = group
        .members
        .iter()
        .filter(|name| **name != snapshot.name_any())
        .filter_map(|name| store.get(&ObjectRef::new(name).within(&namespace)))
        .collect();
    let waited = ctx.groups.waited(&group.key);
    if others.len() + 1 < group.members.len() && waited < ctx.config.group_wait {
        return Ok(CutStep::WaitForGroup(ctx.config.group_wait - waited));
    }
    let lock = ctx.groups.lock(&group.key);
    let _guard = lock.lock().await;
    // A member the cache shows uncut may have been cut a moment ago: the
    // engine snapshot tells, and such a member is only published again.
    let others = others.into_iter().filter(|other| needs_cut(other)).collect();
    cut_members(ctx, snapshot, others).await
}

/// Resolves and cuts `snapshot` (the one being reconciled) with `others` of its group.
async fn cut_members(
    ctx: &Context,
    snapshot: Arc<VolumeSnapshot>,
    others: Vec<Arc<VolumeSnapshot>>,
) -> Result<CutStep, ReconcileError> {
    let mut members: Vec<Member> = Vec::new();
    let own = match resolve(ctx, snapshot.clone()).await? {
        Resolution::Member(member) => {
            members.push(member);
            Ok(CutStep::Done)
        }
        Resolution::NotOurs => Ok(CutStep::NotOurs),
        Resolution::Failed(message) => {
            publish_snapshot_error(ctx, &snapshot, &message).await;
            Err(ReconcileError::Invalid(message))
        }
    };
    for other in others {
        match resolve(ctx, other.clone()).await? {
            Resolution::Member(member) => members.push(member),
            Resolution::NotOurs => {}
            // Its own reconcile retries it.
            Resolution::Failed(message) => publish_snapshot_error(ctx, &other, &message).await,
        }
    }
    if !members.is_empty() {
        cut::cut(ctx, &members).await?;
    }
    own
}

/// For a VolumeSnapshot whose point in time is fixed (or that binds an
/// existing content): whether this driver serves it.
async fn ours_or_bound(snapshot: &VolumeSnapshot, ctx: &Context) -> Result<bool, ReconcileError> {
    if snapshot.finalizers().iter().any(|f| f == VOLUME_SNAPSHOT_FINALIZER) {
        return Ok(true);
    }
    let content_name = snapshot
        .status
        .as_ref()
        .and_then(|s| s.bound_volume_snapshot_content_name.clone())
        .or_else(|| snapshot.spec.source.volume_snapshot_content_name.clone());
    let Some(content_name) = content_name else { return Ok(false) };
    Ok(ctx
        .cluster::<VolumeSnapshotContent>()
        .get_opt(&content_name)
        .await?
        .is_some_and(|content| content.spec.driver == PROVISIONER))
}

/// After the cut: repairs what a crash left half-written (the content's
/// status), and binds VolumeSnapshots that name an existing content.
async fn apply(snapshot: &VolumeSnapshot, ctx: &Context) -> Result<Action, ReconcileError> {
    if let Some(content_name) = snapshot.spec.source.volume_snapshot_content_name.clone() {
        return bind_existing(snapshot, &content_name, ctx).await;
    }
    let Some(content_name) =
        snapshot.status.as_ref().and_then(|s| s.bound_volume_snapshot_content_name.clone())
    else {
        return Ok(Action::await_change());
    };
    let Some(content) = ctx.cluster::<VolumeSnapshotContent>().get_opt(&content_name).await? else {
        return Ok(Action::await_change());
    };
    if content.status.as_ref().and_then(|s| s.ready_to_use) != Some(true)
        && let Some(id) = engine_snapshot_of(&content)
        && let Some(info) =
            ctx.driver.snapshot(&id).await.map_err(ReconcileError::storage("read a snapshot"))?
    {
        publish_content(ctx, &content_name, &info).await?;
    }
    Ok(Action::await_change())
}

/// Binds a VolumeSnapshot to the pre-existing content it names.
async fn bind_existing(
    snapshot: &VolumeSnapshot,
    content_name: &str,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let fail = |message: String| async move {
        publish_snapshot_error(ctx, snapshot, &message).await;
        Err(ReconcileError::Invalid(message))
    };
    let namespace = snapshot.namespace().unwrap_or_default();
    let contents = ctx.cluster::<VolumeSnapshotContent>();
    let Some(content) = contents.get_opt(content_name).await? else {
        return fail(format!("VolumeSnapshotContent {content_name} does not exist")).await;
    };
    let reference = &content.spec.volume_snapshot_ref;
    if reference.name.as_deref() != Some(snapshot.name_any().as_str())
        || reference.namespace.as_deref() != Some(namespace.as_str())
    {
        return fail(format!("VolumeSnapshotContent {content_name} is meant for another VolumeSnapshot; set its spec.volumeSnapshotRef to {namespace}/{}", snapshot.name_any())).await;
    }
    if reference.uid.is_some() && reference.uid != snapshot.uid() {
        return fail(format!(
            "VolumeSnapshotContent {content_name} is bound to an earlier VolumeSnapshot of this name"
        ))
        .await;
    }
    let Some(id) = engine_snapshot_of(&content) else {
        return fail(format!("VolumeSnapshotContent {content_name} names no valid snapshot handle")).await;
    };
    let Some(info) = ctx.driver.snapshot(&id).await.map_err(ReconcileError::storage("read a snapshot"))?
    else {
        return fail(format!(
            "VolumeSnapshotContent {content_name} names engine snapshot {id}, which does not exist"
        ))
        .await;
    };
    if reference.uid.is_none() {
        let patch = json!({"spec": {"volumeSnapshotRef": {"uid": snapshot.uid()}}});
        contents.patch(content_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    if content.status.as_ref().and_then(|s| s.ready_to_use) != Some(true) {
        publish_content(ctx, content_name, &info).await?;
    }
    if snapshot.status.as_ref().and_then(|s| s.ready_to_use) != Some(true) {
        publish_snapshot(ctx, snapshot, content_name, &info).await?;
    }
    Ok(Action::await_change())
}

/// The engine snapshot behind a content.
fn engine_snapshot_of(content: &VolumeSnapshotContent) -> Option<SnapshotId> {
    let handle = content
        .status
        .as_ref()
        .and_then(|s| s.snapshot_handle.clone())
        .or_else(|| content.spec.source.snapshot_handle.clone());
    match handle {
        Some(handle) => SnapshotId::new(handle).ok(),
        None => snapshot_id_for(content.spec.volume_snapshot_ref.uid.as_deref()?).ok(),
    }
}

/// The VolumeSnapshot is being deleted: its content goes too when its policy is `Delete`.
async fn cleanup(snapshot: &VolumeSnapshot, ctx: &Context) -> Result<Action, ReconcileError> {
    let uid = snapshot.uid().unwrap_or_default();
    let bound = snapshot.status.as_ref().and_then(|s| s.bound_volume_snapshot_content_name.clone());
    let content_name = bound.unwrap_or_else(|| content_name_for(&uid));
    let contents = ctx.cluster::<VolumeSnapshotContent>();
    match contents.get_opt(&content_name).await? {
        Some(content)
            if content.spec.deletion_policy == "Delete" && content.meta().deletion_timestamp.is_none() =>
        {
            match contents.delete(&content_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        // Retained, or already being deleted; with no content, nothing was cut.
        Some(_) | None => {}
    }
    Ok(Action::await_change())
}
