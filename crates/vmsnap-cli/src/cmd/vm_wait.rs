//! `vmsnap vm start|stop|restart --wait`: follows the VM's instance with a watch until the guest
//! agent answers (start, restart) or the instance is gone (stop).

use std::time::Duration;

use kube::runtime::wait::await_condition;
use vmsnap_api::kubevirt::{VirtualMachineInstance, vmi_condition};

use super::client::Session;
use super::errors::{CliError, CliResult, Exit};

/// What to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// A new instance runs and its guest agent answers (`vmsnap exec` works).
    AgentConnected,
    /// No instance is left.
    Stopped,
}

/// The `--wait` and `--timeout` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait until the guest agent answers (start, restart) or the VM is stopped (stop).
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (the VM goes on starting or stopping).
    #[arg(long, default_value = "5m", value_parser = super::parse_duration, requires = "wait")]
    pub timeout: Duration,
}

impl WaitArgs {
    /// `until` and the timeout, if `--wait` was given.
    pub fn until(&self, until: Until) -> Option<(Until, Duration)> {
        self.wait.then_some((until, self.timeout))
    }
}

/// Waits until VM `name` reaches `until`, for at most `timeout`. `old_uid` is the instance that ran
/// before a restart, which does not count.
pub async fn wait(
    session: &Session,
    name: &str,
    until: Until,
    old_uid: Option<String>,
    timeout: Duration,
) -> CliResult<()> {
    let api = session.api::<VirtualMachineInstance>();
    let waited = match until {
        Until::AgentConnected => {
            let connected = move |vmi: Option<&VirtualMachineInstance>| {
                vmi.is_some_and(|vmi| vmi.metadata.uid != old_uid && agent_connected(vmi))
            };
            tokio::time::timeout(timeout, await_condition(api, name, connected)).await
        }
        Until::Stopped => {
            let gone = |vmi: Option<&VirtualMachineInstance>| vmi.is_none();
            tokio::time::timeout(timeout, await_condition(api, name, gone)).await
        }
    };
    let what = match until {
        Until::AgentConnected => "its guest agent to answer",
        Until::Stopped => "it to stop",
    };
    match waited {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => {
            Err(CliError::new(Exit::Error, format!("lost the watch on VM \"{name}\": {error}")))
        }
        Err(_) => Err(CliError::new(
            Exit::Timeout,
            format!(
                "VM \"{name}\": gave up after {} waiting for {what}; it goes on in the background (a guest without a guest agent never answers)",
                humantime(timeout)
            ),
        )),
    }
}

/// Whether the instance reports its guest agent connected.
pub fn agent_connected(vmi: &VirtualMachineInstance) -> bool {
    vmi.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == vmi_condition::AGENT_CONNECTED && c.status == "True")
    })
}

fn humantime(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) { format!("{}m", secs / 60) } else { format!("{secs}s") }
}
