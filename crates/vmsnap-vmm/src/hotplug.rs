//! Disk hotplug: `blockdev-add` plus `device_add`, and the reverse.
//!
//! On q35 each virtio disk sits behind its own PCIe root port (a device on the
//! root complex cannot be unplugged), so a VM is launched with spare ports
//! ([`crate::LaunchSpec::hotplug_slots`]) and a hotplugged disk takes the
//! lowest free one, found by asking QEMU (`query-pci`). A SCSI disk goes on the
//! VM's virtio-scsi controller, which gives it the next free target; SATA disks
//! cannot be hotplugged (neither can they with KubeVirt).

use serde_json::{Value, json};
use vmsnap_qemu::qmp::Event;
use vmsnap_qemu::qmp::args::DeviceDelArgs;
use vmsnap_qemu::qmp::commands::{BlockdevAdd, DeviceAdd, DeviceDel};

use super::cmdline::{SCSI_BUS, blockdev_nodes, disk_device_json, root_port};
use super::error::{BlockError, SpecError};
use super::handle::VmHandle;
use super::names::{device_id, short_name};
use super::spec::{DiskBus, DiskSpec};

impl VmHandle {
    /// Hotplugs `disk`: adds its nodes and its device with its serial: virtio-blk
    /// (on a free PCIe root port on q35) or a SCSI disk on the VM's virtio-scsi
    /// controller. The guest sees a new disk at once.
    pub async fn add_disk(&self, disk: DiskSpec) -> Result<(), BlockError> {
        disk.validate().map_err(BlockError::InvalidDisk)?;
        if !disk.bus.is_hotpluggable() || disk.cdrom {
            let reason = "only virtio and scsi disks can be hotplugged (not CD-ROMs, nor sata disks)";
            return Err(BlockError::InvalidDisk(SpecError::UnsupportedDisk { disk: disk.name, reason }));
        }
        let attached = self.attached_disks().await?;
        if attached.iter().any(|d| d.name == disk.name) {
            return Err(BlockError::DiskExists { disk: disk.name });
        }
        // Node names use the short form of the disk name, so that must not clash either.
        let short = short_name(&disk.name);
        if let Some(other) = attached.iter().find(|d| short_name(&d.name) == short) {
            let (first, second) = (other.name.clone(), disk.name.clone());
            return Err(BlockError::InvalidDisk(SpecError::ShortNameClash { short, first, second }));
        }
        let serial = disk.guest_serial();
        for other in &attached {
            if self.guest_serial_of(&other.name).await.as_deref() == Some(serial.as_str()) {
                return Err(BlockError::SerialInUse { disk: disk.name, serial, other: other.name.clone() });
            }
        }
        let bus = match disk.bus {
            DiskBus::Scsi => Some(SCSI_BUS.to_owned()),
            _ if self.spec().is_pcie() => Some(
                self.free_root_port()
                    .await?
                    .ok_or_else(|| BlockError::NoFreeSlot { disk: disk.name.clone() })?,
            ),
            _ => None,
        };
        // Nodes left by an earlier failed unplug of a disk with this name would clash.
        self.prune_nodes(&disk.name).await?;
        let operation = || format!("hotplugging disk {:?}", disk.name);
        let nodes = blockdev_nodes(&disk).map_err(BlockError::InvalidDisk)?;
        let mut added = Vec::new();
        for options in nodes {
            let name = options["node-name"].as_str().unwrap_or_default().to_owned();
            if let Err(source) = self.qmp().execute::<BlockdevAdd>(options).await {
                self.delete_nodes(&added).await;
                return Err(BlockError::Qmp { operation: operation(), source });
            }
            added.push(name);
        }
        if let Err(source) = self.qmp().execute::<DeviceAdd>(disk_device_json(&disk, bus.as_deref())).await {
            self.delete_nodes(&added).await;
            return Err(BlockError::Qmp { operation: operation(), source });
        }
        tracing::info!(disk = %disk.name, %serial, ?bus, "hotplugged a disk");
        Ok(())
    }

    /// Unplugs the disk `name`: asks the guest to release it (`device_del`),
    /// waits for QEMU's `DEVICE_DELETED`, then deletes all of the disk's nodes
    /// so QEMU closes its files.
    pub async fn remove_disk(&self, name: &str) -> Result<(), BlockError> {
        self.attached_disk(name).await?;
        let id = device_id(name);
        let mut events = self.qmp().events();
        self.qmp()
            .execute::<DeviceDel>(DeviceDelArgs { id: id.clone() })
            .await
            .map_err(|source| BlockError::Qmp { operation: format!("unplugging disk {name:?}"), source })?;
        let removal = self.timeouts().device_removal;
        events
            .wait_for(removal, |event| matches!(&event.event, Event::DeviceDeleted(d) if d.device.as_deref() == Some(id.as_str())))
            .await
            .map_err(|source| BlockError::Event { waiting: format!("the guest releasing disk {name:?}"), source })?;
        let left = self.prune_nodes(name).await?;
        if !left.is_empty() {
            return Err(BlockError::NodesLeft { disk: name.to_owned(), nodes: left });
        }
        tracing::info!(disk = name, "unplugged a disk");
        Ok(())
    }

    /// The serial the guest reads from an attached disk, if QEMU tells: the
    /// device's serial cut to what its bus shows.
    async fn guest_serial_of(&self, name: &str) -> Option<String> {
        let mut serial = self.device_property(name, "serial").await?;
        let bus = bus_of_driver(&self.device_property(name, "type").await?)?;
        serial.truncate(bus.serial_bytes_shown());
        Some(serial)
    }

    /// A string property of the device of disk `name` (`qom-get`).
    async fn device_property(&self, name: &str, property: &str) -> Option<String> {
        let args =
            json!({ "path": format!("/machine/peripheral/{}", device_id(name)), "property": property });
        self.qmp().execute_raw("qom-get", args).await.ok()?.as_str().map(str::to_owned)
    }

    /// The lowest-numbered root port with nothing plugged in.
    async fn free_root_port(&self) -> Result<Option<String>, BlockError> {
        let pci = self
            .qmp()
            .execute_raw("query-pci", Value::Null)
            .await
            .map_err(|source| BlockError::Qmp { operation: "listing the PCI devices".into(), source })?;
        let mut free = Vec::new();
        for bus in pci.as_array().into_iter().flatten() {
            collect_free_ports(&bus["devices"], &mut free);
        }
        free.sort_by_key(|(index, _)| *index);
        Ok(free.into_iter().next().map(|(_, id)| id))
    }
}

/// The bus of a disk device, from its QEMU driver (`qom-get` of its `type`).
fn bus_of_driver(driver: &str) -> Option<DiskBus> {
    match driver {
        "virtio-blk-pci" => Some(DiskBus::Virtio),
        "scsi-hd" | "scsi-cd" => Some(DiskBus::Scsi),
        "ide-hd" | "ide-cd" => Some(DiskBus::Sata),
        _ => None,
    }
}

/// Root ports (`rp<N>`) in a `query-pci` device list with no device behind them.
fn collect_free_ports(devices: &Value, free: &mut Vec<(usize, String)>) {
    for device in devices.as_array().into_iter().flatten() {
        let bridge = &device["pci_bridge"]["devices"];
        if let Some(id) = device["qdev_id"].as_str() {
            let index = id.strip_prefix("rp").and_then(|n| n.parse::<usize>().ok());
            if let Some(index) = index.filter(|i| root_port(*i) == id)
                && bridge.as_array().is_some_and(|b| b.is_empty())
            {
                free.push((index, id.to_owned()));
            }
        }
        collect_free_ports(bridge, free);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_root_ports_are_found_in_nested_pci_listings() {
        let pci = json!([{ "bus": 0, "devices": [
            { "qdev_id": "", "slot": 0 },
            { "qdev_id": "rp0", "pci_bridge": { "devices": [{ "qdev_id": "disk-data" }] } },
            { "qdev_id": "rp10", "pci_bridge": { "devices": [] } },
            { "qdev_id": "rp2", "pci_bridge": { "devices": [] } },
            { "qdev_id": "rp02", "pci_bridge": { "devices": [] } },
        ]}]);
        let mut free = Vec::new();

        collect_free_ports(&pci[0]["devices"], &mut free);

        free.sort();
        assert_eq!(free, [(2, "rp2".to_owned()), (10, "rp10".to_owned())]);
    }
}
