//! The generated CRDs in `deploy/crds/` accept KubeVirt's own objects: the user guide's examples and
//! objects with the status KubeVirt's controllers write, with no unknown field and no error.

use serde_json::Value;
use vmsnap_apiserver::pure::validation::{Report, validate};

fn crd_schema(file: &str, version: &str) -> Value {
    let path = format!("{}/../../deploy/crds/{file}", env!("CARGO_MANIFEST_DIR"));
    let crd: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == version).unwrap()["schema"]["openAPIV3Schema"].clone()
}

fn meta_schema() -> Value {
    vmsnap_apiserver::registry_kinds().iter().find(|t| t.kind == "Namespace").unwrap().schema["properties"]["metadata"].clone()
}

/// Validates a `snapshot.kubevirt.io/v1beta1` object (`yaml` without its `apiVersion`) against
/// the CRD of its kind.
fn check_v1beta1(yaml: &str) {
    let yaml = format!("apiVersion: snapshot.kubevirt.io/v1beta1\n{}", yaml.trim_start());
    let kind: Value = serde_norway::from_str::<Value>(&yaml).unwrap()["kind"].clone();
    let file = format!("{}s.yaml", kind.as_str().unwrap().to_lowercase());
    check(&file, "v1beta1", &yaml);
}

fn check(file: &str, version: &str, yaml: &str) {
    let mut obj: Value = serde_norway::from_str(yaml).unwrap();
    let report = validate(&mut obj, &crd_schema(file, version), &meta_schema());
    assert_eq!(report, Report::default(), "{yaml}");
}

/// The user guide's snapshot of VM `larry`, without its `apiVersion`.
const SNAP_LARRY: &str = "
kind: VirtualMachineSnapshot
metadata:
  name: snap-larry
spec:
  source:
    apiGroup: kubevirt.io
    kind: VirtualMachine
    name: larry
";

#[test]
fn the_user_guide_snapshot_and_restore_examples_validate() {
    // Each served version, v1beta1 with the spec fields it added.
    for (version, more_spec) in
        [("v1beta1", "  failureDeadline: 1m\n  deletionPolicy: Retain\n"), ("v1alpha1", "")]
    {
        let snapshot = format!("apiVersion: snapshot.kubevirt.io/{version}{SNAP_LARRY}{more_spec}");
        check("virtualmachinesnapshots.yaml", version, &snapshot);
    }
    check_v1beta1(
        r#"
kind: VirtualMachineRestore
metadata:
  name: restore-larry
spec:
  target:
    apiGroup: kubevirt.io
    kind: VirtualMachine
    name: larry-copy
  virtualMachineSnapshotName: snap-larry
  targetReadinessPolicy: StopTarget
  volumeRestorePolicy: PrefixTargetName
  volumeOwnershipPolicy: Vm
  volumeRestoreOverrides:
  - volumeName: datavolumedisk1
    restoreName: larry-disk
    labels: {team: storage}
    annotations: {note: restored}
  patches:
  - '{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces/0/macAddress", "value": ""}'
"#,
    );
}

#[test]
fn statuses_as_kubevirts_controllers_write_them_validate() {
    check_v1beta1(
        r#"
kind: VirtualMachineSnapshot
metadata: {name: s, namespace: default, finalizers: [snapshot.kubevirt.io/vmsnapshot-protection]}
spec: {source: {apiGroup: kubevirt.io, kind: VirtualMachine, name: vm}}
status:
  sourceUID: 0b6f5d88-0000-4000-8000-000000000001
  virtualMachineSnapshotContentName: vmsnapshot-content-0b6f5d88-0000-4000-8000-000000000002
  creationTime: "2026-11-25T03:00:00Z"
  phase: Succeeded
  readyToUse: true
  conditions:
  - {type: Progressing, status: "False", reason: Operation complete, lastProbeTime: null, lastTransitionTime: "2026-11-25T03:00:00Z"}
  - {type: Ready, status: "True", reason: Ready, lastProbeTime: null, lastTransitionTime: "2026-11-25T03:00:00Z"}
  indications: [GuestAgent, Online]
  sourceIndications:
  - {indication: GuestAgent, message: Guest agent was active and attempted to quiesce the filesystem for application consistency.}
  - {indication: Online, message: Snapshot taken while the VM was running. Consistency depends on guest-agent quiescing.}
  snapshotVolumes: {includedVolumes: [rootdisk], excludedVolumes: [cloudinitdisk]}
"#,
    );
    check_v1beta1(
        r#"
kind: VirtualMachineRestore
metadata: {name: r, namespace: default}
spec: {target: {apiGroup: kubevirt.io, kind: VirtualMachine, name: vm}, virtualMachineSnapshotName: s}
status:
  complete: true
  restoreTime: "2026-11-25T03:00:00Z"
  deletedDataVolumes: [vm-dv]
  restores:
  - {volumeName: rootdisk, persistentVolumeClaim: restore-0b6f5d88-rootdisk, volumeSnapshotName: vmsnapshot-x-volume-rootdisk, dataVolumeName: restore-0b6f5d88-rootdisk}
  conditions:
  - {type: Progressing, status: "False", reason: Operation complete, lastProbeTime: null, lastTransitionTime: "2026-11-25T03:00:00Z"}
  - {type: Ready, status: "True", reason: Operation complete, lastProbeTime: null, lastTransitionTime: "2026-11-25T03:00:00Z"}
"#,
    );
    check_v1beta1(
        r#"
kind: VirtualMachineSnapshotContent
metadata: {name: c, namespace: default}
spec:
  virtualMachineSnapshotName: s
  source:
    virtualMachine:
      metadata: {name: vm, namespace: default, uid: u, resourceVersion: "12", generation: 3, labels: {app: x}}
      spec:
        runStrategy: Always
        template:
          metadata: {labels: {kubevirt.io/vm: vm}}
          spec:
            domain:
              devices:
                disks: [{name: rootdisk, disk: {bus: virtio}}]
                interfaces: [{name: default, masquerade: {}}]
              resources: {requests: {memory: 1Gi}}
            networks: [{name: default, pod: {}}]
            volumes: [{name: rootdisk, dataVolume: {name: vm-dv}}]
        dataVolumeTemplates:
        - metadata: {name: vm-dv}
          spec: {storage: {resources: {requests: {storage: 10Gi}}}, source: {blank: {}}}
      status: {}
  volumeBackups:
  - volumeName: rootdisk
    volumeSnapshotName: vmsnapshot-x-volume-rootdisk
    persistentVolumeClaim:
      metadata: {name: vm-dv, namespace: default, annotations: {cdi.kubevirt.io/storage.contentType: kubevirt}}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}, storageClassName: local, volumeMode: Filesystem}
status:
  creationTime: "2026-11-25T03:00:00Z"
  readyToUse: true
  volumeSnapshotStatus:
  - {volumeSnapshotName: vmsnapshot-x-volume-rootdisk, creationTime: "2026-11-25T03:00:00Z", readyToUse: true}
"#,
    );
}
