//! `VirtualMachineSnapshotSchedule`: a manifest round-trips through the Rust types unchanged, and
//! the registry serves the kind under names that collide with no other kind's.

use vmsnap_api::registry::{Scope, registry};
use vmsnap_api::schedule::{VirtualMachineSnapshotSchedule, concurrency_policy};

const MANIFEST: &str = r#"
apiVersion: schedule.vmsnap.io/v1alpha1
kind: VirtualMachineSnapshotSchedule
metadata:
  name: nightly
  namespace: default
spec:
  selector:
    matchLabels:
      backup: nightly
  cron: "30 2 * * *"
  timeZone: Europe/Berlin
  startingDeadlineSeconds: 600
  suspend: false
  concurrencyPolicy: Forbid
  failurePolicy:
    consecutiveFailures: 3
    suspend: true
  keep:
    last: 3
    daily: 7
    weekly: 4
    monthly: 12
    yearly: 2
    within: 2d
  backupTo: offsite
  backupKeep:
    monthly: 24
status:
  lastRunTime: "2024-10-27T01:30:00Z"
  lastSuccessTime: "2024-10-27T01:30:00Z"
  nextRunTime: "2024-10-28T01:30:00Z"
  missedRuns: 2
  observedGeneration: 1
  vms:
  - name: web
    lastRunTime: "2024-10-27T01:30:00Z"
    lastResult: Succeeded
    lastSnapshotName: nightly-web-1729992600
    consecutiveFailures: 0
    snapshotsKept: 14
    snapshotsPruned: 3
  conditions:
  - type: Ready
    status: "True"
    lastProbeTime: null
    lastTransitionTime: "2024-10-20T10:00:00Z"
    reason: Scheduled
"#;

#[test]
fn a_schedule_round_trips() {
    let value: serde_json::Value = serde_norway::from_str(MANIFEST).unwrap();
    let schedule: VirtualMachineSnapshotSchedule = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(schedule.spec.cron.as_deref(), Some("30 2 * * *"));
    assert_eq!(schedule.spec.concurrency_policy.as_deref(), Some(concurrency_policy::FORBID));
    assert_eq!(schedule.spec.keep.as_ref().unwrap().weekly, Some(4));
    assert_eq!(schedule.status.as_ref().unwrap().vms[0].snapshots_kept, Some(14));
    assert_eq!(serde_json::to_value(&schedule).unwrap(), value);
}

#[test]
fn an_interval_schedule_of_one_vm_needs_only_its_fields() {
    let value = serde_json::json!({
        "apiVersion": "schedule.vmsnap.io/v1alpha1",
        "kind": "VirtualMachineSnapshotSchedule",
        "metadata": {"name": "often", "namespace": "default"},
        "spec": {"vmName": "db", "every": "15m", "keep": {"last": 5}}
    });
    let schedule: VirtualMachineSnapshotSchedule = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(schedule.spec.vm_name.as_deref(), Some("db"));
    assert!(schedule.status.is_none());
    assert_eq!(serde_json::to_value(&schedule).unwrap(), value);
}

#[test]
fn the_registry_serves_the_kind_with_names_of_its_own() {
    let r = registry();
    let kind = r.by_kind("schedule.vmsnap.io/v1alpha1", "VirtualMachineSnapshotSchedule").unwrap();
    assert_eq!(kind.plural, "virtualmachinesnapshotschedules");
    assert_eq!(kind.scope, Scope::Namespaced);
    assert!(kind.has_status);
    assert_eq!(kind.short_names, ["vmschedule", "vmschedules"]);
    let columns: Vec<_> = kind.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Cron", "Every", "Suspend", "LastSuccess", "NextRun"]);
    let spec = &kind.schema["properties"]["spec"]["properties"];
    assert_eq!(spec["startingDeadlineSeconds"]["type"], "integer");
    assert!(spec["selector"]["properties"]["matchLabels"].is_object());
    // No other served kind answers to these names (KubeVirt's are vm, vms, vmi, vmsnapshot, ...).
    for other in r.all().iter().filter(|t| t.kind != kind.kind) {
        for name in &kind.short_names {
            assert!(!other.short_names.contains(name), "{} also has short name {name}", other.kind);
        }
        assert_ne!(other.plural, kind.plural);
    }
}
