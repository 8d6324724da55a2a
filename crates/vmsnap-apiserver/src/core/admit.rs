//! Runs KubeVirt's admission rules (vmsnap-admission) in-process, looking up what they need in the store.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vmsnap_admission::{Denial, Operation, RestoreContext};
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::registry::{ResourceType, registry};
use vmsnap_api::snapshot::{VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent};

use super::Core;
use crate::error::ApiError;

fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn denied(denial: Denial) -> ApiError {
    // KubeVirt answers errors (as opposed to refusals with causes) with a 400 and no causes.
    if denial.error.is_some() {
        return ApiError::bad_request(denial.message());
    }
    ApiError::denied(denial.message(), json!(denial.status_causes()))
}

impl Core {
    async fn lookup<T: DeserializeOwned>(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<T>, ApiError> {
        let rt = registry().by_kind(api_version, kind).expect("kind is registered");
        self.get_stored(rt, Some(ns), name).await?.map(|v| typed(&v)).transpose()
    }

    /// Runs the admission rules for a write on the main resource.
    pub(crate) async fn admit(
        &self,
        rt: &ResourceType,
        op: Operation,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError> {
        match (rt.group, rt.kind.as_str()) {
            ("snapshot.kubevirt.io", "VirtualMachineSnapshot") => {
                let new_t: VirtualMachineSnapshot = typed(new)?;
                let old_t: Option<VirtualMachineSnapshot> = old.map(typed).transpose()?;
                vmsnap_admission::validate_snapshot(op, old_t.as_ref(), &new_t).map_err(denied)
            }
            ("snapshot.kubevirt.io", "VirtualMachineRestore") => {
                let new_t: VirtualMachineRestore = typed(new)?;
                let old_t: Option<VirtualMachineRestore> = old.map(typed).transpose()?;
                let ctx = if op == Operation::Create {
                    self.restore_context(&new_t).await?
                } else {
                    RestoreContext::default()
                };
                vmsnap_admission::validate_restore(op, old_t.as_ref(), &new_t, &ctx).map_err(denied)
            }
            ("schedule.vmsnap.io", "VirtualMachineSnapshotSchedule") => {
                vmsnap_admission::validate_schedule(&typed(new)?).map_err(denied)
            }
            ("backup.vmsnap.io", "VirtualMachineBackupRepository") => {
                let old_t = old.map(typed).transpose()?;
                vmsnap_admission::validate_repository(op, old_t.as_ref(), &typed(new)?).map_err(denied)
            }
            ("backup.vmsnap.io", "VirtualMachineRepositoryBackup") => {
                let old_t = old.map(typed).transpose()?;
                vmsnap_admission::validate_backup(op, old_t.as_ref(), &typed(new)?).map_err(denied)
            }
            ("backup.vmsnap.io", "VirtualMachineRepositoryRestore") => {
                let old_t = old.map(typed).transpose()?;
                vmsnap_admission::validate_repository_restore(op, old_t.as_ref(), &typed(new)?)
                    .map_err(denied)
            }
            ("kubevirt.io", "VirtualMachine") => {
                let new_t: VirtualMachine = typed(new)?;
                vmsnap_admission::validate_vm_run_strategy(&new_t).map_err(denied)?;
                let (Operation::Update, Some(old)) = (op, old) else { return Ok(()) };
                let old_t: VirtualMachine = typed(old)?;
                vmsnap_admission::validate_vm_update(&old_t, &new_t).map_err(denied)
            }
            _ => Ok(()),
        }
    }

    async fn restore_context(&self, restore: &VirtualMachineRestore) -> Result<RestoreContext, ApiError> {
        let ns = restore.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let snapshot: Option<VirtualMachineSnapshot> = self
            .lookup(
                "snapshot.kubevirt.io/v1beta1",
                "VirtualMachineSnapshot",
                &ns,
                &restore.spec.virtual_machine_snapshot_name,
            )
            .await?;
        let content_name = snapshot
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.virtual_machine_snapshot_content_name.clone());
        let content: Option<VirtualMachineSnapshotContent> = match content_name {
            Some(c) => {
                self.lookup("snapshot.kubevirt.io/v1beta1", "VirtualMachineSnapshotContent", &ns, &c).await?
            }
            None => None,
        };
        let target_vm: Option<VirtualMachine> =
            self.lookup("kubevirt.io/v1", "VirtualMachine", &ns, &restore.spec.target.name).await?;
        let restores_rt = registry()
            .by_kind("snapshot.kubevirt.io/v1beta1", "VirtualMachineRestore")
            .expect("kind is registered");
        let others = self.list(restores_rt, "v1beta1", Some(&ns), &Default::default()).await?.items;
        let other_restores = others.iter().map(typed).collect::<Result<Vec<_>, _>>()?;
        Ok(RestoreContext { snapshot, content, target_vm, other_restores })
    }
}
