//! `updateSnapshotStatus`: the snapshot's status from its source, lock message and content. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmsnap_api::kubevirt::Volume;
use vmsnap_api::snapshot::{
    Condition, SnapshotPhase, SnapshotVolumesLists, SourceIndication, VirtualMachineSnapshot,
    VirtualMachineSnapshotContent, VirtualMachineSnapshotStatus, annotation, condition_type, find_condition,
    indication, reason, update_condition,
};

use super::deadline::deadline_exceeded;
use crate::backend;

/// What the status is computed from, besides the snapshot.
pub struct SourceFacts {
    /// The VM's uid.
    pub uid: Option<String>,
    /// A VMI exists.
    pub online: bool,
    /// The VMI is paused.
    pub paused: bool,
    /// The guest agent is connected.
    pub guest_agent: bool,
    /// The source lock is held by this snapshot.
    pub locked: bool,
    /// Volumes hotplugged into the running VMI only (not persisted in the VM): never in a snapshot.
    pub vmi_only_volumes: Vec<Volume>,
}

/// The new status and, when the snapshot succeeded, the creation time for the metric.
pub fn compute(
    snap: &VirtualMachineSnapshot,
    source: Option<&SourceFacts>,
    lock_msg: &str,
    content: Option<&VirtualMachineSnapshotContent>,
    now: Time,
) -> VirtualMachineSnapshotStatus {
    let mut st = snap
        .status
        .clone()
        .unwrap_or_else(|| VirtualMachineSnapshotStatus { ready_to_use: Some(false), ..Default::default() });
    if let Some(src) = source
        && src.uid.is_some()
    {
        st.source_uid = src.uid.clone();
    }
    if let Some(c) = content
        && let Some(cs) = &c.status
    {
        st.virtual_machine_snapshot_content_name = c.metadata.name.clone();
        st.creation_time = cs.creation_time.clone();
        st.ready_to_use = cs.ready_to_use;
        st.error = cs.error.clone();
    }
    let deleting = snap.metadata.deletion_timestamp.is_some();
    let cond = |t: &str, s: bool, r: &str| Condition::new(t, s, r);
    // What holds the snapshot up, in words; KubeVirt's reasons stay as they are.
    let problem = content.and_then(volume_snapshot_problem);
    if deadline_exceeded(snap, now.0) {
        st.phase = Some(SnapshotPhase::Failed);
        // The cause is kept once the content (which carried it) is gone.
        let cause = problem.or_else(|| {
            find_condition(&st.conditions, condition_type::FAILURE).and_then(|c| c.message.clone())
        });
        update_condition(
            &mut st.conditions,
            cond(condition_type::FAILURE, true, reason::DEADLINE_EXCEEDED).with_message(cause),
            now.clone(),
        );
        update_condition(
            &mut st.conditions,
            cond(condition_type::PROGRESSING, false, reason::OPERATION_FAILED),
            now.clone(),
        );
    } else if st.phase == Some(SnapshotPhase::Succeeded) || st.creation_time.is_some() {
        st.phase = Some(SnapshotPhase::Succeeded);
        update_condition(
            &mut st.conditions,
            cond(condition_type::PROGRESSING, false, reason::OPERATION_COMPLETE),
            now.clone(),
        );
        if let Some(c) = content {
            let vmi_only = source.map(|s| s.vmi_only_volumes.as_slice()).unwrap_or_default();
            update_snapshot_volumes(&mut st, c, vmi_only);
        }
    } else {
        st.phase = Some(SnapshotPhase::InProgress);
        match source {
            Some(src) => {
                let progressing = if src.locked {
                    cond(condition_type::PROGRESSING, true, reason::SOURCE_LOCKED).with_message(problem)
                } else {
                    cond(condition_type::PROGRESSING, false, lock_msg)
                };
                update_condition(&mut st.conditions, progressing, now.clone());
                update_indications(&mut st, src);
            }
            None => {
                update_condition(
                    &mut st.conditions,
                    cond(condition_type::PROGRESSING, false, reason::SOURCE_DOES_NOT_EXIST),
                    now.clone(),
                );
            }
        }
        if deleting {
            st.phase = Some(SnapshotPhase::Deleting);
            update_condition(
                &mut st.conditions,
                cond(condition_type::PROGRESSING, false, reason::DELETING),
                now.clone(),
            );
        }
    }
    let ready = st.ready_to_use == Some(true);
    let ready_cond = if ready {
        cond(condition_type::READY, true, reason::READY)
    } else {
        cond(condition_type::READY, false, reason::NOT_READY)
    };
    update_condition(&mut st.conditions, ready_cond, now.clone());
    if st.error.is_some() {
        update_condition(
            &mut st.conditions,
            cond(condition_type::PROGRESSING, false, reason::IN_ERROR_STATE),
            now,
        );
    }
    st
}

/// What holds the content up: a VolumeSnapshot the API refused (the content's annotation), or the
/// first VolumeSnapshot error it reports.
fn volume_snapshot_problem(content: &VirtualMachineSnapshotContent) -> Option<String> {
    if let Some(refused) =
        content.metadata.annotations.as_ref().and_then(|a| a.get(annotation::VOLUME_SNAPSHOT_REFUSED))
    {
        return Some(refused.clone());
    }
    content.status.as_ref()?.volume_snapshot_status.iter().find_map(|s| {
        let message = s.error.as_ref()?.message.as_deref()?;
        Some(format!("VolumeSnapshot {}: {message}", s.volume_snapshot_name))
    })
}

fn update_indications(st: &mut VirtualMachineSnapshotStatus, src: &SourceFacts) {
    if !src.online {
        st.indications.clear();
        st.source_indications.clear();
        return;
    }
    let mut set = vec![indication::ONLINE];
    if src.paused {
        set.push(indication::PAUSED);
    } else if src.guest_agent {
        set.push(indication::GUEST_AGENT);
        if st
            .error
            .as_ref()
            .and_then(|e| e.message.as_deref())
            .is_some_and(indication::is_freeze_limit_reached)
        {
            set.push(indication::QUIESCE_TIMEOUT);
        }
    } else {
        set.push(indication::NO_GUEST_AGENT);
    }
    set.sort_unstable();
    st.indications = set.iter().map(|s| s.to_string()).collect();
    st.source_indications = set
        .iter()
        .map(|i| SourceIndication { indication: i.to_string(), message: indication::message(i).to_owned() })
        .collect();
}

fn snapshottable_type(v: &Volume) -> bool {
    v.persistent_volume_claim.is_some() || v.data_volume.is_some() || v.memory_dump.is_some()
}

fn update_snapshot_volumes(
    st: &mut VirtualMachineSnapshotStatus,
    content: &VirtualMachineSnapshotContent,
    vmi_only: &[Volume],
) {
    let Some(vm) = &content.spec.source.virtual_machine else { return };
    let backed = |name: &str| content.spec.volume_backups.iter().any(|b| b.volume_name == name);
    let mut lists = SnapshotVolumesLists::default();
    let mut partial = false;
    for v in &vm.spec.template.spec.volumes {
        if backed(&v.name) {
            lists.included_volumes.push(v.name.clone());
        } else {
            lists.excluded_volumes.push(v.name.clone());
            partial |= snapshottable_type(v);
        }
    }
    let vm_name = vm.metadata.name.clone().unwrap_or_default();
    let probe = vmsnap_api::kubevirt::VirtualMachine {
        spec: vm.spec.clone(),
        ..vmsnap_api::kubevirt::VirtualMachine::new(&vm_name, Default::default())
    };
    if backend::needs_backend_storage(&probe) {
        let name = backend::backend_volume_name(&vm_name);
        if backed(&name) {
            lists.included_volumes.push(name);
        } else {
            lists.excluded_volumes.push(name);
            partial = true;
        }
    }
    // Beyond KubeVirt: volumes hotplugged into the VMI only are listed as excluded too, so the user
    // sees that the disk they see in the guest is not in the snapshot. Once listed, they stay listed.
    let previous = st.snapshot_volumes.as_ref().map(|l| l.excluded_volumes.clone()).unwrap_or_default();
    for v in vmi_only {
        if !lists.excluded_volumes.contains(&v.name) && !lists.included_volumes.contains(&v.name) {
            lists.excluded_volumes.push(v.name.clone());
            partial |= snapshottable_type(v);
        }
    }
    for name in previous {
        if !lists.excluded_volumes.contains(&name) && !lists.included_volumes.contains(&name) {
            lists.excluded_volumes.push(name);
        }
    }
    st.snapshot_volumes = Some(lists);
    if partial && !st.indications.iter().any(|i| i == indication::PARTIAL_SNAPSHOT) {
        st.indications.push(indication::PARTIAL_SNAPSHOT.into());
        st.source_indications.push(SourceIndication {
            indication: indication::PARTIAL_SNAPSHOT.into(),
            message: indication::message(indication::PARTIAL_SNAPSHOT).into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use vmsnap_api::snapshot::{VirtualMachineSnapshotContentStatus, find_condition};

    fn now() -> Time {
        Time(Timestamp::now())
    }

    fn snap(age_secs: i64) -> VirtualMachineSnapshot {
        let mut s = VirtualMachineSnapshot::new("snap", Default::default());
        s.metadata.creation_timestamp = Some(Time(Timestamp::now() - SignedDuration::from_secs(age_secs)));
        s
    }

    fn facts(online: bool, agent: bool, paused: bool, locked: bool) -> SourceFacts {
        SourceFacts {
            uid: Some("vm-uid".into()),
            online,
            paused,
            guest_agent: agent,
            locked,
            vmi_only_volumes: Vec::new(),
        }
    }

    fn conds(st: &VirtualMachineSnapshotStatus) -> Vec<(String, String, String)> {
        st.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone().unwrap_or_default()))
            .collect()
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn the_first_pass_initialises_an_unlocked_in_progress_status() {
        let st =
            compute(&snap(0), Some(&facts(false, false, false, false)), "Source not locked", None, now());
        assert_eq!(st.phase.as_deref(), Some("InProgress"));
        assert_eq!(st.ready_to_use, Some(false));
        assert_eq!(st.source_uid.as_deref(), Some("vm-uid"));
        assert_eq!(
            conds(&st),
            vec![t("Progressing", "False", "Source not locked"), t("Ready", "False", "Not ready")]
        );
        assert!(st.indications.is_empty());
    }

    #[test]
    fn online_indications_are_sorted_and_carry_messages() {
        let st = compute(&snap(0), Some(&facts(true, true, false, true)), "", None, now());
        assert_eq!(st.indications, vec!["GuestAgent", "Online"]);
        assert_eq!(st.source_indications[0].message, indication::message("GuestAgent"));
        let st = compute(&snap(0), Some(&facts(true, false, false, true)), "", None, now());
        assert_eq!(st.indications, vec!["NoGuestAgent", "Online"]);
        let st = compute(&snap(0), Some(&facts(true, true, true, true)), "", None, now());
        assert_eq!(st.indications, vec!["Online", "Paused"]);
        assert_eq!(conds(&st)[0], t("Progressing", "True", "Source locked and operation in progress"));
    }

    #[test]
    fn a_missing_source_waits_with_a_reason() {
        let st = compute(&snap(0), None, "", None, now());
        assert_eq!(conds(&st)[0], t("Progressing", "False", "Source does not exist"));
    }

    /// KubeVirt's conditions of a snapshot that ran past its deadline.
    fn deadline_exceeded() -> Vec<(String, String, String)> {
        vec![
            t("Progressing", "False", "Operation failed"),
            t("Ready", "False", "Not ready"),
            t("Failure", "True", "snapshot deadline exceeded"),
        ]
    }

    #[test]
    fn an_expired_snapshot_fails_with_kubevirts_exact_conditions() {
        let mut s = snap(400);
        s.status = Some(compute(&snap(0), Some(&facts(true, true, false, true)), "", None, now()));
        let st = compute(&s, Some(&facts(true, true, false, true)), "", None, now());
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(conds(&st), deadline_exceeded());
    }

    #[test]
    fn content_creation_time_makes_it_succeed_and_ready_follows_the_content() {
        let mut content = VirtualMachineSnapshotContent::new("c", Default::default());
        content.status = Some(VirtualMachineSnapshotContentStatus {
            creation_time: Some(now()),
            ready_to_use: Some(true),
            ..Default::default()
        });
        let st = compute(&snap(0), Some(&facts(true, true, false, true)), "", Some(&content), now());
        assert_eq!(st.phase.as_deref(), Some("Succeeded"));
        assert_eq!(st.virtual_machine_snapshot_content_name.as_deref(), Some("c"));
        assert_eq!(
            conds(&st),
            vec![t("Progressing", "False", "Operation complete"), t("Ready", "True", "Ready")]
        );
    }

    #[test]
    fn a_content_error_overrides_progressing() {
        let mut content = VirtualMachineSnapshotContent::new("c", Default::default());
        content.status = Some(VirtualMachineSnapshotContentStatus {
            ready_to_use: Some(false),
            error: Some(vmsnap_api::snapshot::SnapshotError {
                time: Some(now()),
                message: Some("command Freeze failed".into()),
            }),
            ..Default::default()
        });
        let st = compute(&snap(0), Some(&facts(true, true, false, true)), "", Some(&content), now());
        assert_eq!(
            find_condition(&st.conditions, "Progressing").unwrap().reason.as_deref(),
            Some("In error state")
        );
        assert!(st.creation_time.is_none());
    }

    #[test]
    fn deleting_while_in_progress_says_so() {
        let mut s = snap(0);
        s.metadata.deletion_timestamp = Some(now());
        let st = compute(&s, Some(&facts(true, true, false, true)), "", None, now());
        assert_eq!(st.phase.as_deref(), Some("Deleting"));
        assert_eq!(conds(&st)[0], t("Progressing", "False", "VM snapshot is deleting"));
    }

    fn refused_content() -> VirtualMachineSnapshotContent {
        let mut content = VirtualMachineSnapshotContent::new("c", Default::default());
        content.metadata.annotations = Some(
            [(
                annotation::VOLUME_SNAPSHOT_REFUSED.to_owned(),
                "VolumeSnapshot vs-1: could not be created: denied by policy".to_owned(),
            )]
            .into(),
        );
        content
    }

    #[test]
    fn a_refused_volume_snapshot_is_named_in_progressing_with_kubevirts_reason() {
        let content = refused_content();
        let st = compute(&snap(0), Some(&facts(true, true, false, true)), "", Some(&content), now());
        assert_eq!(st.phase.as_deref(), Some("InProgress"));
        let progressing = find_condition(&st.conditions, "Progressing").unwrap();
        assert_eq!(progressing.reason.as_deref(), Some("Source locked and operation in progress"));
        assert_eq!(
            progressing.message.as_deref(),
            Some("VolumeSnapshot vs-1: could not be created: denied by policy")
        );
        assert!(st.error.is_none(), "KubeVirt leaves the error unset for a refused VolumeSnapshot");
    }

    #[test]
    fn the_deadline_failure_keeps_the_cause_after_the_content_is_gone() {
        let content = refused_content();
        let mut s = snap(400);
        s.status = Some(compute(&snap(0), Some(&facts(true, true, false, true)), "", Some(&content), now()));
        s.status = Some(compute(&s, Some(&facts(true, true, false, true)), "", Some(&content), now()));
        let st = compute(&s, Some(&facts(true, true, false, true)), "", None, now());
        assert_eq!(conds(&st), deadline_exceeded());
        let failure = find_condition(&st.conditions, "Failure").unwrap();
        assert_eq!(
            failure.message.as_deref(),
            Some("VolumeSnapshot vs-1: could not be created: denied by policy")
        );
    }
}
