//! Attaching and detaching volumes of a running VMI, and their bookkeeping
//! (`volumeStatus`, the agent record, the volume map of `LiveBlockOps`).

use tokio::sync::MutexGuard;

use crate::running::RunningVmi;
use crate::running::record::AttachedVolume;
use crate::volumes::{ResolvedVolume, target_name};
use vmsnap_vmm::{BlockError, DiskBus};

/// The first guest device name on `bus` no attached volume uses (Linux gives a
/// new virtio or SCSI disk the lowest free index).
pub fn free_target(attached: &[AttachedVolume], bus: DiskBus) -> String {
    (0..)
        .map(|index| target_name(bus, index))
        .find(|name| !attached.iter().any(|v| &v.target == name))
        .unwrap_or_else(|| target_name(bus, attached.len()))
}

impl RunningVmi {
    /// Serialises hotplug operations on this VMI (hold it across the whole operation).
    pub async fn hotplug_lock(&self) -> MutexGuard<'_, ()> {
        self.hotplug.lock().await
    }

    /// Hotplugs `volume` (call under [`RunningVmi::hotplug_lock`]). Attaching
    /// a volume that is already attached is a no-op.
    pub async fn attach(&self, mut volume: ResolvedVolume) -> Result<(), BlockError> {
        let mut volumes = self.volumes();
        if volumes.iter().any(|v| v.name() == volume.disk.name) {
            return Ok(());
        }
        volume.hotplugged = true;
        self.handle.add_disk(volume.disk.clone()).await?;
        let target = free_target(&volumes, volume.disk.bus);
        volumes.push(AttachedVolume { volume, target });
        self.set_volumes(volumes);
        self.publish().await;
        Ok(())
    }

    /// Unplugs the volume `name` (call under [`RunningVmi::hotplug_lock`]);
    /// detaching a volume that is not attached is a no-op.
    pub async fn detach(&self, name: &str) -> Result<(), BlockError> {
        let mut volumes = self.volumes();
        if !volumes.iter().any(|v| v.name() == name) {
            return Ok(());
        }
        self.handle.remove_disk(name).await?;
        volumes.retain(|v| v.name() != name);
        self.set_volumes(volumes);
        self.publish().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_vmm::{DiskFormat, DiskSpec};

    fn attached(target: &str) -> AttachedVolume {
        let volume = ResolvedVolume {
            disk: DiskSpec::new(target, format!("/{target}"), DiskFormat::Qcow2),
            claim: None,
            hotplugged: false,
        };
        AttachedVolume { volume, target: target.into() }
    }

    #[test]
    fn a_new_disk_takes_the_lowest_free_device_name() {
        assert_eq!(free_target(&[], DiskBus::Virtio), "vda");
        assert_eq!(free_target(&[attached("vda"), attached("vdb")], DiskBus::Virtio), "vdc");
        assert_eq!(free_target(&[attached("vda"), attached("vdc")], DiskBus::Virtio), "vdb");
        assert_eq!(free_target(&[attached("vda"), attached("sda")], DiskBus::Scsi), "sdb");
    }
}
