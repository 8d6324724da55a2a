//! KubeVirt's VirtualMachineRestore webhook unit tests, ported.
//!
//! Ported from `pkg/storage/admitters/vmrestore_test.go` of kubevirt/kubevirt at commit
//! `d923fdb815cd2016ddaebdaaa51db04133576d72`: one test per `It` and per `DescribeTable` `Entry`,
//! in modules named like the `Describe`/`Context`/`DescribeTable` blocks, so a test's path reads
//! like Ginkgo's spec text. KubeVirt's tests check allowed or not and the causes' fields; these
//! also check each cause's type and message, as `vmrestore.go` at the same commit writes them.
//!
//! KubeVirt's tests hand the admitter a fake cluster (VMs, snapshots, contents, restores); here a
//! [`Cluster`] holds the same objects and looks up what the rule needs the way the API server does
//! (`RestoreContext`): the snapshot by name, its content, the target VM, the namespace's restores.
//!
//! Not ported (listed in `docs/compatibility.md`): "With a disabled feature gate should
//! reject anything" and "should reject invalid request resource".

mod support;

use vmsnap_admission::{Denial, Operation, RestoreContext, validate_restore};
use vmsnap_api::k8s_openapi::api::core::v1::TypedLocalObjectReference;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineSpec};
use vmsnap_api::snapshot::{
    SnapshotVirtualMachine, SourceSpec, VirtualMachineRestore, VirtualMachineRestoreSpec,
    VirtualMachineSnapshot, VirtualMachineSnapshotContent, VirtualMachineSnapshotContentSpec,
    VirtualMachineSnapshotSpec, VirtualMachineSnapshotStatus, VolumeRestoreOverride,
};

use support::{CauseTuple, cause, causes};

const VM_NAME: &str = "vm";
const VM_SNAPSHOT_NAME: &str = "snapshot";
const VM_UID: &str = "vm-uid";
const API_GROUP: &str = "kubevirt.io";
const NAMESPACE: &str = "default";

/// The objects KubeVirt's test puts in its fake client and restore informer.
#[derive(Default)]
struct Cluster {
    vms: Vec<VirtualMachine>,
    snapshots: Vec<VirtualMachineSnapshot>,
    contents: Vec<VirtualMachineSnapshotContent>,
    restores: Vec<VirtualMachineRestore>,
}

impl Cluster {
    fn with_vm(mut self, vm: VirtualMachine) -> Self {
        self.vms.push(vm);
        self
    }

    fn with_snapshot(mut self, snapshot: VirtualMachineSnapshot) -> Self {
        self.snapshots.push(snapshot);
        self
    }

    fn with_content(mut self, content: VirtualMachineSnapshotContent) -> Self {
        self.contents.push(content);
        self
    }

    fn with_restore(mut self, restore: VirtualMachineRestore) -> Self {
        self.restores.push(restore);
        self
    }

    /// What the API server looks up for a restore create.
    fn context_for(&self, restore: &VirtualMachineRestore) -> RestoreContext {
        let named = |meta: &vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                     name: &str| meta.name.as_deref() == Some(name);
        let snapshot = self
            .snapshots
            .iter()
            .find(|s| named(&s.metadata, &restore.spec.virtual_machine_snapshot_name))
            .cloned();
        let content_name = snapshot
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.virtual_machine_snapshot_content_name.clone());
        let content =
            content_name.and_then(|name| self.contents.iter().find(|c| named(&c.metadata, &name)).cloned());
        let target_vm = self.vms.iter().find(|vm| named(&vm.metadata, &restore.spec.target.name)).cloned();
        RestoreContext { snapshot, content, target_vm, other_restores: self.restores.clone() }
    }

    fn admit_create(&self, restore: &VirtualMachineRestore) -> Result<(), Denial> {
        validate_restore(Operation::Create, None, restore, &self.context_for(restore))
    }
}

/// KubeVirt's shared `snapshot` fixture: source `vm`, `sourceUID: vm-uid`, ready to use.
fn snapshot() -> VirtualMachineSnapshot {
    let mut snapshot = VirtualMachineSnapshot::new(
        VM_SNAPSHOT_NAME,
        VirtualMachineSnapshotSpec {
            source: target(Some(API_GROUP), "VirtualMachine", VM_NAME),
            ..Default::default()
        },
    );
    snapshot.metadata.namespace = Some(NAMESPACE.into());
    snapshot.status = Some(VirtualMachineSnapshotStatus {
        source_uid: Some(VM_UID.into()),
        ready_to_use: Some(true),
        ..Default::default()
    });
    snapshot
}

/// The `BeforeEach` VM of "when VirtualMachine exists": `vm` with UID `vm-uid`.
fn vm() -> VirtualMachine {
    let mut vm = VirtualMachine::new(VM_NAME, VirtualMachineSpec::default());
    vm.metadata.uid = Some(VM_UID.into());
    vm
}

fn vm_with_run_strategy(run_strategy: &str) -> VirtualMachine {
    let mut vm = vm();
    vm.spec.run_strategy = Some(run_strategy.into());
    vm
}

fn target(api_group: Option<&str>, kind: &str, name: &str) -> TypedLocalObjectReference {
    TypedLocalObjectReference { api_group: api_group.map(Into::into), kind: kind.into(), name: name.into() }
}

fn restore_named(
    name: &str,
    target: TypedLocalObjectReference,
    snapshot_name: &str,
) -> VirtualMachineRestore {
    let mut restore = VirtualMachineRestore::new(
        name,
        VirtualMachineRestoreSpec {
            target,
            virtual_machine_snapshot_name: snapshot_name.into(),
            ..Default::default()
        },
    );
    restore.metadata.namespace = Some(NAMESPACE.into());
    restore
}

/// The usual restore: `restore` of snapshot `snapshot` into `target`.
fn restore(target: TypedLocalObjectReference) -> VirtualMachineRestore {
    restore_named("restore", target, VM_SNAPSHOT_NAME)
}

/// The usual restore into the VM `vm`.
fn restore_to_vm() -> VirtualMachineRestore {
    restore(target(Some(API_GROUP), "VirtualMachine", VM_NAME))
}

mod validating_virtual_machine_restore_admitter {
    mod with_feature_gate_enabled {
        use super::super::*;

        #[test]
        fn should_reject_missing_apigroup() {
            let restore = restore(target(None, "VirtualMachine", VM_NAME));
            let cluster = Cluster::default().with_snapshot(snapshot());
            assert_eq!(
                causes(cluster.admit_create(&restore)),
                vec![cause("FieldValueNotFound", "spec.target.apiGroup", "missing apiGroup")]
            );
        }

        #[test]
        fn should_accept_when_snapshot_does_not_exist() {
            assert_eq!(Cluster::default().admit_create(&restore_to_vm()), Ok(()));
        }

        #[test]
        fn should_reject_spec_update() {
            let restore = restore_to_vm();
            let old_restore = super::super::restore(target(Some(API_GROUP), "VirtualMachine", "baz"));
            let result =
                validate_restore(Operation::Update, Some(&old_restore), &restore, &RestoreContext::default());
            assert_eq!(
                causes(result),
                vec![cause("FieldValueInvalid", "spec", "spec in immutable after creation")]
            );
        }

        #[test]
        fn should_allow_metadata_update() {
            let old_restore =
                restore_named("restore", target(Some(API_GROUP), "VirtualMachine", VM_NAME), "");
            let mut restore = old_restore.clone();
            restore.metadata.finalizers = Some(vec!["finalizer".into()]);
            let result =
                validate_restore(Operation::Update, Some(&old_restore), &restore, &RestoreContext::default());
            assert_eq!(result, Ok(()));
        }

        mod when_virtual_machine_exists {
            use super::super::super::*;

            #[test]
            fn should_allow_when_vm_is_running() {
                let cluster =
                    Cluster::default().with_vm(vm_with_run_strategy("Always")).with_snapshot(snapshot());
                assert_eq!(cluster.admit_create(&restore_to_vm()), Ok(()));
            }

            #[test]
            fn should_allow_when_vm_run_strategy_is_not_halted() {
                let cluster =
                    Cluster::default().with_vm(vm_with_run_strategy("Manual")).with_snapshot(snapshot());
                assert_eq!(cluster.admit_create(&restore_to_vm()), Ok(()));
            }

            #[test]
            fn should_reject_invalid_kind() {
                let restore = restore(target(Some(API_GROUP), "VirtualMachineInstance", VM_NAME));
                let cluster =
                    Cluster::default().with_vm(vm_with_run_strategy("Always")).with_snapshot(snapshot());
                assert_eq!(
                    causes(cluster.admit_create(&restore)),
                    vec![cause("FieldValueInvalid", "spec.target.kind", "invalid kind")]
                );
            }

            #[test]
            fn should_reject_invalid_api_group() {
                let restore = restore(target(Some("foo.bar"), "VirtualMachine", VM_NAME));
                let cluster =
                    Cluster::default().with_vm(vm_with_run_strategy("Always")).with_snapshot(snapshot());
                assert_eq!(
                    causes(cluster.admit_create(&restore)),
                    vec![cause("FieldValueInvalid", "spec.target.apiGroup", "invalid apiGroup")]
                );
            }

            /// KubeVirt's restore and the one in progress share the name `restore-in-process`.
            #[test]
            fn should_reject_if_restore_in_progress() {
                let restore_target = target(Some(API_GROUP), "VirtualMachine", VM_NAME);
                let restore = restore_named("restore-in-process", restore_target.clone(), VM_SNAPSHOT_NAME);
                let restore_in_process =
                    restore_named("restore-in-process", restore_target, VM_SNAPSHOT_NAME);
                let cluster = Cluster::default()
                    .with_vm(vm_with_run_strategy("Halted"))
                    .with_snapshot(snapshot())
                    .with_restore(restore_in_process);
                assert_eq!(
                    causes(cluster.admit_create(&restore)),
                    vec![cause(
                        "FieldValueInvalid",
                        "spec.target",
                        "VirtualMachineRestore \"restore-in-process\" in progress"
                    )]
                );
            }

            #[test]
            fn should_accept_when_vm_is_not_running() {
                let cluster =
                    Cluster::default().with_vm(vm_with_run_strategy("Halted")).with_snapshot(snapshot());
                assert_eq!(cluster.admit_create(&restore_to_vm()), Ok(()));
            }

            #[test]
            fn should_reject_volume_overrides_if_no_parameter_is_specified() {
                let mut restore = restore_to_vm();
                restore.spec.volume_restore_overrides = vec![VolumeRestoreOverride::default()];
                let cluster = Cluster::default().with_vm(vm()).with_snapshot(snapshot());
                assert_eq!(
                    causes(cluster.admit_create(&restore)),
                    vec![
                        cause(
                            "FieldValueRequired",
                            "spec.volumeRestoreOverrides[0].volumeName",
                            "must provide a volume name"
                        ),
                        cause(
                            "FieldValueRequired",
                            "spec.volumeRestoreOverrides[0]",
                            "must provide at least one overriden field"
                        ),
                    ]
                );
            }

            #[test]
            fn should_accept_correct_volume_restore_policy() {
                let mut restore = restore_to_vm();
                restore.spec.volume_restore_policy = Some("InPlace".into());
                let cluster = Cluster::default().with_vm(vm()).with_snapshot(snapshot());
                assert_eq!(cluster.admit_create(&restore), Ok(()));
            }

            #[test]
            fn should_accept_prefix_target_name_volume_restore_policy() {
                let mut restore = restore_to_vm();
                restore.spec.volume_restore_policy = Some("PrefixTargetName".into());
                let cluster = Cluster::default().with_vm(vm()).with_snapshot(snapshot());
                assert_eq!(cluster.admit_create(&restore), Ok(()));
            }

            #[test]
            fn should_reject_invalid_volume_restore_policy() {
                let mut restore = restore_to_vm();
                restore.spec.volume_restore_policy = Some("invalid".into());
                let cluster = Cluster::default().with_vm(vm()).with_snapshot(snapshot());
                assert_eq!(
                    causes(cluster.admit_create(&restore)),
                    vec![cause(
                        "FieldValueInvalid",
                        "spec.volumeRestorePolicy",
                        "volume restore policy \"invalid\" doesn't exist"
                    )]
                );
            }

            #[test]
            fn should_accept_correct_volume_ownership_policy() {
                let mut restore = restore_to_vm();
                restore.spec.volume_ownership_policy = Some("None".into());
                let cluster = Cluster::default().with_vm(vm()).with_snapshot(snapshot());
                assert_eq!(cluster.admit_create(&restore), Ok(()));
            }

            #[test]
            fn should_reject_invalid_volume_ownership_policy() {
                let mut restore = restore_to_vm();
                restore.spec.volume_ownership_policy = Some("invalid".into());
                let cluster = Cluster::default().with_vm(vm()).with_snapshot(snapshot());
                assert_eq!(
                    causes(cluster.admit_create(&restore)),
                    vec![cause(
                        "FieldValueInvalid",
                        "spec.volumeOwnershipPolicy",
                        "volume ownership policy \"invalid\" doesn't exist"
                    )]
                );
            }

            /// `DescribeTable("Should reject restore when using backend storage and restoring to
            /// different VM")`: the snapshotted VM has a persistent TPM, the restore targets
            /// `new-test-vm`, which either does not exist or is another VM (UID `new-uid`).
            mod should_reject_restore_when_using_backend_storage_and_restoring_to_different_vm {
                use super::super::super::super::*;
                use vmsnap_api::kubevirt::VirtualMachine;

                const TARGET_VM_NAME: &str = "new-test-vm";

                fn admit(does_target_exist: bool) -> Result<(), Denial> {
                    let mut vm = vm();
                    vm.spec.template.spec.domain.devices.tpm = Some(serde_json::json!({"persistent": true}));
                    let content = VirtualMachineSnapshotContent::new(
                        "snapshot-content",
                        VirtualMachineSnapshotContentSpec {
                            source: SourceSpec {
                                virtual_machine: Some(SnapshotVirtualMachine {
                                    metadata: vm.metadata.clone(),
                                    spec: vm.spec.clone(),
                                    status: vm.status.clone().unwrap_or_default(),
                                }),
                            },
                            ..Default::default()
                        },
                    );
                    let mut snapshot = snapshot();
                    snapshot.status.as_mut().unwrap().virtual_machine_snapshot_content_name =
                        Some("snapshot-content".into());
                    // KubeVirt passes an empty VM when the target does not exist: it matches no name.
                    let target_vm = if does_target_exist {
                        let mut target_vm = vm.clone();
                        target_vm.metadata.name = Some(TARGET_VM_NAME.into());
                        target_vm.metadata.uid = Some("new-uid".into());
                        target_vm
                    } else {
                        VirtualMachine::new("", Default::default())
                    };
                    let restore = restore(target(Some(API_GROUP), "VirtualMachine", TARGET_VM_NAME));
                    Cluster::default()
                        .with_snapshot(snapshot)
                        .with_content(content)
                        .with_vm(target_vm)
                        .admit_create(&restore)
                }

                fn expected() -> Vec<CauseTuple> {
                    vec![cause(
                        "FieldValueInvalid",
                        "spec",
                        "Restore to a different VM is not supported when snapshotted VM has backend storage (persistent TPM or EFI)",
                    )]
                }

                #[test]
                fn target_doesnt_exist() {
                    assert_eq!(causes(admit(false)), expected());
                }

                #[test]
                fn target_exists() {
                    assert_eq!(causes(admit(true)), expected());
                }
            }

            mod when_using_patches {
                use super::super::super::super::*;

                /// Go's `patch.New(...).GeneratePayload()`: a JSON array of one operation, compact,
                /// with `value` left out for `remove`.
                fn payload(op: &str, path: &str, value: Option<&str>) -> String {
                    match value {
                        Some(value) => format!(r#"[{{"op":"{op}","path":"{path}","value":"{value}"}}]"#),
                        None => format!(r#"[{{"op":"{op}","path":"{path}"}}]"#),
                    }
                }

                fn admit_patch(patch: String) -> Result<(), Denial> {
                    let mut restore = restore_to_vm();
                    restore.spec.patches = vec![patch];
                    Cluster::default().with_vm(vm()).with_snapshot(snapshot()).admit_create(&restore)
                }

                /// KubeVirt's message names the `"path": ...` fragment of its naive split on `,`.
                fn not_under_spec(fragment: &str) -> Vec<CauseTuple> {
                    vec![cause(
                        "FieldValueInvalid",
                        "spec.patches",
                        &format!("patching is valid only for elements under /spec/ only: {fragment}"),
                    )]
                }

                mod should_reject_patching_elements_not_under_spec {
                    use super::*;

                    #[test]
                    fn patch_to_replace_metadata() {
                        let result = admit_patch(payload("replace", "/metadata", Some("some-value")));
                        assert_eq!(causes(result), not_under_spec(r#""path":"/metadata""#));
                    }

                    #[test]
                    fn patch_to_replace_name() {
                        let result = admit_patch(payload("replace", "/metadata/name", Some("some-value")));
                        assert_eq!(causes(result), not_under_spec(r#""path":"/metadata/name""#));
                    }

                    #[test]
                    fn patch_to_replace_kind() {
                        let result = admit_patch(payload("replace", "/kind", Some("some-value")));
                        assert_eq!(causes(result), not_under_spec(r#""path":"/kind""#));
                    }

                    #[test]
                    fn patch_to_remove_api_version() {
                        let result = admit_patch(payload("remove", "/apiVersion", None));
                        assert_eq!(causes(result), not_under_spec(r#""path":"/apiVersion"}]"#));
                    }

                    #[test]
                    fn patch_to_replace_status() {
                        let result = admit_patch(payload("replace", "/status", Some("some-value")));
                        assert_eq!(causes(result), not_under_spec(r#""path":"/status""#));
                    }

                    #[test]
                    fn patch_to_add_ready_status() {
                        let result = admit_patch(payload("add", "/status/ready", Some("some-value")));
                        assert_eq!(causes(result), not_under_spec(r#""path":"/status/ready""#));
                    }
                }

                mod should_allow_patching_elements_under_spec {
                    use super::*;

                    #[test]
                    fn patch_to_replace_mac() {
                        let path = "/spec/template/spec/domain/devices/interfaces/0/macAddress";
                        assert_eq!(admit_patch(payload("replace", path, Some("some-value"))), Ok(()));
                    }

                    #[test]
                    fn patch_to_add_running() {
                        assert_eq!(admit_patch(payload("add", "/spec/running", Some("some-value"))), Ok(()));
                    }

                    #[test]
                    fn patch_to_remove_instancetype() {
                        assert_eq!(admit_patch(payload("remove", "/spec/instancetype", None)), Ok(()));
                    }

                    #[test]
                    fn patch_to_replace_a_label() {
                        let patch = payload("replace", "/metadata/labels/key", Some("some-value"));
                        assert_eq!(admit_patch(patch), Ok(()));
                    }

                    #[test]
                    fn patch_to_remove_an_annotation() {
                        assert_eq!(admit_patch(payload("remove", "/metadata/annotations/key", None)), Ok(()));
                    }
                }

                #[test]
                fn should_reject_an_invalid_patch() {
                    let invalid_patch = r#"{"op": "remove", "path": "/spec/running" : "illegal-field"}"#;
                    assert_eq!(
                        causes(admit_patch(invalid_patch.into())),
                        vec![cause(
                            "FieldValueInvalid",
                            "spec.patches",
                            r#"patch format is not valid - one ":" expected in a single key-value json patch:  "path": "/spec/running" : "illegal-field""#,
                        )]
                    );
                }
            }
        }
    }
}
