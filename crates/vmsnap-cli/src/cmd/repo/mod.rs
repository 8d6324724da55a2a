//! `vmsnap repo add | list | describe | set | verify | prune | delete`: backup repositories
//! (`VirtualMachineBackupRepository`, docs/backups.md).

mod add;
mod delete;
pub mod list;
pub mod request;
mod set;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::client::ConnectionArgs;
use super::errors::CliResult;
use super::output::OutputArgs;
use super::parse_duration;
use super::show::DescribeArgs;

/// `vmsnap repo`.
#[derive(Args, Debug)]
pub struct RepoArgs {
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Subcommand, Debug)]
enum RepoCommand {
    /// Add a repository (a directory or an S3 bucket) with its passphrase: a new location gets a new
    /// repository, an existing one is opened and its backups are listed.
    #[command(after_help = add::EXAMPLES)]
    Add(add::AddArgs),
    /// List the repositories of the namespace: location, ready, backups, bytes stored, deduplication.
    #[command(after_help = "Example:\n  vmsnap repo list\n  vmsnap repo list -o yaml")]
    List(OutputArgs),
    /// Show a repository: location, id, counts, last verify and prune, conditions.
    #[command(after_help = "Example:\n  vmsnap repo describe main")]
    Describe(DescribeArgs),
    /// Change a repository's read limit (the rest of it is fixed when it is added).
    #[command(after_help = set::EXAMPLES)]
    Set(set::SetArgs),
    /// Read back every chunk of the repository and check it; lists what bad chunks break.
    #[command(after_help = "Example:\n  vmsnap repo verify main")]
    Verify(RequestArgs),
    /// Delete the chunks no backup references (safe while backups run).
    #[command(after_help = "Example:\n  vmsnap repo prune main")]
    Prune(RequestArgs),
    /// Remove a repository and its Secrets from the namespace; the data stays where it is.
    #[command(after_help = "Example:\n  vmsnap repo delete main")]
    Delete(delete::DeleteArgs),
}

/// `vmsnap repo verify|prune NAME`.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The repository.
    name: String,
    /// How long to wait for the result.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,
}

/// Runs a repository command.
pub async fn run(args: RepoArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    match args.command {
        RepoCommand::Add(a) => add::run(a, conn).await,
        RepoCommand::List(a) => list::list(a, conn).await,
        RepoCommand::Describe(a) => list::describe(a, conn).await,
        RepoCommand::Set(a) => set::run(a, conn).await,
        RepoCommand::Verify(a) => request::verify_repository(&a.name, a.timeout, conn).await,
        RepoCommand::Prune(a) => request::prune_repository(&a.name, a.timeout, conn).await,
        RepoCommand::Delete(a) => delete::run(a, conn).await,
    }
}
