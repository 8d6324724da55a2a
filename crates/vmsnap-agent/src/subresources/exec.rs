//! vmsnap's own VMI subresources for people: `guestexec` (a command run in the
//! guest through the guest agent, `vmsnap exec`) and `console` (the serial
//! console socket, `vmsnap console`).

use std::path::PathBuf;
use std::time::Duration;

use vmsnap_api::kubevirt::{GuestExecRequest, GuestExecResult};
use vmsnap_contracts::subresources::SubresourceError as ApiError;

use super::{message, refused, running_vmi};
use crate::agent::Agent;
use crate::error::{ExecError, error_chain};
use vmsnap_api::refusal::Refusal;

/// How long a command may run when the request does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a request may ask for: the HTTP call stays open meanwhile.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs the request's command in the guest and returns its exit status and output.
pub async fn guest_exec(
    agent: &Agent,
    namespace: &str,
    name: &str,
    request: GuestExecRequest,
) -> Result<GuestExecResult, ApiError> {
    if request.command.is_empty() {
        return Err(ApiError::bad_request("no command given: pass the program to run and its arguments"));
    }
    let timeout = request.timeout_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(ApiError::bad_request(format!(
            "timeoutSeconds must be between 1 and {}, not {}",
            MAX_TIMEOUT.as_secs(),
            timeout.as_secs()
        )));
    }
    running_vmi(agent, namespace, name, message::VM_NOT_RUNNING).await?;
    let stdin = request.stdin.as_deref().map(str::as_bytes);
    match agent.exec_with_input(namespace, name, &request.command, stdin, timeout).await {
        Ok(output) => Ok(GuestExecResult {
            exit_code: output.exit_code.map(|c| c as i32),
            signal: output.signal.map(|s| s as i32),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Err(ExecError::NotRunning { .. }) => Err(refused(Refusal::NotRunning, message::VM_NOT_RUNNING)),
        Err(ExecError::NoCommand) => Err(ApiError::bad_request("no command given")),
        Err(ExecError::Agent(error)) if error.is_timeout() => Err(ApiError::timeout(format!(
            "the command did not finish within {}s in the guest (it may still run there): {}",
            timeout.as_secs(),
            error_chain(&error)
        ))),
        Err(ExecError::Agent(error)) => Err(ApiError::bad_request(error.message())),
    }
}

/// The serial console socket of a running VMI.
pub async fn console_socket(agent: &Agent, namespace: &str, name: &str) -> Result<PathBuf, ApiError> {
    running_vmi(agent, namespace, name, message::VM_NOT_RUNNING).await?;
    agent.console_socket(namespace, name).map_err(|_| refused(Refusal::NotRunning, message::VM_NOT_RUNNING))
}
