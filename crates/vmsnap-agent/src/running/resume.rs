//! The way out of a pause: a user's `pause` and `unpause`, and the agent's own
//! resume of a VM that QEMU stopped on a full disk, once the disk has room.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::events::EventType;
use tokio::task::JoinHandle;

use super::RunningVmi;
use super::pause::{IoErrorPause, PauseError, Room, paused_note, resumed_note, wait_for_room};
use vmsnap_vmm::short_name;

/// The reason of the events about disk errors (virt-launcher's).
pub const IO_ERROR_REASON: &str = "IOerror";

/// The reason of the event of an automatic resume.
pub const RESUMED_REASON: &str = "Resumed";

/// How long a pause or unpause waits for the event monitor to show its effect.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// The agent's resume of one I/O error pause.
#[derive(Default)]
pub struct ResumerSlot {
    /// The task waiting for room (and retrying its Warning event).
    task: Option<JoinHandle<()>>,
    /// The last automatic resume: its episode, when, and the event to record once QEMU confirms it.
    last_resume: Option<AutoResume>,
    /// How many pauses in a row came back soon after an automatic resume.
    relapses: u32,
}

struct AutoResume {
    episode: u64,
    at: Instant,
    note: String,
}

impl Drop for ResumerSlot {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl RunningVmi {
    /// Pauses the vCPUs for a user (`pause`), and returns once the status says so.
    pub async fn user_pause(&self) -> Result<(), PauseError> {
        let _guard = self.pause_lock.lock().await;
        if self.facts().pause.is_paused() {
            return Err(PauseError::AlreadyPaused);
        }
        let seen = *self.pause_applied.borrow();
        self.handle.pause().await?;
        self.await_applied(seen, "pause").await;
        Ok(())
    }

    /// Resumes the vCPUs for a user (`unpause`), whoever paused them, and
    /// returns once the status says so. On a disk that is still full QEMU
    /// stops the VM again at once: it stays shown paused by an I/O error.
    pub async fn user_unpause(&self) -> Result<(), PauseError> {
        let _guard = self.pause_lock.lock().await;
        if !self.facts().pause.is_paused() {
            return Err(PauseError::NotPaused);
        }
        let seen = *self.pause_applied.borrow();
        self.handle.resume().await?;
        self.await_applied(seen, "unpause").await;
        Ok(())
    }

    /// Waits until the event monitor has applied a `STOP` or `RESUME` after `seen`.
    /// QEMU sends the event before its answer, so this is a matter of milliseconds.
    async fn await_applied(&self, seen: u64, action: &str) {
        let mut applied = self.pause_applied.subscribe();
        if tokio::time::timeout(APPLY_WAIT, applied.wait_for(|count| *count > seen)).await.is_err() {
            tracing::warn!(vmi = %self.key(), action, "QEMU's event did not come; the status follows when it does");
        }
    }

    /// The volume name of a disk key from a block node name.
    pub(super) fn disk_of_key(&self, key: &str) -> String {
        let volumes = self.volumes();
        volumes
            .iter()
            .find(|v| short_name(v.name()) == key)
            .map_or_else(|| key.to_owned(), |v| v.name().to_owned())
    }

    /// The free space of the file systems holding the files the disks write to
    /// (every disk's when `disks` is empty).
    async fn rooms_of(&self, disks: &std::collections::BTreeSet<String>) -> Vec<Room> {
        let volumes = self.volumes();
        let names: Vec<String> = if disks.is_empty() {
            volumes.iter().map(|v| v.name().to_owned()).collect()
        } else {
            disks.iter().cloned().collect()
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for name in names {
            // The active layer: after a snapshot it is no longer the file the disk was attached with.
            let file = match self.handle.active_file(&name).await {
                Ok(file) => Some(file),
                Err(_) => volumes.iter().find(|v| v.name() == name).map(|v| v.volume.disk.path.clone()),
            };
            files.extend(file);
        }
        let free_bytes = self.space.free_bytes.clone();
        tokio::task::spawn_blocking(move || files.iter().map(|file| Room::of(file, &free_bytes)).collect())
            .await
            .unwrap_or_default()
    }

    /// Starts (in place of any earlier one) the task that reports `pause` and,
    /// on ENOSPC, resumes the VM once its disks have room.
    pub(super) fn start_resumer(self: &Arc<Self>, pause: IoErrorPause) {
        let mut slot = self.resumer.lock().unwrap_or_else(|p| p.into_inner());
        let relapse = slot
            .last_resume
            .as_ref()
            .is_some_and(|last| last.at.elapsed() < self.space.policy.relapse_window);
        slot.relapses = if relapse { slot.relapses + 1 } else { 0 };
        let first_wait = self.space.policy.first_wait(slot.relapses);
        if let Some(task) = slot.task.replace(tokio::spawn(resume_when_room(self.clone(), pause, first_wait)))
        {
            task.abort();
        }
    }

    /// Stops waiting for room (the pause ended, or the VMI goes).
    pub(super) fn stop_resumer(&self) {
        let mut slot = self.resumer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = slot.task.take() {
            task.abort();
        }
    }

    /// The note of the event to record for the end of `pause`, if the agent resumed it.
    pub(super) fn take_auto_resume_note(&self, pause: &IoErrorPause) -> Option<String> {
        let mut slot = self.resumer.lock().unwrap_or_else(|p| p.into_inner());
        let last = slot.last_resume.as_mut().filter(|last| last.episode == pause.episode)?;
        Some(std::mem::take(&mut last.note)).filter(|note| !note.is_empty())
    }

    /// Warns about disks that joined a running I/O error pause.
    pub(super) fn warn_more_disks(self: &Arc<Self>, pause: IoErrorPause) {
        let vm = self.clone();
        tokio::spawn(async move {
            let rooms = vm.rooms_of(&pause.disks).await;
            let note = paused_note(&pause, &rooms, &vm.space.policy);
            record_until_taken(vm, &pause, note).await;
        });
    }
}

/// Reports `pause` (a Warning event, retried until the API takes it: it may
/// be on the full disk) and, when it is ENOSPC, waits for room and resumes the VM.
async fn resume_when_room(vm: Arc<RunningVmi>, pause: IoErrorPause, first_wait: Duration) {
    let policy = vm.space.policy;
    let mut warning = None;
    if pause.disks.is_empty() {
        // QEMU named no disk (an agent that re-attached could not ask which): the status shows the
        // pause, and the event waits for the disk to be known, which comes as a new reaction.
        tracing::warn!(vmi = %vm.key(), "QEMU stopped the VM on a disk error; the disk is not known yet");
    } else {
        let rooms = vm.rooms_of(&pause.disks).await;
        let note = paused_note(&pause, &rooms, &policy);
        tracing::warn!(vmi = %vm.key(), "{note}");
        warning = Some(tokio::spawn(record_until_taken(vm.clone(), &pause, note)));
    }
    if !pause.no_space {
        return;
    }
    let episode = pause.episode;
    let mut wait = first_wait;
    loop {
        let measured = wait_for_room(&policy, wait, || {
            let vm = vm.clone();
            async move {
                // The pause this task was started for, as long as it lasts and is one of a full disk.
                let current =
                    vm.facts().pause.io_error().filter(|p| p.episode == episode && p.no_space).cloned()?;
                Some(vm.rooms_of(&current.disks).await)
            }
        })
        .await;
        let Some(rooms) = measured else { return };
        let guard = vm.pause_lock.lock().await;
        // A user may have resumed it meanwhile (and paused it again): that is not this pause.
        let Some(current) = vm.facts().pause.io_error().filter(|p| p.episode == episode).cloned() else {
            return;
        };
        if let Some(warning) = warning.take() {
            // The Normal event must not come before the Warning one; the API has room by now.
            let _ = tokio::time::timeout(policy.max_check, warning).await;
        }
        {
            let mut slot = vm.resumer.lock().unwrap_or_else(|p| p.into_inner());
            let note = resumed_note(&current, &rooms);
            slot.last_resume = Some(AutoResume { episode, at: Instant::now(), note });
        }
        match vm.handle.resume().await {
            Ok(()) => {
                tracing::info!(vmi = %vm.key(), ?rooms, "the data disk has room again: resumed the VM");
                // The monitor takes it from here: RESUME ends this pause, or a new one begins
                // at once if the guest's retried writes still do not fit.
                return;
            }
            Err(error) => {
                drop(guard);
                let note =
                    format!("Could not resume the VM after its data directory got room again: {error}");
                tracing::warn!(vmi = %vm.key(), "{note}");
                vm.record_event(EventType::Warning, IO_ERROR_REASON, "Resume", &note).await;
                wait = policy.max_check;
            }
        }
    }
}

/// The most attempts at recording the Warning event of a pause.
const WARNING_ATTEMPTS: u32 = 12;

/// Records the Warning event of a pause, retrying while the API cannot store it.
/// Each set of volumes has its own event; a pause of the same ones again counts in its series.
fn record_until_taken(
    vm: Arc<RunningVmi>,
    pause: &IoErrorPause,
    note: String,
) -> impl Future<Output = ()> + Send + 'static {
    let volumes: Vec<String> = pause.disks.iter().cloned().collect();
    let action = format!("{IO_ERROR_REASON} {}", volumes.join(","));
    record_with_retries(vm, action, note)
}

async fn record_with_retries(vm: Arc<RunningVmi>, action: String, note: String) {
    let mut wait = Duration::from_millis(500);
    for _ in 0..WARNING_ATTEMPTS {
        if vm.record_event(EventType::Warning, IO_ERROR_REASON, &action, &note).await {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(vm.space.policy.max_check);
    }
}
