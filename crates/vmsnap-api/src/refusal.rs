//! Why a vmsnap server refused a request, in a form a client can act on without reading messages.
//!
//! The node agent's subresources, the API server's own checks and the admission rules refuse with
//! KubeVirt's `Status` and KubeVirt's messages, word for word. Next to KubeVirt's causes they add
//! one [`StatusCause`] of their own: its `reason` names the [`Refusal`] (`vmsnap.io/...`), and for
//! a refusal that another object blocks, its `field` says where the refused object names that
//! object and its `message` is that object's name. Clients (the CLI) read that cause, never the
//! message text. A real kube-apiserver relays a webhook's `status.details` as the webhook wrote them
//! (`ToStatusErr` in `k8s.io/apiserver/pkg/admission/plugin/webhook/errors` only rewrites the
//! message), so the cause also reaches clients in a cluster.

use std::fmt;

use kube_core::response::StatusCause;
use serde_json::{Value, json};

/// What the request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `start` of a VM whose instance runs (virt-api's `VM is already running`).
    AlreadyRunning,
    /// The VM has no running instance (`VM is not running`, `VMI is not running`).
    NotRunning,
    /// `pause` of a paused instance (`VMI is already paused`).
    AlreadyPaused,
    /// `unpause` of an instance that is not paused (`VMI is not paused`).
    NotPaused,
    /// `unpause` while a snapshot of the VM is in progress (`VM snapshot is in progress`); the
    /// blocker is the snapshot.
    UnpauseDuringSnapshot,
    /// A change of the VM's volumes or running state while a snapshot holds it (`Cannot update vm
    /// ... until snapshot "s" completes`); the blocker is the snapshot.
    SnapshotLock,
    /// A change of the VM's run strategy while a restore holds it (`Cannot update VM runStrategy
    /// until restore "r" completes`); the blocker is the restore.
    RestoreLock,
    /// A restore of a VM that another restore is restoring (`VirtualMachineRestore "r" in
    /// progress`); the blocker is that restore.
    RestoreInProgress,
}

/// Every refusal, for [`Refusal::parse`].
const ALL: [Refusal; 8] = [
    Refusal::AlreadyRunning,
    Refusal::NotRunning,
    Refusal::AlreadyPaused,
    Refusal::NotPaused,
    Refusal::UnpauseDuringSnapshot,
    Refusal::SnapshotLock,
    Refusal::RestoreLock,
    Refusal::RestoreInProgress,
];

impl Refusal {
    /// The cause's `reason`: `vmsnap.io/` and a CamelCase name, apart from Kubernetes' own cause
    /// types (`FieldValueInvalid`, ...) and KubeVirt's.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AlreadyRunning => "vmsnap.io/AlreadyRunning",
            Refusal::NotRunning => "vmsnap.io/NotRunning",
            Refusal::AlreadyPaused => "vmsnap.io/AlreadyPaused",
            Refusal::NotPaused => "vmsnap.io/NotPaused",
            Refusal::UnpauseDuringSnapshot => "vmsnap.io/UnpauseDuringSnapshot",
            Refusal::SnapshotLock => "vmsnap.io/SnapshotLock",
            Refusal::RestoreLock => "vmsnap.io/RestoreLock",
            Refusal::RestoreInProgress => "vmsnap.io/RestoreInProgress",
        }
    }

    /// The refusal a cause's `reason` names, if it names one.
    pub fn parse(reason: &str) -> Option<Refusal> {
        ALL.into_iter().find(|refusal| refusal.as_str() == reason)
    }

    /// Where the refused object names the object that blocks it (the cause's `field`): the VM's
    /// `status.snapshotInProgress` or `status.restoreInProgress`, the new restore's `spec.target`.
    /// `None` when nothing else blocks.
    pub fn blocker_field(self) -> Option<&'static str> {
        match self {
            Refusal::UnpauseDuringSnapshot | Refusal::SnapshotLock => Some("status.snapshotInProgress"),
            Refusal::RestoreLock => Some("status.restoreInProgress"),
            Refusal::RestoreInProgress => Some("spec.target"),
            Refusal::AlreadyRunning | Refusal::NotRunning | Refusal::AlreadyPaused | Refusal::NotPaused => {
                None
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal and the name of the object that blocks it: vmsnap's cause in a `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalCause {
    /// What the request ran into.
    pub refusal: Refusal,
    /// The blocking snapshot or restore, in the refused object's namespace (for the refusals that
    /// have a [`Refusal::blocker_field`]; `None` if the server did not say).
    pub blocker: Option<String>,
}

impl RefusalCause {
    /// A refusal that nothing else blocks.
    pub fn new(refusal: Refusal) -> RefusalCause {
        RefusalCause { refusal, blocker: None }
    }

    /// A refusal that the object `name` blocks.
    pub fn blocked_by(refusal: Refusal, name: impl Into<String>) -> RefusalCause {
        RefusalCause { refusal, blocker: Some(name.into()) }
    }

    /// As a `StatusCause`: the refusal as `reason`; the blocker's name as `message`, at
    /// [`Refusal::blocker_field`].
    pub fn to_status_cause(&self) -> StatusCause {
        StatusCause {
            reason: self.refusal.as_str().to_owned(),
            message: self.blocker.clone().unwrap_or_default(),
            field: match &self.blocker {
                Some(_) => self.refusal.blocker_field().unwrap_or_default().to_owned(),
                None => String::new(),
            },
        }
    }

    /// As the JSON of a `StatusCause`, for the servers that build `Status` JSON.
    pub fn to_json(&self) -> Value {
        let cause = self.to_status_cause();
        let mut json = json!({"reason": cause.reason});
        if !cause.message.is_empty() {
            json["message"] = json!(cause.message);
        }
        if !cause.field.is_empty() {
            json["field"] = json!(cause.field);
        }
        json
    }

    /// The first of `causes` that is a refusal (a `Status` from an older or foreign server has
    /// none).
    pub fn find(causes: &[StatusCause]) -> Option<RefusalCause> {
        causes.iter().find_map(|cause| {
            let refusal = Refusal::parse(&cause.reason)?;
            let blocker = (refusal.blocker_field().is_some() && !cause.message.is_empty())
                .then(|| cause.message.clone());
            Some(RefusalCause { refusal, blocker })
        })
    }

    /// Whether `cause` is one of these (clients show the others).
    pub fn is_refusal(cause: &StatusCause) -> bool {
        Refusal::parse(&cause.reason).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_round_trips_through_its_reason() {
        for refusal in ALL {
            assert_eq!(Refusal::parse(refusal.as_str()), Some(refusal));
        }
        assert_eq!(Refusal::parse("FieldValueInvalid"), None);
        assert_eq!(Refusal::parse("vmsnap.io/Unknown"), None);
    }

    #[test]
    fn a_blocked_refusal_names_its_blocker_where_the_refused_object_does() {
        let cause = RefusalCause::blocked_by(Refusal::SnapshotLock, "s1");
        assert_eq!(
            cause.to_json(),
            json!({"reason": "vmsnap.io/SnapshotLock", "field": "status.snapshotInProgress", "message": "s1"})
        );
        let parsed: StatusCause = serde_json::from_value(cause.to_json()).unwrap();
        assert_eq!(parsed, cause.to_status_cause());
        assert_eq!(RefusalCause::find(&[parsed]), Some(cause));
        assert_eq!(
            RefusalCause::new(Refusal::NotRunning).to_json(),
            json!({"reason": "vmsnap.io/NotRunning"})
        );
    }

    #[test]
    fn find_skips_other_causes_and_ignores_a_name_where_none_belongs() {
        let kubevirts = StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: "x".into(),
            field: "spec".into(),
        };
        let odd =
            StatusCause { reason: "vmsnap.io/NotPaused".into(), message: "s1".into(), field: String::new() };
        assert_eq!(RefusalCause::find(std::slice::from_ref(&kubevirts)), None);
        assert!(!RefusalCause::is_refusal(&kubevirts));
        assert_eq!(RefusalCause::find(&[kubevirts, odd]), Some(RefusalCause::new(Refusal::NotPaused)));
    }
}
