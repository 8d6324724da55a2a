//! The background job that keeps layer chains short, so that reads do not slow down after many
//! snapshots of the same disk.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use vmsnap_agent::Agent;
use vmsnap_storage::{LayeredDriver, VolumeDriver};

/// Runs [`VolumeDriver::compact`] every `every`, with the agent streaming the layers of volumes
/// that running VMs write.
pub fn spawn(driver: Arc<LayeredDriver>, agent: Arc<Agent>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match driver.compact(Some(agent.as_ref())).await {
                Ok(report) => tracing::debug!(?report, "layer chains compacted"),
                Err(error) => tracing::warn!(%error, "layer chain compaction failed; it is retried later"),
            }
        }
    })
}
