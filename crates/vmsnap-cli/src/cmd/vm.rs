//! `vmsnap vm list | start | stop | restart | pause | unpause`, in the style of `virtctl`: the
//! lifecycle commands call KubeVirt's subresources and return once the request is accepted.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use vmsnap_api::backup::{BackupPhase, VirtualMachineRepositoryBackup};
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance, vmi_condition};
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use super::client::{ConnectionArgs, Session};
use super::errors::{CliResult, Kind};
use super::output::{OutputArgs, Table, age, print_objects};
use super::vm_wait::{self, Until, WaitArgs};

/// `vmsnap vm`.
#[derive(Args, Debug)]
pub struct VmArgs {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Subcommand, Debug)]
enum VmCommand {
    /// List VMs: status, readiness, guest agent, age.
    #[command(after_help = "Examples:\n  vmsnap vm list\n  vmsnap vm list -n prod -o name")]
    List(OutputArgs),
    /// Start a VM.
    #[command(
        after_help = "Examples:\n  vmsnap vm start db\n  vmsnap vm start db --wait   # until its guest agent answers\n  vmsnap vm start db --paused"
    )]
    Start {
        /// The VM.
        name: String,
        /// Start with the vCPUs paused.
        #[arg(long, conflicts_with = "wait")]
        paused: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop a VM.
    #[command(
        after_help = "Examples:\n  vmsnap vm stop db\n  vmsnap vm stop db --grace-period 0   # no graceful shutdown\n  vmsnap vm stop db --wait"
    )]
    Stop {
        /// The VM.
        name: String,
        /// Seconds the guest gets to shut down, instead of the VM's terminationGracePeriodSeconds.
        #[arg(long, value_name = "SECONDS")]
        grace_period: Option<i64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Restart a running VM.
    #[command(after_help = "Examples:\n  vmsnap vm restart db\n  vmsnap vm restart db --wait")]
    Restart {
        /// The VM.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Pause a running VM's vCPUs.
    #[command(after_help = "Example:\n  vmsnap vm pause db")]
    Pause(Name),
    /// Resume a paused VM.
    #[command(after_help = "Example:\n  vmsnap vm unpause db")]
    Unpause(Name),
}

/// A VM name.
#[derive(Args, Debug)]
struct Name {
    /// The VM.
    name: String,
}

/// Runs a VM command.
pub async fn run(args: VmArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    // What to call, and what to wait for afterwards (with `--wait`).
    let (name, plural, action, body, wait) = match args.command {
        VmCommand::List(output) => return list(&session, output).await,
        VmCommand::Start { name, paused, wait } => {
            let body = if paused { json!({"paused": true}) } else { json!({}) };
            (name, "virtualmachines", "start", body, wait.until(Until::AgentConnected))
        }
        VmCommand::Stop { name, grace_period, wait } => {
            let body = grace_period.map_or(json!({}), |g| json!({"gracePeriod": g}));
            (name, "virtualmachines", "stop", body, wait.until(Until::Stopped))
        }
        VmCommand::Restart { name, wait } => {
            (name, "virtualmachines", "restart", json!({}), wait.until(Until::AgentConnected))
        }
        VmCommand::Pause(n) => (n.name, "virtualmachineinstances", "pause", json!({}), None),
        VmCommand::Unpause(n) => (n.name, "virtualmachineinstances", "unpause", json!({}), None),
    };
    let running_before = if action == "restart" {
        session.get_opt::<VirtualMachineInstance>(Kind::Vmi, &name).await?.and_then(|vmi| vmi.metadata.uid)
    } else {
        None
    };
    lifecycle(&session, &name, plural, action, &body).await?;
    if let Some((until, timeout)) = wait {
        vm_wait::wait(&session, &name, until, running_before, timeout).await?;
    }
    outln!("VM \"{name}\" {}", done_message(action, wait.is_some()));
    Ok(ExitCode::SUCCESS)
}

/// What the command reports once it is done.
fn done_message(action: &str, waited: bool) -> &'static str {
    match (action, waited) {
        ("start", false) => "was scheduled to start",
        ("start", true) => "is running and its guest agent answers",
        ("stop", false) => "was scheduled to stop",
        ("stop", true) => "is stopped",
        ("restart", false) => "was scheduled to restart",
        ("restart", true) => "was restarted and its guest agent answers",
        ("pause", _) => "was paused",
        _ => "was unpaused",
    }
}

/// Calls a VM or VMI subresource after checking that the VM exists, so that a missing VMI reads
/// "not running" rather than "not found".
async fn lifecycle(session: &Session, name: &str, plural: &str, action: &str, body: &Value) -> CliResult<()> {
    session.get::<VirtualMachine>(Kind::Vm, name).await?;
    let kind = if plural == "virtualmachineinstances" { Kind::Vmi } else { Kind::Vm };
    session
        .put_subresource(plural, name, action, body)
        .await
        .map_err(|e| session.error(e, action, kind, name))?;
    Ok(())
}

async fn list(session: &Session, output: OutputArgs) -> CliResult<ExitCode> {
    let mut vms: Vec<VirtualMachine> = session.list(Kind::Vm, "").await?;
    vms.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if let Some(format) = output.output {
        print_objects(&vms, format, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    if vms.is_empty() {
        errln!("No VMs in namespace \"{}\".", session.namespace);
        return Ok(ExitCode::SUCCESS);
    }
    let vmis: BTreeMap<String, VirtualMachineInstance> = session
        .list::<VirtualMachineInstance>(Kind::Vmi, "")
        .await?
        .into_iter()
        .map(|v| (v.metadata.name.clone().unwrap_or_default(), v))
        .collect();
    let last_snapshots = last_ready_snapshots(session).await?;
    let last_backups = last_backups(session).await?;
    let mut table = Table::new(&["NAME", "STATUS", "READY", "AGENT", "LAST-SNAPSHOT", "LAST-BACKUP", "AGE"]);
    for vm in &vms {
        let name = vm.metadata.name.clone().unwrap_or_default();
        let status = vm.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
        let agent = match vmis.get(&name).and_then(|v| v.status.as_ref()) {
            Some(st)
                if st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == vmi_condition::AGENT_CONNECTED && c.status == "True") =>
            {
                "connected"
            }
            Some(_) => "none",
            None => "-",
        };
        let last_snapshot = last_snapshots.get(&name).map_or_else(|| "-".into(), |t| age(Some(t)));
        let last_backup = last_backups.get(&name).map_or_else(|| "-".into(), |t| age(Some(t)));
        table.row(vec![
            name,
            status.printable_status.unwrap_or_else(|| "-".into()),
            ready.unwrap_or_else(|| "False".into()),
            agent.into(),
            last_snapshot,
            last_backup,
            age(vm.metadata.creation_timestamp.as_ref()),
        ]);
    }
    out!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// Each VM's newest ready snapshot: its point in time (`status.creationTime`), by VM name.
/// Per VM, the point in time of its newest succeeded backup (in any repository).
async fn last_backups(session: &Session) -> CliResult<BTreeMap<String, Time>> {
    let mut newest: BTreeMap<String, Time> = BTreeMap::new();
    for backup in session.list::<VirtualMachineRepositoryBackup>(Kind::Backup, "").await? {
        let Some(st) = backup.status.as_ref().filter(|st| st.phase == Some(BackupPhase::Succeeded)) else {
            continue;
        };
        let (Some(vm), Some(at)) = (st.vm_name.clone(), st.point_in_time.clone()) else { continue };
        if newest.get(&vm).is_none_or(|seen| seen.0 < at.0) {
            newest.insert(vm, at);
        }
    }
    Ok(newest)
}

async fn last_ready_snapshots(session: &Session) -> CliResult<BTreeMap<String, Time>> {
    let mut newest: BTreeMap<String, Time> = BTreeMap::new();
    for snapshot in session.list::<VirtualMachineSnapshot>(Kind::Snapshot, "").await? {
        let Some(st) = snapshot.status.as_ref().filter(|st| st.ready_to_use == Some(true)) else { continue };
        let Some(at) = st.creation_time.clone() else { continue };
        let vm = snapshot.spec.source.name.clone();
        if newest.get(&vm).is_none_or(|seen| seen.0 < at.0) {
            newest.insert(vm, at);
        }
    }
    Ok(newest)
}
