//! [`VmHandle`]: the live view of one QEMU process, and its lifecycle.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vmsnap_qemu::client::{QgaClient, QgaOptions, QmpClient};
use vmsnap_qemu::qmp::commands::{Cont, QueryBlock, QueryStatus, Quit, Stop, SystemPowerdown};
use vmsnap_qemu::qmp::types::{BlockDeviceIoStatus, StatusInfo};

use super::error::{ControlError, FreezeError};
use super::events::{Observed, ShutdownInfo, VmEvents, follow};
use super::freeze::{FreezeReport, FreezeTimeouts, Freezer, ThawReport};
use super::launch::{LaunchRecord, Timeouts};
use super::paths::RuntimePaths;
use super::process::{is_alive, signal, wait_gone};
use super::spec::LaunchSpec;
use crate::FsfreezeStatus;
use crate::error::GuestAgentError;

/// A running VM: its QEMU process, monitor connection and guest agent channel.
///
/// Clones share one connection. QEMU accepts one monitor client at a time, so
/// there should be one handle (and its clones) per VM in the agent. Dropping
/// the last clone closes the connections and stops the handle's background
/// tasks (the auto-thaw timer among them); QEMU keeps running, and
/// [`crate::Vmm::attach`] picks it up again.
#[derive(Debug, Clone)]
pub struct VmHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    paths: RuntimePaths,
    record: LaunchRecord,
    pid: i32,
    qmp: QmpClient,
    qga: Arc<QgaClient>,
    freezer: Arc<Freezer>,
    timeouts: Timeouts,
    observed: watch::Receiver<Observed>,
    follower: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// How QEMU ended, as far as the runtime saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    /// The last `SHUTDOWN` event seen, if any (none when QEMU was killed by a signal).
    pub shutdown: Option<ShutdownInfo>,
}

/// How [`VmHandle::kill`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillReport {
    /// Whether QEMU ignored `quit` and had to be killed with SIGKILL.
    pub forced: bool,
    /// How long it took for the process to be gone.
    pub took: Duration,
}

impl VmHandle {
    /// A handle over an already connected QMP client: [`crate::Vmm`] makes these; hosts' tests
    /// make them over `vmsnap-qemu`'s fake QEMU.
    pub fn new(
        paths: RuntimePaths,
        record: LaunchRecord,
        pid: i32,
        qmp: QmpClient,
        timeouts: Timeouts,
    ) -> Self {
        let options = QgaOptions { command_timeout: timeouts.agent_command, ..QgaOptions::default() };
        let qga = Arc::new(QgaClient::new(paths.qga_socket(), options));
        let freeze_timeouts = FreezeTimeouts {
            freeze: timeouts.freeze,
            late_answer: timeouts.freeze_late_answer,
            thaw: timeouts.thaw,
            status: timeouts.guest_agent_ping,
        };
        let freezer = Freezer::new(qga.clone(), paths.freeze_record(), freeze_timeouts);
        let (observer, observed) = watch::channel(Observed::default());
        let follower = tokio::spawn(follow(VmEvents::new(qmp.events()), observer));
        Self {
            inner: Arc::new(Inner { paths, record, pid, qmp, qga, freezer, timeouts, observed, follower }),
        }
    }

    /// QEMU's pid.
    pub fn pid(&self) -> i32 {
        self.inner.pid
    }

    /// The spec the VM was launched with (MACs filled in).
    pub fn spec(&self) -> &LaunchSpec {
        &self.inner.record.spec
    }

    /// The launch record (spec, accelerator, argv).
    pub fn record(&self) -> &LaunchRecord {
        &self.inner.record
    }

    /// The runtime directory layout.
    pub fn paths(&self) -> &RuntimePaths {
        &self.inner.paths
    }

    /// The runtime directory.
    pub fn runtime_dir(&self) -> &Path {
        self.inner.paths.dir()
    }

    /// The serial console log.
    pub fn console_log_path(&self) -> std::path::PathBuf {
        self.inner.paths.console_log()
    }

    /// The interactive serial console socket (one client at a time).
    pub fn console_socket_path(&self) -> std::path::PathBuf {
        self.inner.paths.console_socket()
    }

    /// Whether the QEMU process still exists.
    pub fn is_running(&self) -> bool {
        is_alive(self.inner.pid)
    }

    /// Lifecycle events from now on (subscribe before acting, or the event may come and go first).
    pub fn events(&self) -> VmEvents {
        VmEvents::new(self.inner.qmp.events())
    }

    /// `query-status`: whether the vCPUs run, and QEMU's run state.
    pub async fn status(&self) -> Result<StatusInfo, ControlError> {
        Ok(self.inner.qmp.execute::<QueryStatus>(()).await?)
    }

    /// Pauses the vCPUs (`stop`).
    pub async fn pause(&self) -> Result<(), ControlError> {
        self.inner.qmp.execute::<Stop>(()).await?;
        Ok(())
    }

    /// Resumes the vCPUs (`cont`).
    pub async fn resume(&self) -> Result<(), ControlError> {
        self.inner.qmp.execute::<Cont>(()).await?;
        Ok(())
    }

    /// The disks whose last request failed on the host, as `query-block`
    /// reports them (`io-status` other than `ok`), each with whether the host
    /// was out of space (`nospace`). For a VM stopped in run state `io-error`
    /// whose `BLOCK_IO_ERROR` events were not seen (an agent that re-attached).
    pub async fn disks_with_io_errors(&self) -> Result<Vec<(String, bool)>, ControlError> {
        let backends = self.inner.qmp.execute::<QueryBlock>(()).await?;
        let disks = backends.into_iter().filter_map(|backend| {
            let disk = backend.qdev.as_deref().and_then(super::names::disk_of_qdev)?.to_owned();
            match backend.io_status? {
                BlockDeviceIoStatus::Ok => None,
                status => Some((disk, status == BlockDeviceIoStatus::Nospace)),
            }
        });
        Ok(disks.collect())
    }

    /// Presses the ACPI power button; the guest decides whether and how fast to
    /// power off. Follow with [`VmHandle::wait_exit`].
    pub async fn powerdown(&self) -> Result<(), ControlError> {
        self.inner.qmp.execute::<SystemPowerdown>(()).await?;
        Ok(())
    }

    /// Stops QEMU now: `quit`, then SIGKILL if it is still there after the
    /// grace period. Removes the runtime files that only make sense while it runs.
    pub async fn kill(&self) -> Result<KillReport, ControlError> {
        let started = Instant::now();
        let pid = self.inner.pid;
        let grace = self.inner.timeouts.kill_grace;
        if let Err(error) = self.inner.qmp.execute_with_timeout::<Quit>((), grace).await {
            tracing::debug!(%error, "quit failed; QEMU will be killed");
        }
        let mut forced = false;
        if !wait_gone(pid, grace).await {
            forced = true;
            tracing::warn!(pid, "QEMU ignored quit; sending SIGKILL");
            signal(pid, Signal::SIGKILL).map_err(|source| ControlError::Signal { pid, source })?;
            if !wait_gone(pid, grace).await {
                return Err(ControlError::StillRunning { pid, after: grace * 2 });
            }
        }
        self.inner.paths.remove_stale();
        Ok(KillReport { forced, took: started.elapsed() })
    }

    /// Waits up to `timeout` for QEMU to exit by itself (guest power-off,
    /// `quit` from elsewhere), then removes the runtime files that only make sense while it runs.
    pub async fn wait_exit(&self, timeout: Duration) -> Result<ExitReport, ControlError> {
        let pid = self.inner.pid;
        let exited = tokio::time::timeout(timeout, async {
            // The monitor closes as QEMU exits; the pid is the final word.
            self.inner.qmp.closed().await;
            wait_gone(pid, timeout).await
        })
        .await
        .is_ok();
        if !exited {
            return Err(ControlError::StillRunning { pid, after: timeout });
        }
        // The follower drains the events that came before the close, then says it is done.
        let mut observed = self.inner.observed.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), observed.wait_for(|o| o.done)).await;
        let shutdown = observed.borrow().shutdown;
        self.inner.paths.remove_stale();
        Ok(ExitReport { shutdown })
    }

    /// Freezes every guest filesystem (`guest-fsfreeze-freeze`) unless the
    /// guest is already frozen, and arms an automatic thaw after
    /// `unfreeze_timeout` (zero: none). The deadline is persisted, so it holds
    /// across agent restarts. A freeze that times out is undone.
    pub async fn freeze(&self, unfreeze_timeout: Duration) -> Result<FreezeReport, FreezeError> {
        self.inner.freezer.freeze(None, unfreeze_timeout).await
    }

    /// [`VmHandle::freeze`] limited to the given guest mountpoints (`guest-fsfreeze-freeze-list`).
    pub async fn freeze_mountpoints(
        &self,
        mountpoints: &[String],
        unfreeze_timeout: Duration,
    ) -> Result<FreezeReport, FreezeError> {
        self.inner.freezer.freeze(Some(mountpoints.to_vec()), unfreeze_timeout).await
    }

    /// Thaws the guest filesystems and cancels the auto-thaw; harmless when nothing is frozen.
    pub async fn unfreeze(&self) -> Result<ThawReport, FreezeError> {
        self.inner.freezer.unfreeze().await
    }

    /// `guest-fsfreeze-status`, bounded by the ping timeout.
    pub async fn freeze_status(&self) -> Result<FsfreezeStatus, GuestAgentError> {
        self.inner.freezer.status().await
    }

    /// Follows whether this runtime has the guest frozen: it turns false on every thaw, also the
    /// ones nobody asked for (the auto-thaw at the deadline, a background thaw retry), which is
    /// how a host clears what it reported. After a re-attach it starts from the freeze record
    /// the attach recovered; [`VmHandle::frozen_by_runtime`] reads the persisted record itself.
    pub fn frozen(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.freezer.frozen()
    }

    /// Whether this runtime has the guest frozen (or is still thawing it after
    /// a failed thaw), from the persisted freeze record; `Some(deadline)` is
    /// the auto-thaw deadline, `Some(None)` a freeze without one. A file read,
    /// no agent call.
    pub fn frozen_by_runtime(&self) -> Option<Option<std::time::SystemTime>> {
        match super::freeze_record::FreezeRecord::read(&self.inner.paths.freeze_record()) {
            Ok(Some(record)) => Some(record.deadline()),
            Ok(None) => None,
            // Unreadable: the runtime treats it as overdue and thaws, so it is on its way out.
            Err(_) => Some(Some(std::time::SystemTime::now())),
        }
    }

    pub(crate) async fn recover_freeze(&self) {
        self.inner.freezer.recover().await;
    }

    pub(crate) fn qmp(&self) -> &QmpClient {
        &self.inner.qmp
    }

    pub(crate) fn qga(&self) -> &Arc<QgaClient> {
        &self.inner.qga
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.inner.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<VmHandle>();
        shareable::<crate::Vmm>();
        shareable::<crate::GuestAgentHealth>();
    }
}
