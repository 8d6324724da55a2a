//! Context "[storage-req]" / "With a more complicated VM": the state its `It`s share (the VM, its
//! VMI, the new VM, the snapshot and the restore) and the flows they compose
//! (`createSnapshotAndRestore`, `doRestore`, `verifyRestore`...).

use serde_json::{Value, json};

use super::*;
use crate::kubevirt_support::guest::{self, Image};
use crate::kubevirt_support::libstorage::{
    expect_event, start_virtual_machine, stop_virtual_machine, wait_agent_connected,
};
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

/// `onlineSnapshot` / `offlineSnaphot`.
pub const ONLINE: bool = true;
/// `offlineSnaphot`.
pub const OFFLINE: bool = false;

/// Where the tests' message file lives in the guest. KubeVirt writes `/test/data/message` on the
/// root file system, or on a device it formats and mounts at `/test`; here the guest has mounted
/// each disk at `/mnt/<volume>`: the "root file system" of a guest booting from volume `disk0`
/// is `/mnt/disk0`, and KubeVirt's `/dev/vdb` or `/dev/vdc` (a blank DataVolume) is `/mnt/blank`.
pub const ROOT: &str = "/mnt/disk0";
/// The blank DataVolume's mount point.
pub const BLANK: &str = "/mnt/blank";

/// The variables of the Context.
pub struct Ctx {
    pub cluster: Cluster,
    pub new_vm_name: String,
    pub vm: Value,
    pub vmi: Option<Value>,
    pub new_vm: Option<Value>,
    pub snapshot: Option<Value>,
    pub restore: Option<Value>,
}

impl Ctx {
    /// The `BeforeEach`: a server, and the name of a new VM.
    pub async fn start() -> Option<Ctx> {
        let cluster = Cluster::start().await?;
        Some(Ctx {
            cluster,
            new_vm_name: format!("new-vm-{}", rand_string(12)),
            vm: Value::Null,
            vmi: None,
            new_vm: None,
            snapshot: None,
            restore: None,
        })
    }

    /// restore.go's `createAndStartVM`, keeping the VM and its VMI.
    pub async fn create_and_start_vm(&mut self, vm: Value) {
        let (vm, vmi) = create_and_start_vm(&self.cluster, vm).await;
        self.vm = vm;
        self.vmi = Some(vmi);
    }

    pub fn vm_name(&self) -> String {
        name_of(&self.vm)
    }

    pub fn vm_uid(&self) -> String {
        uid_of(&self.vm)
    }

    pub fn restore(&self) -> &Value {
        self.restore.as_ref().expect("a restore")
    }

    pub fn snapshot(&self) -> &Value {
        self.snapshot.as_ref().expect("a snapshot")
    }

    /// `getTargetVMName`.
    pub fn target_vm_name(&self, restore_to_new_vm: bool) -> String {
        if restore_to_new_vm { self.new_vm_name.clone() } else { self.vm_name() }
    }

    /// `getTargetVM`.
    pub fn target_vm(&self, restore_to_new_vm: bool) -> &Value {
        if restore_to_new_vm { self.new_vm.as_ref().expect("the new VM") } else { &self.vm }
    }

    /// `libvmops.StopVirtualMachine(vm)`.
    pub async fn stop_vm(&mut self) {
        self.vm = stop_virtual_machine(&self.cluster, &self.vm_name()).await;
    }

    /// `libvmops.StartVirtualMachine(vm)`.
    pub async fn start_vm(&mut self) {
        self.vm = start_virtual_machine(&self.cluster, &self.vm_name()).await;
    }

    /// `createSnapshot(vm)`.
    pub async fn create_snapshot(&mut self) {
        self.snapshot = Some(create_snapshot(&self.cluster, &self.vm).await);
    }

    /// Creates `restore` and keeps it.
    pub async fn create_restore(&mut self, restore: &Value) {
        self.restore = Some(self.cluster.create(RESTORE, restore).await);
    }

    /// `waitRestoreComplete(restore, vm, uid)`, keeping the result.
    pub async fn wait_restore_complete(&mut self, vm: &str, uid: Option<&str>) {
        let name = name_of(self.restore());
        self.restore = Some(wait_restore_complete(&self.cluster, &name, vm, uid).await);
    }

    /// `deleteRestore(restore)`; `restore = nil`.
    pub async fn delete_restore(&mut self) {
        if let Some(restore) = self.restore.take() {
            delete_restore(&self.cluster, &name_of(&restore)).await;
        }
    }

    /// The login functions of the original: the guests with an agent are in when it answers
    /// (the data is written with `vmsnap exec`).
    pub async fn login(&self, vm: &str) {
        wait_agent_connected(&self.cluster, vm).await;
    }

    /// `createSnapshotAndRestore(device, login, onlineSnapshot, tpm=false, targetVMName, stopVMBeforeRestore)`.
    pub async fn create_snapshot_and_restore(
        &mut self,
        dir: &str,
        online: bool,
        target: &str,
        stop_vm_before_restore: bool,
    ) {
        let to_different_vm = target != self.vm_name();
        let target_uid = if to_different_vm { None } else { Some(self.vm_uid()) };
        let vm_uid = self.vm_uid();

        self.login(&self.vm_name()).await;
        guest::create_message_with_initial_value(&self.cluster, &self.vm_name(), dir, &vm_uid).await;
        if !online {
            self.stop_vm().await; // "Stopping VM"
        }
        self.create_snapshot().await; // "creating snapshot"
        if !online {
            self.start_vm().await; // "Starting VM"
            self.vmi = Some(self.cluster.get(VMI, &self.vm_name()).await);
            self.login(&self.vm_name()).await;
        }
        if !to_different_vm {
            let snapshot_uid = uid_of(self.snapshot());
            guest::update_message(&self.cluster, &self.vm_name(), dir, &vm_uid, &snapshot_uid).await;
        }
        if stop_vm_before_restore {
            self.stop_vm().await;
        }

        // "Restoring VM"
        let mut restore =
            create_restore_def_with_mac_address_patch(&self.vm, target, &name_of(self.snapshot()));
        if !self.vm["spec"]["template"]["spec"]["domain"]["firmware"].is_null() {
            let patch =
                r#"{"op": "replace", "path": "/spec/template/spec/domain/firmware/uuid", "value": ""}"#;
            let patches = &mut restore["spec"]["patches"];
            if patches.is_null() {
                *patches = json!([]);
            }
            patches.as_array_mut().expect("patches").push(json!(patch));
        }
        self.create_restore(&restore).await;
        if !stop_vm_before_restore {
            let name = name_of(self.restore());
            expect_event(&self.cluster, "VirtualMachineRestore", &name, "Warning", "RestoreTargetNotReady")
                .await;
            self.stop_vm().await;
        }
        self.wait_restore_complete(target, target_uid.as_deref()).await;
    }

    /// `doRestoreNoVMStart`.
    pub async fn do_restore_no_vm_start(&mut self, dir: &str, online: bool, target: &str) {
        self.create_snapshot_and_restore(dir, online, target, true).await;
    }

    /// `doRestoreStopVMAfterRestoreCreate`.
    pub async fn do_restore_stop_vm_after_restore_create(&mut self, dir: &str, online: bool, target: &str) {
        self.create_snapshot_and_restore(dir, online, target, false).await;
    }

    /// `startVMAfterRestore`: the target started, and the message is the one written before the
    /// snapshot.
    pub async fn start_vm_after_restore(&mut self, target: &str, dir: &str) {
        let to_different_vm = target != self.vm_name();
        let vm_uid = self.vm_uid();
        let target_vm = start_virtual_machine(&self.cluster, target).await;
        // "Verifying original file contents"
        self.login(target).await;
        guest::verify_original_content(&self.cluster, target, dir, &vm_uid).await;
        if to_different_vm {
            self.new_vm = Some(target_vm);
        } else {
            self.vm = target_vm;
        }
    }

    /// `doRestore`.
    pub async fn do_restore(&mut self, dir: &str, online: bool, target: &str) {
        self.do_restore_no_vm_start(dir, online, target).await;
        self.start_vm_after_restore(target, dir).await;
    }

    /// `doRestore` to a table entry's target (the VM itself, or a new VM), then what every such
    /// entry checks: one volume restored and, for a new VM, `checkNewVMEquality`; the restore.
    pub async fn restore_to(&mut self, dir: &str, online: bool, restore_to_new_vm: bool) -> Value {
        let target = self.target_vm_name(restore_to_new_vm);
        self.do_restore(dir, online, &target).await;
        let restore = self.restore().clone();
        assert_eq!(items(&restore["status"]["restores"]).len(), 1, "{restore:#}");
        if restore_to_new_vm {
            self.check_new_vm_equality();
        }
        restore
    }

    /// `checkNewVMEquality`.
    pub fn check_new_vm_equality(&self) {
        let new_vm = self.new_vm.as_ref().expect("the new VM");
        let (a, b) = (&new_vm["spec"], &self.vm["spec"]);
        let len = |spec: &Value, path: &[&str]| {
            let mut at = &spec["template"]["spec"];
            for key in path {
                at = &at[*key];
            }
            items(at).len()
        };
        assert_eq!(len(a, &["volumes"]), len(b, &["volumes"]), "volumes");
        assert_eq!(len(a, &["domain", "devices", "disks"]), len(b, &["domain", "devices", "disks"]), "disks");
        assert_eq!(
            len(a, &["domain", "devices", "interfaces"]),
            len(b, &["domain", "devices", "interfaces"]),
            "interfaces"
        );
        assert_eq!(
            items(&a["dataVolumeTemplates"]).len(),
            items(&b["dataVolumeTemplates"]).len(),
            "templates"
        );
        assert_eq!(
            a["template"]["spec"]["domain"]["devices"]["tpm"],
            b["template"]["spec"]["domain"]["devices"]["tpm"]
        );
    }

    /// `verifyRestore`.
    pub async fn verify_restore(&self, restore_to_new_vm: bool, original_dv_name: &str) {
        let restore = self.restore();
        if restore_to_new_vm {
            self.check_new_vm_equality();
            assert!(items(&restore["status"]["deletedDataVolumes"]).is_empty(), "{restore:#}");
        } else {
            assert_eq!(restore["status"]["deletedDataVolumes"], json!([original_dv_name]), "{restore:#}");
            let gone = self
                .cluster
                .try_get(DV, original_dv_name)
                .await
                .expect_err("the original DataVolume is deleted");
            assert!(gone.is_not_found(), "{gone}");
        }
        let restores = items(&restore["status"]["restores"]);
        assert_eq!(restores.len(), 1, "{restore:#}");
        let pvc_name =
            restores[0]["persistentVolumeClaim"].as_str().filter(|n| !n.is_empty()).expect("a PVC name");
        let pvc = self.cluster.get(PVC, pvc_name).await;
        let dv_name =
            restores[0]["dataVolumeName"].as_str().filter(|n| !n.is_empty()).expect("a DataVolume name");
        let target = self.target_vm(restore_to_new_vm);
        let dv = self.cluster.get(DV, dv_name).await;
        verify_owner_ref(
            &dv,
            target["apiVersion"].as_str().unwrap_or_default(),
            target["kind"].as_str().unwrap_or_default(),
            &name_of(target),
            &uid_of(target),
        );
        verify_owner_ref(&pvc, "cdi.kubevirt.io/v1beta1", "DataVolume", &name_of(&dv), &uid_of(&dv));
    }
}

/// `verifyOwnerRef`: exactly one owner, this one.
pub fn verify_owner_ref(object: &Value, api_version: &str, kind: &str, name: &str, uid: &str) {
    let owners = items(&object["metadata"]["ownerReferences"]);
    assert_eq!(owners.len(), 1, "one owner: {:#}", object["metadata"]);
    assert_eq!(owners[0]["apiVersion"], api_version, "{:#}", object["metadata"]);
    assert_eq!(owners[0]["kind"], kind, "{:#}", object["metadata"]);
    assert_eq!(owners[0]["name"], name, "{:#}", object["metadata"]);
    assert_eq!(owners[0]["uid"], uid, "{:#}", object["metadata"]);
}

/// `createVMWithCloudInit(containerDisk, storageClass, opts...)`: a VM that boots from a
/// DataVolume template importing `image`, with a cloud-init disk.
pub fn create_vm_with_cloud_init(cluster: &Cluster, image: Image, memory: Option<&str>) -> Value {
    let dv = DataVolume::new()
        .with_import_source(&image.import_url(cluster))
        .with_namespace(TEST_NAMESPACE)
        .with_storage(SNAPSHOT_STORAGE_CLASS, Some(image.volume_size()));
    let mut vmi = Vmi::render_with_data_volume(&dv.name()).with_cloud_init_no_cloud();
    if let Some(memory) = memory {
        vmi = vmi.with_memory_request(memory);
    }
    if !image.has_guest_agent() {
        vmi = vmi.without_guest_agent();
    }
    with_data_volume_template(new_virtual_machine(vmi), &dv.0)
}

/// `orphanDataVolumeTemplate(vm, index)`: the template taken out of the VM as a DataVolume (the
/// VM keeps its volume).
pub fn orphan_data_volume_template(vm: &mut Value, index: usize) -> Value {
    let templates = vm["spec"]["dataVolumeTemplates"].as_array_mut().expect("templates");
    let template = templates.remove(index);
    json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": template["metadata"],
        "spec": template["spec"]
    })
}
