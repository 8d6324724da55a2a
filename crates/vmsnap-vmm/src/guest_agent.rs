//! Guest agent commands on a [`VmHandle`].

use std::time::{Duration, Instant};

use serde_json::json;
use vmsnap_qemu::client::ExecOutput;
use vmsnap_qemu::qga::commands::{
    ExecArgs, GuestGetFsinfo, GuestGetOsinfo, GuestNetworkGetInterfaces, GuestPing,
};
use vmsnap_qemu::qga::types::{GuestFilesystemInfo, GuestNetworkInterface, GuestOsInfo};

use super::error::GuestAgentError;
use super::guest_agent_health::{GuestAgentHealth, spawn_guest_agent_health};
use super::handle::VmHandle;

/// How long `guest-shutdown` may take to report an error before it counts as accepted.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

impl VmHandle {
    /// `guest-ping`, bounded by the short ping timeout: never hangs the caller.
    pub async fn guest_agent_ping(&self) -> Result<(), GuestAgentError> {
        self.qga().execute_with_timeout::<GuestPing>((), self.timeouts().guest_agent_ping).await?;
        Ok(())
    }

    /// Pings until the agent answers or `timeout` passes (e.g. while the guest
    /// boots); returns how long it took.
    pub async fn wait_for_agent(&self, timeout: Duration) -> Result<Duration, GuestAgentError> {
        let started = Instant::now();
        loop {
            match self.guest_agent_ping().await {
                Ok(()) => return Ok(started.elapsed()),
                Err(error) if started.elapsed() >= timeout => return Err(error),
                Err(error) => {
                    tracing::trace!(%error, "guest agent not answering yet");
                    // A refused connection fails at once: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// `guest-get-osinfo`.
    pub async fn guest_os_info(&self) -> Result<GuestOsInfo, GuestAgentError> {
        Ok(self.qga().execute_with_timeout::<GuestGetOsinfo>((), self.timeouts().agent_command).await?)
    }

    /// `guest-network-get-interfaces`.
    pub async fn guest_interfaces(&self) -> Result<Vec<GuestNetworkInterface>, GuestAgentError> {
        Ok(self
            .qga()
            .execute_with_timeout::<GuestNetworkGetInterfaces>((), self.timeouts().agent_command)
            .await?)
    }

    /// `guest-get-fsinfo`: the mounted filesystems and the disk serials below them.
    pub async fn fsinfo(&self) -> Result<Vec<GuestFilesystemInfo>, GuestAgentError> {
        Ok(self.qga().execute_with_timeout::<GuestGetFsinfo>((), self.timeouts().agent_command).await?)
    }

    /// Runs `path` with `args` in the guest and waits up to `timeout` for it to
    /// exit, capturing its output. On timeout the process keeps running in the guest.
    pub async fn exec(
        &self,
        path: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput, GuestAgentError> {
        Ok(self.qga().exec_and_wait(path, args, timeout).await?)
    }

    /// [`VmHandle::exec`] with full control of the `guest-exec` arguments (stdin, environment).
    pub async fn exec_with(&self, args: ExecArgs, timeout: Duration) -> Result<ExecOutput, GuestAgentError> {
        Ok(self.qga().exec_and_wait_with(args, timeout).await?)
    }

    /// Asks the guest to power off through the agent (`guest-shutdown`, which
    /// does not reply on success). Follow with [`VmHandle::wait_exit`].
    pub async fn shutdown_guest(&self) -> Result<(), GuestAgentError> {
        self.qga().execute_no_reply("guest-shutdown", json!({ "mode": "powerdown" }), SHUTDOWN_GRACE).await?;
        Ok(())
    }

    /// Starts a background loop that pings the agent every `interval` and
    /// keeps an "agent connected" flag (see [`spawn_guest_agent_health`]).
    pub fn guest_agent_health(&self, interval: Duration) -> GuestAgentHealth {
        spawn_guest_agent_health(self.qga(), interval, self.timeouts().guest_agent_ping)
    }
}
