//! The steps of a VirtualMachineRestore, as its watches show them: the target VMI going away
//! (target stopped), the restore's conditions (volumes restored), the target VM's
//! `restore.kubevirt.io/lastRestoreUID` annotation (VM updated), `status.complete` (complete).

use std::time::Duration;

use kube::ResourceExt;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_api::snapshot::{VirtualMachineRestore, annotation, condition_type, find_condition, reason};

use super::watch::{Change, Seen, Signal, Tracker};
use super::{Outcome, Report, Sequence, StepState};
use crate::cmd::errors::Kind;

const STEPS: &[&str] = &["target stopped", "volumes restored", "VM updated", "complete"];
const STOPPED: usize = 0;
const VOLUMES: usize = 1;
const UPDATED: usize = 2;
const COMPLETE: usize = 3;

/// The restore controller's reason once every new PVC exists.
const UPDATING_TARGET: &str = "Updating target spec";
/// The restore controller's first reason.
const INITIALIZING: &str = "Initializing VirtualMachineRestore";

/// What the merged watches of a restore saw: the restore, its target VM and the target's
/// instance (one watch each, in this order).
pub enum RestoreSeen {
    /// The restore.
    Restore(Change<VirtualMachineRestore>),
    /// Its target VM.
    Vm(Change<VirtualMachine>),
    /// The target VM's instance.
    Vmi(Change<VirtualMachineInstance>),
}

impl Seen for RestoreSeen {
    fn signal(&self) -> (usize, Signal<'_>) {
        match self {
            RestoreSeen::Restore(c) => (0, c.signal()),
            RestoreSeen::Vm(c) => (1, c.signal()),
            RestoreSeen::Vmi(c) => (2, c.signal()),
        }
    }
}

/// Follows one restore from its creation to `complete` (or failure).
#[derive(Debug)]
pub struct RestoreTracker {
    name: String,
    uid: Option<String>,
    expect_stop: bool,
    seen: [Option<Duration>; 4],
    volumes: Option<usize>,
    steps: Sequence,
    /// The last version of the restore seen.
    pub last: Option<VirtualMachineRestore>,
}

impl RestoreTracker {
    /// Tracks restore `name`; `expect_stop` when its target VM runs.
    pub fn new(name: &str, expect_stop: bool) -> RestoreTracker {
        RestoreTracker {
            name: name.to_owned(),
            uid: None,
            expect_stop,
            seen: [None; 4],
            volumes: None,
            steps: Sequence::new(STEPS),
            last: None,
        }
    }

    /// A version of the restore.
    pub fn on_restore(&mut self, r: &VirtualMachineRestore, at: Duration) -> Vec<Report> {
        if self.uid.is_none() || r.uid() != self.uid {
            return Vec::new();
        }
        self.last = Some(r.clone());
        let mut out = Vec::new();
        let Some(st) = &r.status else { return out };
        if st.complete == Some(true) {
            self.seen[COMPLETE].get_or_insert(at);
        }
        if let Some(failure) = find_condition(&st.conditions, condition_type::FAILURE).filter(|c| c.is_true())
        {
            self.steps.fail(
                failure.reason.clone().or_else(|| failure.message.clone()).unwrap_or_else(|| "failed".into()),
            );
        }
        let progressing = find_condition(&st.conditions, condition_type::PROGRESSING);
        let why = progressing.and_then(|c| c.reason.as_deref());
        if why == Some(UPDATING_TARGET) {
            self.seen[VOLUMES].get_or_insert(at);
        }
        if !st.restores.is_empty() {
            self.volumes = Some(st.restores.len());
        }
        let note = progressing
            .filter(|c| !c.is_true() && !self.steps.has_failed())
            .and_then(|c| c.reason.as_deref())
            .filter(|r| ![reason::OPERATION_COMPLETE, INITIALIZING].contains(r))
            .map(|r| format!("waiting: {r}"));
        out.extend(self.steps.note(note));
        out.extend(self.advance());
        out
    }

    /// A version of the target VM.
    pub fn on_vm(&mut self, vm: &VirtualMachine, at: Duration) -> Vec<Report> {
        if let Some(uid) = &self.uid
            && vm.annotations().get(annotation::LAST_RESTORE_UID) == Some(&format!("{}-{uid}", self.name))
        {
            self.seen[UPDATED].get_or_insert(at);
        }
        self.advance()
    }

    /// The target VMI changed (`None`: it is gone).
    pub fn on_vmi(&mut self, vmi: Option<&VirtualMachineInstance>, at: Duration) -> Vec<Report> {
        if self.uid.is_some() && vmi.is_none() {
            self.seen[STOPPED].get_or_insert(at);
        }
        self.advance()
    }

    fn advance(&mut self) -> Vec<Report> {
        let seen = self.seen;
        let (expect_stop, volumes) = (self.expect_stop, self.volumes);
        let implied = |steps: &[usize]| steps.iter().filter_map(|&s| seen[s]).min();
        self.steps.advance(|i| match i {
            STOPPED if !expect_stop => StepState::Skip,
            STOPPED => match seen[STOPPED] {
                Some(at) => StepState::Reached(at, None),
                None if seen[COMPLETE].is_some() => StepState::Skip,
                None => StepState::Wait,
            },
            VOLUMES => StepState::seen(implied(&[VOLUMES, UPDATED, COMPLETE]), volumes.map(super::volumes)),
            UPDATED => StepState::seen(implied(&[UPDATED, COMPLETE]), None),
            _ => StepState::seen(seen[COMPLETE], None),
        })
    }
}

impl Tracker for RestoreTracker {
    type Seen = RestoreSeen;
    type Object = VirtualMachineRestore;
    const KIND: Kind = Kind::Restore;
    const WAITING_FOR: &'static str = "the restore";

    /// The restore was created with this UID: from now on, observations count.
    fn created(&mut self, restore: &VirtualMachineRestore) -> Vec<Report> {
        self.uid = restore.uid();
        self.on_restore(restore, Duration::ZERO)
    }

    fn observe(&mut self, seen: RestoreSeen, at: Duration) -> Vec<Report> {
        match seen {
            RestoreSeen::Restore(Change::Applied(r)) => self.on_restore(&r, at),
            RestoreSeen::Vm(Change::Applied(vm)) => self.on_vm(&vm, at),
            RestoreSeen::Vmi(c) => c.object().map(|vmi| self.on_vmi(vmi, at)).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The end, if reached.
    fn outcome(&self) -> Option<Outcome> {
        self.steps.outcome()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cmd::progress::step_labels;

    fn restore(status: serde_json::Value) -> VirtualMachineRestore {
        serde_json::from_value(json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
            "metadata": {"name": "r1", "uid": "u1"},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db"}, "virtualMachineSnapshotName": "s1"},
            "status": status
        }))
        .unwrap()
    }

    fn progressing(reason: &str, status: &str) -> serde_json::Value {
        json!({"conditions": [{"type": "Progressing", "status": status, "reason": reason}],
               "restores": [{"volumeName": "data", "persistentVolumeClaim": "p", "volumeSnapshotName": "v"}]})
    }

    #[test]
    fn a_restore_of_a_running_vm_reports_stop_volumes_update_and_completion_in_order() {
        let ms = Duration::from_millis;
        let mut t = RestoreTracker::new("r1", true);
        let mut all = t.created(&restore(json!({})));
        all.extend(t.on_restore(
            &restore(progressing("Automatically stopping restore target for restore operation", "False")),
            ms(5),
        ));
        all.extend(t.on_vmi(None, ms(10)));
        all.extend(t.on_restore(&restore(progressing(UPDATING_TARGET, "True")), ms(20)));
        let vm: VirtualMachine =
            serde_json::from_value(json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "db", "annotations": {"restore.kubevirt.io/lastRestoreUID": "r1-u1"}},
            "spec": {"template": {"spec": {"domain": {"devices": {}}}}}}))
            .unwrap();
        all.extend(t.on_vm(&vm, ms(25)));
        all.extend(t.on_restore(&restore(json!({"complete": true})), ms(30)));
        assert_eq!(step_labels(&all), STEPS.to_vec());
        assert_eq!(
            all[0],
            Report::Note("waiting: Automatically stopping restore target for restore operation".into())
        );
        assert_eq!(t.outcome(), Some(Outcome::Done));
    }

    #[test]
    fn a_failure_condition_ends_the_restore_with_its_reason() {
        let mut t = RestoreTracker::new("r1", true);
        t.created(&restore(json!({})));
        t.on_restore(
            &restore(json!({"conditions": [{"type": "Failure", "status": "True", "reason": "Restore target VMI must be powered off before restore operation"}]})),
            Duration::from_millis(3),
        );
        assert_eq!(
            t.outcome(),
            Some(Outcome::Failed("Restore target VMI must be powered off before restore operation".into()))
        );
    }
}
