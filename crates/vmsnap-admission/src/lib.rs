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

use serde_json::{Value, json};
use vmsnap_api::refusal::RefusalCause;

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
    /// The message as a `StatusCause` carries it, without the field (kubectl prints the field
    /// before each cause itself): KubeVirt's message, or vmsnap's.
    pub message: String,
    /// Whether the `Status` message, which joins the causes, puts the field before this one's
    /// message ([`Cause::summary`]): vmsnap's own rules do, because kubectl shows a webhook's
    /// message and not its causes' fields; KubeVirt's messages do not.
    pub field_in_summary: bool,
    /// What a client can act on (a snapshot or restore holds the object), sent as a cause of its
    /// own after KubeVirt's ([`Denial::status_causes`]): KubeVirt's causes and messages stay as
    /// they are.
    pub refusal: Option<RefusalCause>,
}

impl Cause {
    /// A cause with KubeVirt's `reason`, for `field`, saying `message` (the field not in the summary).
    pub fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause { reason, field: field.into(), message: message.into(), field_in_summary: false, refusal: None }
    }

    /// This cause, telling clients that `refusal` is why.
    pub(crate) fn refused(self, refusal: RefusalCause) -> Self {
        Cause { refusal: Some(refusal), ..self }
    }

    /// This cause, its field named before its message in the `Status` message (vmsnap's rules).
    pub(crate) fn naming_field(self) -> Self {
        Cause { field_in_summary: true, ..self }
    }

    /// How the `Status` message shows it: `field: message`, or the message alone.
    pub fn summary(&self) -> String {
        if self.field_in_summary && !self.field.is_empty() {
            format!("{}: {}", self.field, self.message)
        } else {
            self.message.clone()
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause::new("FieldValueInvalid", field, message)
    }

    pub(crate) fn required(field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause::new("FieldValueRequired", field, message)
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
            None => self.causes.iter().map(Cause::summary).collect::<Vec<_>>().join(", "),
        }
    }

    /// The `details.causes` of the denial's `Status`, as JSON: each cause's `reason`, `field` and
    /// `message` (KubeVirt's), then vmsnap's [`RefusalCause`]s, which the `Status` message leaves
    /// out. Empty for an error answer, which KubeVirt sends without causes.
    pub fn status_causes(&self) -> Vec<Value> {
        let kubevirts =
            self.causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}));
        let refusals = self.causes.iter().filter_map(|c| c.refusal.as_ref()).map(RefusalCause::to_json);
        kubevirts.chain(refusals).collect()
    }

    pub(crate) fn check(webhook: &'static str, causes: Vec<Cause>) -> Result<(), Denial> {
        if causes.is_empty() { Ok(()) } else { Err(Denial { webhook, causes, error: None }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_keeps_its_field_apart_from_its_message_and_only_the_summary_joins_them() {
        let ours = Cause::required("spec.cron", "Required value: set cron or every").naming_field();
        assert_eq!(ours.message, "Required value: set cron or every");
        assert_eq!(ours.summary(), "spec.cron: Required value: set cron or every");
        let kubevirts = Cause::invalid("spec.source.kind", "invalid kind");
        assert_eq!(kubevirts.summary(), "invalid kind");
        let denial = Denial { webhook: SCHEDULE_WEBHOOK, causes: vec![ours, kubevirts], error: None };
        assert_eq!(denial.status_message(), "spec.cron: Required value: set cron or every, invalid kind");
    }

    #[test]
    fn a_refusal_is_a_cause_of_its_own_after_kubevirts_and_stays_out_of_the_message() {
        use vmsnap_api::refusal::Refusal;
        let locked = Cause::new("FieldValueNotSupported", "spec", "Cannot update vm running state")
            .refused(RefusalCause::blocked_by(Refusal::SnapshotLock, "s1"));
        let denial = Denial { webhook: VM_WEBHOOK, causes: vec![locked], error: None };
        assert_eq!(denial.status_message(), "Cannot update vm running state");
        assert_eq!(
            denial.status_causes(),
            vec![
                json!({"reason": "FieldValueNotSupported", "field": "spec", "message": "Cannot update vm running state"}),
                json!({"reason": "vmsnap.io/SnapshotLock", "field": "status.snapshotInProgress", "message": "s1"}),
            ]
        );
    }
}
