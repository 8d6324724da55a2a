//! `vmsnap schedule list` and `vmsnap schedule describe NAME`.

use std::process::ExitCode;

use vmsnap_api::label_selector::Selector;
use vmsnap_api::schedule::VirtualMachineSnapshotSchedule;

use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};
use crate::cmd::output::{OutputArgs, Table, age};
use crate::cmd::show::{DescribeArgs, object_to_describe, print_conditions, print_list};

fn which(s: &VirtualMachineSnapshotSchedule) -> String {
    match (&s.spec.vm_name, &s.spec.selector) {
        (Some(vm), _) => format!("vm {vm}"),
        (_, Some(sel)) => match Selector::try_from(sel) {
            Ok(selector) => format!("selector {selector}"),
            Err(e) => format!("selector that cannot be read: {e}"),
        },
        _ => "-".into(),
    }
}

fn when(s: &VirtualMachineSnapshotSchedule) -> String {
    match (&s.spec.every, &s.spec.cron) {
        (Some(every), _) => format!("every {every}"),
        (_, Some(cron)) => format!("{cron} ({})", s.spec.time_zone.as_deref().unwrap_or("UTC")),
        _ => "-".into(),
    }
}

fn time(t: Option<&vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.map(|t| t.0.to_string()).unwrap_or_else(|| "-".into())
}

/// Runs `vmsnap schedule list`.
pub async fn list(output: OutputArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let schedules: Vec<VirtualMachineSnapshotSchedule> = session.list(Kind::Schedule, "").await?;
    let nothing = || format!("No schedules in namespace \"{}\".", session.namespace);
    print_list(&schedules, &output, nothing, table)
}

fn table(schedules: &[VirtualMachineSnapshotSchedule]) -> Table {
    let mut table = Table::new(&["NAME", "TARGET", "WHEN", "SUSPENDED", "LAST SUCCESS", "NEXT RUN", "AGE"]);
    for s in schedules {
        let status = s.status.clone().unwrap_or_default();
        table.row(vec![
            s.metadata.name.clone().unwrap_or_default(),
            which(s),
            when(s),
            s.spec.suspend.unwrap_or(false).to_string(),
            status
                .last_success_time
                .as_ref()
                .map(|t| format!("{} ago", age(Some(t))))
                .unwrap_or_else(|| "-".into()),
            time(status.next_run_time.as_ref()),
            age(s.metadata.creation_timestamp.as_ref()),
        ]);
    }
    table
}

/// Runs `vmsnap schedule describe`.
pub async fn describe(args: DescribeArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let Some(s) =
        object_to_describe::<VirtualMachineSnapshotSchedule>(&session, Kind::Schedule, &args).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let status = s.status.clone().unwrap_or_default();
    outln!("Name:          {}", args.name);
    outln!("Target:        {}", which(&s));
    outln!("When:          {}", when(&s));
    outln!("Suspended:     {}", s.spec.suspend.unwrap_or(false));
    if let Some(keep) = &s.spec.keep {
        let parts: Vec<String> = keep
            .counts()
            .iter()
            .filter_map(|(k, n)| n.map(|n| format!("{k} {n}")))
            .chain(keep.within.iter().map(|w| format!("within {w}")))
            .collect();
        outln!("Keep:          {}", parts.join(", "));
    } else {
        outln!("Keep:          all");
    }
    outln!("Last run:      {}", time(status.last_run_time.as_ref()));
    outln!("Last success:  {}", time(status.last_success_time.as_ref()));
    outln!("Next run:      {}", time(status.next_run_time.as_ref()));
    outln!("Missed runs:   {}", status.missed_runs.unwrap_or(0));
    if !status.vms.is_empty() {
        outln!("VMs:");
        let mut table =
            Table::new(&["VM", "LAST RUN", "RESULT", "SNAPSHOT", "FAILURES", "KEPT", "PRUNED", "MESSAGE"]);
        for v in &status.vms {
            table.row(vec![
                v.name.clone(),
                time(v.last_run_time.as_ref()),
                v.last_result.clone().unwrap_or_else(|| "-".into()),
                v.last_snapshot_name.clone().unwrap_or_else(|| "-".into()),
                v.consecutive_failures.unwrap_or(0).to_string(),
                v.snapshots_kept.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                v.snapshots_pruned.unwrap_or(0).to_string(),
                v.message.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out!("{}", table.render());
    }
    print_conditions(&status.conditions);
    Ok(ExitCode::SUCCESS)
}
