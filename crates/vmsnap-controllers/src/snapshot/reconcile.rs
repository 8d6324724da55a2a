//! `updateVMSnapshot`: lock the source, create the content, compute the status, and on deletion
//! (or failure) delete the content and unlock the source before the finalizer goes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use vmsnap_api::snapshot::{
    DeletionPolicy, SnapshotPhase, VirtualMachineSnapshot, VirtualMachineSnapshotContent, event,
    finalizer as fin, reason,
};

use super::content_create;
use super::deadline::{deadline_exceeded, progressing, time_until_deadline};
use super::status::{self, SourceFacts};
use crate::context::{Component, Context};
use crate::error::ReconcileError;
use crate::expectations::AWAITING_OWN_WRITE;
use crate::kube_util::{now, patch_status};
use crate::source::{self, Source};

const SNAPSHOT_RETRY: Duration = Duration::from_secs(5);

/// The kube-runtime reconcile entry point; the VMSnapshot finalizer goes through the finalizer helper.
pub async fn reconcile(
    snap: Arc<VirtualMachineSnapshot>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    if !ctx.expectations.fresh(snap.as_ref()) {
        return Ok(Action::requeue(AWAITING_OWN_WRITE));
    }
    let api: Api<VirtualMachineSnapshot> =
        Api::namespaced(ctx.client.clone(), &snap.namespace().unwrap_or_default());
    finalizer(&api, fin::VMSNAPSHOT, snap, |event| async {
        match event {
            FinalizerEvent::Apply(s) => update(&s, &ctx, false).await,
            FinalizerEvent::Cleanup(s) => update(&s, &ctx, true).await,
        }
    })
    .await
}

/// Whether deleting the snapshot deletes its content: policy Delete (the default), or a content
/// that never became ready.
pub fn should_delete_content(snap: &VirtualMachineSnapshot, content: &VirtualMachineSnapshotContent) -> bool {
    let retain = snap.spec.deletion_policy == Some(DeletionPolicy::Retain);
    let ready = content.status.as_ref().and_then(|s| s.ready_to_use) == Some(true);
    !retain || !ready
}

async fn update(
    snap: &VirtualMachineSnapshot,
    ctx: &Context,
    deleting: bool,
) -> Result<Action, ReconcileError> {
    let ns = snap.namespace().unwrap_or_default();
    let mut src: Option<Source> = source::load(&ctx.client, snap).await?;
    let contents: Api<VirtualMachineSnapshotContent> = Api::namespaced(ctx.client.clone(), &ns);
    let mut content = contents.get_opt(&content_create::name_for(snap)).await?;
    let terminating = deleting || deadline_exceeded(snap, Timestamp::now());
    let mut lock_msg = reason::SOURCE_NOT_LOCKED.to_owned();
    let mut retry = None;
    let mut finalizer_removable = true;

    if snap.status.is_some() {
        if let Some(s) = src.as_mut() {
            if progressing(snap) && !terminating {
                if !s.locked() {
                    if source::lock(&ctx.client, s, &mut lock_msg).await? {
                        lock_msg = reason::SOURCE_LOCKED.to_owned();
                    }
                    retry = Some(SNAPSHOT_RETRY);
                }
                if s.locked() && content.is_none() {
                    let name = content_create::create(&ctx.client, snap, s).await?;
                    ctx.event(
                        Component::Snapshot,
                        &snap.object_ref(&()),
                        false,
                        event::CONTENT_CREATED,
                        format!("Successfully created VirtualMachineSnapshotContent {name}"),
                    )
                    .await;
                    content = contents.get_opt(&name).await?;
                }
                finalizer_removable = false;
            } else {
                let can_unlock = !progressing(snap)
                    || (terminating && content.as_ref().is_none_or(|c| !should_delete_content(snap, c)));
                if can_unlock {
                    source::unlock(&ctx.client, s).await?;
                }
                finalizer_removable = !s.locked();
            }
            if s.locked() {
                lock_msg = reason::SOURCE_LOCKED.to_owned();
            }
        }
    } else if let Some(s) = &src {
        finalizer_removable = !s.locked();
    }

    if terminating
        && let Some(c) = &content
        && should_delete_content(snap, c)
        && c.metadata.deletion_timestamp.is_none()
    {
        match contents.delete(&c.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(gone) if vmsnap_contracts::controller::is_not_found(&gone) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let facts = src.as_ref().map(|s| SourceFacts {
        uid: s.vm.uid(),
        online: s.online(),
        paused: s.paused(),
        guest_agent: s.guest_agent(),
        locked: s.locked(),
        vmi_only_volumes: s.vmi_only_volumes(),
    });
    let new_status = status::compute(snap, facts.as_ref(), &lock_msg, content.as_ref(), now());
    let api: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.expectations.record(patch_status(&api, snap, snap.status.as_ref(), &new_status).await?);
    record_metrics(ctx, snap, &new_status);

    if deleting && !finalizer_removable {
        return Err(ReconcileError::Waiting("the source VM is still locked by this snapshot".into()));
    }
    Ok(match retry.or_else(|| time_until_deadline(snap, Timestamp::now())) {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn record_metrics(
    ctx: &Context,
    snap: &VirtualMachineSnapshot,
    st: &vmsnap_api::snapshot::VirtualMachineSnapshotStatus,
) {
    let ns = snap.namespace().unwrap_or_default();
    if st.phase == Some(SnapshotPhase::Succeeded)
        && let Some(t) = &st.creation_time
    {
        ctx.metrics.snapshot_succeeded(&snap.spec.source.name, &snap.name_any(), &ns, t.0.as_second());
    }
    let was_ready = snap.status.as_ref().and_then(|s| s.ready_to_use) == Some(true);
    if st.ready_to_use == Some(true)
        && !was_ready
        && let Some(created) = &snap.metadata.creation_timestamp
    {
        let secs = Timestamp::now().duration_since(created.0).as_secs_f64().max(0.0);
        ctx.metrics.time_to_ready(Duration::from_secs_f64(secs));
    }
}
