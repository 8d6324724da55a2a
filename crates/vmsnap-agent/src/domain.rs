//! From a VMI spec to the runtime's [`LaunchSpec`]: memory, vCPUs, machine,
//! firmware UUID, NICs and per-disk options. Pure: the images and volumes are
//! resolved elsewhere and passed in.

use std::fmt;

use uuid::Uuid;
use vmsnap_api::kubevirt::{Disk, DiskTarget, Interface, Network, VirtualMachineInstanceSpec, Volume};

use crate::kubevirt::{DEFAULT_MEMORY_BYTES, START_STRATEGY_PAUSED, firmware_uuid};
use vmsnap_vmm::{
    Boot, CacheMode, CpuTopology, DiskBus, DiskSpec, LaunchSpec, MacAddress, NicModel, NicSpec,
};

/// A VMI spec field the agent cannot turn into a VM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A memory or CPU quantity that does not parse.
    #[error("{field} is invalid: {message}")]
    Quantity {
        /// The field, e.g. `spec.domain.memory.guest`.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Guest memory too large for the runtime.
    #[error("{field} = {value} is more memory than the agent can give a VM")]
    TooMuchMemory {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// Guest memory of zero bytes: there is nothing to raise to a working size.
    #[error("{field} = {value} gives the VM no memory; ask for at least 1Mi")]
    NoMemory {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A disk bus the agent does not attach disks to.
    #[error("disk {disk:?} has bus {bus:?}: {reason}")]
    Bus {
        /// The disk.
        disk: String,
        /// The bus given.
        bus: String,
        /// Why not, and what to use.
        reason: &'static str,
    },
    /// `firmware.uuid` that is not a UUID.
    #[error("spec.domain.firmware.uuid {value:?} is not a UUID")]
    Uuid {
        /// The value given.
        value: String,
    },
    /// An interface `macAddress` that is not a MAC address.
    #[error(
        "interface {interface:?} has macAddress {value:?}, which is not a MAC address like 02:00:00:00:00:01"
    )]
    Mac {
        /// The interface.
        interface: String,
        /// The value given.
        value: String,
    },
    /// An interface model QEMU is not asked to emulate.
    #[error("interface {interface:?} has model {model:?}; use virtio, e1000 or e1000e")]
    Model {
        /// The interface.
        interface: String,
        /// The model given.
        model: String,
    },
    /// A disk cache mode that does not exist.
    #[error("disk {disk:?} has cache {cache:?}; use none, writethrough or writeback")]
    Cache {
        /// The disk.
        disk: String,
        /// The value given.
        cache: String,
    },
}

/// The QEMU `-name` of a VMI: unique on the node, readable in `ps`.
pub fn launch_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// Fills in what KubeVirt's mutating webhook and VM controller would: a
/// virtio disk for every volume without one, and the pod network interface
/// when the VMI has no interfaces and does not opt out of it.
pub fn apply_defaults(spec: &mut VirtualMachineInstanceSpec) {
    for volume in &spec.volumes {
        if !spec.domain.devices.disks.iter().any(|d| d.name == volume.name) {
            let disk =
                Disk { name: volume.name.clone(), disk: Some(DiskTarget::default()), ..Default::default() };
            spec.domain.devices.disks.push(disk);
        }
    }
    let devices = &mut spec.domain.devices;
    if devices.interfaces.is_empty()
        && spec.networks.is_empty()
        && devices.autoattach_pod_interface != Some(false)
    {
        devices.interfaces.push(Interface {
            name: "default".into(),
            masquerade: Some(serde_json::json!({})),
            ..Default::default()
        });
        spec.networks.push(Network {
            name: "default".into(),
            pod: Some(serde_json::json!({})),
            ..Default::default()
        });
    }
}

/// The memory a VMI asked for was less than its VM needs to start, so QEMU
/// was given more (KubeVirt starts such a VM, e.g. its tests' `memory: 1Mi`
/// VMs without a boot image). Said in a `Normal` event on the VMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRaised {
    /// What was asked for.
    pub asked: GuestMemory,
    /// What QEMU gets, in MiB.
    pub given_mib: u32,
    /// Whether the floor is the kernel boot image's (else the firmware's).
    pub kernel_boot: bool,
}

impl fmt::Display for MemoryRaised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needs = if self.kernel_boot {
            "the kernel boot image needs to boot"
        } else {
            "the firmware needs to set the VM up"
        };
        write!(
            f,
            "{} = {} is less than the {} MiB {needs}; the VM runs with {} MiB",
            self.asked.field, self.asked.quantity, self.given_mib, self.given_mib
        )
    }
}

/// The launch spec of a VMI: `boot` and `disks` are resolved by the caller,
/// in the order of the VMI's volumes. `vm_name` names the firmware UUID
/// when `firmware.uuid` is unset (the VMI name: a VM's VMI has its name).
/// Memory below what `boot` needs is raised to it, and said so.
pub fn launch_spec(
    namespace: &str,
    name: &str,
    spec: &VirtualMachineInstanceSpec,
    boot: Boot,
    disks: Vec<DiskSpec>,
) -> Result<(LaunchSpec, Option<MemoryRaised>), DomainError> {
    let memory = guest_memory(spec)?;
    let floor = boot.min_memory_mib();
    let raised = (memory.mib < floor).then(|| MemoryRaised {
        kernel_boot: matches!(boot, Boot::Kernel(_)),
        given_mib: floor,
        asked: memory.clone(),
    });
    let mut launch = LaunchSpec::new(launch_name(namespace, name), memory.mib.max(floor), boot);
    launch.uuid = uuid(name, spec)?;
    launch.cpus = cpus(spec)?;
    if let Some(machine) = spec.domain.machine.as_ref().filter(|m| !m.machine_type.is_empty()) {
        launch.machine = machine.machine_type.clone();
    }
    launch.disks = disks;
    launch.nics = nics(spec)?;
    launch.start_paused = spec.start_strategy.as_deref() == Some(START_STRATEGY_PAUSED);
    Ok((launch, raised))
}

/// The guest memory a VMI spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMemory {
    /// The field it comes from, e.g. `spec.domain.resources.requests.memory`, or `default`.
    pub field: &'static str,
    /// The quantity as written, e.g. `1Mi`.
    pub quantity: String,
    /// Rounded up to whole MiB.
    pub mib: u32,
}

/// Guest memory: `memory.guest`, else the memory request, else the limit, else 256 MiB.
pub fn guest_memory(spec: &VirtualMachineInstanceSpec) -> Result<GuestMemory, DomainError> {
    let resources = spec.domain.resources.as_ref();
    let candidates = [
        ("spec.domain.memory.guest", spec.domain.memory.as_ref().and_then(|m| m.guest.as_ref())),
        ("spec.domain.resources.requests.memory", resources.and_then(|r| r.requests.get("memory"))),
        ("spec.domain.resources.limits.memory", resources.and_then(|r| r.limits.get("memory"))),
    ];
    let (field, quantity, bytes) = match candidates.into_iter().find_map(|(f, q)| q.map(|q| (f, q))) {
        Some((field, quantity)) => {
            let bytes = vmsnap_api::quantity::parse_bytes(&quantity.0)
                .map_err(|error| DomainError::Quantity { field, message: error.to_string() })?;
            (field, quantity.0.clone(), bytes)
        }
        None => ("default", "256Mi".to_owned(), DEFAULT_MEMORY_BYTES),
    };
    if bytes == 0 {
        return Err(DomainError::NoMemory { field, value: quantity });
    }
    let mib = u32::try_from(bytes.div_ceil(1 << 20))
        .map_err(|_| DomainError::TooMuchMemory { field, value: format!("{bytes} bytes") })?;
    Ok(GuestMemory { field, quantity, mib })
}

/// The vCPU topology: `domain.cpu`, else one socket with the CPU request (or limit) in cores, else 1.
pub fn cpus(spec: &VirtualMachineInstanceSpec) -> Result<CpuTopology, DomainError> {
    if let Some(cpu) = &spec.domain.cpu {
        return Ok(CpuTopology {
            sockets: cpu.sockets.unwrap_or(1).max(1),
            cores: cpu.cores.unwrap_or(1).max(1),
            threads: cpu.threads.unwrap_or(1).max(1),
        });
    }
    let resources = spec.domain.resources.as_ref();
    let request = resources
        .and_then(|r| r.requests.get("cpu").map(|q| ("spec.domain.resources.requests.cpu", q)))
        .or_else(|| {
            resources.and_then(|r| r.limits.get("cpu").map(|q| ("spec.domain.resources.limits.cpu", q)))
        });
    match request {
        Some((field, q)) => {
            let cores = vmsnap_api::quantity::parse_cpus(&q.0)
                .map_err(|error| DomainError::Quantity { field, message: error.to_string() })?;
            Ok(CpuTopology::cores(cores))
        }
        None => Ok(CpuTopology::cores(1)),
    }
}

/// `firmware.uuid`, else KubeVirt's UUID derived from the VM name.
pub fn uuid(vm_name: &str, spec: &VirtualMachineInstanceSpec) -> Result<Uuid, DomainError> {
    match spec.domain.firmware.as_ref().and_then(|f| f.uuid.as_deref()).filter(|u| !u.is_empty()) {
        Some(text) => text.parse().map_err(|_| DomainError::Uuid { value: text.to_owned() }),
        None => Ok(firmware_uuid(vm_name)),
    }
}

/// One NIC per interface; a NIC without `macAddress` gets a random one at launch.
pub fn nics(spec: &VirtualMachineInstanceSpec) -> Result<Vec<NicSpec>, DomainError> {
    spec.domain
        .devices
        .interfaces
        .iter()
        .map(|interface| {
            let mac = match interface.mac_address.as_deref().filter(|m| !m.is_empty()) {
                Some(text) => Some(text.parse::<MacAddress>().map_err(|_| DomainError::Mac {
                    interface: interface.name.clone(),
                    value: text.to_owned(),
                })?),
                None => None,
            };
            let model = match interface.model.as_deref().unwrap_or("virtio") {
                "virtio" => NicModel::Virtio,
                "e1000" => NicModel::E1000,
                "e1000e" => NicModel::E1000e,
                other => {
                    return Err(DomainError::Model {
                        interface: interface.name.clone(),
                        model: other.to_owned(),
                    });
                }
            };
            Ok(NicSpec { name: interface.name.clone(), mac, model })
        })
        .collect()
}

/// Applies a VMI disk's options (bus, device, serial, read-only, cache, boot order) to the runtime's disk.
pub fn apply_disk_options(
    disk: &mut DiskSpec,
    options: Option<&Disk>,
    volume: &Volume,
) -> Result<(), DomainError> {
    let claim_read_only = volume.persistent_volume_claim.as_ref().and_then(|p| p.read_only) == Some(true);
    let Some(options) = options else {
        disk.readonly = claim_read_only;
        return Ok(());
    };
    let target = options.disk.as_ref().or(options.lun.as_ref()).or(options.cdrom.as_ref());
    disk.cdrom = options.cdrom.is_some();
    disk.bus = disk_bus(&options.name, target.and_then(|t| t.bus.as_deref()), disk.cdrom)?;
    disk.readonly = claim_read_only || target.and_then(|t| t.readonly) == Some(true) || disk.cdrom;
    disk.serial = options.serial.clone().filter(|s| !s.is_empty());
    disk.boot_order = options.boot_order;
    disk.cache = match options.cache.as_deref() {
        None | Some("") => CacheMode::default(),
        Some("none") => CacheMode::None,
        Some("writethrough") => CacheMode::Writethrough,
        Some("writeback") => CacheMode::Writeback,
        Some(other) => {
            return Err(DomainError::Cache { disk: options.name.clone(), cache: other.to_owned() });
        }
    };
    Ok(())
}

/// The bus of a disk. Without one, a CD-ROM is on SATA, as KubeVirt defaults
/// it on x86; a disk or LUN on virtio, where KubeVirt's x86 default is SATA,
/// because the test guest's kernel (Debian's cloud kernel) has no AHCI driver.
/// A `lun` is a plain disk (QEMU's `scsi-block` passes a host block device through;
/// the agent's volumes are files).
fn disk_bus(disk: &str, bus: Option<&str>, cdrom: bool) -> Result<DiskBus, DomainError> {
    let refuse =
        |reason| DomainError::Bus { disk: disk.to_owned(), bus: bus.unwrap_or_default().to_owned(), reason };
    match bus.unwrap_or_default() {
        "" if cdrom => Ok(DiskBus::Sata),
        "" | "virtio" => Ok(DiskBus::Virtio),
        "scsi" => Ok(DiskBus::Scsi),
        "sata" => Ok(DiskBus::Sata),
        "usb" => Err(refuse(
            "the agent does not emulate USB disks (KubeVirt attaches a usb-storage device); use virtio, scsi or sata",
        )),
        _ => Err(refuse(
            "KubeVirt's buses are virtio, scsi, sata and usb; the agent attaches virtio, scsi and sata",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use vmsnap_api::kubevirt::{
        Cpu, Firmware, Memory, PersistentVolumeClaimVolumeSource, ResourceRequirements,
    };

    use super::*;
    use vmsnap_vmm::DiskFormat;

    fn spec() -> VirtualMachineInstanceSpec {
        VirtualMachineInstanceSpec::default()
    }

    fn memory_request(quantity: &str) -> VirtualMachineInstanceSpec {
        let mut s = spec();
        s.domain.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([("memory".to_owned(), Quantity(quantity.into()))]),
            ..Default::default()
        });
        s
    }

    #[test]
    fn memory_comes_from_guest_then_requests_then_the_default() {
        let mib = |s: &VirtualMachineInstanceSpec| guest_memory(s).unwrap().mib;
        let mut s = spec();
        assert_eq!(
            guest_memory(&s).unwrap(),
            GuestMemory { field: "default", quantity: "256Mi".into(), mib: 256 }
        );
        s = memory_request("128Mi");
        assert_eq!(mib(&s), 128);
        // KubeVirt's least request, 1M (10^6 bytes), rounds up to a whole MiB.
        assert_eq!(mib(&memory_request("1M")), 1);
        s.domain.memory = Some(Memory { guest: Some(Quantity("1Gi".into())), ..Default::default() });
        assert_eq!(mib(&s), 1024);
        s.domain.memory = Some(Memory { guest: Some(Quantity("lots".into())), ..Default::default() });
        let error = guest_memory(&s).unwrap_err();
        assert!(error.to_string().contains("spec.domain.memory.guest"), "{error}");
        let error = guest_memory(&memory_request("0")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.domain.resources.requests.memory = 0 gives the VM no memory; ask for at least 1Mi"
        );
    }

    #[test]
    fn memory_below_what_the_boot_needs_is_raised_and_said_so() {
        let kernel = Boot::Kernel(vmsnap_vmm::KernelBoot {
            kernel: "/k".into(),
            initrd: None,
            cmdline: String::new(),
            min_memory_mib: 128,
        });
        let launch =
            |quantity: &str, boot: Boot| launch_spec("ns", "vm", &memory_request(quantity), boot, vec![]);

        let (started, raised) = launch("1Mi", Boot::Disk).unwrap();
        assert_eq!(started.memory_mib, vmsnap_vmm::FIRMWARE_MIN_MEMORY_MIB);
        let raised = raised.expect("1Mi is raised");
        assert_eq!(
            raised.to_string(),
            "spec.domain.resources.requests.memory = 1Mi is less than the 2 MiB the firmware needs to set \
             the VM up; the VM runs with 2 MiB"
        );
        started.validate().unwrap();

        let (started, raised) = launch("64Mi", kernel.clone()).unwrap();
        assert_eq!(started.memory_mib, 128);
        assert!(raised.unwrap().to_string().contains("128 MiB the kernel boot image needs to boot"));

        let (started, raised) = launch("2Mi", Boot::Disk).unwrap();
        assert_eq!((started.memory_mib, raised), (2, None));
        let (started, raised) = launch("200Mi", kernel).unwrap();
        assert_eq!((started.memory_mib, raised), (200, None));
    }

    #[test]
    fn disk_buses_follow_kubevirt_and_the_ones_not_attached_are_named() {
        let volume = Volume { name: "data".into(), ..Default::default() };
        let with_bus = |target: DiskTarget, cdrom: bool| {
            let mut options = Disk { name: "data".into(), ..Default::default() };
            if cdrom {
                options.cdrom = Some(target)
            } else {
                options.disk = Some(target)
            }
            let mut disk = DiskSpec::new("data", "/v/data.qcow2", DiskFormat::Qcow2);
            apply_disk_options(&mut disk, Some(&options), &volume).map(|()| disk)
        };
        let bus = |bus: &str| DiskTarget { bus: Some(bus.into()), ..Default::default() };

        let scsi = with_bus(bus("scsi"), false).unwrap();
        assert_eq!((scsi.bus, scsi.cdrom, scsi.readonly), (DiskBus::Scsi, false, false));
        assert_eq!(with_bus(bus("sata"), false).unwrap().bus, DiskBus::Sata);
        assert_eq!(with_bus(bus("virtio"), false).unwrap().bus, DiskBus::Virtio);
        assert_eq!(with_bus(DiskTarget::default(), false).unwrap().bus, DiskBus::Virtio);
        let cdrom = with_bus(DiskTarget::default(), true).unwrap();
        assert_eq!((cdrom.bus, cdrom.cdrom, cdrom.readonly), (DiskBus::Sata, true, true));
        let usb = with_bus(bus("usb"), false).unwrap_err();
        assert!(
            usb.to_string().starts_with("disk \"data\" has bus \"usb\": the agent does not emulate USB"),
            "{usb}"
        );
        let ide = with_bus(bus("ide"), false).unwrap_err();
        assert!(ide.to_string().contains("virtio, scsi, sata and usb"), "{ide}");
    }

    #[test]
    fn cpus_come_from_the_topology_else_the_cpu_request() {
        let mut s = spec();
        assert_eq!(cpus(&s).unwrap().total(), 1);
        s.domain.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([("cpu".to_owned(), Quantity("1500m".into()))]),
            ..Default::default()
        });
        assert_eq!(cpus(&s).unwrap(), CpuTopology::cores(2));
        s.domain.cpu = Some(Cpu { sockets: Some(2), cores: Some(2), ..Default::default() });
        assert_eq!(cpus(&s).unwrap(), CpuTopology { sockets: 2, cores: 2, threads: 1 });
    }

    #[test]
    fn the_firmware_uuid_is_the_spec_one_else_derived_from_the_vm_name() {
        let mut s = spec();
        assert_eq!(uuid("testvm", &s).unwrap(), firmware_uuid("testvm"));
        s.domain.firmware = Some(Firmware {
            uuid: Some("0d2a2043-41c0-59c3-9b17-025022203668".into()),
            ..Default::default()
        });
        assert_eq!(uuid("testvm", &s).unwrap().to_string(), "0d2a2043-41c0-59c3-9b17-025022203668");
        s.domain.firmware = Some(Firmware { uuid: Some("nope".into()), ..Default::default() });
        assert_eq!(uuid("testvm", &s).unwrap_err(), DomainError::Uuid { value: "nope".into() });
    }

    #[test]
    fn defaults_add_a_disk_per_volume_and_the_pod_interface() {
        let mut s = spec();
        s.volumes.push(Volume { name: "data".into(), ..Default::default() });
        s.domain.devices.disks.push(Disk { name: "other".into(), ..Default::default() });

        apply_defaults(&mut s);
        apply_defaults(&mut s);

        let disks: Vec<&str> = s.domain.devices.disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(disks, ["other", "data"]);
        assert_eq!(s.domain.devices.interfaces.len(), 1);
        assert_eq!(s.networks[0].name, "default");
        let nics = nics(&s).unwrap();
        assert_eq!((nics[0].name.as_str(), nics[0].mac, nics[0].model), ("default", None, NicModel::Virtio));
    }

    #[test]
    fn interfaces_keep_their_mac_and_model_and_bad_ones_are_named() {
        let mut s = spec();
        s.domain.devices.autoattach_pod_interface = Some(false);
        apply_defaults(&mut s);
        assert!(s.domain.devices.interfaces.is_empty());
        s.domain.devices.interfaces.push(Interface {
            name: "net1".into(),
            mac_address: Some("02:00:00:00:00:07".into()),
            model: Some("e1000e".into()),
            ..Default::default()
        });
        let nic = &nics(&s).unwrap()[0];
        assert_eq!((nic.mac.unwrap().to_string(), nic.model), ("02:00:00:00:00:07".into(), NicModel::E1000e));
        s.domain.devices.interfaces[0].model = Some("rtl8139".into());
        assert!(matches!(nics(&s).unwrap_err(), DomainError::Model { .. }));
    }

    #[test]
    fn disk_options_carry_serial_cache_readonly_and_boot_order() {
        let volume = Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data-pvc".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = Disk {
            name: "data".into(),
            disk: Some(DiskTarget { bus: Some("virtio".into()), readonly: Some(true), ..Default::default() }),
            serial: Some("D1".into()),
            cache: Some("writethrough".into()),
            boot_order: Some(1),
            ..Default::default()
        };
        let mut disk = DiskSpec::new("data", "/v/data.qcow2", DiskFormat::Qcow2);

        apply_disk_options(&mut disk, Some(&options), &volume).unwrap();

        assert_eq!(
            (disk.serial.as_deref(), disk.readonly, disk.cache, disk.boot_order),
            (Some("D1"), true, CacheMode::Writethrough, Some(1))
        );
        let bad = Disk { cache: Some("unsafe".into()), ..options };
        assert!(matches!(apply_disk_options(&mut disk, Some(&bad), &volume), Err(DomainError::Cache { .. })));
    }
}
