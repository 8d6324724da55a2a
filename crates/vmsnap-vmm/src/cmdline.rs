//! The QEMU command line for a [`LaunchSpec`]: pure, no I/O.

use serde_json::{Value, json};

use super::accel::Accel;
use super::error::SpecError;
use super::names::{device_id, layer_nodes};
use super::paths::RuntimePaths;
use super::spec::{Boot, DiskBus, DiskSpec, LaunchSpec};

/// The virtio-serial port name qemu-ga looks for.
pub(crate) const AGENT_PORT_NAME: &str = "org.qemu.guest_agent.0";

/// The bus of the virtio-scsi controller every VM has (KubeVirt always adds one,
/// so that SCSI disks can be hotplugged): `scsi0`'s bus 0.
pub(crate) const SCSI_BUS: &str = "scsi0.0";

/// Whether QEMU detaches from the agent or stays its child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessMode {
    /// `-daemonize`: QEMU outlives the agent, which re-attaches after a restart.
    Daemon,
    /// QEMU stays a child process (used by the accelerator probe).
    Foreground,
}

/// The QEMU arguments (without the binary) for `spec`, with its sockets, logs
/// and pid file in `paths`. QEMU always starts with `-S`: the runtime resumes
/// the vCPUs once it is connected to the monitor (unless `start_paused`), so
/// no event is missed. Fails when the spec does not validate.
pub fn qemu_args(
    spec: &LaunchSpec,
    accel: Accel,
    paths: &RuntimePaths,
    mode: ProcessMode,
) -> Result<Vec<String>, SpecError> {
    spec.validate()?;
    let path = |p: std::path::PathBuf| -> Result<String, SpecError> {
        p.to_str().map(str::to_owned).ok_or(SpecError::BadPath { field: "runtime directory", path: p })
    };
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| (*s).to_owned()));

    push(&["-name", &format!("guest={},debug-threads=on", opt(&spec.name))]);
    push(&["-machine", &format!("{},accel={}", spec.machine, accel.name())]);
    if accel == Accel::Kvm {
        push(&["-cpu", "host"]);
    }
    push(&["-nodefaults", "-no-user-config", "-display", "none", "-msg", "timestamp=on"]);
    push(&["-uuid", &spec.uuid.hyphenated().to_string()]);
    let cpus = spec.cpus;
    let smp =
        format!("{},sockets={},cores={},threads={}", cpus.total(), cpus.sockets, cpus.cores, cpus.threads);
    push(&["-smp", &smp, "-m", &spec.memory_mib.to_string()]);
    if let Boot::Kernel(kernel) = &spec.boot {
        push(&["-kernel", &path(kernel.kernel.clone())?]);
        if let Some(initrd) = &kernel.initrd {
            push(&["-initrd", &path(initrd.clone())?]);
        }
        if !kernel.cmdline.is_empty() {
            push(&["-append", &kernel.cmdline]);
        }
    }

    let qmp = path(paths.qmp_socket())?;
    push(&["-chardev", &format!("socket,id=qmp0,path={},server=on,wait=off", opt(&qmp))]);
    push(&["-mon", "chardev=qmp0,mode=control"]);
    let (console, log) = (path(paths.console_socket())?, path(paths.console_log())?);
    let serial = format!(
        "socket,id=ser0,path={},server=on,wait=off,logfile={},logappend=on",
        opt(&console),
        opt(&log)
    );
    push(&["-chardev", &serial, "-serial", "chardev:ser0"]);
    let qga = path(paths.qga_socket())?;
    push(&["-chardev", &format!("socket,id=qga0,path={},server=on,wait=off", opt(&qga))]);
    push(&["-device", "virtio-serial-pci,id=vser0"]);
    push(&["-device", &format!("virtserialport,bus=vser0.0,chardev=qga0,name={AGENT_PORT_NAME}")]);
    // On pcie.0 itself (q35) or the PCI root bus (pc), like the virtio-serial controller.
    push(&["-device", "virtio-scsi-pci,id=scsi0"]);

    if spec.is_pcie() {
        let ports = spec.disks_on(DiskBus::Virtio).count() + spec.hotplug_slots as usize;
        for port in 0..ports {
            push(&["-device", &format!("pcie-root-port,id={},chassis={}", root_port(port), port + 1)]);
        }
    }
    let (mut virtio, mut sata) = (0, 0);
    for disk in &spec.disks {
        let placement = match disk.bus {
            DiskBus::Virtio => {
                virtio += 1;
                if spec.is_pcie() { format!(",bus={}", root_port(virtio - 1)) } else { String::new() }
            }
            // QEMU gives each disk the next free SCSI target, in command line order.
            DiskBus::Scsi => format!(",bus={SCSI_BUS}"),
            DiskBus::Sata => {
                sata += 1;
                sata_placement(spec.is_pcie(), sata - 1)
            }
        };
        for node in blockdev_nodes(disk)? {
            push(&["-blockdev", &node.to_string()]);
        }
        push(&["-device", &(disk_device_args(disk) + &placement + &boot_index(disk))]);
    }
    for nic in &spec.nics {
        push(&["-netdev", &format!("user,id=net-{},restrict=on", nic.name)]);
        let mut device = format!("{},id=nic-{},netdev=net-{}", nic.model.driver(), nic.name, nic.name);
        if let Some(mac) = nic.mac {
            device.push_str(&format!(",mac={mac}"));
        }
        push(&["-device", &device]);
    }

    push(&["-S", "-pidfile", &path(paths.pidfile())?]);
    if mode == ProcessMode::Daemon {
        push(&["-daemonize"]);
    }
    Ok(args)
}

/// The id of the `index`th PCIe root port.
pub(crate) fn root_port(index: usize) -> String {
    format!("rp{index}")
}

/// The `-blockdev` (and `blockdev-add`) options of a disk's generation-0
/// layer: the file node, then the format node on it. The qcow2 backing chain
/// is opened as the image header records it.
pub(crate) fn blockdev_nodes(disk: &DiskSpec) -> Result<[Value; 2], SpecError> {
    disk.validate()?;
    let nodes = layer_nodes(&disk.name, 0);
    let (direct, _) = disk.cache.qemu();
    let cache = json!({ "direct": direct, "no-flush": false });
    let file = json!({
        "driver": "file",
        "node-name": nodes.file,
        "filename": disk.path.to_str(),
        "cache": cache,
        "read-only": disk.readonly,
        "discard": "unmap",
    });
    let format = json!({
        "driver": disk.format.driver(),
        "node-name": nodes.format,
        "file": nodes.file,
        "cache": cache,
        "read-only": disk.readonly,
        "discard": "unmap",
    });
    Ok([file, format])
}

/// Where the `index`th SATA disk goes: a port of q35's AHCI controller
/// (`ide.0` to `ide.5`), or a unit of one of pc's two IDE buses.
fn sata_placement(pcie: bool, index: usize) -> String {
    if pcie { format!(",bus=ide.{index}") } else { format!(",bus=ide.{},unit={}", index / 2, index % 2) }
}

/// The `-device` value of a disk, without its place on a bus. The whole serial
/// is given: QEMU takes any length and the device shows the guest its prefix.
fn disk_device_args(disk: &DiskSpec) -> String {
    let nodes = layer_nodes(&disk.name, 0);
    let (_, write_cache) = disk.cache.qemu();
    format!(
        "{},id={},drive={},serial={},write-cache={}",
        disk.driver(),
        device_id(&disk.name),
        nodes.format,
        disk.device_serial(),
        on_off(write_cache)
    )
}

fn boot_index(disk: &DiskSpec) -> String {
    disk.boot_order.map(|order| format!(",bootindex={order}")).unwrap_or_default()
}

/// The `device_add` arguments of a hotplugged disk, on `bus` (a PCIe root port
/// or [`SCSI_BUS`]; `None` for the root bus of a pc machine).
pub(crate) fn disk_device_json(disk: &DiskSpec, bus: Option<&str>) -> Value {
    let nodes = layer_nodes(&disk.name, 0);
    let (_, write_cache) = disk.cache.qemu();
    let mut device = json!({
        "driver": disk.driver(),
        "id": device_id(&disk.name),
        "drive": nodes.format,
        "serial": disk.device_serial(),
        "write-cache": on_off(write_cache),
    });
    if let Some(bus) = bus {
        device["bus"] = json!(bus);
    }
    device
}

fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

/// Escapes a value for QEMU's `key=value,...` option syntax, where `,,` is a literal comma.
fn opt(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
#[path = "cmdline_tests.rs"]
mod tests;
