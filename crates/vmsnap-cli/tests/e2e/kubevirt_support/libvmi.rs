//! KubeVirt's object factories (`pkg/libvmi`, `tests/libvmifact`, `pkg/libdv`,
//! `tests/libstorage` renderers) building the same objects as JSON, for vmsnap's test guest.
//!
//! Every VMI boots the test guest's kernel (`firmware.kernelBoot`, the only way the embedded
//! agent boots a guest without a bootable disk image); the factories of the agentless images add
//! `vmsnap.agent=off` to its command line. Names are KubeVirt's: long random VMI names, random
//! DataVolume names.

use serde_json::{Value, json};

use super::guest::Image;
use super::{SNAPSHOT_STORAGE_CLASS, TEST_NAMESPACE, rand_string};

/// The test guest's kernel boot image.
pub const TEST_GUEST: &str = "vmsnap.local/test-guest:latest";

/// `libvmi.CloudInitDiskName`.
pub const CLOUD_INIT_DISK_NAME: &str = "cloudinitdisk";

/// `libvmifact.FedoraMemory`.
pub const FEDORA_MEMORY: &str = "544Mi";

/// `cirrosMemory()` on amd64, also Alpine's.
const ALPINE_MEMORY: &str = "128Mi";

/// A VirtualMachineInstance spec being built (`libvmi.New(opts...)`).
#[derive(Debug, Clone)]
pub struct Vmi(pub Value);

impl Vmi {
    /// `libvmi.New()`: a random name of 63 characters (KubeVirt makes names long "to tickle
    /// would-be bugs that are related to long names"), booting the test guest.
    pub fn new() -> Vmi {
        let name = format!("testvmi-{}-", rand_string(5));
        let name = format!("{name}{}", "x".repeat(63 - name.len()));
        Vmi(json!({
            "metadata": {"name": name, "namespace": TEST_NAMESPACE},
            "spec": {
                "domain": {
                    "firmware": {"kernelBoot": {"container": {"image": TEST_GUEST}}},
                    "devices": {},
                    "resources": {}
                }
            }
        }))
    }

    /// `libvmifact.NewAlpine`: container disk `disk0`, 128Mi, an RNG; no guest agent.
    pub fn alpine() -> Vmi {
        Vmi::new()
            .with_container_disk("disk0", &Image::Alpine.container_disk())
            .with_memory_request(ALPINE_MEMORY)
            .with_rng()
            .without_guest_agent()
    }

    /// `libvmifact.NewAlpineWithTestTooling`: container disk `disk0`, 128Mi, an RNG, and a
    /// cloud-init disk; with the guest agent.
    pub fn alpine_with_test_tooling() -> Vmi {
        Vmi::new()
            .with_container_disk("disk0", &Image::AlpineTestTooling.container_disk())
            .with_memory_request(ALPINE_MEMORY)
            .with_rng()
            .with_cloud_init_no_cloud()
    }

    /// `libvmifact.NewFedora`: 544Mi, an RNG, container disk `disk0`; with the guest agent.
    pub fn fedora() -> Vmi {
        Vmi::new()
            .with_memory_request(FEDORA_MEMORY)
            .with_rng()
            .with_container_disk("disk0", &Image::FedoraTestTooling.container_disk())
    }

    /// `libstorage.renderVMI`: 256Mi and masquerade networking.
    pub fn render() -> Vmi {
        Vmi::new().with_memory_request("256Mi").with_masquerade_networking()
    }

    /// `libstorage.RenderVMIWithDataVolume`: boots from DataVolume `dv` as `disk0`.
    pub fn render_with_data_volume(dv: &str) -> Vmi {
        Vmi::render().with_data_volume("disk0", dv)
    }

    /// `libstorage.RenderVMIWithPVC`: boots from PVC `claim` as `disk0`.
    pub fn render_with_pvc(claim: &str) -> Vmi {
        Vmi::render().with_persistent_volume_claim("disk0", claim)
    }

    fn spec(&mut self) -> &mut Value {
        &mut self.0["spec"]
    }

    fn push(&mut self, path: &[&str], item: Value) {
        let mut at = self.spec();
        for key in path {
            at = &mut at[*key];
        }
        if at.is_null() {
            *at = json!([]);
        }
        at.as_array_mut().expect("a list").push(item);
    }

    fn add_disk_and_volume(mut self, name: &str, disk: Value, volume: Value) -> Vmi {
        let mut volume = volume;
        volume["name"] = json!(name);
        let mut disk = disk;
        disk["name"] = json!(name);
        self.push(&["domain", "devices", "disks"], disk);
        self.push(&["volumes"], volume);
        self
    }

    /// `libvmi.WithContainerDisk`.
    pub fn with_container_disk(self, name: &str, image: &str) -> Vmi {
        self.add_disk_and_volume(
            name,
            json!({"disk": {"bus": "virtio"}}),
            json!({"containerDisk": {"image": image}}),
        )
    }

    /// `libvmi.WithDataVolume`.
    pub fn with_data_volume(self, name: &str, dv: &str) -> Vmi {
        self.add_disk_and_volume(
            name,
            json!({"disk": {"bus": "virtio"}}),
            json!({"dataVolume": {"name": dv}}),
        )
    }

    /// `libvmi.WithPersistentVolumeClaim`.
    pub fn with_persistent_volume_claim(self, name: &str, claim: &str) -> Vmi {
        self.add_disk_and_volume(
            name,
            json!({"disk": {"bus": "virtio"}}),
            json!({"persistentVolumeClaim": {"claimName": claim}}),
        )
    }

    /// `libvmi.WithCloudInitNoCloud(libvmifact.WithDummyCloudForFastBoot())`: a cloud-init disk
    /// (the test guest ignores it, as a guest without cloud-init would).
    pub fn with_cloud_init_no_cloud(self) -> Vmi {
        self.add_disk_and_volume(
            CLOUD_INIT_DISK_NAME,
            json!({"disk": {"bus": "virtio"}}),
            json!({"cloudInitNoCloud": {"userData": "#!/bin/sh\necho hi\n"}}),
        )
    }

    /// `libvmi.WithMemoryRequest`.
    pub fn with_memory_request(mut self, quantity: &str) -> Vmi {
        self.spec()["domain"]["resources"]["requests"]["memory"] = json!(quantity);
        self
    }

    /// `libvmi.WithRng`.
    pub fn with_rng(mut self) -> Vmi {
        self.spec()["domain"]["devices"]["rng"] = json!({});
        self
    }

    /// `libnet.WithMasqueradeNetworking` / `libvmi.WithInterface(masquerade)` +
    /// `libvmi.WithNetwork(v1.DefaultPodNetwork())`.
    pub fn with_masquerade_networking(mut self) -> Vmi {
        self.spec()["domain"]["devices"]["interfaces"] = json!([{"name": "default", "masquerade": {}}]);
        self.spec()["networks"] = json!([{"name": "default", "pod": {}}]);
        self
    }

    /// The guest boots without `qemu-ga`, as the images without a guest agent.
    pub fn without_guest_agent(mut self) -> Vmi {
        self.spec()["domain"]["firmware"]["kernelBoot"]["kernelArgs"] = json!("vmsnap.agent=off");
        self
    }
}

/// `libvmi.NewVirtualMachine(vmi)`: `runStrategy: Halted`, the VMI's labels and annotations on the
/// template.
pub fn new_virtual_machine(vmi: Vmi) -> Value {
    let mut template = json!({"spec": vmi.0["spec"].clone()});
    for key in ["labels", "annotations"] {
        if !vmi.0["metadata"][key].is_null() {
            template["metadata"][key] = vmi.0["metadata"][key].clone();
        }
    }
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": vmi.0["metadata"]["name"], "namespace": vmi.0["metadata"]["namespace"]},
        "spec": {"runStrategy": "Halted", "template": template}
    })
}

/// `libvmi.WithDataVolumeTemplate(dv)`.
pub fn with_data_volume_template(mut vm: Value, dv: &Value) -> Value {
    let template = json!({"metadata": {"name": dv["metadata"]["name"]}, "spec": dv["spec"]});
    let templates = &mut vm["spec"]["dataVolumeTemplates"];
    if templates.is_null() {
        *templates = json!([]);
    }
    templates.as_array_mut().expect("a list").push(template);
    vm
}

/// `libvmi.WithRunStrategy`.
pub fn with_run_strategy(mut vm: Value, strategy: &str) -> Value {
    vm["spec"]["runStrategy"] = json!(strategy);
    vm
}

/// The name of an object.
pub fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().expect("a name").to_owned()
}

/// The UID of an object.
pub fn uid_of(object: &Value) -> String {
    object["metadata"]["uid"].as_str().expect("a uid").to_owned()
}

/// A DataVolume being built (`libdv.NewDataVolume(opts...)`).
#[derive(Debug, Clone)]
pub struct DataVolume(pub Value);

impl DataVolume {
    /// `libdv.NewDataVolume()`: a random name.
    pub fn new() -> DataVolume {
        DataVolume(json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "DataVolume",
            "metadata": {"name": format!("test-datavolume-{}", rand_string(12))},
            "spec": {}
        }))
    }

    /// `libdv.WithName`.
    pub fn with_name(mut self, name: &str) -> DataVolume {
        self.0["metadata"]["name"] = json!(name);
        self
    }

    /// `libdv.WithNamespace`.
    pub fn with_namespace(mut self, namespace: &str) -> DataVolume {
        self.0["metadata"]["namespace"] = json!(namespace);
        self
    }

    /// `libdv.WithBlankImageSource`.
    pub fn with_blank_image_source(mut self) -> DataVolume {
        self.0["spec"]["source"] = json!({"blank": {}});
        self
    }

    /// `libdv.WithRegistryURLSource(cd.DataVolumeImportUrlForContainerDisk(image))`: an import
    /// of the image's file (`http` source with a `file://` URL: the local driver pulls no
    /// registry).
    pub fn with_import_source(mut self, url: &str) -> DataVolume {
        self.0["spec"]["source"] = json!({"http": {"url": url}});
        self
    }

    /// `libdv.WithPVCSource`.
    pub fn with_pvc_source(mut self, namespace: &str, name: &str) -> DataVolume {
        self.0["spec"]["source"] = json!({"pvc": {"namespace": namespace, "name": name}});
        self
    }

    /// `libdv.WithStorage(StorageWithStorageClass(class), StorageWithVolumeSize(size))`; `None`
    /// size: the default 512Mi; `Some("")`: `StorageWithoutVolumeSize`.
    pub fn with_storage(mut self, class: &str, size: Option<&str>) -> DataVolume {
        let mut storage = json!({"storageClassName": class});
        match size {
            None => storage["resources"] = json!({"requests": {"storage": "512Mi"}}),
            Some("") => {}
            Some(size) => storage["resources"] = json!({"requests": {"storage": size}}),
        }
        self.0["spec"]["storage"] = storage;
        self
    }

    /// `libdv.WithForceBindAnnotation`.
    pub fn with_force_bind_annotation(mut self) -> DataVolume {
        self.0["metadata"]["annotations"]["cdi.kubevirt.io/storage.bind.immediate.requested"] = json!("true");
        self
    }

    /// The name.
    pub fn name(&self) -> String {
        name_of(&self.0)
    }
}

/// `libdv.NewDataVolume(WithBlankImageSource(), WithStorage(StorageWithStorageClass(sc)))`.
pub fn blank_data_volume(size: Option<&str>) -> DataVolume {
    DataVolume::new().with_blank_image_source().with_storage(SNAPSHOT_STORAGE_CLASS, size)
}

/// `renderVMWithRegistryImportDataVolume(image, sc)` (tests/storage/datavolume.go): a VM that
/// boots from a DataVolume template importing `image`.
pub fn render_vm_with_registry_import_data_volume(url: &str, image: Image) -> Value {
    let dv = DataVolume::new()
        .with_import_source(url)
        .with_namespace(TEST_NAMESPACE)
        .with_storage(SNAPSHOT_STORAGE_CLASS, Some(image.volume_size()));
    let mut vmi = Vmi::render_with_data_volume(&dv.name());
    if image == Image::FedoraTestTooling {
        vmi = vmi.with_memory_request(FEDORA_MEMORY);
    }
    if !image.has_guest_agent() {
        vmi = vmi.without_guest_agent();
    }
    with_data_volume_template(new_virtual_machine(vmi), &dv.0)
}
