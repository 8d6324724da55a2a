//! `vmsnap backup list [VM] [--repo NAME]` and `vmsnap backup describe NAME`.

use std::process::ExitCode;

use clap::Args;
use vmsnap_api::backup::{VirtualMachineRepositoryBackup, label};

use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};
use crate::cmd::output::{OutputArgs, Table, display_size, timestamp};
use crate::cmd::progress::transfer::{Direction, counters_line};
use crate::cmd::progress::transfer_run::failure;
use crate::cmd::repo::request::verify_summary;
use crate::cmd::show::{DescribeArgs, object_to_describe, print_conditions, print_list};

/// `vmsnap backup list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this VM's backups.
    vm: Option<String>,
    /// Only the backups in this repository.
    #[arg(long, value_name = "NAME")]
    repo: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// The VM a backup is of: its status, else its label, else its source when that is a VM.
pub fn vm_of(b: &VirtualMachineRepositoryBackup) -> Option<String> {
    b.status
        .as_ref()
        .and_then(|s| s.vm_name.clone())
        .or_else(|| b.metadata.labels.as_ref().and_then(|l| l.get(label::VM).cloned()))
        .or_else(|| b.spec.source.as_ref().filter(|s| s.kind == "VirtualMachine").map(|s| s.name.clone()))
}

fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// The backups of the list, newest point in time first (those without one, still running, on top).
fn sorted(mut backups: Vec<VirtualMachineRepositoryBackup>) -> Vec<VirtualMachineRepositoryBackup> {
    let key = |b: &VirtualMachineRepositoryBackup| {
        let pit = b.status.as_ref().and_then(|s| s.point_in_time.as_ref()).map(|t| t.0);
        (pit.is_none(), pit, b.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    backups.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    backups
}

/// Runs `vmsnap backup list`.
pub async fn list(args: ListArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let all: Vec<VirtualMachineRepositoryBackup> = session.list(Kind::Backup, "").await?;
    let backups: Vec<_> = sorted(all)
        .into_iter()
        .filter(|b| args.vm.as_ref().is_none_or(|vm| vm_of(b).as_ref() == Some(vm)))
        .filter(|b| args.repo.as_ref().is_none_or(|r| &b.spec.repository == r))
        .collect();
    let nothing = || {
        let of = args.vm.as_ref().map(|vm| format!(" of VM \"{vm}\"")).unwrap_or_default();
        let in_repo = args.repo.as_ref().map(|r| format!(" in repository \"{r}\"")).unwrap_or_default();
        format!("No backups{of}{in_repo} in namespace \"{}\".", session.namespace)
    };
    print_list(&backups, &args.output, nothing, table)
}

fn table(backups: &[VirtualMachineRepositoryBackup]) -> Table {
    let mut table = Table::new(&["NAME", "VM", "REPO", "TYPE", "SIZE", "POINT IN TIME", "PHASE"]);
    for b in backups {
        let st = b.status.clone().unwrap_or_default();
        table.row(vec![
            b.metadata.name.clone().unwrap_or_default(),
            dash(vm_of(b)),
            b.spec.repository.clone(),
            dash(st.type_),
            dash(st.size),
            timestamp(st.point_in_time.as_ref()),
            dash(st.phase.map(String::from)),
        ]);
    }
    table
}

/// Runs `vmsnap backup describe`.
pub async fn describe(args: DescribeArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let Some(b) = object_to_describe::<VirtualMachineRepositoryBackup>(&session, Kind::Backup, &args).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let st = b.status.clone().unwrap_or_default();
    let source = match &b.spec.source {
        Some(s) => format!("{} {}", s.kind, s.name),
        None => "found in the repository".into(),
    };
    outln!("Name:            {}", args.name);
    outln!("VM:              {}", dash(vm_of(&b)));
    outln!("Repository:      {}", b.spec.repository);
    outln!("Source:          {source}");
    outln!("Phase:           {}", dash(st.phase.clone().map(String::from)));
    outln!("Type:            {}", dash(st.type_.clone()));
    if let Some(reason) = &st.full_reason {
        outln!("Full because:    {reason}");
    }
    if let Some(base) = &st.base_backup {
        outln!(
            "Base backup:     {base}{}",
            st.base_backup_id.as_ref().map(|i| format!(" ({i})")).unwrap_or_default()
        );
    }
    outln!("Backup id:       {}", dash(st.backup_id.clone()));
    outln!("Snapshot:        {}", dash(st.snapshot_name.clone()));
    outln!("Point in time:   {}", timestamp(st.point_in_time.as_ref()));
    outln!("Completed:       {}", timestamp(st.completion_time.as_ref()));
    outln!("Size:            {}", dash(st.size.clone()));
    outln!("Deletion policy: {}", b.spec.deletion_policy.as_deref().unwrap_or("Delete"));
    if let Some(c) = &st.progress {
        outln!("Transfer:        {}", counters_line(Direction::Backup, c));
    }
    if let Some(v) = &st.last_verify {
        outln!("Last verify:     {} {}", timestamp(v.time.as_ref()), verify_summary(v));
    }
    if st.error.is_some() {
        outln!("Error:           {}", failure(&st.error, &st.conditions));
    }
    if !st.disks.is_empty() {
        outln!("Disks:");
        let mut table = Table::new(&["NAME", "SIZE", "SHA256-TREE"]);
        for d in &st.disks {
            table.row(vec![
                d.name.clone(),
                display_size(d.size_bytes.max(0) as u64),
                dash(d.sha256_tree.clone()),
            ]);
        }
        for line in table.render().lines() {
            outln!("  {line}");
        }
    }
    print_conditions(&st.conditions);
    Ok(ExitCode::SUCCESS)
}
