//! `vmsnap backup list [VM] [--repo NAME]` and `vmsnap backup describe NAME`.

use std::process::ExitCode;

use clap::Args;
use vmsnap_api::backup::{VirtualMachineRepositoryBackup, label};

use super::create::failure;
use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};
use crate::cmd::output::{OutputArgs, Table, display_size, print_objects, timestamp};
use crate::cmd::progress::transfer::{Direction, counters_line};
use crate::cmd::repo::request::verify_summary;

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

/// `vmsnap backup describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The backup.
    name: String,
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
    if let Some(format) = args.output.output {
        print_objects(&backups, format, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    if backups.is_empty() {
        let of = args.vm.as_ref().map(|vm| format!(" of VM \"{vm}\"")).unwrap_or_default();
        let in_repo = args.repo.as_ref().map(|r| format!(" in repository \"{r}\"")).unwrap_or_default();
        eprintln!("No backups{of}{in_repo} in namespace \"{}\".", session.namespace);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "VM", "REPO", "TYPE", "SIZE", "POINT IN TIME", "PHASE"]);
    for b in &backups {
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
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// Runs `vmsnap backup describe`.
pub async fn describe(args: DescribeArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let b: VirtualMachineRepositoryBackup = session.get(Kind::Backup, &args.name).await?;
    if let Some(format) = args.output.output {
        print_objects(std::slice::from_ref(&b), format, true)?;
        return Ok(ExitCode::SUCCESS);
    }
    let st = b.status.clone().unwrap_or_default();
    let source = match &b.spec.source {
        Some(s) => format!("{} {}", s.kind, s.name),
        None => "found in the repository".into(),
    };
    println!("Name:            {}", args.name);
    println!("VM:              {}", dash(vm_of(&b)));
    println!("Repository:      {}", b.spec.repository);
    println!("Source:          {source}");
    println!("Phase:           {}", dash(st.phase.clone().map(String::from)));
    println!("Type:            {}", dash(st.type_.clone()));
    if let Some(reason) = &st.full_reason {
        println!("Full because:    {reason}");
    }
    if let Some(base) = &st.base_backup {
        println!(
            "Base backup:     {base}{}",
            st.base_backup_id.as_ref().map(|i| format!(" ({i})")).unwrap_or_default()
        );
    }
    println!("Backup id:       {}", dash(st.backup_id.clone()));
    println!("Snapshot:        {}", dash(st.snapshot_name.clone()));
    println!("Point in time:   {}", timestamp(st.point_in_time.as_ref()));
    println!("Completed:       {}", timestamp(st.completion_time.as_ref()));
    println!("Size:            {}", dash(st.size.clone()));
    println!("Deletion policy: {}", b.spec.deletion_policy.as_deref().unwrap_or("Delete"));
    if let Some(c) = &st.progress {
        println!("Transfer:        {}", counters_line(Direction::Backup, c));
    }
    if let Some(v) = &st.last_verify {
        println!("Last verify:     {} {}", timestamp(v.time.as_ref()), verify_summary(v));
    }
    if st.error.is_some() {
        println!("Error:           {}", failure(&st.error, &st.conditions));
    }
    if !st.disks.is_empty() {
        println!("Disks:");
        let mut table = Table::new(&["NAME", "SIZE", "SHA256"]);
        for d in &st.disks {
            table.row(vec![d.name.clone(), display_size(d.size_bytes.max(0) as u64), dash(d.sha256.clone())]);
        }
        for line in table.render().lines() {
            println!("  {line}");
        }
    }
    if !st.conditions.is_empty() {
        println!("Conditions:");
        for c in &st.conditions {
            let message = c.message.as_deref().filter(|m| !m.is_empty()).map(|m| format!(": {m}"));
            println!(
                "  {} {} {}{}",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or_default(),
                message.unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
