//! From a VMI spec to the runtime's [`LaunchSpec`]: memory, vCPUs, machine,
//! firmware UUID, NICs and per-disk options. Pure: the images and volumes are
//! resolved elsewhere and passed in.

use uuid::Uuid;
use vmsnap_api::kubevirt::{Disk, DiskTarget, Interface, Network, VirtualMachineInstanceSpec, Volume};

use crate::kubevirt::{DEFAULT_MEMORY_BYTES, START_STRATEGY_PAUSED, firmware_uuid};
use crate::vmm::{Boot, CacheMode, CpuTopology, DiskSpec, LaunchSpec, MacAddress, NicModel, NicSpec};

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

/// The launch spec of a VMI: `boot` and `disks` are resolved by the caller,
/// in the order of the VMI's volumes. `vm_name` names the firmware UUID
/// when `firmware.uuid` is unset (the VMI name: a VM's VMI has its name).
pub fn launch_spec(
    namespace: &str,
    name: &str,
    spec: &VirtualMachineInstanceSpec,
    boot: Boot,
    disks: Vec<DiskSpec>,
) -> Result<LaunchSpec, DomainError> {
    let mut launch = LaunchSpec::new(launch_name(namespace, name), memory_mib(spec)?, boot);
    launch.uuid = uuid(name, spec)?;
    launch.cpus = cpus(spec)?;
    if let Some(machine) = spec.domain.machine.as_ref().filter(|m| !m.machine_type.is_empty()) {
        launch.machine = machine.machine_type.clone();
    }
    launch.disks = disks;
    launch.nics = nics(spec)?;
    launch.start_paused = spec.start_strategy.as_deref() == Some(START_STRATEGY_PAUSED);
    Ok(launch)
}

/// Guest memory in MiB: `memory.guest`, else the memory request, else the limit, else 256 MiB.
pub fn memory_mib(spec: &VirtualMachineInstanceSpec) -> Result<u32, DomainError> {
    let resources = spec.domain.resources.as_ref();
    let candidates = [
        ("spec.domain.memory.guest", spec.domain.memory.as_ref().and_then(|m| m.guest.as_ref())),
        ("spec.domain.resources.requests.memory", resources.and_then(|r| r.requests.get("memory"))),
        ("spec.domain.resources.limits.memory", resources.and_then(|r| r.limits.get("memory"))),
    ];
    let (field, bytes) = match candidates.into_iter().find_map(|(f, q)| q.map(|q| (f, q))) {
        Some((field, quantity)) => {
            let bytes = vmsnap_api::quantity::parse_bytes(&quantity.0)
                .map_err(|error| DomainError::Quantity { field, message: error.to_string() })?;
            (field, bytes)
        }
        None => ("default", DEFAULT_MEMORY_BYTES),
    };
    u32::try_from(bytes.div_ceil(1 << 20))
        .map_err(|_| DomainError::TooMuchMemory { field, value: format!("{bytes} bytes") })
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

/// Applies a VMI disk's options (serial, read-only, cache, boot order) to the runtime's disk.
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
    disk.readonly =
        claim_read_only || target.and_then(|t| t.readonly) == Some(true) || options.cdrom.is_some();
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use vmsnap_api::kubevirt::{
        Cpu, Firmware, Memory, PersistentVolumeClaimVolumeSource, ResourceRequirements,
    };

    use super::*;
    use crate::vmm::DiskFormat;

    fn spec() -> VirtualMachineInstanceSpec {
        VirtualMachineInstanceSpec::default()
    }

    #[test]
    fn memory_comes_from_guest_then_requests_then_the_default() {
        let mut s = spec();
        assert_eq!(memory_mib(&s).unwrap(), 256);
        s.domain.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([("memory".to_owned(), Quantity("128Mi".into()))]),
            ..Default::default()
        });
        assert_eq!(memory_mib(&s).unwrap(), 128);
        s.domain.memory = Some(Memory { guest: Some(Quantity("1Gi".into())), ..Default::default() });
        assert_eq!(memory_mib(&s).unwrap(), 1024);
        s.domain.memory = Some(Memory { guest: Some(Quantity("lots".into())), ..Default::default() });
        let error = memory_mib(&s).unwrap_err();
        assert!(error.to_string().contains("spec.domain.memory.guest"), "{error}");
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
