//! Command-line definitions and dispatch.

mod backup;
mod bench;
#[cfg(feature = "bench")]
mod bench_run;
mod client;
mod completions;
mod console;
mod console_server;
mod controller;
#[cfg(test)]
mod deploy_args;
mod errors;
mod exec;
mod guest_image;
pub(crate) mod output;
mod progress;
pub mod repo;
mod restore;
mod schedule;
mod serve;
mod show;
mod snapshot;
mod vm;
mod vm_wait;
mod webhook;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The exit codes, for `vmsnap --help` (also in docs/cli.md).
const EXIT_CODES: &str = "Exit codes of the user commands:
  0  success
  1  other error
  2  wrong command line
  3  not found: the VM, snapshot, restore, schedule, repository or backup does not exist
  4  conflict: the VM runs, the name is taken, the snapshot or backup is not ready, a lock is held
  5  the snapshot, restore or backup failed, a repository does not open, verify found bad chunks
  6  timed out waiting (the operation goes on in the background)
  7  cannot reach the API server, or it refuses the credentials or the permission
`vmsnap exec` exits with the guest command's status once the command ran.

Example:
  vmsnap snapshot create db && vmsnap snapshot list db";

/// vmsnap: VM snapshots and restores with KubeVirt's API, on one machine or in a cluster.
#[derive(Parser, Debug)]
#[command(name = "vmsnap", version, long_about = None, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    connection: client::ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the embedded control plane: API server, node agent, storage driver, controllers, web console.
    Serve(serve::ServeArgs),
    /// Run only the snapshot and restore controllers against a cluster (with leader election).
    Controller(controller::ControllerArgs),
    /// Serve the admission rules (KubeVirt's snapshot, restore and VM-lock rules, vmsnap's schedules and backups) as a validating webhook for a cluster.
    Webhook(webhook::WebhookArgs),
    /// Build the test guest image (a small Linux with the QEMU guest agent) used by the examples.
    GuestImage(guest_image::GuestImageArgs),
    /// List, start, stop, restart, pause and unpause VMs.
    Vm(vm::VmArgs),
    /// Take, list, describe and delete VM snapshots.
    Snapshot(snapshot::SnapshotArgs),
    /// Restore a VM from a snapshot, in place or as a new VM.
    Restore(restore::RestoreArgs),
    /// Take snapshots on a schedule and prune them by a keep policy: create, list, describe, suspend, resume, delete.
    Schedule(schedule::ScheduleArgs),
    /// Add, list, verify, prune and remove backup repositories (a directory or an S3 bucket).
    Repo(repo::RepoArgs),
    /// Back up VMs to a repository (incremental, deduplicated, encrypted), list, verify, delete and restore backups.
    Backup(backup::BackupArgs),
    /// Run a command in a VM's guest through its guest agent.
    Exec(exec::ExecArgs),
    /// Connect to a VM's serial console (Ctrl-] to leave).
    Console(console::ConsoleArgs),
    /// Serve the web console for another cluster, passing its API calls through.
    ConsoleServer(console_server::ConsoleServerArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Measure vmsnap against its baselines (libvirt, full copies) and print ratios and targets.
    Bench(bench::BenchArgs),
}

/// The default data directory: `$VMSNAP_DATA_DIR`, else `/var/lib/vmsnap` for root, else `~/.local/share/vmsnap`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VMSNAP_DATA_DIR") {
        return PathBuf::from(d);
    }
    if nix_is_root() {
        return PathBuf::from("/var/lib/vmsnap");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/vmsnap")
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a command; the exit code is the command's.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let conn = &cli.connection;
    let result = match cli.command {
        Command::Serve(args) => return serve::run(args).await,
        Command::GuestImage(args) => return guest_image::run(args).await,
        Command::Controller(args) => return controller::run(args).await,
        Command::Webhook(args) => return webhook::run(args).await,
        Command::Completions(args) => return Ok(completions::run(args)),
        Command::ConsoleServer(args) => return console_server::run(args).await,
        Command::Bench(args) => return bench::run(args).await,
        Command::Vm(args) => vm::run(args, conn).await,
        Command::Snapshot(args) => snapshot::run(args, conn).await,
        Command::Schedule(args) => schedule::run(args, conn).await,
        Command::Restore(args) => restore::run(args, conn).await,
        Command::Repo(args) => repo::run(args, conn).await,
        Command::Backup(args) => backup::run(args, conn).await,
        Command::Exec(args) => exec::run(args, conn).await,
        Command::Console(args) => console::run(args, conn).await,
    };
    Ok(result.unwrap_or_else(|e| {
        errln!("error: {e}");
        e.exit.into()
    }))
}

/// Parses a Go duration (`30s`, `5m`, `1h30m`) from the command line.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    vmsnap_api::duration::parse(text).map_err(|e| e.to_string())
}

/// Parses a `failureDeadline` flag: a Go duration or a number of seconds, as the API takes it.
pub fn parse_deadline(text: &str) -> Result<Duration, String> {
    vmsnap_api::duration::parse_deadline(text).map_err(|e| e.to_string())
}

/// `YYYYMMDD-HHMMSS` in UTC, for default object names.
pub fn timestamp_suffix() -> String {
    vmsnap_api::k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string()
}

/// The cluster a component running against any cluster (`controller`, `webhook`) talks to:
/// `kubeconfig` if given, else the in-cluster service account, `$KUBECONFIG` or `~/.kube/config`.
pub async fn cluster_config(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    use anyhow::Context;
    match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.context("invalid kubeconfig")
        }
        None => kube::Config::infer()
            .await
            .context("no cluster configuration found (run in a pod, set KUBECONFIG or pass --kubeconfig)"),
    }
}

/// Logs to stderr, filtered by `VMSNAP_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VMSNAP_LOG").unwrap_or_else(|_| "info".into());
    // A log line that cannot be written (stderr redirected to a file on a full disk) is dropped:
    // tracing-subscriber would otherwise report it with eprintln!, which panics the thread that
    // logged (the store's writer among them).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_the_global_flags_do_not_clash_with_controller() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["vmsnap", "-n", "prod", "--kubeconfig", "/k", "snapshot", "list"]).unwrap();
        assert_eq!(cli.connection.namespace.as_deref(), Some("prod"));
        let cli = Cli::try_parse_from(["vmsnap", "snapshot", "list", "db", "-n", "prod"]).unwrap();
        assert_eq!(cli.connection.namespace.as_deref(), Some("prod"));
    }

    #[test]
    fn every_leaf_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            let subs: Vec<_> = cmd.get_subcommands().filter(|s| s.get_name() != "help").collect();
            if subs.is_empty() {
                let help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                if !help.contains("Example") {
                    missing.push(path);
                }
                return;
            }
            for sub in subs {
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "vmsnap".into(), &mut missing);
        assert!(missing.is_empty(), "no Example in the help of: {missing:?}");
    }

    #[test]
    fn default_names_carry_a_sortable_utc_timestamp() {
        let suffix = timestamp_suffix();
        assert_eq!(suffix.len(), "20250101-120000".len());
        assert!(suffix.chars().all(|c| c.is_ascii_digit() || c == '-'), "{suffix}");
    }
}
