//! Populating the PVC of a DataVolume from its source, then binding it.
//!
//! Blank, clone and snapshot sources take constant time in the engine and run
//! inside the reconcile; http sources run as import tasks (see [`super::import`]).
//! Whatever the source, the engine volume is `pvc-<PVC uid>`, so a reconcile
//! that finds it already there only binds it: that resumes a population a
//! crash interrupted between the engine call and the binding.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use vmsnap_api::cdi::{DataVolume, annotations, dv_phase};
use vmsnap_storage::VolumeInfo;

use super::fetch;
use super::import::{self, ImportJob, ImportState};
use super::status::{Desired, Running, set_status};
use crate::bind::bind_claim;
use crate::claim::{claim_volume_id, requested_bytes};
use crate::context::Context;
use crate::error::ReconcileError;
use crate::sources::{Resolved, resolve_claim, resolve_snapshot};

/// How long a DataVolume waiting for its source is left alone when no watch event comes.
const SOURCE_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a DataVolume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DvSource {
    /// A blank disk.
    Blank,
    /// An `http://` or `file://` URL.
    Http(String),
    /// Clone this PVC (namespace, name).
    Claim(String, String),
    /// Restore this VolumeSnapshot (namespace, name).
    Snapshot(String, String),
    /// Not supported here; the message says why.
    Unsupported(String),
}

/// The source of a DataVolume.
pub fn dv_source(dv: &DataVolume) -> DvSource {
    let namespace = dv.namespace().unwrap_or_default();
    let Some(source) = dv.spec.source.as_ref() else {
        return DvSource::Unsupported(if dv.spec.source_ref.is_some() {
            "sourceRef (a DataSource) is not supported by the embedded local driver; name the source directly"
                .into()
        } else {
            "the DataVolume has no source; use blank, http, pvc or snapshot".into()
        });
    };
    // A source in another namespace is cloned as well: CDI asks for permission to create
    // `datavolumes/source` there, and the embedded API server has one identity, which has it.
    let located = |reference: &vmsnap_api::cdi::DataVolumeSourceRef, make: fn(String, String) -> DvSource| {
        make(reference.namespace.clone().unwrap_or_else(|| namespace.clone()), reference.name.clone())
    };
    if source.blank.is_some() {
        DvSource::Blank
    } else if let Some(http) = &source.http {
        DvSource::Http(http.url.clone())
    } else if let Some(claim) = &source.pvc {
        located(claim, DvSource::Claim)
    } else if let Some(snapshot) = &source.snapshot {
        located(snapshot, DvSource::Snapshot)
    } else if source.registry.is_some() {
        DvSource::Unsupported(
            "registry sources are not supported by the embedded local driver; use an http or file URL".into(),
        )
    } else if source.upload.is_some() {
        DvSource::Unsupported(
            "upload sources are not supported by the embedded local driver; use an http or file URL".into(),
        )
    } else {
        DvSource::Unsupported("the DataVolume source is empty; use blank, http, pvc or snapshot".into())
    }
}

/// Populates the (unbound) PVC of a DataVolume, then binds it.
pub async fn populate(
    ctx: &Arc<Context>,
    dv: &DataVolume,
    claim: &PersistentVolumeClaim,
    class: &Arc<StorageClass>,
) -> Result<Action, ReconcileError> {
    let volume = claim_volume_id(claim)?;
    let key = claim.uid().unwrap_or_default();
    let import_state = ctx.imports.state(&key);
    if import_state == Some(ImportState::Running) {
        return Ok(Action::await_change());
    }
    if let Some(info) = ctx.driver.volume(&volume).await.map_err(ReconcileError::storage("read a volume"))? {
        finish(ctx, dv, claim, class, &info).await?;
        return Ok(Action::await_change());
    }
    let size = requested_bytes(claim)?;
    let mut restarts = dv.status.as_ref().and_then(|s| s.restart_count).unwrap_or(0);
    let info = match dv_source(dv) {
        DvSource::Blank => ctx
            .driver
            .create_volume(&volume, size)
            .await
            .map_err(ReconcileError::storage(format!("create volume {volume}")))?,
        DvSource::Claim(source_namespace, name) => {
            match resolve_claim(ctx, &source_namespace, &name).await? {
                Resolved::Ready(source) => {
                    set_status(ctx, dv, Some(claim), &transferring(dv_phase::CLONE_IN_PROGRESS)).await?;
                    ctx.driver.clone_volume(&source.volume, &volume, size, ctx.live()).await.map_err(
                        ReconcileError::storage(format!(
                            "clone volume {} into volume {volume}",
                            source.volume
                        )),
                    )?
                }
                Resolved::Waiting(message) => {
                    return wait(ctx, dv, claim, dv_phase::CLONE_SCHEDULED, message).await;
                }
            }
        }
        DvSource::Snapshot(source_namespace, name) => {
            match resolve_snapshot(ctx, &source_namespace, &name).await? {
                Resolved::Ready(source) => {
                    set_status(ctx, dv, Some(claim), &transferring(dv_phase::SNAPSHOT_RESTORE_IN_PROGRESS))
                        .await?;
                    ctx.driver.restore_volume(&source.snapshot, &volume, size).await.map_err(
                        ReconcileError::storage(format!(
                            "restore snapshot {} into volume {volume}",
                            source.snapshot
                        )),
                    )?
                }
                Resolved::Waiting(message) => {
                    return wait(ctx, dv, claim, dv_phase::CLONE_SCHEDULED, message).await;
                }
            }
        }
        DvSource::Http(url) => {
            if let Some(ImportState::Failed(at, failures)) = import_state {
                restarts = restarts.max(failures);
                let delay = import::retry_delay(ctx, restarts);
                if at.elapsed() < delay {
                    return Ok(Action::requeue(delay - at.elapsed()));
                }
            }
            let source = match fetch::parse(&url, &ctx.config.file_import_roots) {
                Ok(source) => source,
                Err(error) => {
                    return super::fail(ctx, dv, Some(claim), "ImportFailed", error.to_string()).await;
                }
            };
            if let fetch::Source::File(path) = &source
                && let Err(message) = import::check_handed_over_namespace(
                    path,
                    &ctx.config.handed_over_import_roots,
                    &dv.namespace().unwrap_or_default(),
                )
            {
                return super::fail(ctx, dv, Some(claim), "ImportFailed", message).await;
            }
            set_status(ctx, dv, Some(claim), &Desired::idle(dv_phase::IMPORT_SCHEDULED, None)).await?;
            let job = ImportJob {
                dv: dv.clone(),
                claim: claim.clone(),
                class: class.clone(),
                volume,
                source,
                size_bytes: size,
                restarts,
            };
            import::start(ctx, job);
            return Ok(Action::await_change());
        }
        DvSource::Unsupported(message) => {
            return super::fail(ctx, dv, Some(claim), "UnsupportedSource", message).await;
        }
    };
    finish(ctx, dv, claim, class, &info).await?;
    Ok(Action::await_change())
}

fn transferring(phase: &'static str) -> Desired {
    Desired { phase, progress: Some("N/A".into()), restart_count: None, running: Running::Transferring }
}

async fn wait(
    ctx: &Context,
    dv: &DataVolume,
    claim: &PersistentVolumeClaim,
    phase: &'static str,
    message: String,
) -> Result<Action, ReconcileError> {
    set_status(ctx, dv, Some(claim), &Desired::idle(phase, Some(message.clone()))).await?;
    ctx.event(&dv.object_ref(&()), EventType::Normal, "SourceNotReady", "Populate", message).await;
    Ok(Action::requeue(SOURCE_RECHECK))
}

/// Binds the populated PVC and marks the DataVolume `Succeeded`.
pub async fn finish(
    ctx: &Context,
    dv: &DataVolume,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    volume: &VolumeInfo,
) -> Result<(), ReconcileError> {
    let extra: BTreeMap<String, String> =
        [(annotations::POD_PHASE, "Succeeded"), (annotations::CONDITION_BOUND, "true")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    bind_claim(ctx, claim, class, volume, &extra).await?;
    let bound = ctx
        .namespaced::<PersistentVolumeClaim>(&claim.namespace().unwrap_or_default())
        .get_opt(&claim.name_any())
        .await?;
    let was = dv.status.as_ref().and_then(|s| s.phase.as_deref());
    let desired = Desired {
        phase: dv_phase::SUCCEEDED,
        progress: Some("100.0%".into()),
        restart_count: None,
        running: Running::Completed,
    };
    set_status(ctx, dv, bound.as_ref(), &desired).await?;
    if was != Some(dv_phase::SUCCEEDED) {
        let (namespace, name) = (dv.namespace().unwrap_or_default(), claim.name_any());
        let (reason, note) = match dv_source(dv) {
            DvSource::Claim(ns, source) => {
                ("CloneSucceeded", format!("Successfully cloned from {ns}/{source} into {namespace}/{name}"))
            }
            DvSource::Snapshot(ns, source) => (
                "CloneSucceeded",
                format!("Successfully cloned from snapshot {ns}/{source} into {namespace}/{name}"),
            ),
            _ => ("ImportSucceeded", format!("Successfully imported into PVC {name}")),
        };
        ctx.event(&dv.object_ref(&()), EventType::Normal, reason, "Populate", note).await;
    }
    Ok(())
}
