//! `vmsnap schedule create NAME (--vm VM | --selector SEL) (--every 1h | --cron EXPR) ...`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use kube::api::PostParams;
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use vmsnap_api::schedule::{KeepPolicy, VirtualMachineSnapshotSchedule, VirtualMachineSnapshotScheduleSpec};

use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};

pub const EXAMPLES: &str = "Examples:
  vmsnap schedule create db-hourly --vm db --every 1h --keep-last 24 --keep-daily 7
  vmsnap schedule create nightly --selector tier=db --cron '30 2 * * *' --time-zone Europe/Berlin --keep-daily 14
  vmsnap schedule create offsite --vm db --every 6h --keep-last 2 --backup-to main --backup-keep-daily 30 --backup-keep-monthly 12";

/// `vmsnap schedule create`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").required(true).args(["vm", "selector"])))]
#[command(group(ArgGroup::new("when").required(true).args(["every", "cron"])))]
pub struct CreateArgs {
    /// The schedule's name.
    name: String,
    /// The VM to snapshot.
    #[arg(long)]
    vm: Option<String>,
    /// The VMs to snapshot: those matching these labels at each run (`tier=db,env=prod`).
    #[arg(long)]
    selector: Option<String>,
    /// A fixed interval (`15m`, `1h`, `1d`; whole minutes).
    #[arg(long)]
    every: Option<String>,
    /// A five-field cron expression (`30 2 * * *`, `@daily`) in --time-zone.
    #[arg(long)]
    cron: Option<String>,
    /// The IANA time zone of --cron (default UTC).
    #[arg(long)]
    time_zone: Option<String>,
    /// Keep the newest N snapshots per VM.
    #[arg(long, value_name = "N")]
    keep_last: Option<i32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<i32>,
    /// ... days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<i32>,
    /// ... ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<i32>,
    /// ... months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<i32>,
    /// ... years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<i32>,
    /// Back each new snapshot up to this repository (`vmsnap repo list`); incremental to the
    /// VM's previous backup.
    #[arg(long, value_name = "REPO")]
    backup_to: Option<String>,
    /// Keep the newest N backups per VM (backups have their own keep policy).
    #[arg(long, value_name = "N", requires = "backup_to")]
    backup_keep_last: Option<i32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, value_name = "N", requires = "backup_to")]
    backup_keep_daily: Option<i32>,
    /// ... ISO weeks.
    #[arg(long, value_name = "N", requires = "backup_to")]
    backup_keep_weekly: Option<i32>,
    /// ... months.
    #[arg(long, value_name = "N", requires = "backup_to")]
    backup_keep_monthly: Option<i32>,
    /// ... years.
    #[arg(long, value_name = "N", requires = "backup_to")]
    backup_keep_yearly: Option<i32>,
}

/// `a=b,c=d` as matchLabels.
fn parse_selector(text: &str) -> CliResult<LabelSelector> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.ends_with('!') && !v.contains('=') => {
                labels.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => {
                return Err(CliError::new(
                    Exit::Usage,
                    format!(
                        "--selector {text:?}: expected key=value pairs separated by commas (tier=db,env=prod); {pair:?} is not one"
                    ),
                ));
            }
        }
    }
    if labels.is_empty() {
        return Err(CliError::new(Exit::Usage, "--selector is empty: give key=value pairs (tier=db)"));
    }
    Ok(LabelSelector { match_labels: Some(labels), ..Default::default() })
}

/// Runs `vmsnap schedule create`.
pub async fn run(args: CreateArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let selector = args.selector.as_deref().map(parse_selector).transpose()?;
    let keep = KeepPolicy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: None,
    };
    let backup_keep = KeepPolicy {
        last: args.backup_keep_last,
        daily: args.backup_keep_daily,
        weekly: args.backup_keep_weekly,
        monthly: args.backup_keep_monthly,
        yearly: args.backup_keep_yearly,
        ..Default::default()
    };
    let spec = VirtualMachineSnapshotScheduleSpec {
        vm_name: args.vm.clone(),
        selector,
        cron: args.cron.clone(),
        every: args.every.clone(),
        time_zone: args.time_zone.clone(),
        keep: (keep != KeepPolicy::default()).then_some(keep),
        backup_to: args.backup_to.clone(),
        backup_keep: (backup_keep != KeepPolicy::default()).then_some(backup_keep),
        ..Default::default()
    };
    let session = conn.connect().await?;
    let schedule = VirtualMachineSnapshotSchedule::new(&args.name, spec);
    let created = session
        .api::<VirtualMachineSnapshotSchedule>()
        .create(&PostParams::default(), &schedule)
        .await
        .map_err(|e| session.error(e, "create", Kind::Schedule, &args.name))?;
    let what = match (&args.vm, &args.selector) {
        (Some(vm), _) => format!("VM \"{vm}\""),
        (_, Some(sel)) => format!("the VMs matching {sel}"),
        _ => String::new(),
    };
    let when = match (&args.every, &args.cron) {
        (Some(every), _) => format!("every {every}"),
        (_, Some(cron)) => format!("at \"{cron}\" ({})", args.time_zone.as_deref().unwrap_or("UTC")),
        _ => String::new(),
    };
    let backups = args
        .backup_to
        .as_deref()
        .map(|repo| format!(", each backed up to repository \"{repo}\""))
        .unwrap_or_default();
    println!(
        "schedule \"{}\" created: snapshots of {what} {when}{backups}",
        created.metadata.name.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_key_value_pairs() {
        let s = parse_selector("tier=db, env=prod").unwrap();
        assert_eq!(s.match_labels.unwrap().len(), 2);
        for bad in ["tier", "tier!=db", "", "a=b=c"] {
            assert_eq!(parse_selector(bad).unwrap_err().exit, Exit::Usage, "{bad}");
        }
    }
}
