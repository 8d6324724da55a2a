//! KubeVirt's VirtualMachineSnapshot webhook unit tests, ported.
//!
//! Ported from `pkg/storage/admitters/vmsnapshot_test.go` of kubevirt/kubevirt at commit
//! `d923fdb815cd2016ddaebdaaa51db04133576d72`: one test per `It` and per `DescribeTable` `Entry`,
//! in modules named like the `Describe`/`Context` blocks, so a test's path reads like Ginkgo's spec
//! text. KubeVirt's tests check allowed or not and the cause's field; these also check the cause's
//! type and message, as `vmsnapshot.go` at the same commit writes them.
//!
//! KubeVirt's "when VirtualMachine exists" specs hand the admitter a VM that its rule never reads
//! (the snapshot rule does not look the source VM up); `validate_snapshot` has no VM input at all,
//! so those specs differ here only by the snapshot they admit.
//!
//! Not ported (listed in `docs/compatibility.md`): "With a disabled feature gate should
//! reject anything" and "should reject invalid request resource".

mod support;

use vmsnap_admission::{Operation, validate_snapshot};
use vmsnap_api::k8s_openapi::api::core::v1::TypedLocalObjectReference;
use vmsnap_api::snapshot::{VirtualMachineSnapshot, VirtualMachineSnapshotSpec};

use support::{cause, causes};

const VM_NAME: &str = "vm";
const API_GROUP: &str = "kubevirt.io";

/// A snapshot of `kind`/`name` in `api_group`, in namespace `foo` like KubeVirt's admission review.
fn snapshot(api_group: Option<&str>, kind: &str, name: &str) -> VirtualMachineSnapshot {
    let mut snapshot = VirtualMachineSnapshot::new(
        "",
        VirtualMachineSnapshotSpec {
            source: TypedLocalObjectReference {
                api_group: api_group.map(Into::into),
                kind: kind.into(),
                name: name.into(),
            },
            ..Default::default()
        },
    );
    snapshot.metadata.name = None;
    snapshot.metadata.namespace = Some("foo".into());
    snapshot
}

/// KubeVirt's `Spec: snapshotv1.VirtualMachineSnapshotSpec{}`: no apiGroup, empty kind and name.
fn empty_snapshot() -> VirtualMachineSnapshot {
    snapshot(None, "", "")
}

mod validating_virtual_machine_snapshot_admitter {
    mod with_feature_gate_enabled {
        use super::super::*;

        #[test]
        fn should_reject_missing_apigroup() {
            let result = validate_snapshot(Operation::Create, None, &empty_snapshot());
            assert_eq!(
                causes(result),
                vec![cause("FieldValueNotFound", "spec.source.apiGroup", "missing apiGroup")]
            );
        }

        #[test]
        fn should_allow_when_vm_does_not_exist() {
            let snapshot = snapshot(Some(API_GROUP), "VirtualMachine", VM_NAME);
            assert_eq!(validate_snapshot(Operation::Create, None, &snapshot), Ok(()));
        }

        #[test]
        fn should_reject_spec_update() {
            let snapshot = snapshot(Some(API_GROUP), "VirtualMachine", VM_NAME);
            let old_snapshot = super::super::snapshot(Some(API_GROUP), "VirtualMachine", "baz");
            let result = validate_snapshot(Operation::Update, Some(&old_snapshot), &snapshot);
            assert_eq!(
                causes(result),
                vec![cause("FieldValueInvalid", "spec", "spec in immutable after creation")]
            );
        }

        #[test]
        fn should_allow_metadata_update() {
            let old_snapshot = snapshot(Some(API_GROUP), "VirtualMachine", VM_NAME);
            let mut snapshot = old_snapshot.clone();
            snapshot.metadata.finalizers = Some(vec!["finalizer".into()]);
            assert_eq!(validate_snapshot(Operation::Update, Some(&old_snapshot), &snapshot), Ok(()));
        }

        mod when_virtual_machine_exists {
            use super::super::super::*;

            #[test]
            fn should_accept_when_vm_is_running() {
                let snapshot = snapshot(Some(API_GROUP), "VirtualMachine", VM_NAME);
                assert_eq!(validate_snapshot(Operation::Create, None, &snapshot), Ok(()));
            }

            #[test]
            fn should_reject_invalid_kind() {
                let snapshot = snapshot(Some(API_GROUP), "VirtualMachineInstance", VM_NAME);
                let result = validate_snapshot(Operation::Create, None, &snapshot);
                assert_eq!(
                    causes(result),
                    vec![cause("FieldValueInvalid", "spec.source.kind", "invalid kind")]
                );
            }

            #[test]
            fn should_reject_invalid_api_group() {
                let snapshot = snapshot(Some("foo.bar"), "VirtualMachine", VM_NAME);
                let result = validate_snapshot(Operation::Create, None, &snapshot);
                assert_eq!(
                    causes(result),
                    vec![cause("FieldValueInvalid", "spec.source.apiGroup", "invalid apiGroup")]
                );
            }

            /// `DescribeTable("should accept persistent storage with both offline and online
            /// snapshot")`: the VM has a persistent TPM; its run strategy is the entry's.
            mod should_accept_persistent_storage_with_both_offline_and_online_snapshot {
                use super::super::super::super::*;

                #[test]
                fn when_vm_is_running() {
                    let snapshot = snapshot(Some(API_GROUP), "VirtualMachine", VM_NAME);
                    assert_eq!(validate_snapshot(Operation::Create, None, &snapshot), Ok(()));
                }

                #[test]
                fn when_vm_is_halted() {
                    let snapshot = snapshot(Some(API_GROUP), "VirtualMachine", VM_NAME);
                    assert_eq!(validate_snapshot(Operation::Create, None, &snapshot), Ok(()));
                }
            }

            #[test]
            fn should_accept_when_vm_is_not_running() {
                let snapshot = snapshot(Some(API_GROUP), "VirtualMachine", VM_NAME);
                assert_eq!(validate_snapshot(Operation::Create, None, &snapshot), Ok(()));
            }
        }
    }
}
