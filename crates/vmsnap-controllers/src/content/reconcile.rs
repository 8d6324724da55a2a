//! `updateVMSnapshotContent`: freeze the guest, create the VolumeSnapshots, unfreeze as soon as
//! every one has its point in time fixed, and report readiness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, try_join_all};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::snapshot::{
    SnapshotError, VirtualMachineSnapshot, VirtualMachineSnapshotContent, VolumeBackup, VolumeSnapshotStatus,
    annotation, event, finalizer, label,
};
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec};

use super::aggregate::{aggregate, next_error};
use crate::context::{Component, Context};
use crate::error::ReconcileError;
use crate::expectations::AWAITING_OWN_WRITE;
use crate::kube_util::{error_message, now, patch_status, remove_finalizer};
use crate::snapshot::deadline::{deadline_exceeded, unfreeze_timeout};
use crate::snapshot::should_delete_content;
use crate::source::{self, Source};
use crate::vsclass;

const RETRY: Duration = Duration::from_secs(5);

fn terminating(snap: &VirtualMachineSnapshot) -> bool {
    snap.metadata.deletion_timestamp.is_some() || deadline_exceeded(snap, k8s_openapi::jiff::Timestamp::now())
}

/// The kube-runtime reconcile entry point.
pub async fn reconcile(
    content: Arc<VirtualMachineSnapshotContent>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if !ctx.expectations.fresh(content.as_ref()) {
        return Ok(Action::requeue(AWAITING_OWN_WRITE));
    }
    let ns = content.namespace().unwrap_or_default();
    let Some(snap_name) = content.spec.virtual_machine_snapshot_name.clone() else {
        return Err(ReconcileError::ContentWithoutSnapshot);
    };
    let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), &ns);
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(ctx.client.clone(), &ns);
    let snap = snaps.get_opt(&snap_name).await?;
    let source = match &snap {
        Some(s) => source::load(&ctx.client, s).await?,
        None => None,
    };

    if snap.as_ref().is_none_or(terminating) {
        if let Some(src) = &source {
            if let Err(e) = source::unfreeze(&ctx.client, src).await {
                tracing::warn!(content = %content.name_any(), error = %e, "unfreeze of a terminating snapshot's source failed");
            } else {
                finish_freeze_clock(&ctx, &content);
            }
        }
        if content.finalizers().iter().any(|f| f == finalizer::CONTENT) {
            remove_finalizer(&contents, content.as_ref(), finalizer::CONTENT).await?;
            return Ok(Action::await_change());
        }
        if let Some(s) = &snap
            && should_delete_content(s, &content)
        {
            return Ok(Action::await_change());
        }
    }
    if content.metadata.deletion_timestamp.is_some() {
        return Ok(Action::requeue(RETRY));
    }

    let vss: Api<VolumeSnapshot> = Api::namespaced(ctx.client.clone(), &ns);
    // The copy the status is written on: this one, or the one an annotation patch below returned.
    let mut written = content.clone();
    let created_before = content.status.as_ref().and_then(|s| s.creation_time.clone());
    let backups: Vec<(&VolumeBackup, String)> = content
        .spec
        .volume_backups
        .iter()
        .filter_map(|b| Some((b, b.volume_snapshot_name.clone()?)))
        .collect();
    // Every lookup at once: after the cut, this pass stands between the cut and the thaw.
    let mut found: Vec<Option<VolumeSnapshot>> =
        try_join_all(backups.iter().map(|(_, name)| vss.get_opt(name))).await?;
    let (mut deleted, mut skipped, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (_, vs_name)) in backups.iter().enumerate() {
        if found[i].is_some() {
            continue;
        }
        if created_before.is_some() {
            ctx.event(
                Component::Snapshot,
                &content.object_ref(&()),
                true,
                event::VOLUME_SNAPSHOT_MISSING,
                format!("VolumeSnapshot {vs_name} no longer exists"),
            )
            .await;
            deleted.push(vs_name.clone());
        } else if snap.as_ref().is_some_and(|s| s.metadata.deletion_timestamp.is_none()) && source.is_some() {
            missing.push(i);
        } else {
            skipped.push(vs_name.clone());
        }
    }
    if let (false, Some(s), Some(src)) = (missing.is_empty(), &snap, &source) {
        // Everything that can be resolved is resolved before the guest is frozen, so that the
        // freeze window holds only the creations, made all at once.
        let mut definitions = Vec::new();
        for &i in &missing {
            let (backup, name) = &backups[i];
            definitions.push(volume_snapshot_definition(&ctx, &content, backup, name).await?);
        }
        // KubeVirt retries a failed freeze once per period; the status write below brings this
        // content back at once, and that reconcile must not run the guest's hooks again.
        if let Some(wait) = ctx.freeze_retry.wait(&content_key(&content)) {
            return Ok(Action::requeue(wait));
        }
        if let Err(e) = freeze(&ctx, s, src, &content).await {
            ctx.freeze_retry.failed(&content_key(&content), RETRY);
            let mut st = content.status.clone().unwrap_or_default();
            st.error = Some(SnapshotError { time: Some(now()), message: Some(e.to_string()) });
            st.ready_to_use = Some(false);
            ctx.expectations.record(patch_status(&contents, &content, content.status.as_ref(), &st).await?);
            return Ok(Action::requeue(RETRY));
        }
        ctx.freeze_retry.succeeded(&content_key(&content));
        let results = join_all(definitions.iter().map(|vs| create_volume_snapshot(&vss, vs))).await;
        let mut refused = Vec::new();
        let mut created = Vec::new();
        for ((&i, definition), result) in missing.iter().zip(&definitions).zip(results) {
            match result {
                Ok(vs) => {
                    created.push(definition.name_any());
                    found[i] = Some(vs);
                }
                Err(e) => refused.push((definition.name_any(), error_message(&e))),
            }
        }
        record_creations(&ctx, &content, created);
        if !refused.is_empty() {
            // KubeVirt retries a refused VolumeSnapshot silently, with the guest frozen, until the
            // deadline. vmsnap keeps that outcome but says why, on the content and its snapshot.
            report_refusals(&ctx, &contents, &content, s, &refused).await?;
            return Ok(Action::requeue(RETRY));
        }
        // A refusal reported earlier is over: the status below is written on the updated copy.
        if let Some(updated) = set_refusal(&contents, &content, None).await? {
            written = Arc::new(updated);
        }
    }
    let statuses = found_statuses(&backups, &found);

    let agg = aggregate(&statuses, &deleted, &skipped);
    let mut new = content.status.clone().unwrap_or_default();
    if agg.created && new.creation_time.is_none() {
        new.creation_time = Some(now());
        if let Some(src) = &source {
            match unfreeze_after_cut(&ctx, src, &content).await {
                Ok(()) => {}
                Err(e @ ReconcileError::FreezeLimitReached(_)) => {
                    new.creation_time = None;
                    new.error = Some(SnapshotError { time: Some(now()), message: Some(e.to_string()) });
                    ctx.expectations
                        .record(patch_status(&contents, &written, written.status.as_ref(), &new).await?);
                    return Ok(Action::requeue(RETRY));
                }
                Err(e) => return Err(e),
            }
        }
    }
    new.error = next_error(new.error.as_ref(), agg.error_message.as_deref(), agg.ready, now());
    new.ready_to_use = Some(agg.ready);
    new.volume_snapshot_status = statuses;
    ctx.expectations.record(patch_status(&contents, &written, written.status.as_ref(), &new).await?);
    Ok(Action::await_change())
}

/// The status of each VolumeSnapshot that exists, in the order of the backups.
fn found_statuses(
    backups: &[(&VolumeBackup, String)],
    found: &[Option<VolumeSnapshot>],
) -> Vec<VolumeSnapshotStatus> {
    backups
        .iter()
        .zip(found)
        .filter_map(|((_, vs_name), vs)| {
            let st = vs.as_ref()?.status.clone().unwrap_or_default();
            Some(VolumeSnapshotStatus {
                volume_snapshot_name: vs_name.clone(),
                creation_time: st.creation_time,
                ready_to_use: st.ready_to_use,
                error: st.error.map(|e| SnapshotError { time: e.time, message: e.message }),
            })
        })
        .collect()
}

/// Records VolumeSnapshots the API refused: a `FailedVolumeSnapshotCreate` warning on the content and
/// on its snapshot, and the first refusal in the content's `volume-snapshot-refused` annotation (which
/// the snapshot shows in its `Progressing` condition). The content's status stays as KubeVirt leaves
/// it (unset before the first cut), so the snapshot's phase and reasons are KubeVirt's (`InProgress`,
/// then `Failed` at the deadline).
async fn report_refusals(
    ctx: &Arc<Context>,
    contents: &Api<VirtualMachineSnapshotContent>,
    content: &VirtualMachineSnapshotContent,
    snap: &VirtualMachineSnapshot,
    refused: &[(String, String)],
) -> Result<(), ReconcileError> {
    for (name, why) in refused {
        let note = format!("Failed to create VolumeSnapshot {name}: {why}");
        for regarding in [content.object_ref(&()), snap.object_ref(&())] {
            ctx.event(
                Component::Snapshot,
                &regarding,
                true,
                event::VOLUME_SNAPSHOT_CREATE_FAILED,
                note.clone(),
            )
            .await;
        }
    }
    let (name, why) = &refused[0];
    set_refusal(contents, content, Some(format!("VolumeSnapshot {name}: could not be created: {why}")))
        .await?;
    Ok(())
}

/// Sets (or with `None` removes) the content's `volume-snapshot-refused` annotation, if it differs;
/// returns the updated content when it wrote.
async fn set_refusal(
    contents: &Api<VirtualMachineSnapshotContent>,
    content: &VirtualMachineSnapshotContent,
    refusal: Option<String>,
) -> Result<Option<VirtualMachineSnapshotContent>, ReconcileError> {
    if content.annotations().get(annotation::VOLUME_SNAPSHOT_REFUSED) == refusal.as_ref() {
        return Ok(None);
    }
    let patch = json!({"metadata": {"annotations": {annotation::VOLUME_SNAPSHOT_REFUSED: refusal}}});
    Ok(Some(contents.patch(&content.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?))
}

fn content_key(content: &VirtualMachineSnapshotContent) -> String {
    format!("{}/{}", content.namespace().unwrap_or_default(), content.name_any())
}

async fn freeze(
    ctx: &Context,
    snap: &VirtualMachineSnapshot,
    src: &Source,
    content: &VirtualMachineSnapshotContent,
) -> Result<(), ReconcileError> {
    let will_freeze = src.locked() && !src.frozen() && !src.paused() && src.guest_agent();
    let started = Instant::now();
    source::freeze(&ctx.client, src, &unfreeze_timeout(snap)).await?;
    if will_freeze {
        let key = format!("{}/{}", content.namespace().unwrap_or_default(), content.name_any());
        ctx.freeze_started.lock().expect("freeze clock lock").insert(key, started);
    }
    Ok(())
}

async fn unfreeze_after_cut(
    ctx: &Context,
    src: &Source,
    content: &VirtualMachineSnapshotContent,
) -> Result<(), ReconcileError> {
    source::unfreeze(&ctx.client, src).await?;
    finish_freeze_clock(ctx, content);
    Ok(())
}

fn finish_freeze_clock(ctx: &Context, content: &VirtualMachineSnapshotContent) {
    let key = format!("{}/{}", content.namespace().unwrap_or_default(), content.name_any());
    if let Some(started) = ctx.freeze_started.lock().expect("freeze clock lock").remove(&key) {
        ctx.metrics.freeze_window(started.elapsed());
    }
}

/// The VolumeSnapshot of one backup, named, labelled and owned as KubeVirt's `createVolumeSnapshot`
/// makes it, with its class resolved; errors before any status write.
async fn volume_snapshot_definition(
    ctx: &Context,
    content: &VirtualMachineSnapshotContent,
    backup: &VolumeBackup,
    name: &str,
) -> Result<VolumeSnapshot, ReconcileError> {
    let ns = content.namespace().unwrap_or_default();
    let pvc_name = backup.persistent_volume_claim.metadata.name.clone().unwrap_or_default();
    let Some(sc) = backup.persistent_volume_claim.spec.storage_class_name.clone() else {
        return Err(ReconcileError::NoStorageClass { pvc: format!("{ns}/{pvc_name}") });
    };
    // KubeVirt dereferences a nil class here when it vanished meanwhile; vmsnap reports an error instead.
    let Some(class) = vsclass::class_for(&ctx.client, &sc).await? else {
        return Err(ReconcileError::NoSnapshotClass { pvc: format!("{ns}/{pvc_name}"), storage_class: sc });
    };
    let vm = content.spec.source.virtual_machine.as_ref();
    let vm_name = vm.and_then(|v| v.metadata.name.clone()).unwrap_or_default();
    let owner = vmsnap_contracts::owner::controller_reference(content);
    Ok(VolumeSnapshot {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.clone()),
            labels: Some(
                [
                    (label::SOURCE_VM_NAME.to_owned(), vm_name),
                    (label::SOURCE_VM_NAMESPACE.to_owned(), ns.clone()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(pvc_name),
                ..Default::default()
            },
            volume_snapshot_class_name: Some(class),
        },
        status: None,
    })
}

/// Creates a VolumeSnapshot (one that exists already is taken as it is).
async fn create_volume_snapshot(
    vss: &Api<VolumeSnapshot>,
    vs: &VolumeSnapshot,
) -> Result<VolumeSnapshot, kube::Error> {
    match vss.create(&PostParams::default(), vs).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(e)) if e.reason == "AlreadyExists" => vss.get(&vs.name_any()).await,
        Err(e) => Err(e),
    }
}

/// `SuccessfulVolumeSnapshotCreate` events, recorded in the background: they are not part of the
/// snapshot, and the guest is frozen while this reconcile runs.
fn record_creations(ctx: &Arc<Context>, content: &VirtualMachineSnapshotContent, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let (ctx, regarding) = (ctx.clone(), content.object_ref(&()));
    tokio::spawn(async move {
        for name in names {
            let note = format!("Successfully created VolumeSnapshot {name}");
            ctx.event(Component::Snapshot, &regarding, false, event::VOLUME_SNAPSHOT_CREATED, note).await;
        }
    });
}
