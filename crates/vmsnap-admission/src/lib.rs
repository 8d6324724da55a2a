//! Admission rules of KubeVirt's snapshot, restore and VirtualMachine webhooks, and of vmsnap's
//! snapshot schedules and backup kinds, as pure functions.
//!
//! The embedded API server runs them in-process; `vmsnap webhook` serves them to a real cluster as a
//! validating webhook. Messages, field paths and the quirks listed in the contract are KubeVirt's.
//! Callers look up the objects a rule needs (the snapshot, the target VM, other restores) and pass them in.

mod backup;
mod restore;
mod schedule;
mod snapshot;
mod vm;

pub use backup::{validate_backup, validate_repository, validate_repository_restore};
pub use restore::{RestoreContext, validate_restore};
pub use schedule::validate_schedule;
pub use snapshot::validate_snapshot;
pub use vm::{validate_vm_run_strategy, validate_vm_update};

/// Name of KubeVirt's snapshot webhook.
pub const SNAPSHOT_WEBHOOK: &str = "virtualmachinesnapshot-validator.snapshot.kubevirt.io";
/// Name of KubeVirt's restore webhook.
pub const RESTORE_WEBHOOK: &str = "virtualmachinerestore-validator.snapshot.kubevirt.io";
/// Name of vmsnap's VirtualMachineSnapshotSchedule webhook.
pub const SCHEDULE_WEBHOOK: &str = "virtualmachinesnapshotschedule-validator.schedule.vmsnap.io";
/// Name of vmsnap's VirtualMachineBackupRepository webhook.
pub const REPOSITORY_WEBHOOK: &str = "virtualmachinebackuprepository-validator.backup.vmsnap.io";
/// Name of vmsnap's VirtualMachineRepositoryBackup webhook.
pub const BACKUP_WEBHOOK: &str = "virtualmachinerepositorybackup-validator.backup.vmsnap.io";
/// Name of vmsnap's VirtualMachineRepositoryRestore webhook.
pub const REPOSITORY_RESTORE_WEBHOOK: &str = "virtualmachinerepositoryrestore-validator.backup.vmsnap.io";
/// Name of KubeVirt's VirtualMachine webhook.
pub const VM_WEBHOOK: &str = "virtualmachine-validator.kubevirt.io";

/// The operation being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change to an existing object.
    Update,
}

/// One reason for a denial: a field path and a message (a Kubernetes `StatusCause`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueNotFound`, ...
    pub reason: &'static str,
    /// Field path, e.g. `spec.source.apiGroup`.
    pub field: String,
    /// KubeVirt's message.
    pub message: String,
}

impl Cause {
    /// The message as a `StatusCause` carries it: without a leading `field: `, which kubectl
    /// prints before each cause itself (vmsnap's own rules put the field first so that the
    /// `Status` message, which joins the causes, names it; KubeVirt's messages do not).
    pub fn cause_message(&self) -> &str {
        self.message
            .strip_prefix(self.field.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
            .filter(|_| !self.field.is_empty())
            .unwrap_or(&self.message)
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause { reason: "FieldValueInvalid", field: field.into(), message: message.into() }
    }

    pub(crate) fn required(field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause { reason: "FieldValueRequired", field: field.into(), message: message.into() }
    }
}

/// A denied request: which webhook denied it and why.
///
/// KubeVirt's webhooks refuse in one of two ways: with causes (a 422 `Invalid` `Status` listing
/// them), or with an error when a rule cannot be evaluated (a 400 `Status` carrying only a message,
/// e.g. when the snapshot's content cannot be read). Exactly one of `causes` and `error` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The webhook's name.
    pub webhook: &'static str,
    /// The causes, in order; empty when `error` is set.
    pub causes: Vec<Cause>,
    /// KubeVirt's error message, when the webhook answered with an error instead of causes.
    pub error: Option<String>,
}

impl Denial {
    /// The message the API server shows: `admission webhook "NAME" denied the request: A, B`.
    pub fn message(&self) -> String {
        format!("admission webhook \"{}\" denied the request: {}", self.webhook, self.status_message())
    }

    /// The message of the webhook's own `Status`: the error, or the causes' messages joined by `, `.
    pub fn status_message(&self) -> String {
        match &self.error {
            Some(error) => error.clone(),
            None => self.causes.iter().map(|c| c.message.as_str()).collect::<Vec<_>>().join(", "),
        }
    }

    pub(crate) fn check(webhook: &'static str, causes: Vec<Cause>) -> Result<(), Denial> {
        if causes.is_empty() { Ok(()) } else { Err(Denial { webhook, causes, error: None }) }
    }
}
