//! What every reconcile shares: the client, the event recorders, the metrics and the freeze clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use vmsnap_api::k8s_openapi::api::core::v1::ObjectReference;

use crate::expectations::Expectations;
use crate::metrics::Metrics;
use crate::retry_clock::RetryClock;

/// Settings of the controllers.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Reported as the events' `reportingInstance` (host or pod name).
    pub instance: String,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig { instance: "vmsnap".into() }
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// The API client.
    pub client: Client,
    snapshot_events: Recorder,
    restore_events: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// When each content's guest was frozen, to measure the freeze window.
    pub freeze_started: Mutex<HashMap<String, Instant>>,
    /// Our status writes the caches have not shown yet.
    pub expectations: Expectations,
    /// When each content's failed freeze may be tried again.
    pub freeze_retry: RetryClock,
}

/// Which controller reports an event.
#[derive(Clone, Copy, Debug)]
pub enum Component {
    /// KubeVirt's `snapshot-controller`.
    Snapshot,
    /// KubeVirt's `restore-controller`.
    Restore,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, config: &ControllerConfig, metrics: Arc<Metrics>) -> Arc<Context> {
        let reporter = |controller: &str| Reporter {
            controller: controller.into(),
            instance: Some(config.instance.clone()),
        };
        Arc::new(Context {
            snapshot_events: Recorder::new(client.clone(), reporter("snapshot-controller")),
            restore_events: Recorder::new(client.clone(), reporter("restore-controller")),
            client,
            metrics,
            freeze_started: Mutex::new(HashMap::new()),
            expectations: Expectations::default(),
            freeze_retry: RetryClock::default(),
        })
    }

    /// Publishes an event; failures are logged, never fatal.
    pub async fn event(
        &self,
        component: Component,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let recorder = match component {
            Component::Snapshot => &self.snapshot_events,
            Component::Restore => &self.restore_events,
        };
        let event = vmsnap_contracts::controller::event(warning, reason, note);
        if let Err(e) = recorder.publish(&event, regarding).await {
            tracing::warn!(error = %e, %reason, "could not record an event");
        }
    }
}
