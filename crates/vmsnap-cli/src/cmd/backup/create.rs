//! `vmsnap backup create VM --repo NAME`: creates a VirtualMachineRepositoryBackup and, unless
//! `--no-wait`, follows it with a watch, showing its byte counters as a progress bar, until it is
//! committed or failed; then prints a summary.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use vmsnap_api::backup::{
    VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, backup_type, label,
};
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::{SnapshotPhase, VirtualMachineSnapshot};

use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};
use crate::cmd::output::{display_size, seconds, timestamp};
use crate::cmd::progress::transfer_run::{TransferArgs, TransferRequest, create_and_follow};
use crate::cmd::repo::list::{Readiness, readiness};
use crate::cmd::timestamp_suffix;

pub const EXAMPLES: &str = "Examples:
  vmsnap backup create db --repo off-site                 # snapshot, then read only what changed since the last backup
  vmsnap backup create db --repo off-site --from-snapshot before-upgrade
  vmsnap backup create db --repo main --full --name db-monthly --no-wait";

/// `vmsnap backup create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The VM to back up.
    vm: String,
    /// The repository to back up to.
    #[arg(long, value_name = "NAME")]
    repo: String,
    /// Name of the backup [default: VM-backup-YYYYMMDD-HHMMSS]
    #[arg(long)]
    name: Option<String>,
    /// Back up this snapshot of the VM instead of taking a new one.
    #[arg(long, value_name = "SNAPSHOT")]
    from_snapshot: Option<String>,
    /// Read every allocated byte even when an incremental is possible.
    #[arg(long)]
    full: bool,
    /// Keep the backup in the repository when this object is deleted (deletionPolicy Retain).
    #[arg(long)]
    retain: bool,
    #[command(flatten)]
    follow: TransferArgs,
}

/// The backup object.
fn backup_object(args: &CreateArgs, name: &str) -> CliResult<VirtualMachineRepositoryBackup> {
    let source = match &args.from_snapshot {
        Some(snapshot) => {
            json!({"apiGroup": "snapshot.kubevirt.io", "kind": "VirtualMachineSnapshot", "name": snapshot})
        }
        None => json!({"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": args.vm}),
    };
    let mut spec = json!({"repository": args.repo, "source": source});
    if args.full {
        spec["forceFull"] = json!(true);
    }
    if args.retain {
        spec["deletionPolicy"] = json!("Retain");
    }
    serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
        "metadata": {"name": name, "labels": {label::VM: args.vm, label::REPOSITORY: args.repo}},
        "spec": spec
    }))
    .map_err(|e| CliError::new(Exit::Usage, format!("invalid backup: {e}")))
}

/// Refuses before creating anything what the controller would refuse slowly: a repository that
/// does not open, a snapshot of another VM or one that failed.
async fn check(args: &CreateArgs, session: &crate::cmd::client::Session) -> CliResult<()> {
    let repo: VirtualMachineBackupRepository = session.get(Kind::Repository, &args.repo).await?;
    if let Readiness::Failed(why) = readiness(&repo) {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "repository \"{}\" is not ready: {why}: see: vmsnap repo describe {}",
                args.repo, args.repo
            ),
        ));
    }
    let Some(name) = &args.from_snapshot else {
        session.get::<VirtualMachine>(Kind::Vm, &args.vm).await?;
        return Ok(());
    };
    {
        let snapshot: VirtualMachineSnapshot = session.get(Kind::Snapshot, name).await?;
        if snapshot.spec.source.name != args.vm {
            return Err(CliError::new(
                Exit::Conflict,
                format!(
                    "snapshot \"{name}\" is of VM \"{}\", not of VM \"{}\": back that VM up, or pick a snapshot of {} (vmsnap snapshot list {})",
                    snapshot.spec.source.name, args.vm, args.vm, args.vm
                ),
            ));
        }
        let st = snapshot.status.clone().unwrap_or_default();
        if st.phase == Some(SnapshotPhase::Failed) {
            return Err(CliError::new(
                Exit::Conflict,
                format!("snapshot \"{name}\" failed: back up the VM itself, or take another snapshot"),
            ));
        }
    }
    Ok(())
}

/// Runs `vmsnap backup create`.
pub async fn run(args: CreateArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    check(&args, &session).await?;
    let name = args.name.clone().unwrap_or_else(|| format!("{}-backup-{}", args.vm, timestamp_suffix()));
    let object = backup_object(&args, &name)?;
    let request = TransferRequest {
        name: &name,
        object: &object,
        title: format!("Backup \"{name}\" of VM \"{}\" to repository \"{}\":", args.vm, args.repo),
        follow_with: format!("vmsnap backup describe {name}"),
    };
    let Some((done, start)) = create_and_follow(&session, request, &args.follow).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    for line in summary(&done, start.elapsed()) {
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn size(v: Option<i64>) -> String {
    display_size(v.unwrap_or(0).max(0) as u64)
}

/// The summary of a finished backup: one line with the type and bytes, then the details.
pub fn summary(b: &VirtualMachineRepositoryBackup, elapsed: Duration) -> Vec<String> {
    let name = b.metadata.name.clone().unwrap_or_default();
    let st = b.status.clone().unwrap_or_default();
    let c = st.progress.clone().unwrap_or_default();
    let kind = match (st.type_.as_deref(), st.base_backup.as_deref()) {
        (Some(backup_type::INCREMENTAL), Some(base)) => format!("Incremental on \"{base}\""),
        (Some(t), _) => t.to_owned(),
        (None, _) => "-".into(),
    };
    let read = c.bytes_read.unwrap_or(0).max(0);
    let dedup = c.bytes_deduplicated.unwrap_or(0).max(0);
    let dedup_share = if read > 0 { format!(" ({}%)", dedup * 100 / read) } else { String::new() };
    let mut lines = vec![format!(
        "Backup \"{name}\" of VM \"{}\" succeeded: {kind}, read {}, uploaded {}, deduplicated {}{dedup_share}, in {}.",
        st.vm_name.as_deref().unwrap_or("-"),
        size(c.bytes_read),
        size(c.bytes_uploaded),
        size(c.bytes_deduplicated),
        seconds(elapsed),
    )];
    if let Some(reason) = st.full_reason.as_deref().filter(|_| st.type_.as_deref() == Some(backup_type::FULL))
    {
        lines.push(format!("  Full because: {reason}"));
    }
    lines.push(format!("  Point in time: {}", timestamp(st.point_in_time.as_ref())));
    if let Some(snapshot) = &st.snapshot_name {
        lines.push(format!("  Snapshot:      {snapshot}"));
    }
    if !st.disks.is_empty() {
        lines.push("  Disks:".into());
        for d in &st.disks {
            lines.push(format!("    {}   {}", d.name, display_size(d.size_bytes.max(0) as u64)));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_type_base_bytes_and_dedup_share() {
        let b: VirtualMachineRepositoryBackup = serde_json::from_value(json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
            "metadata": {"name": "db-2"},
            "spec": {"repository": "main"},
            "status": {"phase": "Succeeded", "type": "Incremental", "baseBackup": "db-1", "vmName": "db",
                       "pointInTime": "2026-12-06T10:15:00Z",
                       "disks": [{"name": "data", "sizeBytes": 1073741824}],
                       "progress": {"bytesRead": 4194304, "bytesUploaded": 1048576, "bytesDeduplicated": 3145728}}
        }))
        .unwrap();
        let lines = summary(&b, Duration::from_millis(2500));
        assert_eq!(
            lines[0],
            "Backup \"db-2\" of VM \"db\" succeeded: Incremental on \"db-1\", read 4Mi, uploaded 1Mi, deduplicated 3Mi (75%), in 2.500s."
        );
        assert_eq!(lines[1], "  Point in time: 2026-12-06T10:15:00Z");
        assert_eq!(lines[3], "    data   1Gi");
    }
}
