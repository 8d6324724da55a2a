//! The typed guest agent commands vmsnap uses, and their arguments.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::types::{
    ExecStarted, ExecStatus, FsfreezeStatus, GuestAgentInfo, GuestFilesystemInfo, GuestHostName,
    GuestNetworkInterface, GuestOsInfo,
};
use crate::command::{Empty, commands};

commands!(QgaCommand {
    /// `guest-sync-delimited`: echo `id` after a `0xFF` sentinel. The client uses it to resync.
    GuestSyncDelimited = "guest-sync-delimited", SyncArgs => u64;
    /// `guest-sync`: echo `id` without a sentinel (prefer `guest-sync-delimited`).
    GuestSync = "guest-sync", SyncArgs => u64;
    /// `guest-ping`: is the agent alive?
    GuestPing = "guest-ping", () => Empty;
    /// `guest-info`: the agent version and its commands.
    GuestInfo = "guest-info", () => GuestAgentInfo;
    /// `guest-get-osinfo`: the guest OS.
    GuestGetOsinfo = "guest-get-osinfo", () => GuestOsInfo;
    /// `guest-get-host-name`: the guest host name.
    GuestGetHostName = "guest-get-host-name", () => GuestHostName;
    /// `guest-get-time`: guest wall clock, in nanoseconds since the epoch.
    GuestGetTime = "guest-get-time", () => i64;
    /// `guest-fsfreeze-status`: whether filesystems are frozen.
    GuestFsfreezeStatus = "guest-fsfreeze-status", () => FsfreezeStatus;
    /// `guest-fsfreeze-freeze`: sync and freeze all local filesystems; returns how many.
    /// It can take long (it syncs dirty data first): give it a generous timeout.
    GuestFsfreezeFreeze = "guest-fsfreeze-freeze", () => i64;
    /// `guest-fsfreeze-freeze-list`: freeze the given mountpoints (all when `None`); returns how many.
    GuestFsfreezeFreezeList = "guest-fsfreeze-freeze-list", FreezeListArgs => i64;
    /// `guest-fsfreeze-thaw`: thaw; returns how many filesystems were thawed.
    GuestFsfreezeThaw = "guest-fsfreeze-thaw", () => i64;
    /// `guest-get-fsinfo`: mounted filesystems and the disks (with serials) below them.
    GuestGetFsinfo = "guest-get-fsinfo", () => Vec<GuestFilesystemInfo>;
    /// `guest-exec`: start a process; poll it with `guest-exec-status`.
    GuestExec = "guest-exec", ExecArgs => ExecStarted;
    /// `guest-exec-status`: state and captured output of a started process.
    GuestExecStatus = "guest-exec-status", ExecStatusArgs => ExecStatus;
    /// `guest-shutdown`: ask the guest to shut down. Never replies on success.
    GuestShutdown = "guest-shutdown", ShutdownArgs => () { const SUCCESS_RESPONSE: bool = false; };
    /// `guest-network-get-interfaces`: interfaces and addresses.
    GuestNetworkGetInterfaces = "guest-network-get-interfaces", () => Vec<GuestNetworkInterface>;
});

/// Arguments of `guest-sync` and `guest-sync-delimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncArgs {
    /// A random number the agent echoes back (kept below 2^53 so every JSON parser reads it exactly).
    pub id: u64,
}

/// Arguments of `guest-fsfreeze-freeze-list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FreezeListArgs {
    /// Mountpoints to freeze; every mounted filesystem when `None`. Unknown ones are ignored by the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mountpoints: Option<Vec<String>>,
}

/// Arguments of `guest-exec`. Build with [`ExecArgs::new`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecArgs {
    /// The program, as a path or a name looked up in the agent's `PATH`.
    pub path: String,
    /// The arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg: Option<Vec<String>>,
    /// Environment entries, `NAME=value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Standard input, base64-encoded (use [`ExecArgs::input`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_data: Option<String>,
    /// Whether to capture stdout and stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_output: Option<bool>,
}

impl ExecArgs {
    /// Runs `path` with `args`, capturing its output.
    pub fn new<S: AsRef<str>>(path: &str, args: &[S]) -> Self {
        Self {
            path: path.to_owned(),
            arg: Some(args.iter().map(|a| a.as_ref().to_owned()).collect()),
            capture_output: Some(true),
            ..Self::default()
        }
    }

    /// Feeds `data` to the process's standard input.
    pub fn input(mut self, data: &[u8]) -> Self {
        self.input_data = Some(STANDARD.encode(data));
        self
    }

    /// Adds an environment entry `NAME=value`.
    pub fn env(mut self, entry: &str) -> Self {
        self.env.get_or_insert_with(Vec::new).push(entry.to_owned());
        self
    }
}

/// Arguments of `guest-exec-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStatusArgs {
    /// The pid `guest-exec` returned.
    pub pid: i64,
}

/// Arguments of `guest-shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShutdownArgs {
    /// How to shut down; the agent's default is `powerdown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ShutdownMode>,
}

/// The `mode` of `guest-shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownMode {
    /// Halt without powering off.
    Halt,
    /// Power off.
    Powerdown,
    /// Reboot.
    Reboot,
}
