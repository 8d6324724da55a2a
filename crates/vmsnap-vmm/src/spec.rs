//! [`LaunchSpec`]: what the controller asks the runtime to run. Plain data,
//! validated before anything is started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vmsnap_guestimage::GuestImage;

use super::error::SpecError;
use super::mac::MacAddress;
use super::names::{MAX_SERIAL_LEN, is_valid_device_name, short_name};

/// The least guest memory, in MiB, with which the firmware sets up a VM completely.
///
/// Measured with QEMU 7.2 and its SeaBIOS on q35 and pc: QEMU itself starts with 1 MiB, but
/// SeaBIOS then has no memory above 1 MiB for its tables (`Unable to allocate resource` for
/// the ACPI and SMBIOS tables and the virtqueues, so it cannot read any disk); with 2 MiB it
/// builds them all and reads every disk (five virtio-blk disks, three SCSI disks and a NIC tried).
pub const FIRMWARE_MIN_MEMORY_MIB: u32 = 2;

/// How many PCIe root ports a q35 VM can have: one per slot of `pcie.0` that
/// the machine leaves free, keeping a few for the NICs and the virtio-serial
/// and virtio-scsi controllers.
pub const MAX_ROOT_PORTS: usize = 24;

/// How many empty PCIe root ports a VM gets for hotplugged disks unless told otherwise.
pub const DEFAULT_HOTPLUG_SLOTS: u32 = 4;

/// Everything needed to start one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The VM name (QEMU's `-name`, and what logs call it).
    pub name: String,
    /// The firmware (SMBIOS) UUID the guest sees, KubeVirt's `firmware.uuid`.
    pub uuid: Uuid,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The vCPU topology.
    pub cpus: CpuTopology,
    /// The QEMU machine type: `q35` (the default, with PCIe root ports for
    /// hotplug) or `pc`, optionally versioned (`pc-q35-7.2`). Both have ACPI, so
    /// `system_powerdown` reaches the guest.
    #[serde(default = "default_machine")]
    pub machine: String,
    /// How the guest boots.
    pub boot: Boot,
    /// The disks, in the order the guest enumerates them.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// The network interfaces.
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// Leave the vCPUs paused after start (KubeVirt's `runStrategy: ...Paused`).
    #[serde(default)]
    pub start_paused: bool,
    /// Empty PCIe root ports kept for disks hotplugged later (q35 only; `pc` hotplugs on its root bus).
    #[serde(default = "default_hotplug_slots")]
    pub hotplug_slots: u32,
}

fn default_machine() -> String {
    "q35".into()
}

fn default_hotplug_slots() -> u32 {
    DEFAULT_HOTPLUG_SLOTS
}

/// The vCPU topology (`-smp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopology {
    /// Sockets.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

impl CpuTopology {
    /// One socket with `cores` single-threaded cores.
    pub fn cores(cores: u32) -> Self {
        Self { sockets: 1, cores, threads: 1 }
    }

    /// The number of vCPUs.
    pub fn total(&self) -> u32 {
        self.sockets.saturating_mul(self.cores).saturating_mul(self.threads)
    }
}

/// How a VM boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Boot {
    /// Direct kernel boot (KubeVirt's `firmware.kernelBoot`).
    Kernel(KernelBoot),
    /// The firmware boots from the disks, in their `boot_order`.
    Disk,
}

/// A kernel, an optional initramfs and the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBoot {
    /// The kernel image (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`).
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The whole kernel command line (`-append`).
    #[serde(default)]
    pub cmdline: String,
    /// The least memory, in MiB, this kernel and initramfs boot with; 0 when unknown.
    #[serde(default)]
    pub min_memory_mib: u32,
}

impl KernelBoot {
    /// Boots a built guest image, with `extra_args` (KubeVirt's
    /// `kernelBoot.kernelArgs`) appended to the image's own command line.
    pub fn from_guest_image(image: &GuestImage, extra_args: &str) -> Self {
        let cmdline = match extra_args.trim() {
            "" => image.cmdline.clone(),
            extra => format!("{} {extra}", image.cmdline),
        };
        Self {
            kernel: image.kernel.clone(),
            initrd: Some(image.initrd.clone()),
            cmdline,
            min_memory_mib: vmsnap_guestimage::MIN_MEMORY_MIB,
        }
    }
}

impl Boot {
    /// The least memory, in MiB, a VM booting this way starts and boots with:
    /// the firmware's [`FIRMWARE_MIN_MEMORY_MIB`], or more for a kernel that needs more.
    pub fn min_memory_mib(&self) -> u32 {
        match self {
            Boot::Kernel(kernel) => kernel.min_memory_mib.max(FIRMWARE_MIN_MEMORY_MIB),
            Boot::Disk => FIRMWARE_MIN_MEMORY_MIB,
        }
    }
}

/// One disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// The volume name; also names the QEMU device (`disk-<name>`) and nodes.
    pub name: String,
    /// The image file: the top (writable) layer. A qcow2 backing chain below it is opened as recorded in the image.
    pub path: PathBuf,
    /// The image format of `path`.
    pub format: DiskFormat,
    /// The serial given to the device (KubeVirt's `disks[].serial`: up to 256 of
    /// `[A-Za-z0-9_.+-]`). When `None`, the volume name, mapped by
    /// [`crate::short_name`] when longer. The guest sees only the first
    /// [`DiskBus::serial_bytes_shown`] bytes: see [`DiskSpec::guest_serial`].
    #[serde(default)]
    pub serial: Option<String>,
    /// The bus.
    #[serde(default)]
    pub bus: DiskBus,
    /// A CD-ROM drive (read-only media) rather than a hard disk.
    #[serde(default)]
    pub cdrom: bool,
    /// Attach read-only.
    #[serde(default)]
    pub readonly: bool,
    /// The host cache mode.
    #[serde(default)]
    pub cache: CacheMode,
    /// The firmware boot order (1 first); `None` for disks not to boot from.
    #[serde(default)]
    pub boot_order: Option<u32>,
}

impl DiskSpec {
    /// A writable virtio disk with the default cache mode, its serial derived from `name`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>, format: DiskFormat) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            format,
            serial: None,
            bus: DiskBus::Virtio,
            cdrom: false,
            readonly: false,
            cache: CacheMode::default(),
            boot_order: None,
        }
    }

    /// The serial given to the device: the explicit one, else the name mapped to at most 20 bytes.
    pub fn device_serial(&self) -> String {
        self.serial.clone().unwrap_or_else(|| short_name(&self.name))
    }

    /// The serial the guest reads from the device: [`DiskSpec::device_serial`] cut
    /// to what the bus shows. The test guest mounts the disk at `/mnt/<this>`.
    pub fn guest_serial(&self) -> String {
        let mut serial = self.device_serial();
        // Serials are ASCII (checked by `validate`), so any byte is a character boundary.
        serial.truncate(self.bus.serial_bytes_shown());
        serial
    }

    /// Checks this disk on its own (names, serial, device, path).
    pub fn validate(&self) -> Result<(), SpecError> {
        if !is_valid_device_name(&self.name) {
            return Err(SpecError::InvalidName { what: "disk", name: self.name.clone() });
        }
        if let Some(serial) = &self.serial {
            // KubeVirt's VMI admission rule (pkg/storage/admitters/disks.go); QEMU 7.2 takes
            // serials of any length on every bus and shows the guest a prefix.
            let valid_chars =
                serial.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'));
            if serial.is_empty() || serial.len() > MAX_SERIAL_LEN || !valid_chars {
                return Err(SpecError::InvalidSerial { disk: self.name.clone(), serial: serial.clone() });
            }
        }
        let unsupported = |reason| Err(SpecError::UnsupportedDisk { disk: self.name.clone(), reason });
        match (self.bus, self.cdrom) {
            (DiskBus::Virtio, true) => {
                return unsupported("a CD-ROM cannot be on the virtio bus; use sata or scsi");
            }
            (DiskBus::Sata, false) if self.readonly => {
                return unsupported(
                    "sata hard disks do not support read-only; use virtio or scsi, or a CD-ROM",
                );
            }
            _ => {}
        }
        check_path("disk path", &self.path)
    }

    /// The QEMU device driver.
    pub(crate) fn driver(&self) -> &'static str {
        match (self.bus, self.cdrom) {
            (DiskBus::Virtio, _) => "virtio-blk-pci",
            (DiskBus::Scsi, false) => "scsi-hd",
            (DiskBus::Scsi, true) => "scsi-cd",
            (DiskBus::Sata, false) => "ide-hd",
            (DiskBus::Sata, true) => "ide-cd",
        }
    }
}

/// A disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// qcow2, possibly with a backing chain.
    Qcow2,
    /// A raw image.
    Raw,
}

impl DiskFormat {
    /// The QEMU block driver name.
    pub fn driver(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// The bus a disk is attached to (KubeVirt's `disks[].disk.bus`, as libvirt builds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// virtio-blk on PCI(e), behind its own PCIe root port on q35. Hotpluggable.
    #[default]
    Virtio,
    /// `scsi-hd` (`scsi-cd`) on the VM's virtio-scsi controller. Hotpluggable.
    Scsi,
    /// `ide-hd` (`ide-cd`) on the machine's own controller: AHCI on q35 (6 ports),
    /// IDE on pc (2 buses of 2 units). Not hotpluggable.
    Sata,
}

impl DiskBus {
    /// How many bytes of a serial the guest reads from the device (QEMU 7.2 takes any
    /// length): virtio-blk's `GET_ID` and ATA's IDENTIFY have 20 bytes, and a SCSI
    /// disk's Unit Serial Number page holds the first 36 (checked in the test guest).
    pub fn serial_bytes_shown(self) -> usize {
        match self {
            DiskBus::Virtio | DiskBus::Sata => 20,
            DiskBus::Scsi => 36,
        }
    }

    /// Whether a disk on this bus can be plugged into a running VM.
    pub fn is_hotpluggable(self) -> bool {
        matches!(self, DiskBus::Virtio | DiskBus::Scsi)
    }

    /// The prefix of the Linux device names of its disks (`vda`, `sda`):
    /// SCSI and SATA disks share the `sd` names, as libvirt's targets do.
    pub fn device_prefix(self) -> &'static str {
        match self {
            DiskBus::Virtio => "vd",
            DiskBus::Scsi | DiskBus::Sata => "sd",
        }
    }
}

/// The host cache mode of a disk (KubeVirt's `disks[].cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// `O_DIRECT`, guest flushes honoured. Needs a filesystem that supports `O_DIRECT` (not tmpfs).
    None,
    /// Host page cache, guest flushes honoured. Works everywhere, so it is the default.
    #[default]
    Writeback,
    /// Host page cache, every write flushed (the guest sees no volatile write cache).
    Writethrough,
}

impl CacheMode {
    /// `(cache.direct, write-cache)`: the node option and the device property.
    pub(crate) fn qemu(self) -> (bool, bool) {
        match self {
            CacheMode::None => (true, true),
            CacheMode::Writeback => (false, true),
            CacheMode::Writethrough => (false, false),
        }
    }
}

/// One network interface, on a user-mode (slirp) network with `restrict=on`:
/// the guest gets DHCP but no route out and nothing is exposed on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// The interface name (KubeVirt's `interfaces[].name`).
    pub name: String,
    /// The MAC address; a random locally administered one is assigned at launch when `None`.
    #[serde(default)]
    pub mac: Option<MacAddress>,
    /// The device model.
    #[serde(default)]
    pub model: NicModel,
}

/// A NIC device model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    /// virtio-net-pci.
    #[default]
    Virtio,
    /// Intel e1000.
    E1000,
    /// Intel e1000e (PCIe).
    E1000e,
}

impl NicModel {
    /// The QEMU device driver.
    pub fn driver(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio-net-pci",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
        }
    }
}

impl LaunchSpec {
    /// A spec with one vCPU and no disks or NICs, booting `boot`.
    pub fn new(name: impl Into<String>, memory_mib: u32, boot: Boot) -> Self {
        Self {
            name: name.into(),
            uuid: Uuid::new_v4(),
            memory_mib,
            cpus: CpuTopology::cores(1),
            machine: default_machine(),
            boot,
            disks: Vec::new(),
            nics: Vec::new(),
            start_paused: false,
            hotplug_slots: DEFAULT_HOTPLUG_SLOTS,
        }
    }

    /// Whether the machine is PCIe (q35), where disks sit behind root ports.
    pub fn is_pcie(&self) -> bool {
        self.machine == "q35" || self.machine.starts_with("pc-q35-")
    }

    /// The serial each disk shows the guest, in disk order: `(disk name, serial)`.
    /// The test guest mounts each disk at `/mnt/<serial>`.
    pub fn serial_mapping(&self) -> Vec<(String, String)> {
        self.disks.iter().map(|d| (d.name.clone(), d.guest_serial())).collect()
    }

    /// Fills in a random MAC for every NIC without one.
    pub fn assign_macs(&mut self) {
        for nic in &mut self.nics {
            nic.mac.get_or_insert_with(MacAddress::random);
        }
    }

    /// Checks everything QEMU would otherwise reject, or accept and get wrong.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 253
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !name_ok {
            return Err(SpecError::InvalidName { what: "VM", name: self.name.clone() });
        }
        let pc = self.machine == "pc" || self.machine.starts_with("pc-i440fx-");
        if !self.is_pcie() && !pc {
            return Err(SpecError::UnsupportedMachine { machine: self.machine.clone() });
        }
        let min_memory = self.boot.min_memory_mib();
        if self.memory_mib < min_memory {
            return Err(SpecError::TooLittleMemory {
                memory_mib: self.memory_mib,
                min_mib: min_memory,
                kernel_boot: matches!(self.boot, Boot::Kernel(_)),
            });
        }
        let cpus = self.cpus;
        if cpus.sockets == 0 || cpus.cores == 0 || cpus.threads == 0 || cpus.total() > 255 {
            return Err(SpecError::InvalidValue {
                field: "cpus",
                value: format!("{}x{}x{}", cpus.sockets, cpus.cores, cpus.threads),
                reason: "sockets, cores and threads must be at least 1, and at most 255 vCPUs in total",
            });
        }
        if let Boot::Kernel(kernel) = &self.boot {
            check_path("kernel", &kernel.kernel)?;
            if let Some(initrd) = &kernel.initrd {
                check_path("initrd", initrd)?;
            }
        }
        let mut serials: HashMap<String, &str> = HashMap::new();
        let mut names: HashMap<String, &str> = HashMap::new();
        for disk in &self.disks {
            disk.validate()?;
            // Node names use the short form of the disk name, so that must be unique too.
            if let Some(first) = names.insert(short_name(&disk.name), &disk.name) {
                if first == disk.name {
                    return Err(SpecError::DuplicateName { what: "disk", name: disk.name.clone() });
                }
                let (first, second) = (first.to_owned(), disk.name.clone());
                return Err(SpecError::ShortNameClash { short: short_name(&second), first, second });
            }
            if let Some(first) = serials.insert(disk.guest_serial(), &disk.name) {
                return Err(SpecError::DuplicateSerial {
                    serial: disk.guest_serial(),
                    first: first.to_owned(),
                    second: disk.name.clone(),
                });
            }
        }
        let mut nic_names = HashMap::new();
        for nic in &self.nics {
            if !is_valid_device_name(&nic.name) {
                return Err(SpecError::InvalidName { what: "NIC", name: nic.name.clone() });
            }
            if nic_names.insert(nic.name.as_str(), ()).is_some() {
                return Err(SpecError::DuplicateName { what: "NIC", name: nic.name.clone() });
            }
        }
        let ports = self.disks_on(DiskBus::Virtio).count() + self.hotplug_slots as usize;
        if self.is_pcie() && ports > MAX_ROOT_PORTS {
            return Err(SpecError::TooManyDisks {
                disks: self.disks_on(DiskBus::Virtio).count(),
                hotplug_slots: self.hotplug_slots,
            });
        }
        let sata = self.disks_on(DiskBus::Sata).count();
        if sata > self.sata_ports() {
            return Err(SpecError::TooManySataDisks { disks: sata, ports: self.sata_ports() });
        }
        Ok(())
    }

    /// The disks on `bus`, in disk order.
    pub(crate) fn disks_on(&self, bus: DiskBus) -> impl Iterator<Item = &DiskSpec> {
        self.disks.iter().filter(move |d| d.bus == bus)
    }

    /// How many SATA disks the machine's own controller takes: the 6 ports of
    /// q35's AHCI, or pc's 2 IDE buses of 2 units.
    pub(crate) fn sata_ports(&self) -> usize {
        if self.is_pcie() { 6 } else { 4 }
    }
}

/// Paths go into QEMU's JSON options, so they must be absolute and UTF-8.
fn check_path(field: &'static str, path: &Path) -> Result<(), SpecError> {
    if !path.is_absolute() || path.to_str().is_none() {
        return Err(SpecError::BadPath { field, path: path.to_path_buf() });
    }
    Ok(())
}
