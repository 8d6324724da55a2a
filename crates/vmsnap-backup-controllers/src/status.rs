//! Small pieces the controllers' status writes share: the time, conditions, events and merge
//! patches of the status subresource.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use vmsnap_api::backup::{BackupDiskStatus, TransferCounters};
use vmsnap_api::snapshot::{Condition, update_condition};

use crate::Context;

/// Now, as an API timestamp.
pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A chrono time as an API timestamp (the repository engine's times are chrono's).
pub(crate) fn time_of(at: chrono::DateTime<chrono::Utc>) -> Time {
    let nanos = at.timestamp_nanos_opt().unwrap_or_default();
    Time(k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or_default())
}

/// `conditions` with `new` set the way KubeVirt's `updateCondition` does it.
pub(crate) fn with_condition(conditions: &[Condition], new: Condition) -> Vec<Condition> {
    let mut conditions = conditions.to_vec();
    update_condition(&mut conditions, new, now());
    conditions
}

/// A condition of `type_` with its status, reason and message.
pub(crate) fn condition(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Condition {
    Condition::new(type_, status, reason).with_message(Some(message.into()))
}

/// Publishes an event about `regarding` as the backup controllers. Events are best effort: a
/// failure is logged, never returned.
pub(crate) async fn publish(
    ctx: &Context,
    regarding: &ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event = vmsnap_contracts::controller::event(warning, reason, note);
    if let Err(error) = ctx.recorder.publish(&event, regarding).await {
        tracing::warn!(%error, reason, object = ?regarding.name, "could not publish an event");
    }
}

/// Merge-patches the status subresource of `name` with `status` (a JSON object: only the fields it
/// names change; `null` removes one).
pub(crate) async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    status: serde_json::Value,
) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "status": status })))
        .await
}

/// The counters of a committed backup: what its manifest's statistics say, at 100%, with
/// `bytes_to_read` as planned and the time it took.
pub(crate) fn committed_counters(
    manifest: &vmsnap_backup::BackupManifest,
    bytes_to_read: Option<i64>,
    elapsed_seconds: i64,
) -> TransferCounters {
    let stats = &manifest.stats;
    TransferCounters {
        bytes_to_read,
        bytes_read: Some(stats.bytes_read as i64),
        bytes_uploaded: Some(stats.bytes_uploaded as i64),
        bytes_deduplicated: Some(stats.bytes_deduplicated as i64),
        bytes_reused: Some(stats.bytes_reused as i64),
        bytes_written: None,
        percent: Some(100),
        elapsed_seconds: Some(elapsed_seconds),
    }
}

/// The disks of a committed backup as its status lists them.
pub(crate) fn disk_statuses(manifest: &vmsnap_backup::BackupManifest) -> Vec<BackupDiskStatus> {
    manifest
        .disks
        .iter()
        .map(|d| BackupDiskStatus {
            name: d.name.clone(),
            size_bytes: d.size as i64,
            sha256: d.sha256.clone(),
        })
        .collect()
}
