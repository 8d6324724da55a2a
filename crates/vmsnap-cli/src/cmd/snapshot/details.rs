//! What a snapshot holds, beyond its own status: its content, the size of its VolumeSnapshots,
//! and why the VM's other disks were left out (the VM's `status.volumeSnapshotStatuses`).

use std::collections::BTreeMap;

use kube::ResourceExt;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::{
    SnapshotPhase, VirtualMachineSnapshot, VirtualMachineSnapshotContent, content_name, indication,
};
use vmsnap_api::volumesnapshot::VolumeSnapshot;

use crate::cmd::client::Session;
use crate::cmd::output::display_size;

/// The contents and VolumeSnapshot sizes of a namespace, loaded once for many snapshots.
#[derive(Debug, Default)]
pub struct Catalog {
    contents: BTreeMap<String, VirtualMachineSnapshotContent>,
    sizes: BTreeMap<String, u64>,
}

impl Catalog {
    /// Lists the contents and VolumeSnapshots of the namespace. Sizes are a convenience: when they
    /// cannot be read (no permission on a cluster), they are shown as unknown.
    pub async fn load(session: &Session) -> Catalog {
        let contents = session.api::<VirtualMachineSnapshotContent>().list(&Default::default()).await;
        let snapshots = session.api::<VolumeSnapshot>().list(&Default::default()).await;
        let contents =
            contents.map(|l| l.items).unwrap_or_default().into_iter().map(|c| (c.name_any(), c)).collect();
        let sizes = snapshots
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|vs| {
                let size = vs
                    .status
                    .as_ref()?
                    .restore_size
                    .as_ref()
                    .and_then(|q| vmsnap_api::quantity::parse_bytes(&q.0).ok())?;
                Some((vs.name_any(), size))
            })
            .collect();
        Catalog { contents, sizes }
    }

    /// The content of a snapshot.
    pub fn content(&self, snapshot: &VirtualMachineSnapshot) -> Option<&VirtualMachineSnapshotContent> {
        let name = snapshot
            .status
            .as_ref()
            .and_then(|s| s.virtual_machine_snapshot_content_name.clone())
            .or_else(|| snapshot.uid().map(|uid| content_name(&uid)))?;
        self.contents.get(&name)
    }

    /// The size of one volume's VolumeSnapshot in a snapshot.
    pub fn volume_size(&self, snapshot: &VirtualMachineSnapshot, volume: &str) -> Option<u64> {
        let backup = self.content(snapshot)?.spec.volume_backups.iter().find(|b| b.volume_name == volume)?;
        self.sizes.get(backup.volume_snapshot_name.as_ref()?).copied()
    }

    /// The sum of the `restoreSize` of the snapshot's VolumeSnapshots; `None` if one is unknown.
    pub fn size(&self, snapshot: &VirtualMachineSnapshot) -> Option<u64> {
        let content = self.content(snapshot)?;
        content
            .spec
            .volume_backups
            .iter()
            .map(|b| self.sizes.get(b.volume_snapshot_name.as_ref()?).copied())
            .sum()
    }

    /// The size as shown in tables (`-` when unknown).
    pub fn size_text(&self, snapshot: &VirtualMachineSnapshot) -> String {
        self.size(snapshot).map(display_size).unwrap_or_else(|| "-".into())
    }
}

/// Each indication of a snapshot with KubeVirt's message.
pub fn indications(snapshot: &VirtualMachineSnapshot) -> Vec<(String, String)> {
    let Some(st) = &snapshot.status else { return Vec::new() };
    if !st.source_indications.is_empty() {
        return st.source_indications.iter().map(|i| (i.indication.clone(), i.message.clone())).collect();
    }
    st.indications.iter().map(|i| (i.clone(), indication::message(i).to_owned())).collect()
}

/// One disk of the VM and whether the snapshot has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLine {
    /// The VM volume.
    pub volume: String,
    /// In the snapshot.
    pub included: bool,
    /// The size if included, else why not.
    pub detail: String,
}

/// The included and excluded disks of a snapshot; reasons come from `vm` (if it still exists).
pub fn disks(
    snapshot: &VirtualMachineSnapshot,
    catalog: &Catalog,
    vm: Option<&VirtualMachine>,
) -> Vec<DiskLine> {
    let lists = snapshot.status.as_ref().and_then(|s| s.snapshot_volumes.clone()).unwrap_or_default();
    let mut included = lists.included_volumes;
    if included.is_empty()
        && lists.excluded_volumes.is_empty()
        && let Some(content) = catalog.content(snapshot)
    {
        included = content.spec.volume_backups.iter().map(|b| b.volume_name.clone()).collect();
    }
    let reasons: BTreeMap<&str, &str> = vm
        .and_then(|vm| vm.status.as_ref())
        .map(|s| {
            s.volume_snapshot_statuses
                .iter()
                .filter(|v| !v.enabled)
                .filter_map(|v| Some((v.name.as_str(), v.reason.as_deref()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<DiskLine> = included
        .into_iter()
        .map(|volume| {
            let detail = catalog.volume_size(snapshot, &volume).map(display_size).unwrap_or_default();
            DiskLine { volume, included: true, detail }
        })
        .collect();
    out.extend(lists.excluded_volumes.into_iter().map(|volume| {
        let detail =
            reasons.get(volume.as_str()).map_or("no volume snapshot was taken of it", |r| r).to_owned();
        DiskLine { volume, included: false, detail }
    }));
    out
}

/// The disks as indented lines: `included:` and `excluded:` groups.
pub fn disk_lines(disks: &[DiskLine]) -> Vec<String> {
    let width = disks.iter().map(|d| d.volume.len()).max().unwrap_or(0);
    let mut out = Vec::new();
    for (included, title) in [(true, "Included disks:"), (false, "Excluded disks:")] {
        let group: Vec<&DiskLine> = disks.iter().filter(|d| d.included == included).collect();
        if group.is_empty() {
            continue;
        }
        out.push(title.to_owned());
        out.extend(
            group.iter().map(|d| format!("  {:<width$}   {}", d.volume, d.detail).trim_end().to_owned()),
        );
    }
    if out.is_empty() {
        out.push("Disks: none".to_owned());
    }
    out
}

/// The indications as indented lines.
pub fn indication_lines(snapshot: &VirtualMachineSnapshot) -> Vec<String> {
    let list = indications(snapshot);
    if list.is_empty() {
        let done = snapshot.status.as_ref().and_then(|s| s.phase.as_ref()) == Some(&SnapshotPhase::Succeeded);
        let why = if done { "none (the VM was stopped)" } else { "none yet" };
        return vec![format!("Indications: {why}")];
    }
    let width = list.iter().map(|(i, _)| i.len()).max().unwrap_or(0);
    std::iter::once("Indications:".to_owned())
        .chain(list.iter().map(|(i, m)| format!("  {i:<width$}   {m}")))
        .collect()
}
