//! `vmsnap schedule create NAME (--vm VM | --selector SEL) (--every 1h | --cron EXPR) ...`.

use std::process::ExitCode;

use clap::{ArgGroup, Args};
use kube::api::PostParams;
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use vmsnap_api::label_selector::Selector;
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
    /// The VMs to snapshot: those this label selector matches at each run, in kubectl's syntax
    /// (`tier=db,env!=dev,zone in (a,b),!legacy`).
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

/// A label selector in kubectl's syntax (`tier=db,env!=dev,zone in (a,b),!legacy`) as the
/// schedule's `metav1.LabelSelector`.
fn parse_selector(text: &str) -> CliResult<LabelSelector> {
    let usage = |why: String| CliError::new(Exit::Usage, format!("--selector {text:?}: {why}"));
    let selector = Selector::parse(text).map_err(|e| usage(e.to_string()))?;
    if selector.0.is_empty() {
        return Err(usage("it selects every VM: give at least one requirement (tier=db)".into()));
    }
    selector.to_label_selector().map_err(|e| usage(e.to_string()))
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
    outln!(
        "schedule \"{}\" created: snapshots of {what} {when}{backups}",
        created.metadata.name.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_take_kubectl_syntax_into_match_labels_and_expressions() {
        let s = parse_selector("a=b,c!=d,e in (x,y),f notin (z),g,!h").unwrap();
        assert_eq!(s.match_labels.unwrap().get("a").map(String::as_str), Some("b"));
        let ops: Vec<(String, String, Option<Vec<String>>)> =
            s.match_expressions.unwrap().into_iter().map(|e| (e.key, e.operator, e.values)).collect();
        let v = |vs: &[&str]| Some(vs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            ops,
            vec![
                ("c".into(), "NotIn".into(), v(&["d"])),
                ("e".into(), "In".into(), v(&["x", "y"])),
                ("f".into(), "NotIn".into(), v(&["z"])),
                ("g".into(), "Exists".into(), None),
                ("h".into(), "DoesNotExist".into(), None),
            ]
        );
    }

    #[test]
    fn bad_selectors_are_usage_errors_naming_the_term() {
        for (bad, term) in [
            ("tier=db,zone in (a b)", "\"zone in (a b)\""),
            ("tier=db,,env=prod", "an empty term"),
            ("tier==db==x", "\"tier==db==x\""),
            ("n>1", "\"n>1\""),
            ("", "every VM"),
        ] {
            let e = parse_selector(bad).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{bad}");
            assert!(e.message.contains(term), "{bad}: {}", e.message);
        }
    }
}
