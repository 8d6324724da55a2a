//! What every reconcile gets: the API client, the engine, the node agent's
//! live block operations, the event recorder, the class caches, and the
//! per-object retry state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use vmsnap_storage::{LiveBlockOps, VolumeDriver, VolumeId};

use super::ControllerConfig;
use super::classes::Classes;
use super::datavolume::Imports;
use super::error::{ReconcileError, RetryKind};
use super::snapshot::Groups;

/// The shared state of all storage controllers.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The storage engine.
    pub driver: Arc<dyn VolumeDriver>,
    /// The node agent's operations on attached volumes.
    pub live: Arc<dyn LiveBlockOps>,
    /// Publishes events as `vmsnap-storage`.
    pub recorder: Recorder,
    /// Settings.
    pub config: ControllerConfig,
    /// StorageClass and VolumeSnapshotClass caches.
    pub classes: Classes,
    /// Running DataVolume imports.
    pub imports: Imports,
    /// VolumeSnapshot groups being gathered.
    pub groups: Groups,
    /// Consecutive failures per object, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context over the given parts.
    pub fn new(
        client: Client,
        driver: Arc<dyn VolumeDriver>,
        live: Arc<dyn LiveBlockOps>,
        recorder: Recorder,
        config: ControllerConfig,
        classes: Classes,
    ) -> Self {
        Self {
            client,
            driver,
            live,
            recorder,
            config,
            classes,
            imports: Imports::default(),
            groups: Groups::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The live operations, as the engine takes them.
    pub fn live(&self) -> Option<&dyn LiveBlockOps> {
        Some(self.live.as_ref())
    }

    /// Whether `volume` is attached to a running VM, as the node agent says.
    /// When the agent cannot tell, the reconcile waits rather than guess.
    pub async fn attached(&self, volume: &VolumeId) -> Result<bool, ReconcileError> {
        let active = self.live.active_file(volume).await.map_err(|error| {
            ReconcileError::Waiting(format!("cannot tell whether volume {volume} is in use: {error}"))
        })?;
        Ok(active.is_some())
    }

    /// An API for a namespaced kind in `namespace`.
    pub fn namespaced<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// An API for a cluster-scoped kind.
    pub fn cluster<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
    {
        Api::all(self.client.clone())
    }

    /// The API a controller watches a namespaced kind through: every namespace, or the configured one.
    pub fn watched<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.config.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Publishes an event about `regarding`. Events are best effort: a
    /// failure is logged, never returned.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event =
            Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(%error, reason, object = ?regarding.name, "could not publish an event");
        }
    }

    /// A reconcile of `key` succeeded: its next failure starts the backoff again.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("not poisoned").remove(key);
    }

    /// When to retry `key` after `error`.
    pub fn retry_after(&self, key: &str, error: &ReconcileError) -> Action {
        let delay = match error.retry_kind() {
            RetryKind::InUse => self.config.in_use_poll,
            RetryKind::Soon => self.config.retry_min,
            RetryKind::Backoff => {
                let mut failures = self.failures.lock().expect("not poisoned");
                let count = failures.entry(key.to_owned()).or_default();
                *count = count.saturating_add(1);
                backoff(self.config.retry_min, self.config.retry_max, *count)
            }
        };
        match error.retry_kind() {
            // Waiting for a VM to stop, another object, or a newer copy: expected, not a failure.
            RetryKind::InUse | RetryKind::Soon => {
                tracing::debug!(object = key, reason = %error.message(), retry_in = ?delay, "waiting")
            }
            RetryKind::Backoff => {
                tracing::warn!(object = key, error = %error.message(), retry_in = ?delay, "reconcile failed")
            }
        }
        Action::requeue(delay)
    }
}

/// `min * 2^(attempt-1)`, at most `max`.
pub fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    min.saturating_mul(factor).min(max)
}

/// `kind/namespace/name` of an object, for logs and the backoff table.
pub fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Runs `reconcile` and records its success for the backoff.
pub async fn tracked<K, F>(object: &K, ctx: &Context, reconcile: F) -> Result<Action, ReconcileError>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, ReconcileError>>,
{
    let result = reconcile.await;
    if result.is_ok() {
        ctx.succeeded(&object_key(object));
    }
    result
}

/// The error policy every controller uses.
pub fn error_policy<K>(object: Arc<K>, error: &ReconcileError, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = object_key(object.as_ref());
    if error.is_gone(object.as_ref()) {
        tracing::debug!(object = key, "deleted while it was reconciled: nothing left to do");
        ctx.succeeded(&key);
        return Action::await_change();
    }
    ctx.retry_after(&key, error)
}

/// Whether an API error is `AlreadyExists`.
pub fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        let (min, max) = (Duration::from_millis(250), Duration::from_secs(30));
        assert_eq!(backoff(min, max, 1), min);
        assert_eq!(backoff(min, max, 2), Duration::from_millis(500));
        assert_eq!(backoff(min, max, 5), Duration::from_secs(4));
        assert_eq!(backoff(min, max, 9), max);
        assert_eq!(backoff(min, max, u32::MAX), max);
    }
}
