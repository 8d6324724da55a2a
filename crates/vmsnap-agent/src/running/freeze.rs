//! Freeze and thaw of a running VMI, and `fsFreezeStatus`.
//!
//! The freeze state machine itself (and its persisted safety auto-thaw) lives
//! in the runtime ([`vmsnap_vmm::VmHandle::freeze`]). This layer adds the API
//! side: `fsFreezeStatus: frozen` is written right after the freeze call
//! returns (in the background, so the write is outside the freeze window; a
//! thaw waits for it) and cleared on thaw, and a watcher clears it when the runtime's auto-thaw
//! (or a background retry of a failed thaw) has thawed the guest. Every
//! transition runs under one async lock; the common path is one agent call
//! and one status patch, with no sleeping or polling.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::api::Patch;
use serde_json::json;
use tokio::task::JoinHandle;

use super::{RunningVmi, patch_params};
use vmsnap_vmm::{FreezeError, FreezeReport};

/// How often the watcher checks, after the deadline, whether the runtime has thawed.
const THAW_POLL: Duration = Duration::from_millis(100);

/// How long the watcher keeps checking after the deadline.
const THAW_WATCH_LIMIT: Duration = Duration::from_secs(600);

/// The API side of a VMI's freeze state.
#[derive(Default)]
pub struct FreezeSlot {
    /// Whether `fsFreezeStatus: frozen` is (believed) written.
    frozen_written: bool,
    /// Bumped on every freeze and thaw, so that a stale watcher does nothing.
    generation: u64,
    /// Clears `fsFreezeStatus` once the runtime thawed by itself.
    watcher: Option<JoinHandle<()>>,
}

impl FreezeSlot {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
        self.generation
    }
}

impl Drop for FreezeSlot {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
    }
}

/// Why a freeze or thaw failed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeFailure {
    /// The guest agent does not answer (not running, or hung).
    #[error("VMI does not have guest agent connected")]
    NoAgent,
    /// The vCPUs are paused, so the guest agent cannot run.
    #[error("VMI is paused; its guest agent cannot freeze the filesystems until it is unpaused")]
    Paused,
    /// The guest agent refused or timed out.
    #[error(transparent)]
    Agent(#[from] FreezeError),
    /// The status could not be written.
    #[error("could not write fsFreezeStatus: {0}")]
    Api(#[source] kube::Error),
}

impl RunningVmi {
    /// Freezes the guest filesystems with an auto-thaw after `unfreeze_timeout`
    /// (zero: none) and marks the VMI `fsFreezeStatus: frozen` right after. A second freeze is a no-op.
    pub async fn freeze(self: &Arc<Self>, unfreeze_timeout: Duration) -> Result<FreezeReport, FreezeFailure> {
        let mut slot = self.freeze.clone().lock_owned().await;
        if self.facts().pause.is_paused() {
            return Err(FreezeFailure::Paused);
        }
        if !self.agent_connected().await {
            return Err(FreezeFailure::NoAgent);
        }
        let report = self.handle.freeze(unfreeze_timeout).await?;
        let generation = slot.next_generation();
        if let Some(deadline) = report.thaw_deadline {
            slot.watcher = Some(self.spawn_thaw_watcher(generation, deadline));
        }
        if !slot.frozen_written {
            // Reported in the background, as virt-handler reports it: the caller's freeze window
            // does not wait for this write. The slot stays locked until the write is done, so a
            // thaw and its own status write always come after it.
            let vm = self.clone();
            tokio::spawn(async move {
                match vm.write_freeze_status(true).await {
                    Ok(()) => slot.frozen_written = true,
                    Err(error) => tracing::warn!(vmi = %vm.key(), %error, "could not report fsFreezeStatus"),
                }
            });
        }
        Ok(report)
    }

    /// Thaws the guest filesystems and clears `fsFreezeStatus`; harmless when nothing is frozen.
    pub async fn unfreeze(self: &Arc<Self>) -> Result<(), FreezeFailure> {
        let mut slot = self.freeze.lock().await;
        let generation = slot.next_generation();
        // Without an answering agent and nothing frozen by the runtime there is nothing to thaw.
        if (self.handle.frozen_by_runtime().is_some() || self.agent_connected().await)
            && let Err(error) = self.handle.unfreeze().await
        {
            // The runtime keeps retrying the thaw; clear the status when it succeeds.
            if self.handle.frozen_by_runtime().is_some() {
                slot.watcher = Some(self.spawn_thaw_watcher(generation, SystemTime::now()));
            }
            return Err(error.into());
        }
        if slot.frozen_written {
            self.write_freeze_status(false).await.map_err(FreezeFailure::Api)?;
            slot.frozen_written = false;
        }
        Ok(())
    }

    /// Takes over the freeze state after a re-attach: the runtime's freeze
    /// record is the truth, `stored_frozen` what the VMI status says; the
    /// status is corrected if they differ, and a pending auto-thaw is watched.
    pub async fn adopt_freeze(self: &Arc<Self>, stored_frozen: bool) {
        let mut slot = self.freeze.lock().await;
        let generation = slot.next_generation();
        let frozen = self.handle.frozen_by_runtime();
        if let Some(Some(deadline)) = frozen {
            slot.watcher = Some(self.spawn_thaw_watcher(generation, deadline));
        }
        slot.frozen_written = stored_frozen;
        if frozen.is_some() != stored_frozen {
            match self.write_freeze_status(frozen.is_some()).await {
                Ok(()) => slot.frozen_written = frozen.is_some(),
                Err(error) => tracing::warn!(vmi = %self.key(), %error, "could not correct fsFreezeStatus"),
            }
        }
    }

    async fn write_freeze_status(&self, frozen: bool) -> Result<(), kube::Error> {
        let value = if frozen { json!("frozen") } else { json!(null) };
        let patch = json!({ "status": { "fsFreezeStatus": value } });
        match self.api.patch_status(&self.name, &patch_params(), &Patch::Merge(&patch)).await {
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// After `deadline`, waits for the runtime to have thawed the guest, then clears `fsFreezeStatus`.
    fn spawn_thaw_watcher(self: &Arc<Self>, generation: u64, deadline: SystemTime) -> JoinHandle<()> {
        let vm = Arc::downgrade(self);
        tokio::spawn(async move {
            let wait = deadline.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(wait).await;
            let started = tokio::time::Instant::now();
            loop {
                let Some(vm) = vm.upgrade() else { return };
                if vm.handle.frozen_by_runtime().is_none() {
                    // The lock is taken by whoever aborts this task, so do the write in a
                    // task of its own: aborting the watcher must not abort a half-done write.
                    tokio::spawn(async move {
                        let mut slot = vm.freeze.lock().await;
                        if slot.generation == generation && slot.frozen_written {
                            match vm.write_freeze_status(false).await {
                                Ok(()) => slot.frozen_written = false,
                                Err(error) => {
                                    tracing::warn!(vmi = %vm.key(), %error, "could not clear fsFreezeStatus")
                                }
                            }
                            tracing::info!(vmi = %vm.key(), "the automatic thaw cleared fsFreezeStatus");
                        }
                    });
                    return;
                }
                drop(vm);
                if started.elapsed() > THAW_WATCH_LIMIT {
                    return;
                }
                tokio::time::sleep(THAW_POLL).await;
            }
        })
    }
}
