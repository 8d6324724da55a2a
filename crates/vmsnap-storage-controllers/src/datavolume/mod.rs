//! The DataVolume controller (`cdi.kubevirt.io/v1beta1`): CDI for the local driver.
//!
//! A DataVolume owns the PVC of its name (controller reference, with
//! `blockOwnerDeletion`). The controller creates that PVC from `spec.pvc`, or
//! from `spec.storage` completed with the StorageProfile's defaults, marks it
//! with [`POPULATING_DATA_VOLUME_ANNOTATION`] so the PVC controller leaves it
//! alone, populates the engine volume from the source, and binds it; the
//! DataVolume goes `Succeeded` when the PVC is bound. As with CDI's volume
//! populators, the PVC stays `Pending` while it is populated.
//!
//! A DataVolume annotated `cdi.kubevirt.io/storage.prePopulated`, or whose PVC
//! is annotated `cdi.kubevirt.io/storage.populatedFor: <its name>`, adopts the
//! existing PVC (the restore controller makes PVCs this way) and is
//! `Succeeded` as soon as that PVC is bound; it never creates or fills it.

mod fetch;
mod import;
mod populate;
mod status;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::cdi::{DataVolume, StorageProfile, annotations, dv_phase};
use vmsnap_api::volumesnapshot::VolumeSnapshot;

pub use self::import::{Imports, prepare_scratch};
use self::populate::{DvSource, dv_source, populate};
use self::status::{Desired, Running, set_status};
use super::classes::ClaimClass;
use super::context::{Context, already_exists, error_policy, tracked};
use super::error::ReconcileError;
use super::names::{POPULATING_DATA_VOLUME_ANNOTATION, populating_data_volume};
use super::sources::{Resolved, resolve_claim, resolve_snapshot};
use vmsnap_api::quantity::format_bytes;

/// Runs the controller until the task is aborted.
pub async fn run(ctx: Arc<Context>) {
    let controller = Controller::new(ctx.watched::<DataVolume>(), watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config());
    let by_claim = controller.store();
    let by_snapshot = controller.store();
    controller
        .watches(ctx.watched::<PersistentVolumeClaim>(), watcher::Config::default(), move |claim| {
            let namespace = claim.namespace().unwrap_or_default();
            let name = claim.name_any();
            // The DataVolume of the same name (its own PVC, or one to adopt), and those cloning it.
            let mut refs = vec![ObjectRef::new(&name).within(&namespace)];
            refs.extend(sourcing(&by_claim, |source| {
                *source == DvSource::Claim(namespace.clone(), name.clone())
            }));
            refs
        })
        .watches(ctx.watched::<VolumeSnapshot>(), watcher::Config::default(), move |snapshot| {
            let (namespace, name) = (snapshot.namespace().unwrap_or_default(), snapshot.name_any());
            sourcing(&by_snapshot, |source| *source == DvSource::Snapshot(namespace.clone(), name.clone()))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn sourcing(dvs: &Store<DataVolume>, matches: impl Fn(&DvSource) -> bool) -> Vec<ObjectRef<DataVolume>> {
    dvs.state()
        .iter()
        .filter(|dv| matches(&dv_source(dv)))
        .map(|dv| ObjectRef::from_obj(dv.as_ref()))
        .collect()
}

async fn reconcile(dv: Arc<DataVolume>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    tracked(dv.as_ref(), &ctx, reconcile_dv(&dv, &ctx)).await
}

async fn reconcile_dv(dv: &DataVolume, ctx: &Arc<Context>) -> Result<Action, ReconcileError> {
    if dv.meta().deletion_timestamp.is_some() {
        // The garbage collector deletes the PVC; the PVC controller stops any import into it.
        return Ok(Action::await_change());
    }
    let namespace = dv.namespace().unwrap_or_default();
    let name = dv.name_any();
    let pre_populated = dv.annotations().contains_key(annotations::PRE_POPULATED);
    let claim = match ctx.namespaced::<PersistentVolumeClaim>(&namespace).get_opt(&name).await? {
        Some(claim) => claim,
        None if pre_populated => {
            let message = format!("waiting for the pre-populated PVC {name} to exist");
            set_status(ctx, dv, None, &Desired::idle(dv_phase::PENDING, Some(message))).await?;
            return Ok(Action::await_change());
        }
        None => match create_claim(ctx, dv).await {
            Ok(Resolved::Ready(claim)) => claim,
            Ok(Resolved::Waiting(message)) => {
                set_status(ctx, dv, None, &Desired::idle(dv_phase::PENDING, Some(message))).await?;
                return Ok(Action::requeue(std::time::Duration::from_secs(30)));
            }
            Err(ReconcileError::Invalid(message)) => {
                return fail(ctx, dv, None, "ErrClaimNotValid", message).await;
            }
            Err(error) => return Err(error),
        },
    };
    if !controlled_by(&claim, dv) {
        let adoptable = pre_populated || claim.annotations().get(annotations::POPULATED_FOR) == Some(&name);
        let controlled_elsewhere =
            claim.owner_references().iter().any(|owner| owner.controller == Some(true));
        if !adoptable || controlled_elsewhere {
            let message = format!("Resource {name} already exists and is not managed by DataVolume");
            return fail(ctx, dv, Some(&claim), "ErrResourceExists", message).await;
        }
        adopt(ctx, dv, &claim).await?;
    }
    let class = match ctx.classes.claim_class(&claim).await? {
        ClaimClass::Ours { class, .. } => class,
        ClaimClass::Missing(class) => {
            let message = format!("StorageClass {class:?} of PVC {name} does not exist");
            set_status(ctx, dv, Some(&claim), &Desired::idle(dv_phase::PENDING, Some(message.clone())))
                .await?;
            return Err(ReconcileError::Invalid(message));
        }
        ClaimClass::NotOurs => {
            let message = format!(
                "PVC {name} does not use a StorageClass of {}; the embedded driver populates only its own volumes",
                super::PROVISIONER
            );
            set_status(ctx, dv, Some(&claim), &Desired::idle(dv_phase::PENDING, Some(message))).await?;
            return Ok(Action::await_change());
        }
    };
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    // A pre-populated DataVolume (a restore made its PVC from a snapshot) never imports into it.
    let populating = !pre_populated && populating_data_volume(&claim) == dv.metadata.name.as_deref();
    let succeeded = dv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(dv_phase::SUCCEEDED);
    if bound && (succeeded || !populating) {
        // Populated (here, or by whoever made the adopted PVC): keep the conditions current.
        let progress = if populating { "100.0%" } else { "N/A" };
        let done = Desired {
            phase: dv_phase::SUCCEEDED,
            progress: if succeeded { None } else { Some(progress.into()) },
            restart_count: None,
            running: Running::Completed,
        };
        set_status(ctx, dv, Some(&claim), &done).await?;
        return Ok(Action::await_change());
    }
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
        let message =
            "the StorageClass binds on first consumer, and the embedded driver has no consumers to wait for"
                .to_owned();
        set_status(ctx, dv, Some(&claim), &Desired::idle(dv_phase::WAIT_FOR_FIRST_CONSUMER, Some(message)))
            .await?;
        return Ok(Action::await_change());
    }
    if !populating {
        let message = format!("waiting for PVC {name} to be bound");
        set_status(ctx, dv, Some(&claim), &Desired::idle(dv_phase::PENDING, Some(message))).await?;
        return Ok(Action::await_change());
    }
    populate(ctx, dv, &claim, &class).await
}

fn controlled_by(claim: &PersistentVolumeClaim, dv: &DataVolume) -> bool {
    claim
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && Some(&owner.uid) == dv.meta().uid.as_ref())
}

/// The controller reference a DataVolume puts on its PVC, as CDI does.
fn owner_ref(dv: &DataVolume) -> Result<OwnerReference, ReconcileError> {
    let mut owner = dv
        .controller_owner_ref(&())
        .ok_or_else(|| ReconcileError::Invalid("the DataVolume has no uid".into()))?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// Takes ownership of an existing PVC, as CDI does for pre-populated PVCs.
async fn adopt(ctx: &Context, dv: &DataVolume, claim: &PersistentVolumeClaim) -> Result<(), ReconcileError> {
    let owner = owner_ref(dv)?;
    let mut owners = claim.owner_references().to_vec();
    owners.push(owner);
    let patch = json!({"metadata": {"ownerReferences": owners}});
    let claims = ctx.namespaced::<PersistentVolumeClaim>(&claim.namespace().unwrap_or_default());
    claims.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let note = format!("DataVolume adopted the pre-populated PVC {}", claim.name_any());
    ctx.event(&dv.object_ref(&()), EventType::Normal, "Adopted", "Adopt", note).await;
    Ok(())
}

/// `Failed` with a message (and a warning event the first time), until the DataVolume or the PVC changes.
async fn fail(
    ctx: &Context,
    dv: &DataVolume,
    claim: Option<&PersistentVolumeClaim>,
    reason: &str,
    message: String,
) -> Result<Action, ReconcileError> {
    let already = dv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(dv_phase::FAILED);
    let desired = Desired {
        phase: dv_phase::FAILED,
        progress: None,
        restart_count: None,
        running: Running::Failed(message.clone()),
    };
    set_status(ctx, dv, claim, &desired).await?;
    if !already {
        ctx.event(&dv.object_ref(&()), EventType::Warning, reason, "Populate", message).await;
    }
    Ok(Action::await_change())
}

/// Creates the DataVolume's PVC: `spec.pvc` as given, or `spec.storage` with
/// the StorageProfile's defaults; a missing size comes from a clone or
/// snapshot source.
async fn create_claim(
    ctx: &Context,
    dv: &DataVolume,
) -> Result<Resolved<PersistentVolumeClaim>, ReconcileError> {
    let namespace = dv.namespace().unwrap_or_default();
    let name = dv.name_any();
    let (mut spec, from_storage) = match (&dv.spec.pvc, &dv.spec.storage) {
        (Some(pvc), _) => (pvc.clone(), false),
        (None, Some(storage)) => (storage.clone(), true),
        (None, None) => {
            return Err(ReconcileError::Invalid(format!(
                "DataVolume {name} has neither spec.pvc nor spec.storage"
            )));
        }
    };
    spec.data_source = None;
    spec.data_source_ref = None;
    if from_storage {
        let class_name = match spec.storage_class_name.clone() {
            Some(class) => Some(class),
            None => ctx.classes.default_storage_class().and_then(|class| class.metadata.name.clone()),
        };
        let profile = match &class_name {
            Some(class) => ctx.cluster::<StorageProfile>().get_opt(class).await?,
            None => None,
        };
        let property_set =
            profile.and_then(|p| p.status).and_then(|s| s.claim_property_sets.into_iter().next());
        let property = |key: &str| property_set.as_ref().and_then(|set| set.get(key)).cloned();
        if spec.access_modes.as_ref().is_none_or(|modes| modes.is_empty()) {
            spec.access_modes = property("accessModes").and_then(|modes| serde_json::from_value(modes).ok());
        }
        if spec.volume_mode.is_none() {
            spec.volume_mode = property("volumeMode").and_then(|mode| mode.as_str().map(str::to_owned));
        }
        spec.storage_class_name = class_name;
    }
    if spec.access_modes.as_ref().is_none_or(|modes| modes.is_empty()) {
        spec.access_modes = Some(vec!["ReadWriteOnce".into()]);
    }
    let requested =
        spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    if requested.is_none() {
        let size = match dv_source(dv) {
            DvSource::Claim(ns, source) => match resolve_claim(ctx, &ns, &source).await? {
                Resolved::Ready(source) => source.size_bytes,
                Resolved::Waiting(message) => return Ok(Resolved::Waiting(message)),
            },
            DvSource::Snapshot(ns, source) => match resolve_snapshot(ctx, &ns, &source).await? {
                Resolved::Ready(source) => source.size_bytes,
                Resolved::Waiting(message) => return Ok(Resolved::Waiting(message)),
            },
            // The source is refused for its own reason, not for a missing size.
            DvSource::Unsupported(why) => {
                return Err(ReconcileError::Invalid(format!("DataVolume {name}: {why}")));
            }
            _ => {
                return Err(ReconcileError::Invalid(format!(
                    "DataVolume {name} gives no size; set spec.storage.resources.requests.storage (e.g. 1Gi)"
                )));
            }
        };
        let resources = spec.resources.get_or_insert_with(Default::default);
        resources.requests.get_or_insert_with(Default::default).insert(
            "storage".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(format_bytes(size)),
        );
    }
    let mut claim_annotations = std::collections::BTreeMap::new();
    claim_annotations.insert(
        annotations::CONTENT_TYPE.to_owned(),
        dv.spec.content_type.clone().unwrap_or_else(|| "kubevirt".to_owned()),
    );
    claim_annotations.insert(POPULATING_DATA_VOLUME_ANNOTATION.to_owned(), name.clone());
    // CDI's marks of a clone made without a volume populator (no dataSourceRef): the source, and
    // that the PVC is a clone. A restore does not copy them to the PVCs it makes.
    if let DvSource::Claim(source_namespace, source) = dv_source(dv) {
        claim_annotations
            .insert(annotations::CLONE_REQUEST.to_owned(), format!("{source_namespace}/{source}"));
        claim_annotations.insert(annotations::CLONE_OF.to_owned(), "true".to_owned());
    }
    let owner = owner_ref(dv)?;
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: dv.metadata.labels.clone(),
            annotations: Some(claim_annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    let claims = ctx.namespaced::<PersistentVolumeClaim>(&namespace);
    match claims.create(&PostParams::default(), &claim).await {
        Ok(claim) => Ok(Resolved::Ready(claim)),
        Err(error) if already_exists(&error) => Ok(Resolved::Ready(claims.get(&name).await?)),
        Err(error) => Err(error.into()),
    }
}
