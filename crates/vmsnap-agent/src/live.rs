//! [`LiveBlockOps`] for the storage driver: snapshots and compaction of
//! volumes attached to running VMs, through QEMU.
//!
//! A storage volume is found through the VMIs' attached volumes (each PVC's
//! PersistentVolume names the volume). All the volumes of one VM in a
//! `switch_to_overlays` call are switched in one QMP transaction, so the cut
//! is atomic across that VM's disks; volumes of different VMs are switched
//! one VM after the other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use vmsnap_storage::{LiveBlockOps, LiveError, LiveSwitch, StreamRequest, VolumeId};

use crate::agent::Agent;
use crate::registry::VolumeUse;
use crate::running::RunningVmi;

impl Agent {
    /// The running VMI and disk that have `volume`; `None` if it is not attached.
    fn attached(&self, volume: &VolumeId) -> Result<Option<(Arc<RunningVmi>, String)>, LiveError> {
        match self.registry.volume_use(volume) {
            VolumeUse::Detached => Ok(None),
            VolumeUse::Launching { vmi } => Err(LiveError::new(format!(
                "volume {volume} is being attached to VM {vmi}, which is starting; retry in a moment"
            ))),
            VolumeUse::Attached { vmi, disk } => Ok(Some((vmi, disk))),
        }
    }

    fn attached_or_error(&self, volume: &VolumeId) -> Result<(Arc<RunningVmi>, String), LiveError> {
        self.attached(volume)?
            .ok_or_else(|| LiveError::new(format!("volume {volume} is not attached to a running VM")))
    }
}

/// Whether two paths name the same file (following symlinks when both exist).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[async_trait]
impl LiveBlockOps for Agent {
    async fn active_file(&self, volume: &VolumeId) -> Result<Option<PathBuf>, LiveError> {
        let Some((vmi, disk)) = self.attached(volume)? else { return Ok(None) };
        let file = vmi.handle.active_file(&disk).await.map_err(|error| {
            LiveError::with_source(
                format!("could not ask VM {} for the active file of volume {volume}", vmi.key()),
                error,
            )
        })?;
        Ok(Some(file))
    }

    async fn switch_to_overlays(&self, switches: &[LiveSwitch]) -> Result<(), LiveError> {
        // Group by VM, keeping the order in which VMs first appear.
        let mut groups: Vec<(Arc<RunningVmi>, Vec<(String, &Path, &Path)>)> = Vec::new();
        for switch in switches {
            let (vmi, disk) = self.attached_or_error(&switch.volume)?;
            let item = (disk, switch.current.as_path(), switch.overlay.as_path());
            match groups.iter_mut().find(|(g, _)| Arc::ptr_eq(g, &vmi)) {
                Some((_, items)) => items.push(item),
                None => groups.push((vmi, vec![item])),
            }
        }
        for (vmi, items) in groups {
            vmi.handle.snapshot_disks_checked(&items).await.map_err(|error| {
                LiveError::with_source(
                    format!("could not switch the disks of VM {} to new overlays", vmi.key()),
                    error,
                )
            })?;
        }
        Ok(())
    }

    async fn stream_into_active(&self, request: &StreamRequest) -> Result<(), LiveError> {
        let (vmi, disk) = self.attached_or_error(&request.volume)?;
        let active = vmi.handle.active_file(&disk).await.map_err(|error| {
            LiveError::with_source(
                format!("could not ask VM {} for the active file of volume {}", vmi.key(), request.volume),
                error,
            )
        })?;
        if !same_file(&active, &request.active) {
            return Err(LiveError::new(format!(
                "volume {} of VM {} writes to {}, not {}; nothing was streamed",
                request.volume,
                vmi.key(),
                active.display(),
                request.active.display()
            )));
        }
        vmi.handle
            .stream_disk_recording(&disk, request.base(), request.backing_file.as_deref())
            .await
            .map(drop)
            .map_err(|error| {
                LiveError::with_source(
                    format!("could not stream volume {} of VM {}", request.volume, vmi.key()),
                    error,
                )
            })
    }
}
