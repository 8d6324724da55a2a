//! `vmsnap snapshot create | list | describe | delete`.

mod create;
mod describe;
pub mod details;
mod list;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kube::api::DeleteParams;
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use super::client::ConnectionArgs;
use super::errors::{CliError, CliResult, Exit, Kind};

/// `vmsnap snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Take a snapshot of a VM, showing its progress until it is ready.
    #[command(after_help = create::EXAMPLES)]
    Create(create::CreateArgs),
    /// List snapshots, newest first: all of the namespace, or a VM's.
    #[command(after_help = list::EXAMPLES)]
    List(list::ListArgs),
    /// Show a snapshot: phase, indications, included and excluded disks, conditions.
    #[command(after_help = describe::EXAMPLES)]
    Describe(super::show::DescribeArgs),
    /// Delete snapshots (their volume snapshots go with them unless the snapshot was taken with --retain).
    #[command(
        after_help = "Example:\n  vmsnap snapshot delete db-20250101-120000\n  vmsnap snapshot delete s1 s2 --wait"
    )]
    Delete(DeleteArgs),
}

/// `vmsnap snapshot delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Snapshots to delete.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Wait until they are gone (the controller unlocks the VM and removes the content first).
    #[arg(long)]
    wait: bool,
}

/// Runs a snapshot command.
pub async fn run(args: SnapshotArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    match args.command {
        SnapshotCommand::Create(a) => create::run(a, conn).await,
        SnapshotCommand::List(a) => list::run(a, conn).await,
        SnapshotCommand::Describe(a) => describe::run(a, conn).await,
        SnapshotCommand::Delete(a) => delete(a, conn).await,
    }
}

async fn delete(args: DeleteArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let api = session.api::<VirtualMachineSnapshot>();
    let mut first_error: Option<CliError> = None;
    for name in &args.names {
        let result = match api.delete(name, &DeleteParams::default()).await {
            Ok(either) if args.wait && either.is_left() => {
                let uid = either.left().and_then(|s| s.metadata.uid).unwrap_or_default();
                let gone = kube::runtime::wait::await_condition(
                    api.clone(),
                    name,
                    kube::runtime::wait::conditions::is_deleted(&uid),
                );
                match tokio::time::timeout(std::time::Duration::from_secs(300), gone).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(CliError::new(
                        Exit::Error,
                        format!("cannot wait for snapshot \"{name}\" to go: {e}"),
                    )),
                    Err(_) => Err(CliError::new(
                        Exit::Timeout,
                        format!(
                            "snapshot \"{name}\" is still being deleted after 5m: see why with: vmsnap snapshot describe {name}"
                        ),
                    )),
                }
            }
            Ok(_) => Ok(()),
            Err(e) => Err(session.error(e, "delete", Kind::Snapshot, name)),
        };
        match result {
            Ok(()) => outln!("snapshot \"{name}\" deleted"),
            Err(e) => {
                errln!("error: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    Ok(first_error.map_or(ExitCode::SUCCESS, |e| e.exit.into()))
}
