//! The PVC controller: provisions an engine volume for every PVC of this
//! driver (blank, restored from a VolumeSnapshot, or cloned from a PVC, all in
//! constant time), binds it, grows it when the request grows, and holds
//! `kubernetes.io/pvc-protection` while a running VM uses the volume.
//!
//! PVCs that a DataVolume populates (annotated with
//! [`super::POPULATING_DATA_VOLUME_ANNOTATION`]) are provisioned and bound by the
//! DataVolume controller; this controller only protects and grows them.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::volumesnapshot::VolumeSnapshot;
use vmsnap_storage::{VolumeId, VolumeInfo};

use super::bind::{BindOutcome, bind_claim};
use super::classes::ClaimClass;
use super::context::{Context, error_policy, tracked};
use super::error::ReconcileError;
use super::expand::reconcile_expansion;
use super::names::{PVC_PROTECTION_FINALIZER, populating_data_volume, volume_id_for_claim};
use super::sources::{ClaimSource, Resolved, claim_source, resolve_claim, resolve_snapshot, volume_of};
use vmsnap_api::quantity::parse_bytes;

/// How long a PVC waiting for its data source is left alone when no watch event comes.
const SOURCE_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the controller until the task is aborted.
pub async fn run(ctx: Arc<Context>) {
    let claims = ctx.watched::<PersistentVolumeClaim>();
    let controller = Controller::new(claims.clone(), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config());
    let by_snapshot = controller.store();
    let by_claim = controller.store();
    controller
        .watches(ctx.cluster::<PersistentVolume>(), watcher::Config::default(), |pv| {
            let claim = pv.spec.and_then(|spec| spec.claim_ref);
            claim.and_then(|c| Some(ObjectRef::new(c.name.as_deref()?).within(c.namespace.as_deref()?)))
        })
        .watches(ctx.watched::<VolumeSnapshot>(), watcher::Config::default(), move |snapshot| {
            waiting_on(&by_snapshot, &snapshot.namespace().unwrap_or_default(), |source| {
                source == &ClaimSource::Snapshot(snapshot.name_any())
            })
        })
        .watches(claims, watcher::Config::default(), move |source_claim| {
            waiting_on(&by_claim, &source_claim.namespace().unwrap_or_default(), |source| {
                source == &ClaimSource::Claim(source_claim.name_any())
            })
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The unbound PVCs of `namespace` whose data source matches.
fn waiting_on(
    claims: &Store<PersistentVolumeClaim>,
    namespace: &str,
    matches: impl Fn(&ClaimSource) -> bool,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    claims
        .state()
        .iter()
        .filter(|claim| claim.namespace().as_deref() == Some(namespace))
        .filter(|claim| claim.spec.as_ref().is_none_or(|s| s.volume_name.is_none()))
        .filter(|claim| matches(&claim_source(claim)))
        .map(|claim| ObjectRef::from_obj(claim.as_ref()))
        .collect()
}

async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    tracked(claim.as_ref(), &ctx, reconcile_claim(claim.clone(), &ctx)).await
}

async fn reconcile_claim(claim: Arc<PersistentVolumeClaim>, ctx: &Context) -> Result<Action, ReconcileError> {
    let deleting = claim.meta().deletion_timestamp.is_some();
    let protected = claim.finalizers().iter().any(|f| f == PVC_PROTECTION_FINALIZER);
    let class = match ctx.classes.claim_class(&claim).await? {
        ClaimClass::Ours { class, .. } => Some(class),
        ClaimClass::Missing(name) if !deleting => {
            let note = format!("storageclass.storage.k8s.io {name:?} not found");
            ctx.event(
                &claim.object_ref(&()),
                EventType::Warning,
                "ProvisioningFailed",
                "Provision",
                note.clone(),
            )
            .await;
            return Err(ReconcileError::Invalid(note));
        }
        // A PVC this controller protected keeps being handled even if its class went away.
        _ if deleting && protected => None,
        _ => return Ok(Action::await_change()),
    };
    let claims = ctx.namespaced::<PersistentVolumeClaim>(&claim.namespace().unwrap_or_default());
    let action = finalizer(&claims, PVC_PROTECTION_FINALIZER, claim, |event| async {
        match event {
            Finalizer::Apply(claim) => {
                let class = class
                    .ok_or_else(|| ReconcileError::Waiting("the claim's StorageClass is gone".into()))?;
                apply(&claim, &class, ctx).await
            }
            Finalizer::Cleanup(claim) => cleanup(&claim, ctx).await,
        }
    })
    .await?;
    Ok(action)
}

async fn apply(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    if let Some(pv_name) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) {
        return reconcile_bound(claim, class, &pv_name, ctx).await;
    }
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
        let note = "waiting for first consumer to be created before binding".to_owned();
        ctx.event(&claim.object_ref(&()), EventType::Normal, "WaitForFirstConsumer", "Provision", note).await;
        return Ok(Action::await_change());
    }
    if populating_data_volume(claim).is_some() {
        return Ok(Action::await_change());
    }
    let volume = match provision(claim, ctx).await {
        Ok(Resolved::Ready(volume)) => volume,
        Ok(Resolved::Waiting(note)) => {
            ctx.event(&claim.object_ref(&()), EventType::Normal, "WaitingForDataSource", "Provision", note)
                .await;
            return Ok(Action::requeue(SOURCE_RECHECK));
        }
        Err(error) => {
            let note = format!(
                "failed to provision volume with StorageClass {:?}: {}",
                class.name_any(),
                error.message()
            );
            ctx.event(&claim.object_ref(&()), EventType::Warning, "ProvisioningFailed", "Provision", note)
                .await;
            return Err(error);
        }
    };
    if bind_claim(ctx, claim, class, &volume, &BTreeMap::new()).await? == BindOutcome::Provisioned {
        let note = format!("Successfully provisioned volume {}", volume.id);
        ctx.event(&claim.object_ref(&()), EventType::Normal, "ProvisioningSucceeded", "Provision", note)
            .await;
    }
    Ok(Action::await_change())
}

/// Makes (or finds, after a crash) the engine volume of an unbound PVC.
async fn provision(
    claim: &PersistentVolumeClaim,
    ctx: &Context,
) -> Result<Resolved<VolumeInfo>, ReconcileError> {
    let id = claim_volume_id(claim)?;
    if let Some(info) = ctx.driver.volume(&id).await.map_err(ReconcileError::storage("read a volume"))? {
        return Ok(Resolved::Ready(info));
    }
    let request = requested_bytes(claim)?;
    let namespace = claim.namespace().unwrap_or_default();
    let info = match claim_source(claim) {
        ClaimSource::Blank => ctx
            .driver
            .create_volume(&id, request)
            .await
            .map_err(ReconcileError::storage(format!("create volume {id}")))?,
        ClaimSource::Snapshot(name) => match resolve_snapshot(ctx, &namespace, &name).await? {
            Resolved::Ready(source) => {
                ctx.driver.restore_volume(&source.snapshot, &id, request).await.map_err(
                    ReconcileError::storage(format!("restore snapshot {} into volume {id}", source.snapshot)),
                )?
            }
            Resolved::Waiting(message) => return Ok(Resolved::Waiting(message)),
        },
        ClaimSource::Claim(name) => match resolve_claim(ctx, &namespace, &name).await? {
            Resolved::Ready(source) => {
                ctx.driver.clone_volume(&source.volume, &id, request, ctx.live()).await.map_err(
                    ReconcileError::storage(format!("clone volume {} into volume {id}", source.volume)),
                )?
            }
            Resolved::Waiting(message) => return Ok(Resolved::Waiting(message)),
        },
        ClaimSource::Unsupported(message) => return Err(ReconcileError::Invalid(message)),
    };
    Ok(Resolved::Ready(info))
}

/// A PVC with `volumeName`: completes an interrupted bind, then handles expansion.
async fn reconcile_bound(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    pv_name: &str,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let Some(pv) = ctx.cluster::<PersistentVolume>().get_opt(pv_name).await? else {
        mark_lost(claim, &format!("PersistentVolume {pv_name} does not exist"), ctx).await?;
        return Ok(Action::await_change());
    };
    let Some(volume) = volume_of(&pv) else { return Ok(Action::await_change()) };
    let volume = volume?;
    let Some(info) = ctx.driver.volume(&volume).await.map_err(ReconcileError::storage("read a volume"))?
    else {
        mark_lost(
            claim,
            &format!("engine volume {volume} of PersistentVolume {pv_name} does not exist"),
            ctx,
        )
        .await?;
        return Ok(Action::await_change());
    };
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        // A bind stopped between the PVC's spec and its status: finish it.
        bind_claim(ctx, claim, class, &info, &BTreeMap::new()).await?;
        return Ok(Action::await_change());
    }
    reconcile_expansion(ctx, claim, &pv, class, &volume).await
}

async fn mark_lost(claim: &PersistentVolumeClaim, why: &str, ctx: &Context) -> Result<(), ReconcileError> {
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
        return Ok(());
    }
    let claims = ctx.namespaced::<PersistentVolumeClaim>(&claim.namespace().unwrap_or_default());
    let patch = json!({"status": {"phase": "Lost"}});
    claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let note = format!("Bound claim has lost its PersistentVolume: {why}. Data on the volume is lost!");
    ctx.event(&claim.object_ref(&()), EventType::Warning, "ClaimLost", "Bind", note).await;
    Ok(())
}

/// The PVC is being deleted: wait while a VM uses its volume or an import
/// writes it, and free a volume whose provisioning never reached binding.
async fn cleanup(claim: &PersistentVolumeClaim, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any());
    let bound_pv = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
    let volume = match &bound_pv {
        Some(pv_name) => match ctx.cluster::<PersistentVolume>().get_opt(pv_name).await? {
            Some(pv) => volume_of(&pv).transpose()?,
            None => None,
        },
        None => Some(claim_volume_id(claim)?),
    };
    if let Some(volume) = &volume
        && ctx.attached(volume).await?
    {
        let note = format!(
            "PersistentVolumeClaim {name} is used by a running VM (volume {volume}); it is deleted when the VM stops"
        );
        ctx.event(&claim.object_ref(&()), EventType::Normal, "VolumeInUse", "Delete", note.clone()).await;
        return Err(ReconcileError::InUse(note));
    }
    if let Some(uid) = claim.uid()
        && !ctx.imports.stop(&uid)
    {
        return Err(ReconcileError::Waiting(format!(
            "waiting for the import into PersistentVolumeClaim {name} to stop"
        )));
    }
    if bound_pv.is_none()
        && let Some(volume) = volume
    {
        // Provisioned (or populated) but never bound: nothing else will ever free it.
        ctx.driver
            .delete_volume(&volume)
            .await
            .map_err(ReconcileError::storage(format!("delete volume {volume}")))?;
    }
    Ok(Action::await_change())
}

/// The engine volume a PVC of this driver gets.
pub fn claim_volume_id(claim: &PersistentVolumeClaim) -> Result<VolumeId, ReconcileError> {
    volume_id_for_claim(&claim.uid().unwrap_or_default()).map_err(|error| {
        ReconcileError::Invalid(format!("PersistentVolumeClaim {}: {error}", claim.name_any()))
    })
}

/// `spec.resources.requests.storage` in bytes.
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> Result<u64, ReconcileError> {
    let request = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .ok_or_else(|| {
            ReconcileError::Invalid(format!(
                "PersistentVolumeClaim {} has no spec.resources.requests.storage; give a size such as 1Gi",
                claim.name_any()
            ))
        })?;
    let bytes = parse_bytes(&request.0).map_err(|error| ReconcileError::Invalid(error.to_string()))?;
    if bytes == 0 {
        return Err(ReconcileError::Invalid(format!(
            "PersistentVolumeClaim {} requests 0 bytes; give a size such as 1Gi",
            claim.name_any()
        )));
    }
    Ok(bytes)
}

/// `spec.capacity.storage` of a PV, in bytes.
pub fn pv_capacity(pv: &PersistentVolume) -> Option<u64> {
    let capacity = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    parse_bytes(&capacity.0).ok()
}
