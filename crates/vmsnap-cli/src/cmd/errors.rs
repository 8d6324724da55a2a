//! One-line errors for the user commands, and the exit codes scripts can rely on.
//!
//! API errors arrive as Kubernetes `Status` objects; [`api_error`] turns each into a sentence that
//! names the object and says what to do, and picks the exit code from the `Status` code and reason.
//! A refusal the user can act on (the VM runs, a snapshot holds it) is told by vmsnap's cause in
//! the `Status` ([`RefusalCause`]); the message texts are KubeVirt's and are never matched.

use std::fmt;
use std::process::ExitCode;

use kube::core::Status;
use kube::core::response::StatusCause;
use vmsnap_api::refusal::{Refusal, RefusalCause};

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

/// Maps a `Status` to a one-line error: from its code and reason, and, for the refusals a user can
/// act on, from vmsnap's cause in `details.causes` ([`RefusalCause`]); never from its message text.
pub fn status_error(status: &Status, action: &str, target: &Target<'_>, server: &str) -> CliError {
    if let Some(refusal) = RefusalCause::find(causes(status)) {
        return refused(&refusal, status, action, target);
    }
    let label = target.label();
    let message = server_says(status);
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
        (409, _) | (422, _) | (_, "Conflict") | (_, "Invalid") => {
            CliError::new(Exit::Conflict, format!("cannot {action} {label}: {message}"))
        }
        (504, _) | (_, "Timeout") => {
            CliError::new(Exit::Timeout, format!("cannot {action} {label}: {message}: try again"))
        }
        _ => CliError::new(Exit::Error, format!("cannot {action} {label}: {message}")),
    }
}

fn causes(status: &Status) -> &[StatusCause] {
    status.details.as_ref().map_or(&[], |details| &details.causes)
}

/// What the server says. An admission rule's refusal (causes, and no object named in the details)
/// is told by its causes, each `field: message` as kubectl lists them: the `Status` message around
/// them is the API server's (`admission webhook "NAME" denied the request: `, and a newer
/// kube-apiserver puts `<resource> "<name>" is forbidden: ` before that), which helps nobody here.
/// Anything else is its message.
fn server_says(status: &Status) -> String {
    let names_an_object = status.details.as_ref().is_some_and(|d| !d.kind.is_empty() || !d.name.is_empty());
    let told: Vec<String> = causes(status)
        .iter()
        .filter(|cause| !cause.message.is_empty() && !RefusalCause::is_refusal(cause))
        .map(|cause| match cause.field.as_str() {
            "" => cause.message.clone(),
            field => format!("{field}: {}", cause.message),
        })
        .collect();
    if names_an_object || told.is_empty() || !matches!(status.code, 400 | 409 | 422) {
        return status.message.clone();
    }
    told.join(", ")
}

/// KubeVirt's refusal: its causes' messages, which KubeVirt joins into its `Status` message (the
/// API server's wrapping left out, see [`server_says`]).
fn kubevirts_message(status: &Status) -> String {
    let messages: Vec<&str> = causes(status)
        .iter()
        .filter(|cause| !cause.message.is_empty() && !RefusalCause::is_refusal(cause))
        .map(|cause| cause.message.as_str())
        .collect();
    if messages.is_empty() { status.message.clone() } else { messages.join(", ") }
}

/// A refusal because of the current state, as a sentence about the VM and what to do.
fn refused(cause: &RefusalCause, status: &Status, action: &str, target: &Target<'_>) -> CliError {
    let vm = target.name;
    let blocker = cause.blocker.as_deref();
    let line = match cause.refusal {
        Refusal::AlreadyRunning => format!("VM \"{vm}\" is already running"),
        Refusal::NotRunning => return not_running(vm),
        Refusal::AlreadyPaused => format!("VM \"{vm}\" is already paused"),
        Refusal::NotPaused => format!("VM \"{vm}\" is not paused: pause it with: vmsnap vm pause {vm}"),
        Refusal::UnpauseDuringSnapshot => match blocker {
            Some(snapshot) => format!(
                "VM \"{vm}\" cannot be unpaused while its snapshot \"{snapshot}\" is in progress: wait for it with: vmsnap snapshot describe {snapshot}"
            ),
            None => format!(
                "VM \"{vm}\" cannot be unpaused while a snapshot of it is in progress: wait for it (vmsnap snapshot list {vm})"
            ),
        },
        Refusal::SnapshotLock | Refusal::RestoreLock | Refusal::RestoreInProgress => {
            let hint = match (cause.refusal, blocker) {
                (Refusal::SnapshotLock, Some(snapshot)) => {
                    format!(": wait for it with: vmsnap snapshot describe {snapshot}")
                }
                (Refusal::RestoreLock, Some(restore)) => {
                    format!(": wait for it (kubectl get vmrestore {restore})")
                }
                (Refusal::RestoreInProgress, Some(restore)) => {
                    format!(": wait for it, or delete it with: kubectl delete vmrestore {restore}")
                }
                _ => String::new(),
            };
            format!("cannot {action} {}: {}{hint}", target.label(), kubevirts_message(status))
        }
    };
    CliError::new(Exit::Conflict, line)
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

    /// A `Status` with `details.causes`, as the servers send them.
    fn with_causes(mut status: Status, causes: Vec<StatusCause>) -> Status {
        status.details = Some(serde_json::from_value(serde_json::json!({"causes": causes})).unwrap());
        status
    }

    fn cause(reason: &str, field: &str, message: &str) -> StatusCause {
        StatusCause { reason: reason.into(), field: field.into(), message: message.into() }
    }

    /// KubeVirt's lock refusal of a VM update, and vmsnap's cause naming the snapshot.
    fn snapshot_lock(status_message: &str) -> Status {
        with_causes(
            status(422, "Invalid", status_message),
            vec![
                cause("FieldValueNotSupported", "spec", SNAPSHOT_LOCK),
                RefusalCause::blocked_by(Refusal::SnapshotLock, "s1").to_status_cause(),
            ],
        )
    }

    const SNAPSHOT_LOCK: &str = "Cannot update vm running state until snapshot \"s1\" completes";

    #[test]
    fn an_admission_denial_loses_the_webhook_name_and_gains_a_hint() {
        let relayed = format!(
            "admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: {SNAPSHOT_LOCK}"
        );
        // A newer kube-apiserver puts the object before the webhook; the causes are what it relays.
        let newer = format!("virtualmachines.kubevirt.io \"db\" is forbidden: {relayed}");
        for message in [relayed, newer] {
            let e = status_error(&snapshot_lock(&message), "stop", &target(Kind::Vm, "db"), SERVER);
            assert_eq!(e.exit, Exit::Conflict);
            assert_eq!(
                e.message,
                "cannot stop VM \"db\": Cannot update vm running state until snapshot \"s1\" completes: wait for it with: vmsnap snapshot describe s1"
            );
        }
    }

    #[test]
    fn a_lock_passed_on_by_the_node_agent_as_a_conflict_reads_the_same() {
        let mut locked =
            snapshot_lock(&format!("admission webhook \"x\" denied the request: {SNAPSHOT_LOCK}"));
        (locked.code, locked.reason) = (409, "Conflict".into());
        let e = status_error(&locked, "stop", &target(Kind::Vm, "db"), SERVER);
        assert_eq!(e.exit, Exit::Conflict);
        assert!(
            e.message.ends_with("completes: wait for it with: vmsnap snapshot describe s1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_restore_in_progress_says_which_and_how_to_remove_it() {
        let message = "VirtualMachineRestore \"r1\" in progress";
        let s = with_causes(
            status(422, "Invalid", &format!("admission webhook \"w\" denied the request: {message}")),
            vec![
                cause("FieldValueInvalid", "spec.target", message),
                RefusalCause::blocked_by(Refusal::RestoreInProgress, "r1").to_status_cause(),
            ],
        );
        let e = status_error(&s, "create", &target(Kind::Restore, "r2"), SERVER);
        assert_eq!(
            (e.exit, e.message.as_str()),
            (
                Exit::Conflict,
                "cannot create restore \"r2\": VirtualMachineRestore \"r1\" in progress: wait for it, or delete it with: kubectl delete vmrestore r1"
            )
        );
    }

    #[test]
    fn kubevirt_conflicts_become_sentences_about_the_vm() {
        let refusal = |message: &str, refusal| {
            with_causes(status(409, "Conflict", message), vec![RefusalCause::new(refusal).to_status_cause()])
        };
        let cases = [
            (refusal("VM is already running", Refusal::AlreadyRunning), "VM \"db\" is already running"),
            (refusal("VMI is already paused", Refusal::AlreadyPaused), "VM \"db\" is already paused"),
            (
                refusal("VMI is not paused", Refusal::NotPaused),
                "VM \"db\" is not paused: pause it with: vmsnap vm pause db",
            ),
            (
                refusal("VMI is not running", Refusal::NotRunning),
                "VM \"db\" is not running: start it with: vmsnap vm start db",
            ),
            (
                with_causes(
                    status(409, "Conflict", "VM snapshot is in progress"),
                    vec![RefusalCause::blocked_by(Refusal::UnpauseDuringSnapshot, "s1").to_status_cause()],
                ),
                "VM \"db\" cannot be unpaused while its snapshot \"s1\" is in progress: wait for it with: vmsnap snapshot describe s1",
            ),
        ];
        for (refused, line) in cases {
            let e = status_error(&refused, "act on", &target(Kind::Vm, "db"), SERVER);
            assert_eq!((e.exit, e.message.as_str()), (Exit::Conflict, line));
        }
    }

    #[test]
    fn a_status_without_causes_from_an_older_or_foreign_server_is_told_as_it_came() {
        let e = status_error(
            &status(409, "Conflict", "VM is already running"),
            "start",
            &target(Kind::Vm, "db"),
            SERVER,
        );
        assert_eq!(
            (e.exit, e.message.as_str()),
            (Exit::Conflict, "cannot start VM \"db\": VM is already running")
        );
        let relayed = format!(
            "admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: {SNAPSHOT_LOCK}"
        );
        let e = status_error(&status(422, "Invalid", &relayed), "stop", &target(Kind::Vm, "db"), SERVER);
        assert_eq!((e.exit, e.message), (Exit::Conflict, format!("cannot stop VM \"db\": {relayed}")));
    }

    #[test]
    fn a_denial_without_a_refusal_lists_its_causes_with_their_fields() {
        let s = with_causes(
            status(
                422,
                "Invalid",
                "admission webhook \"w\" denied the request: spec.cron: bad, invalid kind",
            ),
            vec![
                cause("FieldValueInvalid", "spec.cron", "bad"),
                cause("FieldValueInvalid", "", "invalid kind"),
            ],
        );
        let e = status_error(&s, "create", &target(Kind::Schedule, "s"), SERVER);
        assert_eq!(
            (e.exit, e.message.as_str()),
            (Exit::Conflict, "cannot create schedule \"s\": spec.cron: bad, invalid kind")
        );
        // The API server's own validation names the object: its message is kept as it is.
        let mut invalid = with_causes(
            status(
                422,
                "Invalid",
                "VirtualMachineSnapshot.snapshot.kubevirt.io \"s1\" is invalid: spec: Required value",
            ),
            vec![cause("FieldValueRequired", "spec", "Required value")],
        );
        invalid.details.as_mut().unwrap().name = "s1".into();
        let e = status_error(&invalid, "create", &target(Kind::Snapshot, "s1"), SERVER);
        assert_eq!(e.message, format!("cannot create snapshot \"s1\": {}", invalid.message));
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
