//! Freezing the guest filesystems through the agent, with a safety auto-thaw.
//!
//! The state machine is small: *thawed* (no record) or *frozen by us* (a
//! [`FreezeRecord`] in memory and on disk, and usually an armed timer). Every
//! transition runs under one async lock, so a freeze, an unfreeze and the
//! timer never interleave. Thaws that fail are retried in the background
//! while the handle lives, and by the next `attach` after that: the guest is
//! never knowingly left frozen.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use vmsnap_qemu::client::QgaClient;
use vmsnap_qemu::qga::commands::{
    FreezeListArgs, GuestFsfreezeFreeze, GuestFsfreezeFreezeList, GuestFsfreezeStatus, GuestFsfreezeThaw,
};
use vmsnap_qemu::qga::types::FsfreezeStatus;

use super::error::{AgentError, FreezeError};
use super::freeze_record::{FreezeRecord, Recovery};

/// The first pause before retrying a failed thaw; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What [`crate::vmm::VmHandle::freeze`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeOutcome {
    /// The agent froze this many filesystems.
    Frozen {
        /// How many.
        filesystems: i64,
    },
    /// The guest was already frozen; nothing was sent and the auto-thaw deadline
    /// already set (if any) is kept.
    AlreadyFrozen,
}

/// The result of a freeze, with its timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezeReport {
    /// What happened.
    pub outcome: FreezeOutcome,
    /// When the guest will be thawed automatically, if ever.
    pub thaw_deadline: Option<SystemTime>,
    /// How long the call took (for `Frozen`, essentially `guest-fsfreeze-freeze`).
    pub took: Duration,
}

/// The result of a thaw, with its timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThawReport {
    /// How many filesystems the agent thawed (0 if none were frozen).
    pub filesystems: i64,
    /// How long the call took.
    pub took: Duration,
}

/// Deadlines of the freeze commands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FreezeTimeouts {
    pub(crate) freeze: Duration,
    pub(crate) thaw: Duration,
    pub(crate) status: Duration,
}

/// The freeze state of one VM.
#[derive(Debug)]
pub(crate) struct Freezer {
    qga: Arc<QgaClient>,
    record_path: PathBuf,
    timeouts: FreezeTimeouts,
    // An async lock held across the agent calls on purpose: it serialises the
    // freeze state machine's transitions, it is not a cache.
    slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Present while the guest is frozen by us.
    record: Option<FreezeRecord>,
    /// A thaw failed and is being retried: the guest may still be frozen, but
    /// it is on its way out of that state, so a new freeze must not count on it.
    thaw_pending: bool,
    /// The auto-thaw (or thaw retry) timer.
    timer: Option<JoinHandle<()>>,
    /// Bumped whenever the timer is replaced or cancelled, so a stale one does nothing.
    generation: u64,
}

impl Slot {
    fn cancel_timer(&mut self) {
        self.generation += 1;
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The handle is going away (e.g. the agent shuts down): the deadline
        // stays on disk and the next `attach` re-arms it.
        self.cancel_timer();
    }
}

impl Freezer {
    pub(crate) fn new(qga: Arc<QgaClient>, record_path: PathBuf, timeouts: FreezeTimeouts) -> Arc<Self> {
        Arc::new(Self { qga, record_path, timeouts, slot: Mutex::new(Slot::default()) })
    }

    /// `guest-fsfreeze-status`.
    pub(crate) async fn status(&self) -> Result<FsfreezeStatus, AgentError> {
        Ok(self.qga.execute_with_timeout::<GuestFsfreezeStatus>((), self.timeouts.status).await?)
    }

    /// Freezes all filesystems (`mountpoints: None`) or the given ones, unless already frozen.
    pub(crate) async fn freeze(
        self: &Arc<Self>,
        mountpoints: Option<Vec<String>>,
        unfreeze_timeout: Duration,
    ) -> Result<FreezeReport, FreezeError> {
        let started = Instant::now();
        let mut slot = self.slot.lock().await;
        if slot.thaw_pending {
            return Err(FreezeError::ThawPending);
        }
        if let Some(record) = &slot.record {
            let thaw_deadline = record.deadline();
            return Ok(FreezeReport {
                outcome: FreezeOutcome::AlreadyFrozen,
                thaw_deadline,
                took: started.elapsed(),
            });
        }
        let record = FreezeRecord::new(SystemTime::now(), unfreeze_timeout, mountpoints.clone());
        record.write(&self.record_path).map_err(|source| self.record_error("write", source))?;
        let result = match mountpoints {
            None => self.qga.execute_with_timeout::<GuestFsfreezeFreeze>((), self.timeouts.freeze).await,
            Some(list) => {
                let args = FreezeListArgs { mountpoints: Some(list) };
                self.qga.execute_with_timeout::<GuestFsfreezeFreezeList>(args, self.timeouts.freeze).await
            }
        };
        let took = started.elapsed();
        let outcome = match result.map_err(AgentError::from) {
            Ok(filesystems) => FreezeOutcome::Frozen { filesystems },
            // qemu-ga thaws by itself when a freeze fails, so an error reply
            // leaves the guest as it was: frozen only if it already was.
            Err(error @ AgentError::Failed { .. }) => {
                if self.status().await.ok() != Some(FsfreezeStatus::Frozen) {
                    self.forget(&mut slot);
                    return Err(error.into());
                }
                tracing::info!(
                    "the guest was already frozen (not by this agent); adopting it with the new deadline"
                );
                FreezeOutcome::AlreadyFrozen
            }
            // No answer: the freeze may have happened. Do not leave it in
            // place. A hung agent will not answer the thaw either, so try
            // briefly and leave the rest to the background retries.
            Err(error) => {
                tracing::warn!(%error, "freeze did not complete; thawing to be safe");
                slot.record = Some(record);
                self.thaw_locked(&mut slot, self.timeouts.status).await.ok();
                return Err(error.into());
            }
        };
        let thaw_deadline = record.deadline();
        if let Some(deadline) = thaw_deadline {
            self.arm(&mut slot, deadline);
        }
        slot.record = Some(record);
        tracing::info!(?outcome, took_ms = took.as_secs_f64() * 1e3, "froze the guest filesystems");
        Ok(FreezeReport { outcome, thaw_deadline, took })
    }

    /// Thaws (always asks the agent, so it also thaws a freeze made by someone
    /// else) and cancels the auto-thaw.
    pub(crate) async fn unfreeze(self: &Arc<Self>) -> Result<ThawReport, FreezeError> {
        let started = Instant::now();
        let mut slot = self.slot.lock().await;
        // Not frozen by this runtime: thaw only a guest that says it is frozen (by someone else),
        // so that the repeated unfreezes of level-triggered controllers do not run the guest's
        // thaw hooks again and again. A thaw we owe goes straight to the agent.
        if slot.record.is_none()
            && !slot.thaw_pending
            && self.status().await.map_err(FreezeError::from)? == FsfreezeStatus::Thawed
        {
            return Ok(ThawReport { filesystems: 0, took: started.elapsed() });
        }
        let filesystems = self.thaw_locked(&mut slot, self.timeouts.thaw).await?;
        let took = started.elapsed();
        tracing::info!(filesystems, took_ms = took.as_secs_f64() * 1e3, "thawed the guest filesystems");
        Ok(ThawReport { filesystems, took })
    }

    /// Picks up the record left by an earlier agent process (see [`FreezeRecord::recovery`]).
    pub(crate) async fn recover(self: &Arc<Self>) {
        let record = match FreezeRecord::read(&self.record_path) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(path = %self.record_path.display(), %error, "cannot read the freeze record");
                return;
            }
        };
        let guest = self.status().await.ok();
        let mut slot = self.slot.lock().await;
        let recovery = record.recovery(guest, SystemTime::now());
        tracing::info!(?recovery, ?guest, "found a freeze record from an earlier agent");
        let deadline = record.deadline();
        slot.record = Some(record);
        match (recovery, deadline) {
            (Recovery::Forget, _) => self.forget(&mut slot),
            (Recovery::KeepFrozen, _) => {}
            (Recovery::ThawNow, _) => {
                if let Err(error) = self.thaw_locked(&mut slot, self.timeouts.thaw).await {
                    tracing::warn!(%error, "the overdue auto-thaw failed; retrying in the background");
                }
            }
            (Recovery::Rearm(_), Some(deadline)) => self.arm(&mut slot, deadline),
            (Recovery::Rearm(_), None) => {}
        }
    }

    /// Thaws under the lock, within `timeout`. On failure while frozen by
    /// us, the record's deadline moves to now and a retry timer is armed.
    async fn thaw_locked(self: &Arc<Self>, slot: &mut Slot, timeout: Duration) -> Result<i64, FreezeError> {
        slot.cancel_timer();
        match self.qga.execute_with_timeout::<GuestFsfreezeThaw>((), timeout).await {
            Ok(filesystems) => {
                slot.thaw_pending = false;
                FreezeRecord::remove(&self.record_path)
                    .map_err(|source| self.record_error("remove", source))?;
                slot.record = None;
                Ok(filesystems)
            }
            Err(error) => {
                if let Some(record) = &mut slot.record {
                    slot.thaw_pending = true;
                    let now = SystemTime::now();
                    record.set_deadline(now);
                    if let Err(error) = record.write(&self.record_path) {
                        tracing::warn!(%error, "could not update the freeze record");
                    }
                    self.arm(slot, now + FIRST_RETRY);
                }
                Err(AgentError::from(error).into())
            }
        }
    }

    /// Arms the timer to thaw at `deadline`, retrying with backoff while it fails.
    fn arm(self: &Arc<Self>, slot: &mut Slot, deadline: SystemTime) {
        slot.cancel_timer();
        let generation = slot.generation;
        let freezer: Weak<Self> = Arc::downgrade(self);
        let mut delay = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        slot.timer = Some(tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                tokio::time::sleep(delay).await;
                let Some(freezer) = freezer.upgrade() else { return };
                if freezer.auto_thaw(generation).await {
                    return;
                }
                delay = retry;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }));
    }

    /// The timer's thaw; true when there is nothing more to do.
    async fn auto_thaw(&self, generation: u64) -> bool {
        let mut slot = self.slot.lock().await;
        if slot.generation != generation || slot.record.is_none() {
            return true;
        }
        match self.qga.execute_with_timeout::<GuestFsfreezeThaw>((), self.timeouts.thaw).await {
            Ok(filesystems) => {
                tracing::warn!(filesystems, "thawed the guest automatically: the unfreeze deadline passed");
                // This task is the timer: detach it rather than abort it.
                drop(slot.timer.take());
                self.forget(&mut slot);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "the automatic thaw failed; retrying");
                false
            }
        }
    }

    /// Drops the record, in memory and on disk.
    fn forget(&self, slot: &mut Slot) {
        slot.record = None;
        slot.thaw_pending = false;
        if let Err(error) = FreezeRecord::remove(&self.record_path) {
            tracing::warn!(path = %self.record_path.display(), %error, "could not remove the freeze record");
        }
    }

    fn record_error(&self, what: &'static str, source: std::io::Error) -> FreezeError {
        FreezeError::Record { what, path: self.record_path.clone(), source }
    }
}

#[cfg(test)]
#[path = "freeze_tests.rs"]
mod tests;
