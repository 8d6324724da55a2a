//! The VolumeSnapshotContent controller: deletes the engine snapshot of a
//! content with `deletionPolicy: Delete` before the content goes, and deletes
//! a `Delete` content whose VolumeSnapshot is gone (as the external
//! snapshotter does). A `Retain` content, and its engine snapshot, stay.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::DeleteParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotContent};
use vmsnap_contracts::controller::is_not_found;
use vmsnap_storage::SnapshotId;

use super::PROVISIONER;
use super::context::{Context, error_policy, tracked};
use super::error::ReconcileError;
use super::names::{CONTENT_FINALIZER, content_name_for, snapshot_id_for};

/// Runs the controller until the task is aborted.
pub async fn run(ctx: Arc<Context>) {
    Controller::new(ctx.cluster::<VolumeSnapshotContent>(), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config())
        .watches(ctx.watched::<VolumeSnapshot>(), watcher::Config::default(), |snapshot| {
            let bound = snapshot.status.as_ref().and_then(|s| s.bound_volume_snapshot_content_name.clone());
            let derived = snapshot.uid().map(|uid| content_name_for(&uid));
            let named = snapshot.spec.source.volume_snapshot_content_name.clone();
            let mut names: Vec<String> = [bound, derived, named].into_iter().flatten().collect();
            names.dedup();
            names.into_iter().map(|name| ObjectRef::<VolumeSnapshotContent>::new(&name)).collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(content: Arc<VolumeSnapshotContent>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if content.spec.driver != PROVISIONER {
        return Ok(Action::await_change());
    }
    tracked(content.as_ref(), &ctx, async {
        let contents = ctx.cluster::<VolumeSnapshotContent>();
        let action = finalizer(&contents, CONTENT_FINALIZER, content.clone(), |event| async {
            match event {
                Finalizer::Apply(content) => apply(&content, &ctx).await,
                Finalizer::Cleanup(content) => cleanup(&content, &ctx).await,
            }
        })
        .await?;
        Ok(action)
    })
    .await
}

/// Whether the content's VolumeSnapshot exists (with the UID it was bound
/// to); `None` for a pre-provisioned content not bound yet.
async fn snapshot_present(
    content: &VolumeSnapshotContent,
    ctx: &Context,
) -> Result<Option<bool>, ReconcileError> {
    let reference = &content.spec.volume_snapshot_ref;
    let (Some(namespace), Some(name), Some(uid)) =
        (reference.namespace.as_deref(), reference.name.as_deref(), reference.uid.as_deref())
    else {
        return Ok(None);
    };
    let snapshot = ctx.namespaced::<VolumeSnapshot>(namespace).get_opt(name).await?;
    Ok(Some(snapshot.is_some_and(|snapshot| snapshot.uid().as_deref() == Some(uid))))
}

async fn apply(content: &VolumeSnapshotContent, ctx: &Context) -> Result<Action, ReconcileError> {
    if snapshot_present(content, ctx).await? == Some(false) && content.spec.deletion_policy == "Delete" {
        match ctx
            .cluster::<VolumeSnapshotContent>()
            .delete(&content.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Action::await_change())
}

async fn cleanup(content: &VolumeSnapshotContent, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = content.name_any();
    if snapshot_present(content, ctx).await? == Some(true) {
        let reference = &content.spec.volume_snapshot_ref;
        return Err(ReconcileError::Waiting(format!(
            "VolumeSnapshotContent {name} is still bound to VolumeSnapshot {}/{}; it is deleted after it",
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default()
        )));
    }
    if content.spec.deletion_policy != "Delete" {
        tracing::info!(content = %name, "VolumeSnapshotContent deleted; its snapshot is kept (deletion policy Retain)");
        return Ok(Action::await_change());
    }
    let Some(id) = engine_snapshot(content)? else { return Ok(Action::await_change()) };
    if let Err(source) = ctx.driver.delete_snapshot(&id).await {
        let error = ReconcileError::storage(format!("delete snapshot {id}"))(source);
        ctx.event(
            &content.object_ref(&()),
            EventType::Warning,
            "SnapshotDeleteError",
            "DeleteSnapshot",
            error.message(),
        )
        .await;
        return Err(error);
    }
    Ok(Action::await_change())
}

/// The engine snapshot of a content: its handle, or the id its VolumeSnapshot's UID gives.
fn engine_snapshot(content: &VolumeSnapshotContent) -> Result<Option<SnapshotId>, ReconcileError> {
    let handle = content
        .status
        .as_ref()
        .and_then(|s| s.snapshot_handle.clone())
        .or_else(|| content.spec.source.snapshot_handle.clone());
    let id = match (handle, content.spec.volume_snapshot_ref.uid.as_deref()) {
        (Some(handle), _) => SnapshotId::new(handle),
        (None, Some(uid)) => snapshot_id_for(uid),
        (None, None) => return Ok(None),
    };
    id.map(Some).map_err(|error| {
        ReconcileError::Invalid(format!("VolumeSnapshotContent {}: {error}", content.name_any()))
    })
}
