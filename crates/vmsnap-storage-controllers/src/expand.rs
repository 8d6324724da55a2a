//! Volume expansion, as external-resizer does it: when a bound PVC requests
//! more than its PV holds, grow the engine volume, then the PV's capacity, then
//! the PVC's `status.capacity`.
//!
//! The engine grows detached volumes only. While a running VM uses the volume,
//! the PVC carries a `Resizing` condition saying so and the controller checks
//! again every [`super::ControllerConfig::in_use_poll`]; the resize happens
//! once the VM stops. (The node agent may later grow attached disks live.)

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimCondition};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_storage::{StorageError, VolumeId};

use super::claim::{pv_capacity, requested_bytes};
use super::context::Context;
use super::error::ReconcileError;
use vmsnap_api::quantity::format_bytes;

const RESIZING: &str = "Resizing";

/// Grows the volume of a bound PVC if its request exceeds the PV's capacity.
pub async fn reconcile_expansion(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    class: &StorageClass,
    volume: &VolumeId,
) -> Result<Action, ReconcileError> {
    let requested = requested_bytes(claim)?;
    let capacity = pv_capacity(pv).unwrap_or_default();
    if requested <= capacity {
        set_claim_status(ctx, claim, capacity, None).await?;
        return Ok(Action::await_change());
    }
    let name = format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any());
    if class.allow_volume_expansion != Some(true) {
        let message = format!(
            "StorageClass {} does not allow volume expansion; PersistentVolumeClaim {name} stays at {}",
            class.name_any(),
            format_bytes(capacity)
        );
        set_claim_status(ctx, claim, capacity, Some(("VolumeResizeFailed", &message))).await?;
        return Ok(Action::await_change());
    }
    let resized = if ctx.attached(volume).await? {
        Err(StorageError::LiveUnsupported {
            driver: ctx.driver.name(),
            action: "resize",
            volume: volume.clone(),
        })
    } else {
        ctx.driver.resize_volume(volume, requested).await
    };
    match resized {
        Ok(info) => {
            let storage = format_bytes(info.size_bytes);
            let patch = json!({"spec": {"capacity": {"storage": storage}}});
            ctx.cluster::<PersistentVolume>()
                .patch(&pv.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            set_claim_status(ctx, claim, info.size_bytes, None).await?;
            let note =
                format!("resize volume {volume} of PersistentVolumeClaim {name} to {storage} succeeded");
            ctx.event(&claim.object_ref(&()), EventType::Normal, "VolumeResizeSuccessful", "Resize", note)
                .await;
            Ok(Action::await_change())
        }
        Err(StorageError::InUse { .. } | StorageError::LiveUnsupported { .. }) => {
            let message = format!(
                "waiting to grow volume {volume} to {}: a running VM uses it, and the local driver grows detached volumes only; it grows when the VM stops",
                format_bytes(requested)
            );
            set_claim_status(ctx, claim, capacity, Some(("VolumeInUse", &message))).await?;
            Err(ReconcileError::InUse(message))
        }
        Err(source) => {
            let error = ReconcileError::storage(format!(
                "grow volume {volume} to {}",
                format_bytes(requested)
            ))(source);
            set_claim_status(ctx, claim, capacity, Some(("VolumeResizeFailed", &error.message()))).await?;
            Err(error)
        }
    }
}

/// Writes `status.capacity` and the `Resizing` condition (`None`: no
/// condition) if they differ from what the PVC has; publishes an event when
/// the condition's message changes.
async fn set_claim_status(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    capacity: u64,
    resizing: Option<(&str, &str)>,
) -> Result<(), ReconcileError> {
    let status = claim.status.clone().unwrap_or_default();
    let storage = format_bytes(capacity);
    let current_capacity = status.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| q.0.clone());
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let previous = conditions.iter().find(|c| c.type_ == RESIZING).cloned();
    conditions.retain(|c| c.type_ != RESIZING);
    if let Some((reason, message)) = resizing {
        let unchanged = previous.as_ref().is_some_and(|p| p.message.as_deref() == Some(message));
        if unchanged {
            conditions.extend(previous.clone());
        } else {
            conditions.push(PersistentVolumeClaimCondition {
                type_: RESIZING.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(Timestamp::now())),
                last_probe_time: None,
            });
            ctx.event(&claim.object_ref(&()), EventType::Warning, reason, "Resize", message.to_owned()).await;
        }
    }
    let condition_changed = status.conditions.clone().unwrap_or_default() != conditions;
    if current_capacity.as_deref() == Some(storage.as_str()) && !condition_changed {
        return Ok(());
    }
    let conditions = if conditions.is_empty() { serde_json::Value::Null } else { json!(conditions) };
    let patch = json!({"status": {"capacity": {"storage": storage}, "conditions": conditions}});
    let claims = ctx.namespaced::<PersistentVolumeClaim>(&claim.namespace().unwrap_or_default());
    claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}
