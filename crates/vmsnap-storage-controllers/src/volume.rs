//! The PV controller: reclaims the PVs of this driver once their claim is
//! gone. `Delete`: the PV is deleted, and its finalizer deletes the engine
//! volume first (the engine keeps the data that snapshots still need).
//! `Retain`: the PV becomes `Released` and the volume stays, also when the PV
//! itself is deleted later: a retained volume is the administrator's to remove.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_contracts::controller::is_not_found;

use super::context::{Context, error_policy, tracked};
use super::error::ReconcileError;
use super::names::PV_FINALIZER;
use super::sources::volume_of;

/// Runs the controller until the task is aborted.
pub async fn run(ctx: Arc<Context>) {
    Controller::new(ctx.cluster::<PersistentVolume>(), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config())
        .watches(ctx.watched::<PersistentVolumeClaim>(), watcher::Config::default(), |claim| {
            claim.spec.and_then(|spec| spec.volume_name).map(|pv| ObjectRef::<PersistentVolume>::new(&pv))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if volume_of(&pv).is_none() {
        return Ok(Action::await_change());
    }
    tracked(pv.as_ref(), &ctx, async {
        let pvs = ctx.cluster::<PersistentVolume>();
        let action = finalizer(&pvs, PV_FINALIZER, pv.clone(), |event| async {
            match event {
                Finalizer::Apply(pv) => apply(&pv, &ctx).await,
                Finalizer::Cleanup(pv) => cleanup(&pv, &ctx).await,
            }
        })
        .await?;
        Ok(action)
    })
    .await
}

/// Whether the PV's claim still exists (same UID); `None` for a PV without a claim.
async fn claim_present(pv: &PersistentVolume, ctx: &Context) -> Result<Option<bool>, ReconcileError> {
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return Ok(None) };
    let (Some(namespace), Some(name)) = (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()) else {
        return Ok(None);
    };
    let claim = ctx.namespaced::<PersistentVolumeClaim>(namespace).get_opt(name).await?;
    Ok(Some(claim.is_some_and(|claim| claim_ref.uid.is_none() || claim.uid() == claim_ref.uid)))
}

async fn apply(pv: &PersistentVolume, ctx: &Context) -> Result<Action, ReconcileError> {
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let desired = match claim_present(pv, ctx).await? {
        None => "Available",
        // Binding itself is the claim side's job; only an unbound PV is left to settle here.
        Some(true) => return Ok(Action::await_change()),
        Some(false) => match reclaim_policy(pv) {
            "Delete" => {
                match ctx.cluster::<PersistentVolume>().delete(&pv.name_any(), &DeleteParams::default()).await
                {
                    Ok(_) => {}
                    Err(error) if is_not_found(&error) => {}
                    Err(error) => return Err(error.into()),
                }
                return Ok(Action::await_change());
            }
            _ => "Released",
        },
    };
    if phase != Some(desired) {
        let patch = json!({"status": {"phase": desired}});
        ctx.cluster::<PersistentVolume>()
            .patch_status(&pv.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

async fn cleanup(pv: &PersistentVolume, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = pv.name_any();
    if claim_present(pv, ctx).await? == Some(true) {
        // As `kubernetes.io/pv-protection` does: a bound PV goes only after its claim.
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|c| c.name.clone())
            .unwrap_or_default();
        return Err(ReconcileError::Waiting(format!(
            "PersistentVolume {name} is still bound to claim {claim}; it is deleted after the claim"
        )));
    }
    if reclaim_policy(pv) != "Delete" {
        tracing::info!(pv = %name, "PersistentVolume deleted; its volume is kept (reclaim policy Retain)");
        return Ok(Action::await_change());
    }
    let Some(volume) = volume_of(pv) else { return Ok(Action::await_change()) };
    let volume = volume?;
    if ctx.attached(&volume).await? {
        return Err(ReconcileError::InUse(format!(
            "volume {volume} of PersistentVolume {name} is attached to a running VM; it is deleted when the VM stops"
        )));
    }
    if let Err(source) = ctx.driver.delete_volume(&volume).await {
        let error = ReconcileError::storage(format!("delete volume {volume}"))(source);
        ctx.event(&pv.object_ref(&()), EventType::Warning, "VolumeFailedDelete", "Delete", error.message())
            .await;
        return Err(error);
    }
    Ok(Action::await_change())
}

fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Delete")
}
