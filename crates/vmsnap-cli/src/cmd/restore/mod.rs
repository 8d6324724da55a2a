//! `vmsnap restore VM --snapshot NAME`: creates a VirtualMachineRestore (in place, or `--to` a new
//! VM) and, unless `--no-wait`, follows it with watches until it completes.

mod checks;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::json;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance, run_strategy};
use vmsnap_api::snapshot::{
    VirtualMachineRestore, VirtualMachineSnapshot, target_readiness_policy, volume_restore_policy,
};

use super::client::{ConnectionArgs, Session};
use super::errors::{self, CliError, CliResult, Exit, Kind};
use super::output::{create_and_print, print_objects, seconds};
use super::progress::FollowArgs;
use super::progress::restore::{RestoreSeen, RestoreTracker};
use super::progress::watch::{self, Request, Run};
use super::timestamp_suffix;
use checks::RunningTarget;

/// `vmsnap restore`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vmsnap restore db --snapshot before-upgrade                 # VM db must be stopped
  vmsnap restore db --snapshot before-upgrade --stop-target   # stop it if it runs
  vmsnap restore db --snapshot before-upgrade --to db-copy    # a new VM from the snapshot
  vmsnap restore db --snapshot s1 --volume-policy in-place --no-wait")]
pub struct RestoreArgs {
    /// The VM the snapshot was taken of (restored in place unless --to is given).
    vm: String,
    /// The snapshot to restore.
    #[arg(long, value_name = "NAME")]
    snapshot: String,
    /// Create a new VM with this name from the snapshot instead of restoring VM in place.
    #[arg(long, value_name = "NEW_VM")]
    to: Option<String>,
    /// Stop the target VM if it runs (targetReadinessPolicy StopTarget).
    #[arg(long, conflicts_with = "fail_if_running")]
    stop_target: bool,
    /// Let the restore fail at once if the target VM runs (targetReadinessPolicy FailImmediate).
    #[arg(long)]
    fail_if_running: bool,
    /// How the restored volumes are named [default: the server's, randomize-names]
    #[arg(long, value_enum, value_name = "POLICY")]
    volume_policy: Option<VolumePolicy>,
    /// Name of the VirtualMachineRestore [default: TARGET-restore-YYYYMMDD-HHMMSS]
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    follow: FollowArgs,
}

/// `volumeRestorePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VolumePolicy {
    /// New PVCs named restore-<restore uid>-<volume>.
    RandomizeNames,
    /// Replace the original PVCs under their names.
    InPlace,
    /// New PVCs named <target VM>-<volume>.
    PrefixTargetName,
}

impl VolumePolicy {
    fn api_value(self) -> &'static str {
        match self {
            VolumePolicy::RandomizeNames => volume_restore_policy::RANDOMIZE_NAMES,
            VolumePolicy::InPlace => volume_restore_policy::IN_PLACE,
            VolumePolicy::PrefixTargetName => volume_restore_policy::PREFIX_TARGET_NAME,
        }
    }
}

/// Runs `vmsnap restore`.
pub async fn run(args: RestoreArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let snapshot: VirtualMachineSnapshot = session.get(Kind::Snapshot, &args.snapshot).await?;
    checks::check_snapshot(&snapshot, &args.snapshot, &args.vm)?;
    let target = args.to.clone().unwrap_or_else(|| args.vm.clone());
    let target_vm = session.get_opt::<VirtualMachine>(Kind::Vm, &target).await?;
    if args.to.is_some() {
        checks::check_new_target(&snapshot, target_vm.as_ref(), &target, &args.vm)?;
    }
    let vmi = match &target_vm {
        Some(_) => session.get_opt::<VirtualMachineInstance>(Kind::Vmi, &target).await?,
        None => None,
    };
    let policy = match (args.stop_target, args.fail_if_running) {
        (true, _) => RunningTarget::Stop,
        (_, true) => RunningTarget::Fail,
        _ => RunningTarget::Refuse,
    };
    checks::check_running(&target, vmi.as_ref(), policy)?;

    let name = args.name.clone().unwrap_or_else(|| format!("{target}-restore-{}", timestamp_suffix()));
    let object = restore_object(&args, &name, &target, policy)?;
    // KubeVirt's admission refuses a second restore of a VM whose restore is in progress before the
    // API server sees the name clash, so the name is checked first to say what actually went wrong.
    if session.get_opt::<VirtualMachineRestore>(Kind::Restore, &name).await?.is_some() {
        return Err(errors::already_exists(&session.target(Kind::Restore, &name)));
    }
    if args.follow.no_wait {
        return create_and_print(&session, Kind::Restore, &name, &object, args.follow.output.output).await;
    }
    let mut stream = watch::merge(watch::object_and_vm(
        &session,
        &name,
        &target,
        RestoreSeen::Restore,
        RestoreSeen::Vm,
        RestoreSeen::Vmi,
    ));
    let title = format!("Restore \"{name}\" of VM \"{target}\" from snapshot \"{}\":", args.snapshot);
    let request = Request { name: &name, object: &object, title, timeout: args.follow.timeout };
    let Run { followed, tracker, created, start } =
        watch::create_and_follow(&session, request, &mut stream, RestoreTracker::new(&name, vmi.is_some()))
            .await?;
    followed.done(
        |why| {
            format!(
                "restore \"{name}\" of VM \"{target}\" failed: {why}: delete it before trying again with: kubectl delete vmrestore {name}"
            )
        },
        || {
            format!(
                "restore \"{name}\" of VM \"{target}\" is not complete after {}: it goes on in the background; follow it with: kubectl get vmrestore {name} -o yaml",
                vmsnap_api::duration::format(args.follow.timeout)
            )
        },
    )?;
    let restore = tracker.last.clone().unwrap_or(created);
    match args.follow.output.output {
        Some(format) => print_objects(&[restore], format, true)?,
        None => summary(&session, &restore, &target, &args.snapshot, start.elapsed()).await,
    }
    Ok(ExitCode::SUCCESS)
}

fn restore_object(
    args: &RestoreArgs,
    name: &str,
    target: &str,
    policy: RunningTarget,
) -> CliResult<VirtualMachineRestore> {
    let mut spec = json!({
        "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target},
        "virtualMachineSnapshotName": args.snapshot,
    });
    match policy {
        RunningTarget::Stop => spec["targetReadinessPolicy"] = json!(target_readiness_policy::STOP_TARGET),
        RunningTarget::Fail => spec["targetReadinessPolicy"] = json!(target_readiness_policy::FAIL_IMMEDIATE),
        RunningTarget::Refuse => {}
    }
    if let Some(p) = args.volume_policy {
        spec["volumeRestorePolicy"] = json!(p.api_value());
    }
    serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
        "metadata": {"name": name}, "spec": spec
    }))
    .map_err(|e| CliError::new(Exit::Usage, format!("invalid restore: {e}")))
}

async fn summary(
    session: &Session,
    restore: &VirtualMachineRestore,
    target: &str,
    snapshot: &str,
    elapsed: Duration,
) {
    let name = restore.metadata.name.clone().unwrap_or_default();
    outln!(
        "VM \"{target}\" restored from snapshot \"{snapshot}\" (restore \"{name}\", {}).",
        seconds(elapsed)
    );
    let restores = restore.status.as_ref().map(|s| s.restores.clone()).unwrap_or_default();
    if !restores.is_empty() {
        outln!("  Volumes:");
        let width = restores.iter().map(|r| r.volume_name.len()).max().unwrap_or(0);
        for r in &restores {
            outln!("    {:<width$}   {}", r.volume_name, r.persistent_volume_claim);
        }
    }
    let vm = session.get_opt::<VirtualMachine>(Kind::Vm, target).await.ok().flatten();
    let running = session.get_opt::<VirtualMachineInstance>(Kind::Vmi, target).await.ok().flatten().is_some();
    if let Some(vm) = vm
        && !running
        && vm.spec.effective_run_strategy() == run_strategy::HALTED
    {
        outln!("  VM \"{target}\" is stopped: start it with: vmsnap vm start {target}");
    }
}
