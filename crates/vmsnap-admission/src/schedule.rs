//! VirtualMachineSnapshotSchedule admission (vmsnap's own kind: KubeVirt has no schedule).
//!
//! Everything the controller would otherwise find out at its first run is refused at the door:
//! which VMs (exactly one of `vmName` and `selector`), when (exactly one of `cron` and `every`,
//! parsed by `vmsnap-schedule`, in a known time zone), the policies' enums and counts. Each
//! message starts with the field it is about (`spec.cron: cron minute field: ...`), because
//! `kubectl` shows a webhook's messages, not its causes' fields.

use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use vmsnap_api::schedule::{KeepPolicy, VirtualMachineSnapshotSchedule, concurrency_policy};
use vmsnap_schedule::{KeepWithin, Schedule};

use crate::{Cause, Denial, SCHEDULE_WEBHOOK};

/// Validates a schedule create or update (the same rules: every field of the spec may change).
pub fn validate_schedule(new: &VirtualMachineSnapshotSchedule) -> Result<(), Denial> {
    let spec = &new.spec;
    let mut causes = Vec::new();
    let mut invalid =
        |field: &str, message: String| causes.push(Cause::invalid(field, message).naming_field());

    if let Some(name) = new.metadata.name.as_deref()
        && name.len() > 63
    {
        invalid(
            "metadata.name",
            format!(
                "must be no more than 63 characters (it is {}): it labels the schedule's snapshots (schedule.vmsnap.io/schedule)",
                name.len()
            ),
        );
    }
    match (spec.vm_name.as_deref(), spec.selector.as_ref()) {
        (Some(_), Some(_)) => {
            invalid("spec", "vmName and selector are mutually exclusive: set exactly one".into())
        }
        (None, None) => {}
        (Some(""), None) => invalid("spec.vmName", "must not be empty".into()),
        (Some(_), None) => {}
        (None, Some(selector)) => {
            for (field, message) in selector_problems(selector) {
                invalid(&field, message);
            }
        }
    }

    // The zone first: a cron expression's errors mean nothing in an unknown zone.
    let zone_ok = match spec.time_zone.as_deref() {
        Some(zone) => match Schedule::cron("@daily", Some(zone)) {
            Ok(_) => true,
            Err(e) => {
                invalid("spec.timeZone", e.to_string());
                false
            }
        },
        None => true,
    };
    match (spec.cron.as_deref(), spec.every.as_deref()) {
        (Some(_), Some(_)) => {
            invalid("spec", "cron and every are mutually exclusive: set exactly one".into())
        }
        (None, None) => {}
        (Some(cron), None) => {
            if let Err(e) = Schedule::cron(cron, if zone_ok { spec.time_zone.as_deref() } else { None }) {
                invalid("spec.cron", e.to_string());
            }
        }
        (None, Some(every)) => {
            if let Err(e) = Schedule::every(every) {
                invalid("spec.every", e.to_string());
            }
        }
    }
    if let Some(deadline) = spec.starting_deadline_seconds
        && deadline < 0
    {
        invalid("spec.startingDeadlineSeconds", format!("{deadline} is negative: must be >= 0"));
    }
    if let Some(policy) = spec.concurrency_policy.as_deref()
        && policy != concurrency_policy::FORBID
        && policy != concurrency_policy::ALLOW
    {
        invalid(
            "spec.concurrencyPolicy",
            format!(
                "unsupported value {policy:?}: supported values: \"{}\", \"{}\"",
                concurrency_policy::FORBID,
                concurrency_policy::ALLOW
            ),
        );
    }
    if let Some(failures) = spec.failure_policy.as_ref().and_then(|f| f.consecutive_failures)
        && failures < 1
    {
        invalid("spec.failurePolicy.consecutiveFailures", format!("{failures} must be at least 1"));
    }
    if let Some(keep) = &spec.keep {
        for (field, message) in keep_problems("spec.keep", keep) {
            invalid(&field, message);
        }
    }
    if let Some(keep) = &spec.backup_keep {
        for (field, message) in keep_problems("spec.backupKeep", keep) {
            invalid(&field, message);
        }
    }

    // Required fields last, as Kubernetes lists them after the invalid values they follow.
    if spec.vm_name.is_none() && spec.selector.is_none() {
        causes.push(Cause::required("spec.vmName", "Required value: set vmName or selector").naming_field());
    }
    if spec.cron.is_none() && spec.every.is_none() {
        causes.push(Cause::required("spec.cron", "Required value: set cron or every").naming_field());
    }
    Denial::check(SCHEDULE_WEBHOOK, causes)
}

/// A keep policy's negative counts and a `within` that restic would not read.
fn keep_problems(path: &str, keep: &KeepPolicy) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (name, count) in keep.counts() {
        if let Some(n) = count
            && n < 0
        {
            problems.push((format!("{path}.{name}"), format!("{n} is negative: must be >= 0")));
        }
    }
    if let Some(within) = keep.within.as_deref()
        && let Err(e) = within.parse::<KeepWithin>()
    {
        problems.push((format!("{path}.within"), e.to_string()));
    }
    problems
}

/// Kubernetes' `ValidateLabelSelector` rules on operators and values (the messages are its own).
fn selector_problems(selector: &LabelSelector) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("spec.selector.matchExpressions[{i}]");
        let has_values = expr.values.as_ref().is_some_and(|v| !v.is_empty());
        match expr.operator.as_str() {
            "In" | "NotIn" if !has_values => problems.push((
                format!("{path}.values"),
                "Required value: must be specified when `operator` is 'In' or 'NotIn'".into(),
            )),
            "Exists" | "DoesNotExist" if has_values => problems.push((
                format!("{path}.values"),
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into(),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => problems.push((
                format!("{path}.operator"),
                format!("Invalid value: {other:?}: not a valid selector operator"),
            )),
        }
        if expr.key.is_empty() {
            problems.push((format!("{path}.key"), "Invalid value: \"\": name part must be non-empty".into()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use vmsnap_api::schedule::{FailurePolicy, VirtualMachineSnapshotScheduleSpec};

    use super::*;

    fn schedule(spec: VirtualMachineSnapshotScheduleSpec) -> VirtualMachineSnapshotSchedule {
        VirtualMachineSnapshotSchedule::new("s", spec)
    }

    fn valid() -> VirtualMachineSnapshotScheduleSpec {
        VirtualMachineSnapshotScheduleSpec {
            vm_name: Some("vm".into()),
            every: Some("1h".into()),
            ..Default::default()
        }
    }

    fn messages(spec: VirtualMachineSnapshotScheduleSpec) -> Vec<(String, String)> {
        match validate_schedule(&schedule(spec)) {
            Ok(()) => Vec::new(),
            Err(denial) => {
                assert_eq!(denial.webhook, SCHEDULE_WEBHOOK);
                denial.causes.iter().map(|c| (c.field.clone(), c.summary())).collect()
            }
        }
    }

    #[test]
    fn a_vm_and_an_interval_or_a_selector_and_a_cron_in_a_zone_are_accepted() {
        assert_eq!(messages(valid()), vec![]);
        let spec = VirtualMachineSnapshotScheduleSpec {
            selector: Some(LabelSelector {
                match_labels: Some([("tier".to_string(), "db".to_string())].into()),
                ..Default::default()
            }),
            cron: Some("30 2 * * 1-5".into()),
            time_zone: Some("Europe/Berlin".into()),
            starting_deadline_seconds: Some(0),
            concurrency_policy: Some("Allow".into()),
            keep: Some(KeepPolicy {
                last: Some(3),
                daily: Some(7),
                within: Some("1y2m".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(messages(spec), vec![]);
    }

    #[test]
    fn exactly_one_target_and_exactly_one_timing_are_required() {
        let both = VirtualMachineSnapshotScheduleSpec {
            selector: Some(LabelSelector::default()),
            cron: Some("@daily".into()),
            ..valid()
        };
        let got = messages(both);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].1.contains("vmName and selector are mutually exclusive"), "{got:?}");
        assert!(got[1].1.contains("cron and every are mutually exclusive"), "{got:?}");
        let mut long = schedule(valid());
        long.metadata.name = Some("s".repeat(64));
        let refused = validate_schedule(&long).unwrap_err();
        assert_eq!(refused.causes[0].field, "metadata.name");
        let neither = messages(VirtualMachineSnapshotScheduleSpec::default());
        assert_eq!(
            neither,
            vec![
                ("spec.vmName".into(), "spec.vmName: Required value: set vmName or selector".into()),
                ("spec.cron".into(), "spec.cron: Required value: set cron or every".into()),
            ]
        );
    }

    #[test]
    fn a_bad_cron_or_interval_is_refused_naming_the_field_and_the_problem() {
        let cron = messages(VirtualMachineSnapshotScheduleSpec {
            every: None,
            cron: Some("61 * * * *".into()),
            ..valid()
        });
        assert_eq!(cron.len(), 1);
        assert_eq!(cron[0].0, "spec.cron");
        assert!(cron[0].1.starts_with("spec.cron: cron minute field: "), "{cron:?}");
        assert!(cron[0].1.contains("61"), "{cron:?}");
        let every = messages(VirtualMachineSnapshotScheduleSpec { every: Some("30s".into()), ..valid() });
        assert_eq!(
            every,
            vec![(
                "spec.every".into(),
                "spec.every: interval \"30s\" must be a whole number of minutes, at least 1m".into()
            )]
        );
    }

    #[test]
    fn an_unknown_time_zone_is_refused_once() {
        let got = messages(VirtualMachineSnapshotScheduleSpec {
            every: None,
            cron: Some("@daily".into()),
            time_zone: Some("Mars/Olympus".into()),
            ..valid()
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "spec.timeZone");
        assert!(got[0].1.contains("unknown time zone \"Mars/Olympus\""), "{got:?}");
    }

    #[test]
    fn negative_counts_bad_policies_and_bad_within_are_refused() {
        let got = messages(VirtualMachineSnapshotScheduleSpec {
            starting_deadline_seconds: Some(-1),
            concurrency_policy: Some("Replace".into()),
            failure_policy: Some(FailurePolicy { consecutive_failures: Some(0), suspend: Some(true) }),
            keep: Some(KeepPolicy { last: Some(-3), within: Some("2w".into()), ..Default::default() }),
            backup_keep: Some(KeepPolicy { yearly: Some(-1), ..Default::default() }),
            ..valid()
        });
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.startingDeadlineSeconds",
                "spec.concurrencyPolicy",
                "spec.failurePolicy.consecutiveFailures",
                "spec.keep.last",
                "spec.keep.within",
                "spec.backupKeep.yearly",
            ]
        );
        assert_eq!(
            got[1].1,
            "spec.concurrencyPolicy: unsupported value \"Replace\": supported values: \"Forbid\", \"Allow\""
        );
        assert!(got[4].1.contains("not of the form 1y2m3d4h"), "{got:?}");
    }

    #[test]
    fn selector_operators_follow_kubernetes() {
        let expr = |operator: &str, values: Option<Vec<&str>>| LabelSelectorRequirement {
            key: "tier".into(),
            operator: operator.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        };
        let spec = VirtualMachineSnapshotScheduleSpec {
            vm_name: None,
            selector: Some(LabelSelector {
                match_expressions: Some(vec![
                    expr("In", None),
                    expr("Exists", Some(vec!["x"])),
                    expr("Near", None),
                    expr("NotIn", Some(vec!["a"])),
                ]),
                ..Default::default()
            }),
            ..valid()
        };
        let fields: Vec<String> = messages(spec).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator",
            ]
        );
    }
}
