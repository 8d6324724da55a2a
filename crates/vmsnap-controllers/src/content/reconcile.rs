//! `updateVMSnapshotContent`: freeze the guest, create the VolumeSnapshots, unfreeze as soon as
//! every one has its point in time fixed, and report readiness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use vmsnap_api::snapshot::{
    SnapshotError, VirtualMachineSnapshot, VirtualMachineSnapshotContent, VolumeBackup, VolumeSnapshotStatus,
    event, finalizer, label,
};
use vmsnap_api::volumesnapshot::{VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec};

use super::aggregate::{aggregate, next_error};
use crate::context::{Component, Context};
use crate::error::ReconcileError;
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
    let ns = content.namespace().unwrap_or_default();
    let Some(snap_name) = content.spec.virtual_machine_snapshot_name.clone() else {
        return Err(ReconcileError::Message(
            "VirtualMachineSnapshotName is not initialized in vm snapshot content".into(),
        ));
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
    let created_before = content.status.as_ref().and_then(|s| s.creation_time.clone());
    let mut statuses = Vec::new();
    let (mut deleted, mut skipped) = (Vec::new(), Vec::new());
    let mut froze = false;
    for backup in &content.spec.volume_backups {
        let Some(vs_name) = backup.volume_snapshot_name.clone() else { continue };
        let mut vs = vss.get_opt(&vs_name).await?;
        if vs.is_none() {
            if created_before.is_some() {
                ctx.event(
                    Component::Snapshot,
                    &content.object_ref(&()),
                    true,
                    event::VOLUME_SNAPSHOT_MISSING,
                    format!("VolumeSnapshot {vs_name} no longer exists"),
                )
                .await;
                deleted.push(vs_name);
                continue;
            }
            let (Some(s), Some(src)) =
                (snap.as_ref().filter(|s| s.metadata.deletion_timestamp.is_none()), source.as_ref())
            else {
                skipped.push(vs_name);
                continue;
            };
            if !froze {
                froze = true;
                if let Err(e) = freeze(&ctx, s, src, &content).await {
                    let mut st = content.status.clone().unwrap_or_default();
                    st.error = Some(SnapshotError { time: Some(now()), message: Some(e.to_string()) });
                    st.ready_to_use = Some(false);
                    patch_status(&contents, &content.name_any(), content.status.as_ref(), &st).await?;
                    return Ok(Action::requeue(RETRY));
                }
            }
            vs = Some(create_volume_snapshot(&ctx, &content, backup, &vs_name).await?);
        }
        let vs = vs.expect("found or created");
        let st = vs.status.clone().unwrap_or_default();
        statuses.push(VolumeSnapshotStatus {
            volume_snapshot_name: vs_name,
            creation_time: st.creation_time,
            ready_to_use: st.ready_to_use,
            error: st.error.map(|e| SnapshotError { time: e.time, message: e.message }),
        });
    }

    let agg = aggregate(&statuses, &deleted, &skipped);
    let mut new = content.status.clone().unwrap_or_default();
    if agg.created && new.creation_time.is_none() {
        new.creation_time = Some(now());
        if let Some(src) = &source {
            match unfreeze_after_cut(&ctx, src, &content).await {
                Ok(()) => {}
                Err(e) if e.to_string().contains("fsfreeze is limited") => {
                    new.creation_time = None;
                    new.error = Some(SnapshotError { time: Some(now()), message: Some(e.to_string()) });
                    patch_status(&contents, &content.name_any(), content.status.as_ref(), &new).await?;
                    return Ok(Action::requeue(RETRY));
                }
                Err(e) => return Err(e),
            }
        }
    }
    new.error = next_error(new.error.as_ref(), agg.error_message.as_deref(), agg.ready, now());
    new.ready_to_use = Some(agg.ready);
    new.volume_snapshot_status = statuses;
    patch_status(&contents, &content.name_any(), content.status.as_ref(), &new).await?;
    Ok(Action::await_change())
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

/// `createVolumeSnapshot`: named, labelled and owned as KubeVirt does; errors before any status write.
async fn create_volume_snapshot(
    ctx: &Context,
    content: &VirtualMachineSnapshotContent,
    backup: &VolumeBackup,
    name: &str,
) -> Result<VolumeSnapshot, ReconcileError> {
    let ns = content.namespace().unwrap_or_default();
    let pvc_name = backup.persistent_volume_claim.metadata.name.clone().unwrap_or_default();
    let Some(sc) = backup.persistent_volume_claim.spec.storage_class_name.clone() else {
        return Err(ReconcileError::Message(format!(
            "{ns}/{pvc_name} VolumeSnapshot requested but no storage class"
        )));
    };
    // KubeVirt dereferences a nil class here when it vanished meanwhile; vmsnap reports an error instead.
    let Some(class) = vsclass::class_for(&ctx.client, &sc).await? else {
        return Err(ReconcileError::Message(format!(
            "{ns}/{pvc_name} VolumeSnapshot requested but no VolumeSnapshotClass for storage class {sc}"
        )));
    };
    let vm = content.spec.source.virtual_machine.as_ref();
    let vm_name = vm.and_then(|v| v.metadata.name.clone()).unwrap_or_default();
    let owner = OwnerReference {
        api_version: "snapshot.kubevirt.io/v1beta1".into(),
        kind: "VirtualMachineSnapshotContent".into(),
        name: content.name_any(),
        uid: content.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let vs = VolumeSnapshot {
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
    };
    let vss: Api<VolumeSnapshot> = Api::namespaced(ctx.client.clone(), &ns);
    let created = match vss.create(&PostParams::default(), &vs).await {
        Ok(v) => v,
        Err(kube::Error::Api(e)) if e.reason == "AlreadyExists" => vss.get(name).await?,
        Err(e) => return Err(ReconcileError::Message(error_message(&e))),
    };
    ctx.event(
        Component::Snapshot,
        &content.object_ref(&()),
        false,
        event::VOLUME_SNAPSHOT_CREATED,
        format!("Successfully created VolumeSnapshot {name}"),
    )
    .await;
    Ok(created)
}
