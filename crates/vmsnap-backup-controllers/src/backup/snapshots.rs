//! The snapshots a backup takes of its VM (`<backup>-snapshot`, labelled with the backup and the
//! VM): taken before the read, kept as the base of the VM's next incremental, deleted when a newer
//! backup of the VM to the same repository has its own, when the backup fails, or when it goes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use vmsnap_api::backup::{BackupPhase, VirtualMachineRepositoryBackup, label};
use vmsnap_api::snapshot::{VirtualMachineSnapshot, VirtualMachineSnapshotSpec};

use crate::Context;

/// The name of the snapshot a backup takes.
pub(crate) fn snapshot_name(backup: &str) -> String {
    format!("{backup}-snapshot")
}

/// Takes the snapshot of `vm` for `backup` (or finds it taken).
pub(crate) async fn take(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
    vm: &str,
) -> Result<VirtualMachineSnapshot, kube::Error> {
    let namespace = backup.namespace().unwrap_or_default();
    let api: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = snapshot_name(&backup.name_any());
    let spec = VirtualMachineSnapshotSpec {
        source: TypedLocalObjectReference {
            api_group: Some("kubevirt.io".into()),
            kind: "VirtualMachine".into(),
            name: vm.to_owned(),
        },
        ..VirtualMachineSnapshotSpec::default()
    };
    let mut snapshot = VirtualMachineSnapshot::new(&name, spec);
    snapshot.metadata.namespace = Some(namespace);
    snapshot.metadata.labels = Some(BTreeMap::from([
        (label::BACKUP.to_owned(), backup.name_any()),
        (label::VM.to_owned(), vm.to_owned()),
    ]));
    match api.create(&PostParams::default(), &snapshot).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => api.get(&name).await,
        Err(error) => Err(error),
    }
}

/// Deletes the snapshots `backup` took.
pub(crate) async fn delete_made_by(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
) -> Result<(), kube::Error> {
    let api: Api<VirtualMachineSnapshot> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let selector = format!("{}={}", label::BACKUP, backup.name_any());
    for snapshot in api.list(&ListParams::default().labels(&selector)).await?.items {
        delete(&api, &snapshot.name_any()).await?;
    }
    Ok(())
}

/// After `backup` of `vm` (at `ours`, in seconds) succeeded: deletes the snapshots older backups of the VM to the same
/// repository took (or whose backup is gone), keeping this one's as the next base. Snapshots of
/// backups still running are theirs to read, and are kept.
pub(crate) async fn delete_older_bases(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
    vm: &str,
    ours: Option<i64>,
) -> Result<(), kube::Error> {
    let namespace = backup.namespace().unwrap_or_default();
    let snapshots: Api<VirtualMachineSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
    let backups: Api<VirtualMachineRepositoryBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{},{}={vm}", label::BACKUP, label::VM);
    for snapshot in snapshots.list(&ListParams::default().labels(&selector)).await?.items {
        let Some(owner) = snapshot.labels().get(label::BACKUP) else { continue };
        if *owner == backup.name_any() {
            continue;
        }
        let stale = match backups.get_opt(owner).await? {
            None => true,
            Some(other) => {
                let finished =
                    other.status.as_ref().and_then(|s| s.phase.as_ref()).is_some_and(BackupPhase::is_final);
                let older = match (point_in_time(&other), ours) {
                    (Some(theirs), Some(ours)) => theirs <= ours,
                    _ => true,
                };
                other.spec.repository == backup.spec.repository && finished && older
            }
        };
        if stale {
            tracing::info!(snapshot = %snapshot.name_any(), backup = %backup.name_any(), "deleting the snapshot of an older backup");
            delete(&snapshots, &snapshot.name_any()).await?;
        }
    }
    Ok(())
}

fn point_in_time(backup: &VirtualMachineRepositoryBackup) -> Option<i64> {
    backup.status.as_ref()?.point_in_time.as_ref().map(|t| t.0.as_second())
}

async fn delete(api: &Api<VirtualMachineSnapshot>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(gone) if vmsnap_contracts::controller::is_not_found(&gone) => Ok(()),
        Err(error) => Err(error),
    }
}
