//! Cutting VolumeSnapshots: the path from a new VolumeSnapshot to its
//! `creationTime`, which a frozen guest waits for. It is kept short: the
//! content is created (its finalizer makes the engine snapshot reclaimable
//! whatever happens next), one engine call fixes the point in time for the
//! whole group, and one status write per VolumeSnapshot publishes it.

use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};
use vmsnap_storage::{SnapshotId, SnapshotInfo, VolumeId};

use crate::PROVISIONER;
use crate::context::{Context, already_exists};
use crate::error::ReconcileError;
use crate::names::{CONTENT_FINALIZER, content_name_for, snapshot_id_for};
use crate::sources::{Resolved, bound_volume};
use vmsnap_api::quantity::format_bytes;

/// A VolumeSnapshot resolved down to the engine.
pub struct Member {
    /// The VolumeSnapshot.
    pub snapshot: Arc<VolumeSnapshot>,
    /// The engine volume of its PVC.
    pub volume: VolumeId,
    /// The engine snapshot to take.
    pub snapshot_id: SnapshotId,
    /// Its VolumeSnapshotContent.
    pub content_name: String,
    /// The class it is taken with.
    pub class: Arc<VolumeSnapshotClass>,
    /// The PVC's volume mode.
    pub volume_mode: Option<String>,
}

/// What a VolumeSnapshot resolves to.
pub enum Resolution {
    /// A snapshot of this driver, ready to cut.
    Member(Member),
    /// Another driver's snapshot: not ours to touch.
    NotOurs,
    /// Ours, but it cannot be cut (yet); the message goes into `status.error`.
    Failed(String),
}

/// Resolves a VolumeSnapshot of a PVC to the engine volume and the class.
pub async fn resolve(ctx: &Context, snapshot: Arc<VolumeSnapshot>) -> Result<Resolution, ReconcileError> {
    let started = Instant::now();
    let resolution = resolve_inner(ctx, snapshot).await;
    tracing::debug!(resolve_ms = started.elapsed().as_secs_f64() * 1e3, "resolved");
    resolution
}

async fn resolve_inner(ctx: &Context, snapshot: Arc<VolumeSnapshot>) -> Result<Resolution, ReconcileError> {
    let namespace = snapshot.namespace().unwrap_or_default();
    let name = snapshot.name_any();
    let Some(claim_name) = snapshot.spec.source.persistent_volume_claim_name.clone() else {
        return Ok(Resolution::NotOurs);
    };
    let class = match snapshot.spec.volume_snapshot_class_name.as_deref() {
        Some(class_name) => match ctx.classes.snapshot_class(class_name).await? {
            Some(class) if class.spec.driver != PROVISIONER => return Ok(Resolution::NotOurs),
            Some(class) => Some(class),
            None => {
                return Ok(Resolution::Failed(format!(
                    "VolumeSnapshotClass {class_name:?} does not exist; create it or name another class"
                )));
            }
        },
        None => None,
    };
    let Some(claim) = ctx.namespaced::<PersistentVolumeClaim>(&namespace).get_opt(&claim_name).await? else {
        return Ok(Resolution::Failed(format!(
            "the source PersistentVolumeClaim {namespace}/{claim_name} of VolumeSnapshot {name} does not exist"
        )));
    };
    let volume = match bound_volume(ctx, &claim).await {
        Ok(Resolved::Ready(volume)) => volume,
        Ok(Resolved::Waiting(message)) => {
            return Ok(Resolution::Failed(format!("{message}; the snapshot is taken once it is bound")));
        }
        // A PVC of another driver, unless the class named says it is ours.
        Err(ReconcileError::Invalid(message)) => {
            return Ok(if class.is_some() { Resolution::Failed(message) } else { Resolution::NotOurs });
        }
        Err(error) => return Err(error),
    };
    let class = match class.or_else(|| ctx.classes.default_snapshot_class(PROVISIONER)) {
        Some(class) => class,
        None => {
            return Ok(Resolution::Failed(format!(
                "no VolumeSnapshotClass for driver {PROVISIONER}; create one or name it in spec.volumeSnapshotClassName"
            )));
        }
    };
    let uid = snapshot.uid().unwrap_or_default();
    let snapshot_id = snapshot_id_for(&uid)
        .map_err(|error| ReconcileError::Invalid(format!("VolumeSnapshot {name}: {error}")))?;
    Ok(Resolution::Member(Member {
        volume,
        snapshot_id,
        content_name: content_name_for(&uid),
        class,
        volume_mode: claim.spec.as_ref().and_then(|s| s.volume_mode.clone()),
        snapshot,
    }))
}

/// Cuts every member with one engine call (those an earlier run already cut
/// are only published), then writes the statuses and events.
pub async fn cut(ctx: &Context, members: &[Member]) -> Result<(), ReconcileError> {
    let started = Instant::now();
    for result in join_all(members.iter().map(|member| ensure_content(ctx, member))).await {
        result?;
    }
    let content_at = started.elapsed();
    let mut todo = Vec::new();
    for member in members {
        if ctx
            .driver
            .snapshot(&member.snapshot_id)
            .await
            .map_err(ReconcileError::storage("read a snapshot"))?
            .is_none()
        {
            todo.push((member.volume.clone(), member.snapshot_id.clone()));
        }
    }
    if !todo.is_empty()
        && let Err(source) = ctx.driver.snapshot_volumes(&todo, ctx.live()).await
    {
        let volumes: Vec<&str> = todo.iter().map(|(volume, _)| volume.as_str()).collect();
        let error = ReconcileError::storage(format!("snapshot volumes {}", volumes.join(", ")))(source);
        let message = error.message();
        join_all(members.iter().map(|member| publish_error(ctx, member, &message))).await;
        return Err(error);
    }
    let cut_at = started.elapsed();
    let mut infos = Vec::with_capacity(members.len());
    for member in members {
        let info = ctx
            .driver
            .snapshot(&member.snapshot_id)
            .await
            .map_err(ReconcileError::storage("read a snapshot"))?;
        infos.push(info.ok_or_else(|| {
            ReconcileError::Invalid(format!(
                "engine snapshot {} vanished right after it was taken",
                member.snapshot_id
            ))
        })?);
    }
    let published =
        members.iter().zip(&infos).map(|(m, info)| publish_snapshot(ctx, &m.snapshot, &m.content_name, info));
    for result in join_all(published).await {
        result?;
    }
    tracing::info!(
        snapshots = members.len(),
        content_ms = content_at.as_secs_f64() * 1e3,
        cut_ms = cut_at.as_secs_f64() * 1e3,
        published_ms = started.elapsed().as_secs_f64() * 1e3,
        "VolumeSnapshots cut"
    );
    for result in
        join_all(members.iter().zip(&infos).map(|(m, info)| publish_content(ctx, &m.content_name, info)))
            .await
    {
        result?;
    }
    for member in members {
        let (namespace, name) = (member.snapshot.namespace().unwrap_or_default(), member.snapshot.name_any());
        let reference = member.snapshot.object_ref(&());
        let note = format!("Snapshot {namespace}/{name} was successfully created by the CSI driver.");
        ctx.event(&reference, EventType::Normal, "SnapshotCreated", "CreateSnapshot", note).await;
        let note = format!("Snapshot {namespace}/{name} is ready to use.");
        ctx.event(&reference, EventType::Normal, "SnapshotReady", "CreateSnapshot", note).await;
    }
    Ok(())
}

/// Creates the member's VolumeSnapshotContent, or finds the one an earlier run created.
async fn ensure_content(ctx: &Context, member: &Member) -> Result<(), ReconcileError> {
    let snapshot = &member.snapshot;
    let content = json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
        "metadata": {"name": member.content_name, "finalizers": [CONTENT_FINALIZER]},
        "spec": {
            "volumeSnapshotRef": {
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "namespace": snapshot.namespace(), "name": snapshot.name_any(), "uid": snapshot.uid(),
            },
            "deletionPolicy": member.class.spec.deletion_policy,
            "driver": PROVISIONER,
            "volumeSnapshotClassName": member.class.name_any(),
            "source": {"volumeHandle": member.volume.as_str()},
            "sourceVolumeMode": member.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
        },
    });
    let content: VolumeSnapshotContent = serde_json::from_value(content).map_err(|error| {
        ReconcileError::Invalid(format!("could not build a VolumeSnapshotContent: {error}"))
    })?;
    let contents = ctx.cluster::<VolumeSnapshotContent>();
    let existing = match contents.create(&PostParams::default(), &content).await {
        Ok(_) => return Ok(()),
        Err(error) if already_exists(&error) => contents.get(&member.content_name).await?,
        Err(error) => return Err(error.into()),
    };
    if existing.spec.volume_snapshot_ref.uid != snapshot.uid() {
        return Err(ReconcileError::Invalid(format!(
            "VolumeSnapshotContent {} exists but belongs to another VolumeSnapshot",
            member.content_name
        )));
    }
    Ok(())
}

/// Sets the VolumeSnapshot's status: bound, `creationTime`, ready, restore size.
pub async fn publish_snapshot(
    ctx: &Context,
    snapshot: &VolumeSnapshot,
    content_name: &str,
    info: &SnapshotInfo,
) -> Result<(), ReconcileError> {
    let patch = json!({"status": {
        "boundVolumeSnapshotContentName": content_name,
        "creationTime": Time(timestamp(info)),
        "readyToUse": true,
        "restoreSize": format_bytes(info.size_bytes),
        "error": Value::Null,
    }});
    let snapshots = ctx.namespaced::<VolumeSnapshot>(&snapshot.namespace().unwrap_or_default());
    snapshots.patch_status(&snapshot.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Sets the content's status: the engine snapshot, its time and size, ready.
pub async fn publish_content(
    ctx: &Context,
    content_name: &str,
    info: &SnapshotInfo,
) -> Result<(), ReconcileError> {
    let patch = json!({"status": {
        "snapshotHandle": info.id.as_str(),
        "creationTime": timestamp(info).as_nanosecond() as i64,
        "restoreSize": info.size_bytes,
        "readyToUse": true,
        "error": Value::Null,
    }});
    let contents = ctx.cluster::<VolumeSnapshotContent>();
    contents.patch_status(content_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Records a failure on the VolumeSnapshot (and its content, if there is
/// one), with a warning event. Best effort: the reconcile error is what retries.
pub async fn publish_error(ctx: &Context, member: &Member, message: &str) {
    publish_snapshot_error(ctx, &member.snapshot, message).await;
    let patch = json!({"status": {"readyToUse": false, "error": {"time": Time(Timestamp::now()), "message": message}}});
    let contents = ctx.cluster::<VolumeSnapshotContent>();
    if let Err(error) =
        contents.patch_status(&member.content_name, &PatchParams::default(), &Patch::Merge(&patch)).await
    {
        tracing::warn!(%error, content = member.content_name, "could not record a snapshot error on the content");
    }
}

/// Records a failure on a VolumeSnapshot, with a warning event, unless the same message is already there.
pub async fn publish_snapshot_error(ctx: &Context, snapshot: &VolumeSnapshot, message: &str) {
    let current = snapshot.status.as_ref().and_then(|s| s.error.as_ref()).and_then(|e| e.message.as_deref());
    if current == Some(message) {
        return;
    }
    let patch = json!({"status": {"readyToUse": false, "error": {"time": Time(Timestamp::now()), "message": message}}});
    let snapshots = ctx.namespaced::<VolumeSnapshot>(&snapshot.namespace().unwrap_or_default());
    if let Err(error) =
        snapshots.patch_status(&snapshot.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await
    {
        tracing::warn!(%error, snapshot = snapshot.name_any(), "could not record a snapshot error");
    }
    ctx.event(
        &snapshot.object_ref(&()),
        EventType::Warning,
        "SnapshotCreationFailed",
        "CreateSnapshot",
        message.to_owned(),
    )
    .await;
}

/// The engine's creation time as a Kubernetes timestamp.
pub fn timestamp(info: &SnapshotInfo) -> Timestamp {
    let nanos =
        info.created_at.timestamp_nanos_opt().unwrap_or_else(|| info.created_at.timestamp() * 1_000_000_000);
    Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or_else(|_| Timestamp::now())
}
