//! `vmsnap schedule create | list | describe | suspend | resume | delete`: snapshot schedules
//! (`VirtualMachineSnapshotSchedule`, docs/schedules.md).

mod create;
mod show;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use vmsnap_api::schedule::VirtualMachineSnapshotSchedule;

use super::client::ConnectionArgs;
use super::errors::{CliError, CliResult, Kind};
use super::output::OutputArgs;
use super::show::DescribeArgs;

/// `vmsnap schedule`.
#[derive(Args, Debug)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Subcommand, Debug)]
enum ScheduleCommand {
    /// Create a schedule: snapshots of a VM (or of the VMs a selector matches) on a cron or an interval, pruned by a keep policy.
    #[command(after_help = create::EXAMPLES)]
    Create(create::CreateArgs),
    /// List the schedules of the namespace: when, suspended, last success, next run.
    #[command(after_help = "Example:\n  vmsnap schedule list\n  vmsnap schedule list -o json")]
    List(OutputArgs),
    /// Show a schedule: its spec, runs, per-VM results and conditions.
    #[command(after_help = "Example:\n  vmsnap schedule describe db-hourly")]
    Describe(DescribeArgs),
    /// Stop taking runs (runs in progress go on).
    #[command(after_help = "Example:\n  vmsnap schedule suspend db-hourly")]
    Suspend(NamesArgs),
    /// Take runs again (one catch-up run if one was missed, within the starting deadline).
    #[command(after_help = "Example:\n  vmsnap schedule resume db-hourly")]
    Resume(NamesArgs),
    /// Delete schedules; the snapshots they made stay.
    #[command(after_help = "Example:\n  vmsnap schedule delete db-hourly nightly")]
    Delete(NamesArgs),
}

/// Commands on schedules by name.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Schedules.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// Runs a schedule command.
pub async fn run(args: ScheduleArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    match args.command {
        ScheduleCommand::Create(a) => create::run(a, conn).await,
        ScheduleCommand::List(a) => show::list(a, conn).await,
        ScheduleCommand::Describe(a) => show::describe(a, conn).await,
        ScheduleCommand::Suspend(a) => each(a, conn, Action::Suspend).await,
        ScheduleCommand::Resume(a) => each(a, conn, Action::Resume).await,
        ScheduleCommand::Delete(a) => each(a, conn, Action::Delete).await,
    }
}

#[derive(Clone, Copy)]
enum Action {
    Suspend,
    Resume,
    Delete,
}

/// Applies `action` to each schedule named; reports each, exits with the first error's code.
async fn each(args: NamesArgs, conn: &ConnectionArgs, action: Action) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let api = session.api::<VirtualMachineSnapshotSchedule>();
    let mut first_error: Option<CliError> = None;
    for name in &args.names {
        let (verb, done) = match action {
            Action::Suspend => ("suspend", "suspended"),
            Action::Resume => ("resume", "resumed"),
            Action::Delete => ("delete", "deleted (the snapshots it made are kept)"),
        };
        let result = match action {
            Action::Suspend | Action::Resume => {
                let patch = json!({"spec": {"suspend": matches!(action, Action::Suspend)}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
            }
            Action::Delete => api.delete(name, &DeleteParams::default()).await.map(|_| ()),
        };
        match result {
            Ok(()) => outln!("schedule \"{name}\" {done}"),
            Err(e) => {
                let e = session.error(e, verb, Kind::Schedule, name);
                errln!("error: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    Ok(first_error.map_or(ExitCode::SUCCESS, |e| e.exit.into()))
}
