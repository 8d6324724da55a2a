//! Small pieces the controllers' status writes share: the time, conditions, events and merge
//! patches of the status subresource.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
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

/// The status writes of one reconcile pass over one object. [`StatusWrites::patch`] writes on the
/// condition that the object is still the version the pass read (or last wrote): the merge patch
/// carries that `resourceVersion`. A pass that ran on a stale cached copy (the watch had not yet
/// shown a newer write) then gets 409 Conflict and runs again on the newer copy, instead of
/// writing its stale view over the newer status, as KubeVirt's controllers do with `UpdateStatus`.
pub(crate) struct StatusWrites<K> {
    api: Api<K>,
    name: String,
    version: Option<String>,
}

impl<K> StatusWrites<K>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    /// Writes to `object`, as of the version this pass read.
    pub(crate) fn of(api: &Api<K>, object: &K) -> Self {
        StatusWrites { api: api.clone(), name: object.name_any(), version: object.resource_version() }
    }

    /// Merge-patches the status with `status` if the object did not change since this pass read
    /// or wrote it; a 409 Conflict otherwise.
    pub(crate) async fn patch(&mut self, status: serde_json::Value) -> Result<K, kube::Error> {
        let mut patch = serde_json::json!({ "status": status });
        if let Some(version) = &self.version {
            patch["metadata"] = serde_json::json!({ "resourceVersion": version });
        }
        self.write(patch).await
    }

    /// Merge-patches the status with `status` whatever changed meanwhile: for the outcome of work
    /// this pass did (a verify, a prune), which a newer status must not throw away.
    pub(crate) async fn patch_outcome(&mut self, status: serde_json::Value) -> Result<K, kube::Error> {
        self.write(serde_json::json!({ "status": status })).await
    }

    async fn write(&mut self, patch: serde_json::Value) -> Result<K, kube::Error> {
        let written =
            self.api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        self.version = written.resource_version();
        Ok(written)
    }
}

/// Merge-patches the status subresource of `name` with `status` (a JSON object: only the fields it
/// names change; `null` removes one), whatever its version: for writes that do not come from a
/// cached copy (a running backup's progress, the first status of an object just created). A
/// reconcile's writes go through [`StatusWrites`].
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
            sha256_tree: Some(d.sha256_tree.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kube::api::{Api, PostParams};
    use vmsnap_api::backup::{VirtualMachineRepositoryRestore, VirtualMachineRepositoryRestoreSpec};
    use vmsnap_testing::TestServer;

    use super::StatusWrites;

    fn is_conflict(result: &Result<VirtualMachineRepositoryRestore, kube::Error>) -> bool {
        matches!(result, Err(kube::Error::Api(status)) if status.code == 409)
    }

    /// The API server is the reference: a write from a copy older than the stored object is
    /// refused (409), whatever it would change; the pass's own writes chain; an outcome is written
    /// whatever changed meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_on_a_stale_copy_cannot_write_its_status_over_a_newer_one() {
        let server = TestServer::start().await.unwrap();
        let api: Api<VirtualMachineRepositoryRestore> =
            Api::namespaced(server.client().await.unwrap(), "default");
        let spec: VirtualMachineRepositoryRestoreSpec = serde_json::from_value(serde_json::json!({
            "backupName": "b",
            "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"},
        }))
        .unwrap();
        let created = api
            .create(&PostParams::default(), &VirtualMachineRepositoryRestore::new("r", spec))
            .await
            .unwrap();

        // Two passes read the same copy; the first writes, and its second write chains on its first.
        let (mut first, mut stale) = (StatusWrites::of(&api, &created), StatusWrites::of(&api, &created));
        first.patch(serde_json::json!({"phase": "InProgress"})).await.unwrap();
        first.patch(serde_json::json!({"progress": {"bytesWritten": 7}})).await.unwrap();

        // The second pass's view is stale: refused, and the newer status stays.
        let refused = stale.patch(serde_json::json!({"progress": {"bytesWritten": 0}})).await;
        assert!(is_conflict(&refused), "a stale write is refused with 409: {refused:?}");
        let stored = api.get("r").await.unwrap().status.unwrap();
        assert_eq!(stored.progress.and_then(|p| p.bytes_written), Some(7));

        // An outcome is written over whatever came meanwhile; a conditional write after it chains on it.
        stale.patch_outcome(serde_json::json!({"phase": "Succeeded"})).await.unwrap();
        stale.patch(serde_json::json!({"complete": true})).await.unwrap();
        let stored = api.get("r").await.unwrap().status.unwrap();
        assert_eq!((stored.phase.as_deref(), stored.complete), (Some("Succeeded"), Some(true)));
    }
}
