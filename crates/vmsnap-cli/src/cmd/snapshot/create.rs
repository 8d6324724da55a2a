//! `vmsnap snapshot create VM`: creates a VirtualMachineSnapshot and, unless `--no-wait`, follows
//! it with watches until it is ready, then prints a summary (indications, disks, freeze window).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::json;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance, VmiPhase, vmi_condition};
use vmsnap_api::snapshot::{VirtualMachineSnapshot, VirtualMachineSnapshotContent, label};
use vmsnap_api::volumesnapshot::VolumeSnapshot;

use super::details::{Catalog, disk_lines, disks, indication_lines};
use crate::cmd::client::{ConnectionArgs, Session};
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};
use crate::cmd::output::{create_and_print, print_objects, seconds};
use crate::cmd::progress::FollowArgs;
use crate::cmd::progress::snapshot::{SnapshotSeen, SnapshotTracker};
use crate::cmd::progress::watch::{self, Request, Run};
use crate::cmd::{parse_deadline, timestamp_suffix};

pub const EXAMPLES: &str = "Examples:
  vmsnap snapshot create db                      # wait, showing progress, then a summary
  vmsnap snapshot create db --name before-upgrade --failure-deadline 2m
  vmsnap snapshot create db --retain --no-wait   # print the name and return";

/// `vmsnap snapshot create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The VM to snapshot.
    vm: String,
    /// Name of the snapshot [default: VM-YYYYMMDD-HHMMSS]
    #[arg(long)]
    name: Option<String>,
    /// How long the snapshot may take before it fails (`0s`: no limit; a bare number is seconds)
    /// [default: the server's, 5m]
    #[arg(long, value_name = "DURATION", value_parser = parse_deadline)]
    failure_deadline: Option<Duration>,
    /// Keep the volume snapshots when the snapshot is deleted (deletionPolicy Retain).
    #[arg(long)]
    retain: bool,
    #[command(flatten)]
    follow: FollowArgs,
}

fn snapshot_object(args: &CreateArgs, name: &str) -> CliResult<VirtualMachineSnapshot> {
    let mut spec = json!({"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": args.vm}});
    if let Some(deadline) = args.failure_deadline {
        spec["failureDeadline"] = json!(vmsnap_api::duration::format(deadline));
    }
    if args.retain {
        spec["deletionPolicy"] = json!("Retain");
    }
    serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
        "metadata": {"name": name}, "spec": spec
    }))
    .map_err(|e| CliError::new(Exit::Usage, format!("invalid snapshot: {e}")))
}

/// Runs `vmsnap snapshot create`.
pub async fn run(args: CreateArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    session.get::<VirtualMachine>(Kind::Vm, &args.vm).await?;
    let name = args.name.clone().unwrap_or_else(|| format!("{}-{}", args.vm, timestamp_suffix()));
    let object = snapshot_object(&args, &name)?;
    if args.follow.no_wait {
        return create_and_print(&session, Kind::Snapshot, &name, &object, args.follow.output.output).await;
    }

    let vmi = session.get_opt::<VirtualMachineInstance>(Kind::Vmi, &args.vm).await?;
    let expect_freeze = vmi.as_ref().is_some_and(can_freeze);
    let mut watches = watch::object_and_vm(
        &session,
        &name,
        &args.vm,
        SnapshotSeen::Snapshot,
        SnapshotSeen::Vm,
        SnapshotSeen::Vmi,
    );
    watches.push(
        watch::changes(session.api::<VirtualMachineSnapshotContent>(), Default::default())
            .map(SnapshotSeen::Content)
            .boxed(),
    );
    watches.push(volume_snapshots(&session, &args.vm));
    let mut stream = watch::merge(watches);
    let title = format!("Snapshot \"{name}\" of VM \"{}\":", args.vm);
    let request = Request { name: &name, object: &object, title, timeout: args.follow.timeout };
    let Run { followed, tracker, created, start } =
        watch::create_and_follow(&session, request, &mut stream, SnapshotTracker::new(&name, expect_freeze))
            .await?;
    let elapsed = start.elapsed();
    followed.done(
        |why| {
            format!(
                "snapshot \"{name}\" of VM \"{}\" failed: {why}: see the details with: vmsnap snapshot describe {name}",
                args.vm
            )
        },
        || timed_out(&name, &args, tracker.last.as_ref()),
    )?;
    let snapshot = tracker.last.clone().unwrap_or(created);
    match args.follow.output.output {
        Some(format) => print_objects(&[snapshot], format, true)?,
        None => summary(&session, &snapshot, &args.vm, elapsed, tracker.freeze_window(), vmi.as_ref()).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The VolumeSnapshots of the VM's snapshots (by the label the controller puts on them).
fn volume_snapshots(session: &Session, vm: &str) -> BoxStream<'static, SnapshotSeen> {
    let config = kube::runtime::watcher::Config::default().labels(&format!("{}={vm}", label::SOURCE_VM_NAME));
    watch::changes(session.api::<VolumeSnapshot>(), config).map(SnapshotSeen::VolumeSnapshot).boxed()
}

/// Whether the controller will freeze this VMI: running, with a guest agent, not paused.
fn can_freeze(vmi: &VirtualMachineInstance) -> bool {
    let Some(st) = &vmi.status else { return false };
    let has = |t: &str| st.conditions.iter().any(|c| c.type_ == t && c.status == "True");
    st.phase == Some(VmiPhase::Running) && has(vmi_condition::AGENT_CONNECTED) && !has(vmi_condition::PAUSED)
}

fn timed_out(name: &str, args: &CreateArgs, last: Option<&VirtualMachineSnapshot>) -> String {
    let phase = last
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "not started".into());
    format!(
        "snapshot \"{name}\" of VM \"{}\" is not ready after {} (phase {phase}): it goes on in the background; follow it with: vmsnap snapshot describe {name}",
        args.vm,
        vmsnap_api::duration::format(args.follow.timeout)
    )
}

async fn summary(
    session: &Session,
    snapshot: &VirtualMachineSnapshot,
    vm_name: &str,
    elapsed: Duration,
    freeze_window: Option<Duration>,
    vmi: Option<&VirtualMachineInstance>,
) {
    let name = snapshot.metadata.name.clone().unwrap_or_default();
    outln!("Snapshot \"{name}\" of VM \"{vm_name}\" is ready ({}).", seconds(elapsed));
    let window = match (freeze_window, vmi) {
        (Some(w), _) => {
            format!("{} (guest frozen to thawed, measured by this client from watch events)", seconds(w))
        }
        (None, None) => "none: the VM was stopped".into(),
        (None, Some(v))
            if v.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Paused" && c.status == "True")) =>
        {
            "none: the VM was paused, the snapshot is crash-consistent".into()
        }
        (None, Some(_)) => {
            "none: the guest was not frozen (no guest agent), the snapshot is crash-consistent".into()
        }
    };
    outln!("  Freeze window: {window}");
    let catalog = Catalog::load(session).await;
    let vm = session.get_opt::<VirtualMachine>(Kind::Vm, vm_name).await.ok().flatten();
    for line in
        indication_lines(snapshot).into_iter().chain(disk_lines(&disks(snapshot, &catalog, vm.as_ref())))
    {
        outln!("  {line}");
    }
}
