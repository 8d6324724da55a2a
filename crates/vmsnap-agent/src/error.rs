//! Errors of the agent's public operations.

use std::path::PathBuf;

use vmsnap_vmm::GuestAgentError;

/// [`crate::Agent::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentStartError {
    /// The runtime directory could not be created or read.
    #[error("could not use the VM runtime directory {}", path.display())]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// Listing the VMIs to reconcile the running QEMU processes with failed.
    #[error("could not list the VirtualMachineInstances to re-attach to running VMs")]
    Api(#[source] kube::Error),
}

/// [`crate::Agent::exec`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The VMI does not run on this agent.
    #[error("VirtualMachineInstance {namespace}/{name} is not running")]
    NotRunning {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// No command was given.
    #[error("no command given; pass the program to run and its arguments")]
    NoCommand,
    /// The guest agent failed, timed out or is not there.
    #[error(transparent)]
    Agent(#[from] GuestAgentError),
}

/// [`crate::Agent::console_socket`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The VMI does not run on this agent.
    #[error("VirtualMachineInstance {namespace}/{name} is not running")]
    NotRunning {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// An error with its causes, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
