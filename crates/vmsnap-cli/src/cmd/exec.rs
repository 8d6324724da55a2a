//! `vmsnap exec VM -- COMMAND...`: runs a command in the guest through the guest agent (vmsnap's
//! `guestexec` subresource) and exits with its exit status.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Args;
use vmsnap_api::kubevirt::{GuestExecRequest, GuestExecResult, VirtualMachine};

use super::client::ConnectionArgs;
use super::errors::{CliError, CliResult, Exit, Kind};

/// `vmsnap exec`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vmsnap exec db -- cat /etc/hostname
  vmsnap exec db --timeout 120 -- sync
  echo hello | vmsnap exec db --stdin -- cat

The exit status is the command's (128+N if signal N ended it); vmsnap's own failures use the codes
of `vmsnap --help`.")]
pub struct ExecArgs {
    /// The VM.
    vm: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
    /// Pass this command's standard input to the guest command.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs `vmsnap exec`.
pub async fn run(args: ExecArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    session.get::<VirtualMachine>(Kind::Vm, &args.vm).await?;
    let stdin = if args.stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::new(Exit::Error, format!("cannot read the standard input: {e}")))?;
        Some(text)
    } else {
        None
    };
    let request =
        GuestExecRequest { command: args.command.clone(), timeout_seconds: Some(args.timeout), stdin };
    let body = serde_json::to_value(&request).expect("the request serializes");
    let text =
        session.put_subresource("virtualmachineinstances", &args.vm, "guestexec", &body).await.map_err(
            |e| session.error(e, &format!("run {:?} in", args.command.join(" ")), Kind::Vmi, &args.vm),
        )?;
    let result: GuestExecResult = serde_json::from_str(&text).map_err(|e| {
        CliError::new(Exit::Error, format!("unexpected answer from the API server to guestexec: {e}"))
    })?;
    let _ = std::io::stdout().write_all(result.stdout.as_bytes());
    let _ = std::io::stderr().write_all(result.stderr.as_bytes());
    let _ = std::io::stdout().flush();
    let code = match (result.exit_code, result.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 0,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
