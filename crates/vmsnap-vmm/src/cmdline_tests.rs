use std::path::PathBuf;

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::mac::MacAddress;
use crate::spec::{CacheMode, CpuTopology, DiskBus, DiskFormat, KernelBoot, NicModel, NicSpec};

fn two_disk_spec() -> LaunchSpec {
    let boot = Boot::Kernel(KernelBoot {
        kernel: "/images/vmlinuz".into(),
        initrd: Some("/images/initrd.cpio".into()),
        cmdline: "console=ttyS0 quiet".into(),
        min_memory_mib: 128,
    });
    let mut spec = LaunchSpec::new("demo-vm", 256, boot);
    spec.uuid = Uuid::parse_str("5f1b3a6e-8d2c-4c1e-9a4b-2f7e6d5c4b3a").unwrap();
    spec.cpus = CpuTopology { sockets: 1, cores: 2, threads: 1 };
    spec.start_paused = true;
    spec.hotplug_slots = 2;
    let mut root = DiskSpec::new("rootdisk", "/volumes/root.qcow2", DiskFormat::Qcow2);
    root.boot_order = Some(1);
    let mut logs = DiskSpec::new("application-logs-volume", "/volumes/logs,1.img", DiskFormat::Raw);
    logs.readonly = true;
    logs.cache = CacheMode::None;
    spec.disks = vec![root, logs];
    spec.nics = vec![NicSpec {
        name: "default".into(),
        mac: Some("02:00:00:aa:bb:cc".parse::<MacAddress>().unwrap()),
        model: NicModel::Virtio,
    }];
    spec
}

fn paths() -> RuntimePaths {
    RuntimePaths::new("/run/vmsnap/vms/demo")
}

/// The values following each occurrence of `flag`.
fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
}

#[test]
fn kernel_boot_with_two_disks_a_nic_and_paused_start_gives_the_expected_command_line() {
    let args = qemu_args(&two_disk_spec(), Accel::Tcg, &paths(), ProcessMode::Daemon).unwrap();

    let expected_head = [
        "-name",
        "guest=demo-vm,debug-threads=on",
        "-machine",
        "q35,accel=tcg",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-msg",
        "timestamp=on",
        "-uuid",
        "5f1b3a6e-8d2c-4c1e-9a4b-2f7e6d5c4b3a",
        "-smp",
        "2,sockets=1,cores=2,threads=1",
        "-m",
        "256",
        "-kernel",
        "/images/vmlinuz",
        "-initrd",
        "/images/initrd.cpio",
        "-append",
        "console=ttyS0 quiet",
    ];
    assert_eq!(&args[..expected_head.len()], expected_head);
    assert_eq!(
        values(&args, "-chardev"),
        [
            "socket,id=qmp0,path=/run/vmsnap/vms/demo/qmp.sock,server=on,wait=off",
            "socket,id=ser0,path=/run/vmsnap/vms/demo/console.sock,server=on,wait=off,\
             logfile=/run/vmsnap/vms/demo/console.log,logappend=on",
            "socket,id=qga0,path=/run/vmsnap/vms/demo/qga.sock,server=on,wait=off",
        ]
    );
    assert_eq!(values(&args, "-mon"), ["chardev=qmp0,mode=control"]);
    assert_eq!(values(&args, "-serial"), ["chardev:ser0"]);
    assert_eq!(
        values(&args, "-device"),
        [
            "virtio-serial-pci,id=vser0",
            "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
            "virtio-scsi-pci,id=scsi0",
            "pcie-root-port,id=rp0,chassis=1",
            "pcie-root-port,id=rp1,chassis=2",
            "pcie-root-port,id=rp2,chassis=3",
            "pcie-root-port,id=rp3,chassis=4",
            "virtio-blk-pci,id=disk-rootdisk,drive=fmt-rootdisk,serial=rootdisk,write-cache=on,bus=rp0,bootindex=1",
            "virtio-blk-pci,id=disk-application-logs-volume,drive=fmt-application-c502fe79,\
             serial=application-c502fe79,write-cache=on,bus=rp1",
            "virtio-net-pci,id=nic-default,netdev=net-default,mac=02:00:00:aa:bb:cc",
        ]
    );
    assert_eq!(values(&args, "-netdev"), ["user,id=net-default,restrict=on"]);
    let blockdevs: Vec<Value> =
        values(&args, "-blockdev").iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(
        blockdevs,
        [
            json!({"driver": "file", "node-name": "file-rootdisk", "filename": "/volumes/root.qcow2",
                   "cache": {"direct": false, "no-flush": false}, "read-only": false, "discard": "unmap"}),
            json!({"driver": "qcow2", "node-name": "fmt-rootdisk", "file": "file-rootdisk",
                   "cache": {"direct": false, "no-flush": false}, "read-only": false, "discard": "unmap"}),
            json!({"driver": "file", "node-name": "file-application-c502fe79", "filename": "/volumes/logs,1.img",
                   "cache": {"direct": true, "no-flush": false}, "read-only": true, "discard": "unmap"}),
            json!({"driver": "raw", "node-name": "fmt-application-c502fe79", "file": "file-application-c502fe79",
                   "cache": {"direct": true, "no-flush": false}, "read-only": true, "discard": "unmap"}),
        ]
    );
    let tail = ["-S", "-pidfile", "/run/vmsnap/vms/demo/qemu.pid", "-daemonize"];
    assert_eq!(&args[args.len() - tail.len()..], tail);
}

#[test]
fn kvm_uses_the_host_cpu_and_foreground_mode_does_not_daemonize() {
    let args = qemu_args(&two_disk_spec(), Accel::Kvm, &paths(), ProcessMode::Foreground).unwrap();

    assert_eq!(values(&args, "-machine"), ["q35,accel=kvm"]);
    assert_eq!(values(&args, "-cpu"), ["host"]);
    assert!(!args.iter().any(|a| a == "-daemonize"), "{args:?}");
}

#[test]
fn commas_in_names_and_socket_paths_are_escaped() {
    let mut spec = two_disk_spec();
    spec.disks.clear();
    let args = qemu_args(&spec, Accel::Tcg, &RuntimePaths::new("/run/a,b"), ProcessMode::Daemon).unwrap();

    assert_eq!(values(&args, "-chardev")[0], "socket,id=qmp0,path=/run/a,,b/qmp.sock,server=on,wait=off");
}

#[test]
fn pc_machines_put_disks_on_the_root_bus_without_root_ports() {
    let mut spec = two_disk_spec();
    spec.machine = "pc".into();
    let args = qemu_args(&spec, Accel::Tcg, &paths(), ProcessMode::Daemon).unwrap();

    let devices = values(&args, "-device");
    assert!(!devices.iter().any(|d| d.starts_with("pcie-root-port")), "{devices:?}");
    assert!(devices.iter().any(|d| d.starts_with("virtio-blk-pci,id=disk-rootdisk,") && !d.contains("bus=")));
}

#[test]
fn invalid_specs_are_rejected_with_the_offending_value() {
    let mut spec = two_disk_spec();
    spec.disks[1].name = "rootdisk".into();
    let error = qemu_args(&spec, Accel::Tcg, &paths(), ProcessMode::Daemon).unwrap_err();
    assert_eq!(error, SpecError::DuplicateName { what: "disk", name: "rootdisk".into() });

    let mut spec = two_disk_spec();
    spec.disks[0].name = "application-c502fe79".into(); // the short form of the other disk's name
    spec.disks[0].serial = Some("root".into());
    let error = spec.validate().unwrap_err();
    assert_eq!(
        error,
        SpecError::ShortNameClash {
            short: "application-c502fe79".into(),
            first: "application-c502fe79".into(),
            second: "application-logs-volume".into(),
        }
    );

    for serial in ["", "with space", "comma,serial", "é", &"s".repeat(257)] {
        let mut spec = two_disk_spec();
        spec.disks[0].serial = Some(serial.into());
        let error = spec.validate().unwrap_err();
        assert!(matches!(error, SpecError::InvalidSerial { .. }), "{serial:?}: {error}");
    }

    let mut spec = two_disk_spec();
    spec.memory_mib = 127;
    assert_eq!(
        spec.validate().unwrap_err().to_string(),
        "memory_mib = 127 is too little: this kernel and initramfs need at least 128 MiB"
    );
    spec.boot = Boot::Disk;
    spec.memory_mib = 1;
    assert_eq!(
        spec.validate().unwrap_err().to_string(),
        "memory_mib = 1 is too little: the firmware needs at least 2 MiB"
    );

    let mut spec = two_disk_spec();
    spec.disks[0].cdrom = true;
    assert_eq!(
        spec.validate().unwrap_err().to_string(),
        "disk \"rootdisk\" cannot be attached: a CD-ROM cannot be on the virtio bus; use sata or scsi"
    );
    spec.disks[1].bus = DiskBus::Sata;
    spec.disks[0].bus = DiskBus::Sata;
    assert!(spec.validate().unwrap_err().to_string().contains("sata hard disks do not support read-only"));

    let mut spec = two_disk_spec();
    spec.disks[1].serial = Some("rootdisk".into());
    let error = spec.validate().unwrap_err();
    assert!(matches!(&error, SpecError::DuplicateSerial { serial, .. } if serial == "rootdisk"), "{error}");

    let mut spec = two_disk_spec();
    spec.disks[0].path = PathBuf::from("relative.qcow2");
    assert!(matches!(spec.validate().unwrap_err(), SpecError::BadPath { field: "disk path", .. }));

    let mut spec = two_disk_spec();
    spec.hotplug_slots = 23;
    assert!(matches!(spec.validate().unwrap_err(), SpecError::TooManyDisks { disks: 2, hotplug_slots: 23 }));
    // SCSI disks take no root port.
    spec.disks[1].bus = DiskBus::Scsi;
    spec.validate().unwrap();

    let mut spec = two_disk_spec();
    spec.disks = (0..7).map(|i| sata_disk(&format!("s{i}"))).collect();
    assert_eq!(spec.validate().unwrap_err(), SpecError::TooManySataDisks { disks: 7, ports: 6 });
    spec.machine = "pc".into();
    spec.disks.truncate(5);
    assert_eq!(spec.validate().unwrap_err(), SpecError::TooManySataDisks { disks: 5, ports: 4 });

    let mut spec = two_disk_spec();
    spec.machine = "virt".into();
    assert!(spec.validate().unwrap_err().to_string().contains("\"virt\""));
}

fn sata_disk(name: &str) -> DiskSpec {
    DiskSpec {
        bus: DiskBus::Sata,
        ..DiskSpec::new(name, format!("/volumes/{name}.qcow2"), DiskFormat::Qcow2)
    }
}

#[test]
fn scsi_and_sata_disks_go_on_their_controllers_with_their_whole_serial() {
    let mut spec = two_disk_spec();
    spec.disks[0].bus = DiskBus::Scsi;
    spec.disks[0].serial = Some("test-volume-abcdefghijkl".into());
    let mut cdrom = sata_disk("cd");
    cdrom.cdrom = true;
    cdrom.readonly = true;
    spec.disks.extend([sata_disk("s1"), cdrom]);
    let mut scsi_cd = DiskSpec::new("scd", "/volumes/scd.iso", DiskFormat::Raw);
    (scsi_cd.bus, scsi_cd.cdrom, scsi_cd.readonly) = (DiskBus::Scsi, true, true);
    spec.disks.push(scsi_cd);

    let args = qemu_args(&spec, Accel::Tcg, &paths(), ProcessMode::Daemon).unwrap();

    let devices = values(&args, "-device");
    // One virtio disk: one root port for it and the two hotplug slots.
    assert_eq!(devices.iter().filter(|d| d.starts_with("pcie-root-port")).count(), 3, "{devices:?}");
    assert_eq!(
        devices.iter().filter(|d| d.contains(",drive=")).copied().collect::<Vec<_>>(),
        [
            "scsi-hd,id=disk-rootdisk,drive=fmt-rootdisk,serial=test-volume-abcdefghijkl,write-cache=on,\
             bus=scsi0.0,bootindex=1",
            "virtio-blk-pci,id=disk-application-logs-volume,drive=fmt-application-c502fe79,\
             serial=application-c502fe79,write-cache=on,bus=rp0",
            "ide-hd,id=disk-s1,drive=fmt-s1,serial=s1,write-cache=on,bus=ide.0",
            "ide-cd,id=disk-cd,drive=fmt-cd,serial=cd,write-cache=on,bus=ide.1",
            "scsi-cd,id=disk-scd,drive=fmt-scd,serial=scd,write-cache=on,bus=scsi0.0",
        ]
    );
    // What the guest reads: 36 bytes of a SCSI serial, 20 of a virtio-blk or ATA one.
    let long = "a-serial-of-forty-bytes-0123456789abcdef";
    let shown = |bus| DiskSpec { bus, serial: Some(long.into()), ..sata_disk("x") }.guest_serial();
    assert_eq!(shown(DiskBus::Scsi), long[..36]);
    assert_eq!(shown(DiskBus::Virtio), long[..20]);
    assert_eq!(shown(DiskBus::Sata), long[..20]);

    spec.machine = "pc".into();
    let args = qemu_args(&spec, Accel::Tcg, &paths(), ProcessMode::Daemon).unwrap();
    let devices = values(&args, "-device");
    assert!(devices.contains(&"ide-cd,id=disk-cd,drive=fmt-cd,serial=cd,write-cache=on,bus=ide.0,unit=1"));
}

#[test]
fn hotplugged_disks_are_added_on_the_bus_given() {
    let mut disk = DiskSpec::new("test-volume-abcdefghijkl", "/v/hot.qcow2", DiskFormat::Qcow2);
    disk.bus = DiskBus::Scsi;
    disk.serial = Some("test-volume-abcdefghijkl".into());
    disk.cache = CacheMode::Writethrough;

    assert_eq!(
        disk_device_json(&disk, Some(SCSI_BUS)),
        json!({"driver": "scsi-hd", "id": "disk-test-volume-abcdefghijkl", "drive": "fmt-test-volume-b6298a26",
               "serial": "test-volume-abcdefghijkl", "write-cache": "off", "bus": "scsi0.0"})
    );
    disk.bus = DiskBus::Virtio;
    assert_eq!(disk_device_json(&disk, None)["driver"], "virtio-blk-pci");
    assert!(disk_device_json(&disk, None).get("bus").is_none());
}

#[test]
fn serial_mapping_exposes_each_disks_guest_serial() {
    let spec = two_disk_spec();

    assert_eq!(
        spec.serial_mapping(),
        [
            ("rootdisk".to_owned(), "rootdisk".to_owned()),
            ("application-logs-volume".to_owned(), "application-c502fe79".to_owned()),
        ]
    );
}

#[test]
fn assign_macs_fills_only_missing_macs() {
    let mut spec = two_disk_spec();
    spec.nics.push(NicSpec { name: "second".into(), mac: None, model: NicModel::E1000 });

    spec.assign_macs();

    assert_eq!(spec.nics[0].mac, Some("02:00:00:aa:bb:cc".parse().unwrap()));
    assert!(spec.nics[1].mac.is_some_and(|m| m.is_locally_administered()));
}

#[test]
fn launch_specs_round_trip_through_json() {
    let spec = two_disk_spec();
    let json = serde_json::to_value(&spec).unwrap();

    assert_eq!(json["boot"]["type"], "kernel");
    assert_eq!(json["disks"][1]["format"], "raw");
    assert_eq!(serde_json::from_value::<LaunchSpec>(json).unwrap(), spec);
}
