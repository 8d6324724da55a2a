//! `vmsnap backup create | list | describe | verify | delete | restore`: backups of VMs in a
//! repository (`VirtualMachineRepositoryBackup`, `VirtualMachineRepositoryRestore`, docs/backups.md).

mod create;
mod list;
mod restore;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use kube::api::DeleteParams;
use vmsnap_api::backup::{VirtualMachineRepositoryBackup, deletion_policy};

use super::client::ConnectionArgs;
use super::errors::{CliError, CliResult, Kind};
use super::parse_duration;
use super::repo::request;
use super::show::DescribeArgs;

/// `vmsnap backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Back up a VM to a repository (incremental when a previous backup's snapshot is still there), showing its progress.
    #[command(after_help = create::EXAMPLES)]
    Create(create::CreateArgs),
    /// List backups, newest first: all of the namespace, or a VM's, or a repository's.
    #[command(after_help = "Examples:\n  vmsnap backup list\n  vmsnap backup list db --repo off-site")]
    List(list::ListArgs),
    /// Show a backup: VM, type and base, point in time, disks, bytes, last verify, conditions.
    #[command(after_help = "Example:\n  vmsnap backup describe db-backup-20261206-101500")]
    Describe(DescribeArgs),
    /// Read back every chunk of a backup and check it.
    #[command(after_help = "Example:\n  vmsnap backup verify db-backup-20261206-101500")]
    Verify(VerifyArgs),
    /// Delete backups (from the repository too, unless their deletionPolicy is Retain).
    #[command(after_help = "Example:\n  vmsnap backup delete db-backup-20261206-101500")]
    Delete(DeleteArgs),
    /// Restore a backup to a new VM, or in place onto the stopped VM it was taken of, showing progress.
    #[command(after_help = restore::EXAMPLES)]
    Restore(restore::RestoreArgs),
}

/// `vmsnap backup verify NAME`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The backup.
    name: String,
    /// How long to wait for the result.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,
}

/// `vmsnap backup delete NAME...`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Backups to delete.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// Runs a backup command.
pub async fn run(args: BackupArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    match args.command {
        BackupCommand::Create(a) => create::run(a, conn).await,
        BackupCommand::List(a) => list::list(a, conn).await,
        BackupCommand::Describe(a) => list::describe(a, conn).await,
        BackupCommand::Verify(a) => request::verify_backup(&a.name, a.timeout, conn).await,
        BackupCommand::Delete(a) => delete(a, conn).await,
        BackupCommand::Restore(a) => restore::run(a, conn).await,
    }
}

/// Deletes each backup named; reports each, exits with the first error's code.
async fn delete(args: DeleteArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let api = session.api::<VirtualMachineRepositoryBackup>();
    let mut first_error: Option<CliError> = None;
    for name in &args.names {
        let result = match session.get::<VirtualMachineRepositoryBackup>(Kind::Backup, name).await {
            Ok(backup) => api
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| backup)
                .map_err(|e| session.error(e, "delete", Kind::Backup, name)),
            Err(e) => Err(e),
        };
        match result {
            Ok(backup) => {
                let retained = backup.spec.deletion_policy.as_deref() == Some(deletion_policy::RETAIN);
                let data = if retained {
                    "its data stays in the repository (deletionPolicy Retain)"
                } else {
                    "its data is removed from the repository; run vmsnap repo prune to free the chunks no other backup uses"
                };
                outln!("backup \"{name}\" deleted: {data}");
            }
            Err(e) => {
                errln!("error: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    Ok(first_error.map_or(ExitCode::SUCCESS, |e| e.exit.into()))
}
