//! `vmsnap snapshot describe NAME`: everything about one snapshot, in words.

use std::process::ExitCode;

use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::{DeletionPolicy, VirtualMachineSnapshot};

use super::details::{Catalog, disk_lines, disks, indication_lines};
use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};
use crate::cmd::output::{age, timestamp};
use crate::cmd::show::{DescribeArgs, object_to_describe};

pub const EXAMPLES: &str = "Examples:
  vmsnap snapshot describe db-20250101-120000
  vmsnap snapshot describe s1 -o yaml     # the VirtualMachineSnapshot object";

/// Runs `vmsnap snapshot describe`.
pub async fn run(args: DescribeArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let Some(snapshot) =
        object_to_describe::<VirtualMachineSnapshot>(&session, Kind::Snapshot, &args).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let catalog = Catalog::load(&session).await;
    let vm = session.get_opt::<VirtualMachine>(Kind::Vm, &snapshot.spec.source.name).await?;
    let st = snapshot.status.clone().unwrap_or_default();
    let created = snapshot.metadata.creation_timestamp.as_ref();
    let mut fields = vec![
        ("Name", args.name.clone()),
        ("Namespace", session.namespace.clone()),
        ("VM", format!("{}{}", snapshot.spec.source.name, if vm.is_none() { " (deleted)" } else { "" })),
        ("Phase", st.phase.as_deref().unwrap_or("Pending").to_owned()),
        ("Ready", st.ready_to_use.unwrap_or(false).to_string()),
        ("Created", format!("{} ({} ago)", timestamp(created), age(created))),
        ("Point in time", timestamp(st.creation_time.as_ref())),
        (
            "Deletion policy",
            snapshot.spec.deletion_policy.map_or("Delete", DeletionPolicy::as_str).to_owned(),
        ),
        ("Failure deadline", snapshot.spec.failure_deadline.clone().unwrap_or_else(|| "5m0s".into())),
        (
            "Content",
            catalog.content(&snapshot).and_then(|c| c.metadata.name.clone()).unwrap_or_else(|| "-".into()),
        ),
        ("Size", catalog.size_text(&snapshot)),
    ];
    if let Some(message) = st.error.as_ref().and_then(|e| e.message.clone()) {
        fields.push(("Error", message));
    }
    for (key, value) in fields {
        outln!("{:<18}{value}", format!("{key}:"));
    }
    for line in
        indication_lines(&snapshot).into_iter().chain(disk_lines(&disks(&snapshot, &catalog, vm.as_ref())))
    {
        outln!("{line}");
    }
    if !st.conditions.is_empty() {
        outln!("Conditions:");
        for c in &st.conditions {
            let reason = c.reason.clone().unwrap_or_default();
            outln!("  {:<12}{:<7}{reason}", c.type_, c.status);
        }
    }
    Ok(ExitCode::SUCCESS)
}
