//! Freezing the guest filesystems through the agent, with a safety auto-thaw.
//!
//! The state machine is small: *thawed* (no record), *frozen by us* (a
//! [`FreezeRecord`] in memory and on disk, and usually an armed timer), or
//! *freeze unanswered* (the caller stopped waiting for a `guest-fsfreeze-freeze`
//! whose freeze hooks still run in the guest). Every transition runs under one
//! async lock, so a freeze, an unfreeze and the timer never interleave.
//!
//! An unanswered freeze is never repeated (a second request would queue in the
//! guest agent and freeze the guest again after the first is undone), and when
//! its answer finally comes nobody counts on that freeze any more: the guest is
//! thawed at once. So a guest is never left frozen for a snapshot that is over.
//! Thaws that fail are retried in the background while the handle lives, and by
//! the next `attach` after that: the guest is never knowingly left frozen.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use vmsnap_qemu::client::QgaClient;
use vmsnap_qemu::qga::commands::{
    FreezeListArgs, GuestFsfreezeFreeze, GuestFsfreezeFreezeList, GuestFsfreezeStatus, GuestFsfreezeThaw,
};
use vmsnap_qemu::qga::types::FsfreezeStatus;

use super::error::{FreezeError, GuestAgentError};
use super::freeze_record::{FreezeRecord, Recovery};

/// The first pause before retrying a failed thaw; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What [`crate::VmHandle::freeze`] did.
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
    /// How long a caller waits for `guest-fsfreeze-freeze` (at most; never longer than the
    /// freeze's own auto-thaw timeout).
    pub(crate) freeze: Duration,
    /// How long the agent's answer to a freeze is awaited in the background after the caller gave up.
    pub(crate) late_answer: Duration,
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
    /// Whether the guest is frozen by this runtime (a record is held), published on every
    /// change, including the auto-thaw and a background thaw retry that succeeds.
    frozen: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Present while the guest is frozen by us.
    record: Option<FreezeRecord>,
    /// A thaw failed and is being retried: the guest may still be frozen, but
    /// it is on its way out of that state, so a new freeze must not count on it.
    thaw_pending: bool,
    /// Since when a freeze the caller stopped waiting for is unanswered; its answer is followed
    /// by a thaw at once.
    unanswered: Option<Instant>,
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
        let frozen = watch::channel(false).0;
        Arc::new(Self { qga, record_path, timeouts, slot: Mutex::new(Slot::default()), frozen })
    }

    /// Follows whether the guest is frozen by this runtime: true from a freeze until the thaw,
    /// whoever makes it (an unfreeze, the auto-thaw, a background retry).
    pub(crate) fn frozen(&self) -> watch::Receiver<bool> {
        self.frozen.subscribe()
    }

    /// The one place the record changes in memory, so that [`Freezer::frozen`] follows it.
    fn set_record(&self, slot: &mut Slot, record: Option<FreezeRecord>) {
        self.frozen.send_replace(record.is_some());
        slot.record = record;
    }

    /// `guest-fsfreeze-status`.
    pub(crate) async fn status(&self) -> Result<FsfreezeStatus, GuestAgentError> {
        Ok(self.qga.execute_with_timeout::<GuestFsfreezeStatus>((), self.timeouts.status).await?)
    }

    /// Freezes all filesystems (`mountpoints: None`) or the given ones, unless already frozen.
    /// Waits for the agent at most [`FreezeTimeouts::freeze`], and at most four fifths of
    /// `unfreeze_timeout` (when set, it is the snapshot's deadline): the caller learns why before
    /// its deadline passes, and a freeze answered later would only be thawed again.
    pub(crate) async fn freeze(
        self: &Arc<Self>,
        mountpoints: Option<Vec<String>>,
        unfreeze_timeout: Duration,
    ) -> Result<FreezeReport, FreezeError> {
        let started = Instant::now();
        let mut slot = self.slot.lock().await;
        if let Some(since) = slot.unanswered {
            return Err(FreezeError::PreviousFreezeUnanswered { since: since.elapsed() });
        }
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
        // The call runs on its own: if the caller stops waiting, its answer is still read, and
        // the freeze it reports undone.
        let mut call = tokio::spawn(freeze_call(self.qga.clone(), mountpoints, self.timeouts.late_answer));
        let wait = match unfreeze_timeout.is_zero() {
            true => self.timeouts.freeze,
            false => self.timeouts.freeze.min(unfreeze_timeout * 4 / 5),
        };
        let result = match tokio::time::timeout(wait, &mut call).await {
            Ok(joined) => joined.unwrap_or_else(|_| Err(interrupted())),
            Err(_) => {
                tracing::warn!(
                    waited_s = wait.as_secs_f64(),
                    "the guest agent has not answered the freeze (a freeze hook may hang); it is thawed when it does"
                );
                slot.unanswered = Some(started);
                self.set_record(&mut slot, Some(record));
                let freezer = Arc::downgrade(self);
                tokio::spawn(async move {
                    let answer = call.await.unwrap_or_else(|_| Err(interrupted()));
                    if let Some(freezer) = freezer.upgrade() {
                        freezer.late_answer(answer).await;
                    }
                });
                return Err(FreezeError::Unanswered { waited: wait });
            }
        };
        let took = started.elapsed();
        let outcome = match result {
            Ok(filesystems) => FreezeOutcome::Frozen { filesystems },
            // qemu-ga thaws by itself when a freeze fails, so an error reply
            // leaves the guest as it was: frozen only if it already was.
            Err(error @ GuestAgentError::Failed { .. }) => {
                if self.status().await.ok() != Some(FsfreezeStatus::Frozen) {
                    self.forget(&mut slot);
                    return Err(error.into());
                }
                tracing::info!(
                    "the guest was already frozen (not by this agent); adopting it with the new deadline"
                );
                FreezeOutcome::AlreadyFrozen
            }
            // No answer within the late-answer patience either, or the connection failed: the
            // freeze may have happened. Do not leave it in place. A hung agent will not answer
            // the thaw either, so try briefly and leave the rest to the background retries.
            Err(error) => {
                tracing::warn!(%error, "freeze did not complete; thawing to be safe");
                self.set_record(&mut slot, Some(record));
                self.thaw_locked(&mut slot, self.timeouts.status).await.ok();
                return Err(error.into());
            }
        };
        let thaw_deadline = record.deadline();
        if let Some(deadline) = thaw_deadline {
            self.arm(&mut slot, deadline);
        }
        self.set_record(&mut slot, Some(record));
        tracing::info!(?outcome, took_ms = took.as_secs_f64() * 1e3, "froze the guest filesystems");
        Ok(FreezeReport { outcome, thaw_deadline, took })
    }

    /// The answer to a freeze whose caller gave up: nobody counts on that freeze, so a guest it
    /// froze is thawed at once.
    async fn late_answer(self: &Arc<Self>, answer: Result<i64, GuestAgentError>) {
        let mut slot = self.slot.lock().await;
        let waited = slot.unanswered.take().map(|since| since.elapsed()).unwrap_or_default();
        match answer {
            Ok(filesystems) => {
                tracing::warn!(
                    filesystems,
                    after_s = waited.as_secs_f64(),
                    "the guest agent froze the guest after the caller gave up; thawing it at once"
                );
                if let Err(error) = self.thaw_locked(&mut slot, self.timeouts.thaw).await {
                    tracing::warn!(%error, "the thaw after a late freeze failed; retrying in the background");
                }
            }
            // qemu-ga thawed by itself when the freeze failed.
            Err(GuestAgentError::Failed { .. }) => self.forget(&mut slot),
            Err(error) => {
                tracing::warn!(%error, "the late freeze never completed; thawing to be safe");
                if let Err(error) = self.thaw_locked(&mut slot, self.timeouts.thaw).await {
                    tracing::warn!(%error, "the thaw failed; retrying in the background");
                }
            }
        }
    }

    /// Thaws (always asks the agent, so it also thaws a freeze made by someone
    /// else) and cancels the auto-thaw.
    pub(crate) async fn unfreeze(self: &Arc<Self>) -> Result<ThawReport, FreezeError> {
        let started = Instant::now();
        let mut slot = self.slot.lock().await;
        // A freeze still unanswered is thawed as soon as it is answered; asking now would only
        // queue behind it.
        if slot.unanswered.is_some() {
            tracing::info!("unfreeze while the freeze is unanswered: the guest is thawed when it is");
            return Ok(ThawReport { filesystems: 0, took: started.elapsed() });
        }
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
        self.set_record(&mut slot, Some(record));
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
                self.set_record(slot, None);
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
                Err(GuestAgentError::from(error).into())
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
        self.set_record(slot, None);
        slot.thaw_pending = false;
        if let Err(error) = FreezeRecord::remove(&self.record_path) {
            tracing::warn!(path = %self.record_path.display(), %error, "could not remove the freeze record");
        }
    }

    /// Whether a freeze the caller gave up on is still unanswered.
    #[cfg(test)]
    pub(crate) async fn unanswered(&self) -> bool {
        self.slot.lock().await.unanswered.is_some()
    }

    fn record_error(&self, what: &'static str, source: std::io::Error) -> FreezeError {
        FreezeError::Record { what, path: self.record_path.clone(), source }
    }
}

fn interrupted() -> GuestAgentError {
    GuestAgentError::Interrupted { command: "guest-fsfreeze-freeze".into() }
}

/// `guest-fsfreeze-freeze`, or `guest-fsfreeze-freeze-list` for `mountpoints`.
async fn freeze_call(
    qga: Arc<QgaClient>,
    mountpoints: Option<Vec<String>>,
    timeout: Duration,
) -> Result<i64, GuestAgentError> {
    let result = match mountpoints {
        None => qga.execute_with_timeout::<GuestFsfreezeFreeze>((), timeout).await,
        Some(list) => {
            let args = FreezeListArgs { mountpoints: Some(list) };
            qga.execute_with_timeout::<GuestFsfreezeFreezeList>(args, timeout).await
        }
    };
    result.map_err(GuestAgentError::from)
}

#[cfg(test)]
#[path = "freeze_tests.rs"]
mod tests;
