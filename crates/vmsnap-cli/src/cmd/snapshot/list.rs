//! `vmsnap snapshot list [VM]`: snapshots newest first, with phase, readiness, indications, age
//! and size.

use std::process::ExitCode;

use clap::Args;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use super::details::{Catalog, indications};
use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};
use crate::cmd::output::{OutputArgs, Table, age, print_objects};

pub const EXAMPLES: &str = "Examples:
  vmsnap snapshot list              # every snapshot in the namespace
  vmsnap snapshot list db           # the snapshots of VM db, newest first
  vmsnap snapshot list db -o name   # virtualmachinesnapshot.snapshot.kubevirt.io/NAME per line";

/// `vmsnap snapshot list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only the snapshots of this VM.
    vm: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `vmsnap snapshot list`.
pub async fn run(args: ListArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let mut snapshots: Vec<VirtualMachineSnapshot> = session.list(Kind::Snapshot, "").await?;
    if let Some(vm) = &args.vm {
        snapshots.retain(|s| &s.spec.source.name == vm);
        // Snapshots outlive their VM; an unknown VM with no snapshots is most likely a typo.
        if snapshots.is_empty() && session.get_opt::<VirtualMachine>(Kind::Vm, vm).await?.is_none() {
            return Err(session.target(Kind::Vm, vm).not_found());
        }
    }
    newest_first(&mut snapshots);
    if let Some(format) = args.output.output {
        print_objects(&snapshots, format, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    if snapshots.is_empty() {
        let of = args.vm.as_ref().map(|vm| format!(" of VM \"{vm}\"")).unwrap_or_default();
        errln!("No snapshots{of} in namespace \"{}\".", session.namespace);
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = Catalog::load(&session).await;
    let mut table = Table::new(&["NAME", "VM", "PHASE", "READY", "INDICATIONS", "SIZE", "AGE"]);
    for s in &snapshots {
        let st = s.status.clone().unwrap_or_default();
        let list: Vec<String> = indications(s).into_iter().map(|(i, _)| i).collect();
        table.row(vec![
            s.metadata.name.clone().unwrap_or_default(),
            s.spec.source.name.clone(),
            st.phase.as_deref().unwrap_or("Pending").to_owned(),
            st.ready_to_use.unwrap_or(false).to_string(),
            if list.is_empty() { "-".into() } else { list.join(",") },
            catalog.size_text(s),
            age(s.metadata.creation_timestamp.as_ref()),
        ]);
    }
    out!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// Newest first by creation time, then by name for a stable order within a second.
fn newest_first(snapshots: &mut [VirtualMachineSnapshot]) {
    snapshots.sort_by(|a, b| {
        let key = |s: &VirtualMachineSnapshot| {
            (s.metadata.creation_timestamp.as_ref().map(|t| t.0), s.metadata.name.clone())
        };
        key(b).cmp(&key(a))
    });
}
