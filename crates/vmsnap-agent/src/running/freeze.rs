//! Freeze and thaw of a running VMI, and `fsFreezeStatus`.
//!
//! The freeze state machine itself (its persisted safety auto-thaw and thaw retries) lives in
//! the runtime ([`vmsnap_vmm::VmHandle::freeze`]); this layer adds the API side, top to bottom:
//!
//! 1. [`RunningVmi::freeze`] checks what virt-handler checks (not paused, agent connected),
//!    freezes through the runtime and writes `fsFreezeStatus: frozen` right after, in the
//!    background (outside the freeze window; a thaw waits for the write).
//! 2. [`RunningVmi::unfreeze`] thaws through the runtime and clears `fsFreezeStatus`.
//! 3. [`follow_thaws`] (one task per running VMI) clears `fsFreezeStatus` when the runtime
//!    thaws by itself: the auto-thaw at the deadline, or a background retry of a failed thaw.
//!    It follows the runtime's [`vmsnap_vmm::VmHandle::frozen`]: no timer or counter of its own.
//! 4. [`RunningVmi::adopt_freeze`] takes over after the agent re-attaches.
//!
//! Every transition runs under one async lock; the common path is one agent call and one
//! status patch, with no sleeping or polling.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Patch;
use serde_json::json;
use tokio::sync::watch;

use super::{RunningVmi, patch_params};
use vmsnap_vmm::{FreezeError, FreezeReport};

/// The API side of a VMI's freeze state.
#[derive(Default)]
pub struct FreezeSlot {
    /// Whether `fsFreezeStatus: frozen` is (believed) written.
    frozen_written: bool,
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
        // Without an answering agent and nothing frozen by the runtime there is nothing to thaw.
        if (self.handle.frozen_by_runtime().is_some() || self.agent_connected().await)
            && let Err(error) = self.handle.unfreeze().await
        {
            // The runtime keeps retrying the thaw; `follow_thaws` clears the status when it succeeds.
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
    /// status is corrected if they differ (a pending auto-thaw is followed by [`follow_thaws`]).
    pub async fn adopt_freeze(self: &Arc<Self>, stored_frozen: bool) {
        let mut slot = self.freeze.lock().await;
        let frozen = self.handle.frozen_by_runtime();
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
}

/// Clears `fsFreezeStatus` whenever the runtime has thawed the guest by itself (the auto-thaw
/// at the deadline, a background thaw retry that succeeded): runs while the VMI runs.
pub async fn follow_thaws(vm: Arc<RunningVmi>, mut frozen: watch::Receiver<bool>) {
    while frozen.changed().await.is_ok() {
        if *frozen.borrow_and_update() {
            continue;
        }
        let mut slot = vm.freeze.lock().await;
        // Under the lock the state is current: a freeze made since then left it frozen, and an
        // unfreeze already cleared the status.
        if *frozen.borrow() || !slot.frozen_written {
            continue;
        }
        match vm.write_freeze_status(false).await {
            Ok(()) => {
                slot.frozen_written = false;
                tracing::info!(vmi = %vm.key(), "the runtime thawed the guest by itself; cleared fsFreezeStatus");
            }
            Err(error) => tracing::warn!(vmi = %vm.key(), %error, "could not clear fsFreezeStatus"),
        }
    }
}
