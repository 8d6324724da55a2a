//! What runs in the guests: the disk images of KubeVirt's tests played by small ext4 images, and
//! the tests' files written and read in the guest (through `vmsnap exec`, over the guest agent).
//!
//! KubeVirt boots Alpine, CirrOS and Fedora images from container disks or DataVolumes imported
//! from a registry. Here every guest is vmsnap's test guest (a kernel boot), and the image is a
//! disk with an ext4 file system holding `/etc/<image>-release`: a local container disk
//! (`vmsnap.local/<image>`), or a file DataVolumes import with a `file://` URL. The guest mounts
//! each disk at `/mnt/<volume>`, so what KubeVirt writes on the root file system of a guest that
//! boots from volume `disk0` is written under `/mnt/disk0` here. The images without a guest agent
//! (Alpine) boot the guest with `vmsnap.agent=off`.

use std::path::Path;
use std::process::Command;

use super::{Cluster, TEST_NAMESPACE};
use crate::support::Vmsnap;

/// A disk image of KubeVirt's tests (`cd.ContainerDisk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// `cd.ContainerDiskAlpine`: no guest agent.
    Alpine,
    /// `cd.ContainerDiskAlpineTestTooling`: with the guest agent.
    AlpineTestTooling,
    /// `cd.ContainerDiskFedoraTestTooling`: with the guest agent.
    FedoraTestTooling,
}

const IMAGES: [Image; 3] = [Image::Alpine, Image::AlpineTestTooling, Image::FedoraTestTooling];

impl Image {
    /// Its name, in file and image names.
    pub fn name(self) -> &'static str {
        match self {
            Image::Alpine => "alpine",
            Image::AlpineTestTooling => "alpine-container-disk-demo",
            Image::FedoraTestTooling => "fedora-with-test-tooling",
        }
    }

    /// Whether the image runs the QEMU guest agent.
    pub fn has_guest_agent(self) -> bool {
        self != Image::Alpine
    }

    /// The container disk image (`cd.ContainerDiskFor`).
    pub fn container_disk(self) -> String {
        format!("vmsnap.local/{}:latest", self.name())
    }

    /// The URL DataVolumes import it from (`cd.DataVolumeImportUrlForContainerDisk`).
    pub fn import_url(self, cluster: &Cluster) -> String {
        format!("file://{}", import_file(&cluster.vmsnap, self).display())
    }

    /// `cd.ContainerDiskSizeBySourceURL`.
    pub fn volume_size(self) -> &'static str {
        match self {
            Image::FedoraTestTooling => "6Gi",
            _ => "512Mi",
        }
    }
}

fn import_file(vmsnap: &Vmsnap, image: Image) -> std::path::PathBuf {
    vmsnap.data_dir().join("import").join(format!("{}.img", image.name()))
}

/// Makes every image: the files to import in the server's import directory, and the container
/// disks in the image cache (shared by the tests, so each is made under a temporary name and
/// renamed into place).
pub fn prepare_images(vmsnap: &Vmsnap) {
    let import = vmsnap.data_dir().join("import");
    std::fs::create_dir_all(&import).expect("the import directory");
    let cache = vmsnap_testing::serve::guest_cache().join("containerdisks");
    for image in IMAGES {
        make_ext4_image(image, &import_file(vmsnap, image));
        let dir = cache.join(image.name()).join("latest");
        if dir.join("disk.img").exists() {
            continue;
        }
        let parent = dir.parent().expect("a parent");
        std::fs::create_dir_all(parent).expect("the container disk directory");
        let staging = tempfile::Builder::new().prefix(".staging").tempdir_in(parent).expect("a staging dir");
        make_ext4_image(image, &staging.path().join("disk.img"));
        // Another test may have put it there meanwhile: theirs is as good.
        let _ = std::fs::rename(staging.keep(), &dir);
    }
}

fn make_ext4_image(image: Image, path: &Path) {
    let root = tempfile::tempdir().expect("a directory");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    std::fs::write(root.path().join(format!("etc/{}-release", image.name())), "vmsnap test image\n")
        .expect("the release file");
    let status = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(root.path())
        .arg(path)
        .arg("32M")
        .status()
        .expect("mke2fs runs (e2fsprogs)");
    assert!(status.success(), "mke2fs made {}", path.display());
}

/// Runs `script` with `sh -c` in the guest of `vm` (`vmsnap exec`), and returns its output;
/// panics unless it exits 0.
pub async fn exec(cluster: &Cluster, vm: &str, script: &str) -> String {
    let out = cluster.vmsnap.cli(&["-n", TEST_NAMESPACE, "exec", vm, "--", "sh", "-c", script]).await;
    assert_eq!(out.code, 0, "`{script}` in {vm}: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// `createMessageWithInitialValue`: `<dir>/data/message` holds the VM's UID.
pub async fn create_message_with_initial_value(cluster: &Cluster, vm: &str, dir: &str, vm_uid: &str) {
    let script = format!(
        "mkdir -p {dir}/data && chmod a+w {dir}/data && echo '{vm_uid}' > {dir}/data/message && \
         cat {dir}/data/message && sync && sync"
    );
    let out = exec(cluster, vm, &script).await;
    assert_eq!(out.trim(), vm_uid, "the message written in {vm}");
}

/// `updateMessage`: the message holds the VM's UID, then the snapshot's.
pub async fn update_message(cluster: &Cluster, vm: &str, dir: &str, vm_uid: &str, snapshot_uid: &str) {
    let before = exec(cluster, vm, &format!("mkdir -p {dir}/data && cat {dir}/data/message")).await;
    assert_eq!(before.trim(), vm_uid, "the message in {vm} before the update");
    let script =
        format!("echo '{snapshot_uid}' > {dir}/data/message && cat {dir}/data/message && sync && sync");
    let after = exec(cluster, vm, &script).await;
    assert_eq!(after.trim(), snapshot_uid, "the message in {vm} after the update");
}

/// `verifyOriginalContent`: the message holds the VM's UID.
pub async fn verify_original_content(cluster: &Cluster, vm: &str, dir: &str, vm_uid: &str) {
    let out = exec(cluster, vm, &format!("cat {dir}/data/message")).await;
    assert_eq!(out.trim(), vm_uid, "the message in {vm} is the one written before the snapshot");
}
