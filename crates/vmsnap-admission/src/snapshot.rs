//! VirtualMachineSnapshot admission (`pkg/storage/admitters/vmsnapshot.go`).

use vmsnap_api::kubevirt;
use vmsnap_api::snapshot::VirtualMachineSnapshot;

use crate::{Cause, Denial, Operation, SNAPSHOT_WEBHOOK};

/// Validates a snapshot create or update. The source VM need not exist; running VMs are accepted.
pub fn validate_snapshot(
    op: Operation,
    old: Option<&VirtualMachineSnapshot>,
    new: &VirtualMachineSnapshot,
) -> Result<(), Denial> {
    let mut causes = Vec::new();
    match op {
        Operation::Create => {
            let source = &new.spec.source;
            match source.api_group.as_deref() {
                None => {
                    causes.push(Cause::new("FieldValueNotFound", "spec.source.apiGroup", "missing apiGroup"))
                }
                Some(g) if g != kubevirt::GROUP => {
                    causes.push(Cause::invalid("spec.source.apiGroup", "invalid apiGroup"));
                }
                Some(_) => {
                    if source.kind != "VirtualMachine" {
                        causes.push(Cause::invalid("spec.source.kind", "invalid kind"));
                    }
                }
            }
            // vmsnap's: KubeVirt's controller cannot read such a value and the snapshot hangs.
            if let Some(deadline) = new.spec.failure_deadline.as_deref()
                && vmsnap_api::duration::parse_deadline(deadline).is_err()
            {
                causes.push(Cause::invalid(
                    "spec.failureDeadline",
                    format!(
                        "invalid failureDeadline {deadline:?}: expected a non-negative duration such as \"5m0s\" or \"30s\", or a number of seconds such as 20"
                    ),
                ));
            }
        }
        Operation::Update => {
            if let Some(old) = old
                && old.spec != new.spec
            {
                // The typo "in" is KubeVirt's.
                causes.push(Cause::invalid("spec", "spec in immutable after creation"));
            }
        }
    }
    Denial::check(SNAPSHOT_WEBHOOK, causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::k8s_openapi::api::core::v1::TypedLocalObjectReference;
    use vmsnap_api::snapshot::VirtualMachineSnapshotSpec;

    fn snap(group: Option<&str>, kind: &str) -> VirtualMachineSnapshot {
        VirtualMachineSnapshot::new(
            "s",
            VirtualMachineSnapshotSpec {
                source: TypedLocalObjectReference {
                    api_group: group.map(Into::into),
                    kind: kind.into(),
                    name: "vm".into(),
                },
                ..Default::default()
            },
        )
    }

    #[test]
    fn create_needs_the_kubevirt_api_group_and_a_vm_kind() {
        assert!(
            validate_snapshot(Operation::Create, None, &snap(Some("kubevirt.io"), "VirtualMachine")).is_ok()
        );
        let missing = validate_snapshot(Operation::Create, None, &snap(None, "VirtualMachine")).unwrap_err();
        assert_eq!(missing.causes[0].message, "missing apiGroup");
        assert_eq!(missing.causes[0].field, "spec.source.apiGroup");
        let group =
            validate_snapshot(Operation::Create, None, &snap(Some("apps"), "VirtualMachine")).unwrap_err();
        assert_eq!(group.causes[0].message, "invalid apiGroup");
        let kind = validate_snapshot(Operation::Create, None, &snap(Some("kubevirt.io"), "Pod")).unwrap_err();
        assert_eq!(kind.causes[0].message, "invalid kind");
        assert_eq!(
            kind.message(),
            "admission webhook \"virtualmachinesnapshot-validator.snapshot.kubevirt.io\" denied the request: invalid kind"
        );
    }

    #[test]
    fn a_failure_deadline_is_a_duration_or_seconds_and_anything_else_is_refused_naming_the_field() {
        let with = |d: &str| {
            let mut s = snap(Some("kubevirt.io"), "VirtualMachine");
            s.spec.failure_deadline = Some(d.into());
            validate_snapshot(Operation::Create, None, &s)
        };
        assert!(with("20").is_ok());
        assert!(with("1m30s").is_ok());
        assert!(with("0s").is_ok());
        for bad in ["-20", "-1m", "soon", "20 seconds"] {
            let denial = with(bad).unwrap_err();
            assert_eq!(denial.causes[0].field, "spec.failureDeadline", "{bad}");
            assert!(denial.causes[0].message.contains(&format!("{bad:?}")), "{}", denial.causes[0].message);
        }
    }

    #[test]
    fn the_spec_is_immutable_but_metadata_is_not() {
        let old = snap(Some("kubevirt.io"), "VirtualMachine");
        let mut relabelled = old.clone();
        relabelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(validate_snapshot(Operation::Update, Some(&old), &relabelled).is_ok());
        let mut changed = old.clone();
        changed.spec.source.name = "other".into();
        let denial = validate_snapshot(Operation::Update, Some(&old), &changed).unwrap_err();
        assert_eq!(denial.causes[0].message, "spec in immutable after creation");
        assert_eq!(denial.causes[0].field, "spec");
    }
}
