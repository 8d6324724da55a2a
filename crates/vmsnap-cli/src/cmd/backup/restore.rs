//! `vmsnap backup restore BACKUP (--to NEW_VM | --in-place)`: creates a
//! VirtualMachineRepositoryRestore and, unless `--no-wait`, follows its progress (bytes written)
//! until the VM exists with the restored disks.

use std::process::ExitCode;

use clap::{ArgGroup, Args};
use serde_json::json;
use vmsnap_api::backup::{BackupPhase, VirtualMachineRepositoryBackup, VirtualMachineRepositoryRestore};
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};

use super::list::vm_of;
use crate::cmd::client::{ConnectionArgs, Session};
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};
use crate::cmd::output::seconds;
use crate::cmd::progress::transfer_run::{TransferArgs, TransferRequest, create_and_follow};
use crate::cmd::timestamp_suffix;

pub const EXAMPLES: &str = "Examples:
  vmsnap backup restore db-backup-20261206-101500 --to db-copy   # a new VM
  vmsnap vm stop db && vmsnap backup restore db-backup-20261206-101500 --in-place";

/// `vmsnap backup restore`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["to", "in_place"])))]
pub struct RestoreArgs {
    /// The backup to restore.
    backup: String,
    /// Make a new VM with this name (new disks, new firmware UUID and MAC addresses).
    #[arg(long, value_name = "NEW_VM")]
    to: Option<String>,
    /// Restore onto the VM the backup was taken of, which must be stopped (its disks are replaced).
    #[arg(long)]
    in_place: bool,
    /// Name of the restore object [default: TARGET-restore-YYYYMMDD-HHMMSS]
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    follow: TransferArgs,
}

/// The target VM, checked: the backup is complete, a `--to` VM is new (or the backed-up VM), an
/// in-place target is stopped.
async fn target(args: &RestoreArgs, session: &Session) -> CliResult<String> {
    let backup: VirtualMachineRepositoryBackup = session.get(Kind::Backup, &args.backup).await?;
    let st = backup.status.clone().unwrap_or_default();
    if st.phase != Some(BackupPhase::Succeeded) {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "backup \"{}\" is not complete (phase {}): wait for it with: vmsnap backup describe {}",
                args.backup,
                st.phase.as_deref().unwrap_or("Pending"),
                args.backup
            ),
        ));
    }
    let source_vm = vm_of(&backup);
    let target = match (&args.to, args.in_place) {
        (Some(to), _) => to.clone(),
        (None, _) => source_vm.clone().ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!(
                    "backup \"{}\" does not say which VM it is of: restore it with --to NEW_VM",
                    args.backup
                ),
            )
        })?,
    };
    let existing = session.get_opt::<VirtualMachine>(Kind::Vm, &target).await?;
    if existing.is_some() && source_vm.as_deref() != Some(target.as_str()) {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "VM \"{target}\" exists and is not the VM backup \"{}\" is of: pick a new name with --to, or restore in place with --in-place",
                args.backup
            ),
        ));
    }
    if existing.is_some() && session.get_opt::<VirtualMachineInstance>(Kind::Vmi, &target).await?.is_some() {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "VM \"{target}\" is running: stop it with: vmsnap vm stop {target}, or restore to a new VM with --to"
            ),
        ));
    }
    Ok(target)
}

/// Runs `vmsnap backup restore`.
pub async fn run(args: RestoreArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let target = target(&args, &session).await?;
    let name = args.name.clone().unwrap_or_else(|| format!("{target}-restore-{}", timestamp_suffix()));
    let object: VirtualMachineRepositoryRestore = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryRestore",
        "metadata": {"name": name},
        "spec": {"backupName": args.backup, "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target}}
    }))
    .map_err(|e| CliError::new(Exit::Usage, format!("invalid restore: {e}")))?;
    let request = TransferRequest {
        name: &name,
        object: &object,
        title: format!("Restore of backup \"{}\" to VM \"{target}\" (restore \"{name}\"):", args.backup),
        follow_with: format!("kubectl get vmrrestore {name}"),
    };
    let Some((done, start)) = create_and_follow(&session, request, &args.follow).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    outln!(
        "VM \"{target}\" restored from backup \"{}\" (restore \"{name}\", {}).",
        args.backup,
        seconds(start.elapsed())
    );
    let st = done.status.unwrap_or_default();
    if !st.disks.is_empty() {
        outln!("  Disks:");
        for d in &st.disks {
            outln!("    {}   {}", d.name, d.data_volume_name);
        }
    }
    let running = session.get_opt::<VirtualMachineInstance>(Kind::Vmi, &target).await?.is_some();
    if !running {
        outln!("  VM \"{target}\" is stopped: start it with: vmsnap vm start {target}");
    }
    Ok(ExitCode::SUCCESS)
}
