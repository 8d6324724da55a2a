//! One-line errors for the user commands, and the exit codes scripts can rely on.
//!
//! API errors arrive as Kubernetes `Status` objects; [`api_error`] turns each into a sentence that
//! names the object and says what to do, and picks the exit code from the `Status` reason.

use std::fmt;
use std::process::ExitCode;

use kube::core::Status;

/// The exit codes of the user commands (documented in `vmsnap --help` and `docs/cli.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Something else went wrong.
    Error = 1,
    /// The command line is wrong (clap uses 2 as well).
    Usage = 2,
    /// The VM, snapshot or restore does not exist.
    NotFound = 3,
    /// The current state does not allow it: running VM, name clash, snapshot not ready, lock held.
    Conflict = 4,
    /// The snapshot or restore was carried out and failed.
    Failed = 5,
    /// Waiting ran out of time (the operation goes on in the background).
    Timeout = 6,
    /// The API server cannot be reached, or refuses the credentials or the permission.
    Connection = 7,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A user-facing failure: one line and an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// What is wrong and what to do, in one line.
    pub message: String,
}

impl CliError {
    /// An error with an exit code.
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError { exit, message: message.into() }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of a user command.
pub type CliResult<T> = Result<T, CliError>;

/// The kind of object an API call was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A VirtualMachine.
    Vm,
    /// The running instance of a VM (its errors are reported about the VM).
    Vmi,
    /// A VirtualMachineSnapshot.
    Snapshot,
    /// A VirtualMachineRestore.
    Restore,
    /// A VirtualMachineSnapshotSchedule.
    Schedule,
    /// A VirtualMachineBackupRepository.
    Repository,
    /// A VirtualMachineRepositoryBackup.
    Backup,
    /// A VirtualMachineRepositoryRestore.
    BackupRestore,
    /// A Secret.
    Secret,
}

/// The object an API call was about, for the message.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
}

impl Target<'_> {
    /// `VM "db"`, `snapshot "s1"`, `restore "r1"`.
    pub fn label(&self) -> String {
        let word = match self.kind {
            Kind::Vm | Kind::Vmi => "VM",
            Kind::Snapshot => "snapshot",
            Kind::Restore => "restore",
            Kind::Schedule => "schedule",
            Kind::Repository => "repository",
            Kind::Backup => "backup",
            Kind::BackupRestore => "backup restore",
            Kind::Secret => "Secret",
        };
        format!("{word} \"{}\"", self.name)
    }

    /// The one-line error for an object that does not exist.
    pub fn not_found(&self) -> CliError {
        let (label, ns, name) = (self.label(), self.namespace, self.name);
        match self.kind {
            Kind::Vm => CliError::new(
                Exit::NotFound,
                format!("{label} not found in namespace \"{ns}\": list VMs with: vmsnap vm list"),
            ),
            Kind::Vmi => not_running(name),
            Kind::Snapshot => CliError::new(
                Exit::NotFound,
                format!("{label} not found in namespace \"{ns}\": list snapshots with: vmsnap snapshot list"),
            ),
            Kind::Restore => CliError::new(
                Exit::NotFound,
                format!(
                    "{label} not found in namespace \"{ns}\": list restores with: kubectl get vmrestores"
                ),
            ),
            Kind::Schedule => CliError::new(
                Exit::NotFound,
                format!("{label} not found in namespace \"{ns}\": list schedules with: vmsnap schedule list"),
            ),
            Kind::Repository => CliError::new(
                Exit::NotFound,
                format!("{label} not found in namespace \"{ns}\": list repositories with: vmsnap repo list"),
            ),
            Kind::Backup => CliError::new(
                Exit::NotFound,
                format!("{label} not found in namespace \"{ns}\": list backups with: vmsnap backup list"),
            ),
            Kind::BackupRestore => CliError::new(
                Exit::NotFound,
                format!("{label} not found in namespace \"{ns}\": list them with: kubectl get vmrrestores"),
            ),
            Kind::Secret => CliError::new(Exit::NotFound, format!("{label} not found in namespace \"{ns}\"")),
        }
    }
}

/// `VM "db" is not running: ...`.
pub fn not_running(vm: &str) -> CliError {
    CliError::new(Exit::Conflict, format!("VM \"{vm}\" is not running: start it with: vmsnap vm start {vm}"))
}

/// The one-line error for a failed API call: `action` is a verb phrase (`create`, `stop`).
pub fn api_error(error: kube::Error, action: &str, target: &Target<'_>, server: &str) -> CliError {
    match error {
        kube::Error::Api(status) => status_error(&status, action, target, server),
        kube::Error::HyperError(_) | kube::Error::Service(_) => CliError::new(
            Exit::Connection,
            format!(
                "cannot reach the API server at {server}: is vmsnap serve running? ({})",
                root_cause(&error)
            ),
        ),
        other => {
            CliError::new(Exit::Error, format!("cannot {action} {}: {}", target.label(), root_cause(&other)))
        }
    }
}

/// The innermost cause of an error, which is usually the informative one (`Connection refused`).
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Maps a `Status` to a one-line error.
pub fn status_error(status: &Status, action: &str, target: &Target<'_>, server: &str) -> CliError {
    let label = target.label();
    let message = strip_webhook(&status.message);
    let about_other_object =
        status.details.as_ref().is_some_and(|d| !d.name.is_empty() && d.name != target.name);
    match (status.code, status.reason.as_str()) {
        (404, _) | (_, "NotFound") if about_other_object => {
            CliError::new(Exit::NotFound, format!("cannot {action} {label}: {message}"))
        }
        (404, _) | (_, "NotFound") => target.not_found(),
        (_, "AlreadyExists") => already_exists(target),
        (401, _) | (_, "Unauthorized") => CliError::new(
            Exit::Connection,
            format!("the API server at {server} refused the credentials: check the token in the kubeconfig"),
        ),
        (403, _) | (_, "Forbidden") => {
            CliError::new(Exit::Connection, format!("not allowed to {action} {label}: {message}"))
        }
        (409, _) | (422, _) | (_, "Conflict") | (_, "Invalid") => conflict(message, action, target),
        (504, _) | (_, "Timeout") => {
            CliError::new(Exit::Timeout, format!("cannot {action} {label}: {message}: try again"))
        }
        _ => CliError::new(Exit::Error, format!("cannot {action} {label}: {message}")),
    }
}

/// The name is taken: how to pick another or remove the old object.
pub fn already_exists(target: &Target<'_>) -> CliError {
    let (label, name) = (target.label(), target.name);
    let todo = match target.kind {
        Kind::Snapshot => format!("pick another --name, or delete it with: vmsnap snapshot delete {name}"),
        Kind::Restore => format!("pick another --name, or delete it with: kubectl delete vmrestore {name}"),
        Kind::Schedule => format!("pick another name, or delete it with: vmsnap schedule delete {name}"),
        Kind::Repository => format!("pick another name, or remove it with: vmsnap repo delete {name}"),
        Kind::Backup => format!("pick another --name, or delete it with: vmsnap backup delete {name}"),
        Kind::BackupRestore => {
            format!("pick another --name, or delete it with: kubectl delete vmrrestore {name}")
        }
        Kind::Secret => {
            format!("delete it with: kubectl delete secret {name}, or pick another repository name")
        }
        Kind::Vm | Kind::Vmi => "pick another name".to_owned(),
    };
    CliError::new(Exit::Conflict, format!("{label} already exists: {todo}"))
}

/// A refusal because of the current state: KubeVirt's messages, made into sentences about the VM.
fn conflict(message: &str, action: &str, target: &Target<'_>) -> CliError {
    let vm = target.name;
    let known = match message {
        "VM is already running" => Some(format!("VM \"{vm}\" is already running")),
        "VM is not running" | "VMI is not running" => return not_running(vm),
        "VMI is already paused" => Some(format!("VM \"{vm}\" is already paused")),
        "VMI is not paused" => {
            Some(format!("VM \"{vm}\" is not paused: pause it with: vmsnap vm pause {vm}"))
        }
        "VM snapshot is in progress" => Some(format!(
            "VM \"{vm}\" cannot be unpaused while a snapshot of it is in progress: wait for it (vmsnap snapshot list {vm})"
        )),
        _ => None,
    };
    if let Some(line) = known {
        return CliError::new(Exit::Conflict, line);
    }
    let hint = match quoted_after(message, "until snapshot ") {
        Some(snapshot) => format!(": wait for it with: vmsnap snapshot describe {snapshot}"),
        None => match quoted_after(message, "VirtualMachineRestore ") {
            Some(restore) if message.ends_with("in progress") => {
                format!(": wait for it, or delete it with: kubectl delete vmrestore {restore}")
            }
            _ => String::new(),
        },
    };
    CliError::new(Exit::Conflict, format!("cannot {action} {}: {message}{hint}", target.label()))
}

/// Removes `admission webhook "NAME" denied the request: ` (the webhook's name helps nobody here).
pub fn strip_webhook(message: &str) -> &str {
    match message.find("denied the request: ") {
        Some(i) if message.starts_with("admission webhook") => &message[i + "denied the request: ".len()..],
        _ => message,
    }
}

/// The first `"quoted"` word after `prefix` in `message`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "https://127.0.0.1:7443";

    fn status(code: u16, reason: &str, message: &str) -> Status {
        Status { code, reason: reason.into(), message: message.into(), ..Default::default() }
    }

    fn target(kind: Kind, name: &str) -> Target<'_> {
        Target { kind, name, namespace: "default" }
    }

    #[test]
    fn a_missing_vm_names_the_namespace_and_how_to_list_vms() {
        let e = status_error(
            &status(404, "NotFound", "virtualmachines.kubevirt.io \"db\" not found"),
            "snapshot",
            &target(Kind::Vm, "db"),
            SERVER,
        );
        assert_eq!(e.exit, Exit::NotFound);
        assert_eq!(e.message, "VM \"db\" not found in namespace \"default\": list VMs with: vmsnap vm list");
    }

    #[test]
    fn a_name_clash_says_how_to_pick_another_name_or_delete_the_old_snapshot() {
        let e =
            status_error(&status(409, "AlreadyExists", "x"), "create", &target(Kind::Snapshot, "s1"), SERVER);
        assert_eq!(e.exit, Exit::Conflict);
        assert_eq!(
            e.message,
            "snapshot \"s1\" already exists: pick another --name, or delete it with: vmsnap snapshot delete s1"
        );
    }

    #[test]
    fn a_missing_instance_means_the_vm_is_not_running() {
        let e = status_error(&status(404, "NotFound", "x"), "pause", &target(Kind::Vmi, "db"), SERVER);
        assert_eq!(
            (e.exit, e.message.as_str()),
            (Exit::Conflict, "VM \"db\" is not running: start it with: vmsnap vm start db")
        );
    }

    #[test]
    fn an_admission_denial_loses_the_webhook_name_and_gains_a_hint() {
        let e = status_error(
            &status(
                422,
                "Invalid",
                "admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: Cannot update vm running state until snapshot \"s1\" completes",
            ),
            "stop",
            &target(Kind::Vm, "db"),
            SERVER,
        );
        assert_eq!(e.exit, Exit::Conflict);
        assert_eq!(
            e.message,
            "cannot stop VM \"db\": Cannot update vm running state until snapshot \"s1\" completes: wait for it with: vmsnap snapshot describe s1"
        );
    }

    #[test]
    fn kubevirt_conflicts_become_sentences_about_the_vm() {
        let e = status_error(
            &status(409, "Conflict", "VM is already running"),
            "start",
            &target(Kind::Vm, "db"),
            SERVER,
        );
        assert_eq!((e.exit, e.message.as_str()), (Exit::Conflict, "VM \"db\" is already running"));
    }

    #[test]
    fn refused_credentials_are_a_connection_error() {
        let e = status_error(
            &status(401, "Unauthorized", "Unauthorized"),
            "list",
            &target(Kind::Vm, "x"),
            SERVER,
        );
        assert_eq!(e.exit, Exit::Connection);
        assert!(e.message.contains(SERVER), "{}", e.message);
    }

    #[test]
    fn a_missing_namespace_is_reported_as_such() {
        let mut s = status(404, "NotFound", "namespaces \"nope\" not found");
        s.details =
            Some(serde_json::from_value(serde_json::json!({"name": "nope", "kind": "namespaces"})).unwrap());
        let e = status_error(&s, "create", &target(Kind::Snapshot, "s1"), SERVER);
        assert_eq!(
            (e.exit, e.message.as_str()),
            (Exit::NotFound, "cannot create snapshot \"s1\": namespaces \"nope\" not found")
        );
    }
}
