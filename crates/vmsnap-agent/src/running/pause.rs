//! Why a running VMI's vCPUs are stopped, and the way back from a full disk.
//!
//! QEMU (7.2, with the device defaults of vmsnap's disks: `werror=enospc`,
//! `rerror=report`) stops a VM whose disk write failed with ENOSPC: it sends
//! `BLOCK_IO_ERROR` (`nospace: true`, action `stop`, the failing node), then
//! `STOP`, and `query-status` says `io-error`. `cont` retries the failed
//! requests; on a disk that is still full the same two events follow at once.
//!
//! [`PauseTracker`] turns those events into a [`PauseState`], which the VMI
//! shows as KubeVirt does (`Paused` with reason `PausedIOError`). For a pause
//! on ENOSPC the agent watches the free space of the file systems holding the
//! disks' files ([`wait_for_room`]) and resumes the VM once there is room. A
//! user's pause is never undone: the agent resumes only the I/O error pause
//! (the same episode) it was watching, under the lock user pauses take.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vmsnap_qemu::qmp::types::{RunState, StatusInfo};

use vmsnap_vmm::{ControlError, VmEvent};

/// Whether the vCPUs run, and if not, who stopped them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PauseState {
    /// The vCPUs run.
    #[default]
    Running,
    /// Stopped on request: the `pause` subresource, a paused start
    /// (`startStrategy: Paused`), or a `stop` no disk error explains. Only a
    /// user's `unpause` resumes it.
    ByUser,
    /// Stopped by QEMU because a disk request failed on the host (a full file
    /// system, or an I/O error). A user's `unpause` resumes it (QEMU retries the
    /// request), and so does the agent once a full file system has room again.
    IoError(IoErrorPause),
}

impl PauseState {
    /// Whether the vCPUs are stopped.
    pub fn is_paused(&self) -> bool {
        !matches!(self, PauseState::Running)
    }

    /// The I/O error pause, if that is why the vCPUs are stopped.
    pub fn io_error(&self) -> Option<&IoErrorPause> {
        match self {
            PauseState::IoError(pause) => Some(pause),
            _ => None,
        }
    }

    /// The state QEMU's run state implies, for a VM whose events were not seen
    /// (an agent that re-attached): `io-error` is an I/O error pause on disks
    /// not known yet (see [`PauseTracker::resync`]), any other stopped state a user's.
    pub fn from_status(status: &StatusInfo) -> Self {
        match status.status {
            _ if status.running => PauseState::Running,
            RunState::IoError => {
                PauseState::IoError(IoErrorPause { episode: 1, disks: BTreeSet::new(), no_space: false })
            }
            _ => PauseState::ByUser,
        }
    }
}

/// One stop of the VM by a disk error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoErrorPause {
    /// Counts the I/O error pauses of the VM, so that a resume decided for one
    /// pause never applies to a later one.
    pub episode: u64,
    /// The disks (volume names) whose requests failed; empty when QEMU named none the agent knows.
    pub disks: BTreeSet<String>,
    /// Whether every failure was ENOSPC: the host file system is full, and the
    /// agent resumes the VM once it has room. Other errors wait for a user.
    pub no_space: bool,
}

/// What the events since the last look changed, for the monitor to show and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing to tell.
    None,
    /// The state changed in a way that needs only the status written.
    Show,
    /// A new I/O error pause began: show it, warn, and (on ENOSPC) wait for room.
    IoErrorPaused(IoErrorPause),
    /// The running I/O error pause named more disks: warn about them.
    MoreDisks {
        /// The pause, with every disk.
        pause: IoErrorPause,
        /// The disks not named before.
        added: Vec<String>,
    },
    /// An I/O error pause ended: the vCPUs run again.
    IoErrorResumed(IoErrorPause),
}

/// What the monitor should do after the state went from `before` to `after`
/// (net of a burst of events: `cont` on a disk that is still full resumes and
/// stops the VM again within a millisecond, which is one new pause, not two changes).
pub fn reaction(before: &PauseState, after: &PauseState) -> Reaction {
    match (before, after) {
        // The pause turned out to be one of a full disk (its disks were not known when it began).
        (PauseState::IoError(old), PauseState::IoError(new))
            if old.episode == new.episode && new.no_space && !old.no_space =>
        {
            Reaction::IoErrorPaused(new.clone())
        }
        (PauseState::IoError(old), PauseState::IoError(new)) if old.episode == new.episode => {
            let added: Vec<String> = new.disks.difference(&old.disks).cloned().collect();
            if added.is_empty() { Reaction::None } else { Reaction::MoreDisks { pause: new.clone(), added } }
        }
        (_, PauseState::IoError(new)) => Reaction::IoErrorPaused(new.clone()),
        (PauseState::IoError(old), PauseState::Running) => Reaction::IoErrorResumed(old.clone()),
        _ if before == after => Reaction::None,
        _ => Reaction::Show,
    }
}

/// Follows QEMU's events to tell a user's pause from one caused by a disk error.
///
/// QEMU sends `BLOCK_IO_ERROR` (action `stop`) before the `STOP` it causes, so
/// a failure is held as pending until the next `STOP`, which it explains.
#[derive(Debug, Clone)]
pub struct PauseTracker {
    state: PauseState,
    /// Failures seen while the vCPUs ran, waiting for their `STOP`.
    pending: Option<PendingFailure>,
    episodes: u64,
}

#[derive(Debug, Clone)]
struct PendingFailure {
    disks: BTreeSet<String>,
    no_space: bool,
}

impl PauseTracker {
    /// Starts from `state` (what the VMI was last known to be).
    pub fn new(state: PauseState) -> Self {
        let episodes = state.io_error().map_or(0, |pause| pause.episode);
        PauseTracker { state, pending: None, episodes }
    }

    /// The current state.
    pub fn state(&self) -> &PauseState {
        &self.state
    }

    /// A disk request failed (`BLOCK_IO_ERROR`) on `disk` (`None`: a node the
    /// agent does not know). Only failures that stop the VM matter here: the
    /// others were passed to the guest.
    pub fn on_io_error(&mut self, disk: Option<String>, no_space: bool, stops_vm: bool) {
        if !stops_vm {
            return;
        }
        match &mut self.state {
            PauseState::IoError(pause) => {
                // A pause found by asking QEMU may not know its disks yet: the first named one says.
                pause.no_space = if pause.disks.is_empty() { no_space } else { pause.no_space && no_space };
                pause.disks.extend(disk);
            }
            PauseState::Running => {
                let pending = self
                    .pending
                    .get_or_insert_with(|| PendingFailure { disks: BTreeSet::new(), no_space: true });
                pending.disks.extend(disk);
                pending.no_space &= no_space;
            }
            // Already stopped by a user: QEMU does not stop it again, and it retries the
            // request when the user resumes, so a failure that persists comes back then.
            PauseState::ByUser => {}
        }
    }

    /// Applies a lifecycle event (all but [`VmEvent::Lagged`], which needs a
    /// [`PauseTracker::resync`]); `disk_of_key` names the disk of a block node's
    /// key. Returns whether it was a `STOP` or `RESUME`.
    pub fn on_event(&mut self, event: &VmEvent, disk_of_key: impl Fn(&str) -> String) -> bool {
        match event {
            VmEvent::Stop => self.on_stop(),
            VmEvent::Resume => self.on_resume(),
            VmEvent::IoError(error) => {
                let disk = error.disk_key.as_deref().map(disk_of_key);
                self.on_io_error(disk, error.no_space, error.stops_vm);
                return false;
            }
            VmEvent::Shutdown(_) | VmEvent::Reset(_) | VmEvent::Powerdown | VmEvent::Lagged { .. } => {
                return false;
            }
        }
        true
    }

    /// The vCPUs stopped (`STOP`).
    pub fn on_stop(&mut self) {
        if self.state.is_paused() {
            return;
        }
        self.state = match self.pending.take() {
            Some(failure) => self.next_episode(failure.disks, failure.no_space),
            None => PauseState::ByUser,
        };
    }

    /// The vCPUs resumed (`RESUME`), whoever resumed them.
    pub fn on_resume(&mut self) {
        self.pending = None;
        self.state = PauseState::Running;
    }

    /// Takes QEMU's word for the state, when events may have been lost: its run
    /// state, and the disks whose last request failed (`(name, no_space)`).
    pub fn resync(&mut self, status: &StatusInfo, failed_disks: &[(String, bool)]) {
        self.pending = None;
        let disks: BTreeSet<String> = failed_disks.iter().map(|(name, _)| name.clone()).collect();
        let no_space = !failed_disks.is_empty() && failed_disks.iter().all(|(_, no_space)| *no_space);
        self.state = match (&self.state, status.status) {
            _ if status.running => PauseState::Running,
            (PauseState::IoError(pause), RunState::IoError) => {
                let mut pause = pause.clone();
                if !failed_disks.is_empty() {
                    (pause.disks, pause.no_space) = (disks, no_space);
                }
                PauseState::IoError(pause)
            }
            (_, RunState::IoError) => self.next_episode(disks, no_space),
            _ => PauseState::ByUser,
        };
    }

    fn next_episode(&mut self, disks: BTreeSet<String>, no_space: bool) -> PauseState {
        self.episodes += 1;
        PauseState::IoError(IoErrorPause { episode: self.episodes, disks, no_space })
    }
}

/// When a VM paused on ENOSPC is resumed, and how often the space is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePolicy {
    /// The free bytes every watched file system must have: a margin, so that a
    /// guest resumed does not fill the disk again at once (and the server's 8 MiB
    /// space reserve, given back on a full disk, is not enough on its own).
    pub min_free_bytes: u64,
    /// The first check after the pause.
    pub first_check: Duration,
    /// The longest wait between two checks (each wait doubles up to it).
    pub max_check: Duration,
    /// A pause that comes back within this time after the agent resumed the VM
    /// starts with a longer first wait (doubled for each such pause in a row).
    pub relapse_window: Duration,
}

impl Default for ResumePolicy {
    fn default() -> Self {
        ResumePolicy {
            min_free_bytes: 64 << 20,
            first_check: Duration::from_secs(2),
            max_check: Duration::from_secs(10),
            relapse_window: Duration::from_secs(60),
        }
    }
}

impl ResumePolicy {
    /// The first wait of a pause that is the `relapses`th in a row to follow an
    /// automatic resume within [`ResumePolicy::relapse_window`].
    pub fn first_wait(&self, relapses: u32) -> Duration {
        self.first_check.saturating_mul(1 << relapses.min(16)).min(self.max_check)
    }

    /// The wait after `wait`.
    pub fn next_wait(&self, wait: Duration) -> Duration {
        wait.saturating_mul(2).min(self.max_check)
    }
}

/// The free space of the file system holding one of a VM's disk files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The directory holding the file.
    pub dir: PathBuf,
    /// The bytes an unprivileged write can still use there (`None`: could not be read).
    pub free: Option<u64>,
}

/// Reads the free bytes of the file system holding a directory: [`free_bytes`]
/// (statvfs), or what a test makes it say.
pub type FreeBytes = Arc<dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync>;

/// How the agent watches the disks of a VM paused on ENOSPC.
#[derive(Clone)]
pub struct SpaceWatch {
    /// When to check, and how much room is enough.
    pub policy: ResumePolicy,
    /// How to measure.
    pub free_bytes: FreeBytes,
}

impl Default for SpaceWatch {
    fn default() -> Self {
        SpaceWatch { policy: ResumePolicy::default(), free_bytes: Arc::new(free_bytes) }
    }
}

impl std::fmt::Debug for SpaceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceWatch").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Room {
    /// Measures the room for `file` with `free_bytes`.
    pub fn of(file: &Path, free_bytes: &FreeBytes) -> Room {
        let dir = existing_dir(file);
        let free = match free_bytes(&dir) {
            Ok(free) => Some(free),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read the free space");
                None
            }
        };
        Room { dir, free }
    }
}

/// The directory holding `file`, or its nearest ancestor that exists (a layer may be gone since).
fn existing_dir(file: &Path) -> PathBuf {
    let mut dir = file.parent().unwrap_or(Path::new("/"));
    while !dir.exists() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => break,
        }
    }
    dir.to_owned()
}

/// The bytes an unprivileged write could still use on the file system holding `dir` (statvfs).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir)?;
    Ok(stats.blocks_available().saturating_mul(stats.fragment_size()))
}

/// Whether every file system has [`ResumePolicy::min_free_bytes`] free.
pub fn has_room(rooms: &[Room], policy: &ResumePolicy) -> bool {
    !rooms.is_empty() && rooms.iter().all(|room| room.free.is_some_and(|free| free >= policy.min_free_bytes))
}

/// Waits, checking with `measure` after `first_wait` and then less and less
/// often (up to [`ResumePolicy::max_check`]), until every file system has room;
/// returns what the last check measured. `measure` returns `None` when there
/// is nothing to wait for any more (the pause ended), and so does this.
pub async fn wait_for_room<F, Fut>(
    policy: &ResumePolicy,
    first_wait: Duration,
    mut measure: F,
) -> Option<Vec<Room>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Vec<Room>>>,
{
    let mut wait = first_wait;
    loop {
        tokio::time::sleep(wait).await;
        let rooms = measure().await?;
        if has_room(&rooms, policy) {
            return Some(rooms);
        }
        wait = policy.next_wait(wait);
    }
}

fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    if mib < 10.0 { format!("{mib:.1} MiB") } else { format!("{mib:.0} MiB") }
}

fn volumes_text(disks: &BTreeSet<String>) -> String {
    if disks.is_empty() {
        "(unknown)".to_owned()
    } else {
        disks.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn rooms_text(rooms: &[Room]) -> String {
    let mut seen = BTreeSet::new();
    rooms
        .iter()
        .filter(|room| seen.insert(room.dir.clone()))
        .map(|room| match room.free {
            Some(free) => format!("{} has {} free", room.dir.display(), mib(free)),
            None => format!("{} (free space unknown)", room.dir.display()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Warning event of an I/O error pause: KubeVirt's text (virt-launcher's
/// `IOerror` event), then where the disk is full and what to do.
pub fn paused_note(pause: &IoErrorPause, rooms: &[Room], policy: &ResumePolicy) -> String {
    let volumes = volumes_text(&pause.disks);
    if !pause.no_space {
        return format!(
            "VM Paused due to IO error at the volume: {volumes}. Unpause the VM once its storage works again."
        );
    }
    format!(
        "VM Paused due to not enough space on volume: {volumes}. The data directory is full: {}. \
         Free space there (delete snapshots, VMs or disks you no longer need, or other files on that \
         file system); the VM resumes by itself once {} are free.",
        rooms_text(rooms),
        mib(policy.min_free_bytes)
    )
}

/// The Normal event of an automatic resume.
pub fn resumed_note(pause: &IoErrorPause, rooms: &[Room]) -> String {
    format!(
        "The data directory has room again ({}): resumed the VM paused because volume {} was out of space.",
        rooms_text(rooms),
        volumes_text(&pause.disks)
    )
}

/// Why a user's pause or unpause failed.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// `pause` of a VMI whose vCPUs are stopped already.
    #[error("VMI is already paused")]
    AlreadyPaused,
    /// `unpause` of a VMI whose vCPUs run.
    #[error("VMI is not paused")]
    NotPaused,
    /// QEMU refused or did not answer.
    #[error(transparent)]
    Qemu(#[from] ControlError),
}

#[cfg(test)]
#[path = "pause_tests.rs"]
mod tests;
