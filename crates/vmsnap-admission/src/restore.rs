//! VirtualMachineRestore admission (`pkg/storage/admitters/vmrestore.go`).

use vmsnap_api::kubevirt::{self, VirtualMachine};
use vmsnap_api::snapshot::{
    VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent, volume_ownership_policy,
    volume_restore_policy,
};

use crate::{Cause, Denial, Operation, RESTORE_WEBHOOK};

/// The objects a restore create is checked against, looked up by the caller.
#[derive(Clone, Debug, Default)]
pub struct RestoreContext {
    /// The snapshot named by `spec.virtualMachineSnapshotName`, if it exists.
    pub snapshot: Option<VirtualMachineSnapshot>,
    /// The snapshot's content, if it exists.
    pub content: Option<VirtualMachineSnapshotContent>,
    /// The target VM, if it exists.
    pub target_vm: Option<VirtualMachine>,
    /// Every other restore in the namespace.
    pub other_restores: Vec<VirtualMachineRestore>,
}

/// Validates a restore create or update.
pub fn validate_restore(
    op: Operation,
    old: Option<&VirtualMachineRestore>,
    new: &VirtualMachineRestore,
    ctx: &RestoreContext,
) -> Result<(), Denial> {
    let mut causes = Vec::new();
    match op {
        Operation::Update => {
            if old.is_some_and(|old| old.spec != new.spec) {
                causes.push(Cause::invalid("spec", "spec in immutable after creation"));
            }
        }
        Operation::Create => validate_create(new, ctx, &mut causes),
    }
    Denial::check(RESTORE_WEBHOOK, causes)
}

fn validate_create(new: &VirtualMachineRestore, ctx: &RestoreContext, causes: &mut Vec<Cause>) {
    let target = &new.spec.target;
    if target.kind != "VirtualMachine" {
        causes.push(Cause::invalid("spec.target.kind", "invalid kind"));
    } else {
        match target.api_group.as_deref() {
            None => causes.push(Cause {
                reason: "FieldValueNotFound",
                field: "spec.target.apiGroup".into(),
                message: "missing apiGroup".into(),
            }),
            Some(g) if g != kubevirt::GROUP => {
                causes.push(Cause::invalid("spec.target.apiGroup", "invalid apiGroup"))
            }
            Some(_) => {
                let patch_causes = validate_patches(&new.spec.patches);
                match &ctx.snapshot {
                    // Quirk kept from KubeVirt: without the snapshot, patch problems are not reported.
                    None => {}
                    Some(snapshot) => {
                        causes.extend(patch_causes);
                        causes.extend(validate_backend_storage(snapshot, ctx));
                    }
                }
            }
        }
    }
    for (i, o) in new.spec.volume_restore_overrides.iter().enumerate() {
        if o.volume_name.as_deref().unwrap_or("").is_empty() {
            causes.push(Cause::invalid(
                format!("spec.volumeRestoreOverrides[{i}].volumeName"),
                "must provide a volume name",
            ));
        }
        if o.restore_name.as_deref().unwrap_or("").is_empty() && o.labels.is_none() && o.annotations.is_none()
        {
            causes.push(Cause::invalid(
                format!("spec.volumeRestoreOverrides[{i}]"),
                "must provide at least one overriden field",
            ));
        }
    }
    if let Some(p) = new.spec.volume_restore_policy.as_deref() {
        let known = [
            volume_restore_policy::RANDOMIZE_NAMES,
            volume_restore_policy::IN_PLACE,
            volume_restore_policy::PREFIX_TARGET_NAME,
        ];
        if !known.contains(&p) {
            causes.push(Cause::invalid(
                "spec.volumeRestorePolicy",
                format!("volume restore policy \"{p}\" doesn't exist"),
            ));
        }
    }
    if let Some(p) = new.spec.volume_ownership_policy.as_deref()
        && ![volume_ownership_policy::VM, volume_ownership_policy::NONE].contains(&p)
    {
        causes.push(Cause::invalid(
            "spec.volumeOwnershipPolicy",
            format!("volume ownership policy \"{p}\" doesn't exist"),
        ));
    }
    for other in &ctx.other_restores {
        if other.metadata.name == new.metadata.name || other.spec.target != new.spec.target {
            continue;
        }
        let complete = other.status.as_ref().and_then(|s| s.complete);
        if complete != Some(true) {
            let name = other.metadata.name.clone().unwrap_or_default();
            causes.push(Cause::invalid("spec.target", format!("VirtualMachineRestore {name:?} in progress")));
        }
    }
}

/// KubeVirt's naive patch check: split on `,` and `:`, and only allow paths under `/spec/`,
/// `/metadata/labels/` and `/metadata/annotations/`.
fn validate_patches(patches: &[String]) -> Vec<Cause> {
    let mut causes = Vec::new();
    for patch in patches {
        for fragment in patch.trim_matches(|c| c == '{' || c == '}').split(',') {
            let kv: Vec<&str> = fragment.split(':').collect();
            if kv.len() != 2 {
                causes.push(Cause::invalid(
                    "spec.patches",
                    format!("patch format is not valid - one \":\" expected in a single key-value json patch: {fragment}"),
                ));
                continue;
            }
            let (key, value) = (kv[0].trim(), kv[1].trim());
            if key == "\"path\"" {
                if value.starts_with("\"/metadata/labels/") || value.starts_with("\"/metadata/annotations/") {
                    continue;
                }
                if !value.starts_with("\"/spec/") {
                    causes.push(Cause::invalid(
                        "spec.patches",
                        format!("patching is valid only for elements under /spec/ only: {fragment}"),
                    ));
                }
            }
        }
    }
    causes
}

fn validate_backend_storage(snapshot: &VirtualMachineSnapshot, ctx: &RestoreContext) -> Vec<Cause> {
    let source_uid = snapshot.status.as_ref().and_then(|s| s.source_uid.clone());
    let same_vm =
        ctx.target_vm.as_ref().is_some_and(|vm| vm.metadata.uid.is_some() && vm.metadata.uid == source_uid);
    if same_vm {
        return Vec::new();
    }
    let content_name =
        snapshot.status.as_ref().and_then(|s| s.virtual_machine_snapshot_content_name.as_deref());
    if content_name.is_none() {
        return vec![Cause::invalid("spec", "snapshot content name is nil in vmSnapshot status")];
    }
    let Some(content) = &ctx.content else { return Vec::new() };
    let Some(vm) = &content.spec.source.virtual_machine else {
        return vec![Cause::invalid("spec", "unexpected snapshot source")];
    };
    if needs_backend_storage(&vm.spec.template.spec.domain) {
        return vec![Cause::invalid(
            "spec",
            "Restore to a different VM is not supported when snapshotted VM has backend storage (persistent TPM or EFI)",
        )];
    }
    Vec::new()
}

/// Whether a VM needs backend storage: a persistent TPM or persistent EFI variables.
pub(crate) fn needs_backend_storage(domain: &kubevirt::DomainSpec) -> bool {
    let tpm =
        domain.devices.tpm.as_ref().and_then(|t| t.get("persistent")).and_then(|p| p.as_bool()) == Some(true);
    let efi = domain
        .firmware
        .as_ref()
        .and_then(|f| f.bootloader.as_ref())
        .and_then(|b| b.pointer("/efi/persistent"))
        .and_then(|p| p.as_bool())
        == Some(true);
    tpm || efi
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::k8s_openapi::api::core::v1::TypedLocalObjectReference;
    use vmsnap_api::snapshot::{
        VirtualMachineRestoreSpec, VirtualMachineRestoreStatus, VolumeRestoreOverride,
    };

    fn restore(name: &str, target: &str) -> VirtualMachineRestore {
        VirtualMachineRestore::new(
            name,
            VirtualMachineRestoreSpec {
                target: TypedLocalObjectReference {
                    api_group: Some("kubevirt.io".into()),
                    kind: "VirtualMachine".into(),
                    name: target.into(),
                },
                virtual_machine_snapshot_name: "snap".into(),
                ..Default::default()
            },
        )
    }

    fn ctx_with_snapshot() -> RestoreContext {
        let mut snap = VirtualMachineSnapshot::new("snap", Default::default());
        snap.status = Some(vmsnap_api::snapshot::VirtualMachineSnapshotStatus {
            virtual_machine_snapshot_content_name: Some("content".into()),
            ..Default::default()
        });
        RestoreContext { snapshot: Some(snap), ..Default::default() }
    }

    fn messages(r: Result<(), Denial>) -> Vec<String> {
        r.err().map(|d| d.causes.into_iter().map(|c| c.message).collect()).unwrap_or_default()
    }

    #[test]
    fn patches_outside_spec_labels_and_annotations_are_refused() {
        let mut r = restore("r", "vm");
        r.spec.patches =
            vec![r#"{"op": "replace", "path": "/metadata/name", "value": "new-vm-name"}"#.into()];
        let msgs = messages(validate_restore(Operation::Create, None, &r, &ctx_with_snapshot()));
        assert_eq!(
            msgs,
            vec![r#"patching is valid only for elements under /spec/ only:  "path": "/metadata/name""#]
        );
    }

    #[test]
    fn allowed_patches_pass() {
        let mut r = restore("r", "vm");
        r.spec.patches = vec![
            r#"{"op": "replace", "path": "/spec/template/spec/domain/firmware/uuid", "value": ""}"#.into(),
            r#"{"op": "add", "path": "/metadata/labels/copy", "value": "yes"}"#.into(),
        ];
        assert!(validate_restore(Operation::Create, None, &r, &ctx_with_snapshot()).is_ok());
    }

    #[test]
    fn patch_problems_are_ignored_when_the_snapshot_does_not_exist_yet() {
        let mut r = restore("r", "vm");
        r.spec.patches = vec![r#"{"op": "replace", "path": "/kind", "value": "x"}"#.into()];
        assert!(validate_restore(Operation::Create, None, &r, &RestoreContext::default()).is_ok());
    }

    #[test]
    fn unknown_policies_and_empty_overrides_are_refused() {
        let mut r = restore("r", "vm");
        r.spec.volume_restore_policy = Some("Shuffle".into());
        r.spec.volume_ownership_policy = Some("Mine".into());
        r.spec.volume_restore_overrides = vec![VolumeRestoreOverride::default()];
        let msgs = messages(validate_restore(Operation::Create, None, &r, &ctx_with_snapshot()));
        assert_eq!(
            msgs,
            vec![
                "must provide a volume name",
                "must provide at least one overriden field",
                "volume restore policy \"Shuffle\" doesn't exist",
                "volume ownership policy \"Mine\" doesn't exist",
            ]
        );
    }

    #[test]
    fn an_unfinished_restore_to_the_same_target_blocks_a_new_one() {
        let r = restore("r2", "vm");
        let mut failed = restore("r1", "vm");
        failed.status = Some(VirtualMachineRestoreStatus { complete: Some(false), ..Default::default() });
        let mut done = restore("r0", "vm");
        done.status = Some(VirtualMachineRestoreStatus { complete: Some(true), ..Default::default() });
        let ctx = RestoreContext {
            other_restores: vec![failed, done, restore("x", "other")],
            ..ctx_with_snapshot()
        };
        let msgs = messages(validate_restore(Operation::Create, None, &r, &ctx));
        assert_eq!(msgs, vec!["VirtualMachineRestore \"r1\" in progress"]);
    }

    #[test]
    fn target_kind_and_group_are_checked() {
        let mut r = restore("r", "vm");
        r.spec.target.api_group = None;
        assert_eq!(
            messages(validate_restore(Operation::Create, None, &r, &ctx_with_snapshot())),
            vec!["missing apiGroup"]
        );
        r.spec.target.kind = "Pod".into();
        assert_eq!(
            messages(validate_restore(Operation::Create, None, &r, &ctx_with_snapshot())),
            vec!["invalid kind"]
        );
    }

    #[test]
    fn the_spec_is_immutable() {
        let old = restore("r", "vm");
        let mut new = old.clone();
        new.spec.virtual_machine_snapshot_name = "other".into();
        assert_eq!(
            messages(validate_restore(Operation::Update, Some(&old), &new, &RestoreContext::default())),
            vec!["spec in immutable after creation"]
        );
    }
}
