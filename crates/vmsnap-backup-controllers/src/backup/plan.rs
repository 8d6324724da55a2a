//! How each disk of a run is read: every allocated byte (a full backup), or what changed since
//! the base's snapshot or change point (an incremental), and why a disk is read in full.

use std::sync::Arc;

use vmsnap_backup::{DiskManifest, Extent};
use vmsnap_storage::StorageError;

use super::base::{BaseChoice, DiskBase};
use crate::disks::SnapshotDisk;

/// How one disk is read.
pub(super) struct DiskPlan<'a> {
    pub(super) name: String,
    pub(super) disk: Arc<SnapshotDisk>,
    pub(super) extents: Vec<Extent>,
    /// The base's manifest of the disk, for an incremental.
    pub(super) previous: Option<&'a DiskManifest>,
}

/// Decides how to read each disk; also the reasons disks are read in full.
pub(super) async fn plan(
    disks: Vec<(String, Arc<SnapshotDisk>)>,
    choice: &BaseChoice,
) -> Result<(Vec<DiskPlan<'_>>, Vec<String>), StorageError> {
    let mut plans = Vec::new();
    let mut full_reasons = Vec::new();
    for (name, disk) in disks {
        let (extents, previous) = match choice {
            BaseChoice::Full(reason) => {
                if !full_reasons.contains(reason) {
                    full_reasons.push(reason.clone());
                }
                (disk.allocated().await?, None)
            }
            BaseChoice::Base(base) => match (base.manifest.disk(&name), base.disks.get(&name)) {
                (Some(previous), Some(from)) => {
                    let changed = match from {
                        DiskBase::Point(point) => disk.changed_since_point(point).await?,
                        DiskBase::Snapshot(snapshot) => disk.changed_since(snapshot).await?,
                    };
                    match changed {
                        Ok(changed) => (changed, Some(previous)),
                        Err(why) => {
                            full_reasons.push(format!("disk {name}: {why}"));
                            (disk.allocated().await?, None)
                        }
                    }
                }
                _ => {
                    full_reasons.push(format!("disk {name} is not in the previous backup {}", base.name));
                    (disk.allocated().await?, None)
                }
            },
        };
        plans.push(DiskPlan { name, disk, extents, previous });
    }
    Ok((plans, full_reasons))
}
