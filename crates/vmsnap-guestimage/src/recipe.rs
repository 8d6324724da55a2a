//! What goes into the guest and the hash that names a build of it.
//!
//! The hash covers everything that can change the image: the files embedded in
//! this crate, the builder's format version, the kernel command line, the
//! kernel modules asked for, and the exact Debian package versions used. Two
//! builds with the same hash are interchangeable, so the hash names the cache
//! directory.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the build procedure and of the on-disk layout of a cached image.
/// Bump it whenever the builder changes what it produces from the same inputs.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The kernel command line the image is meant to boot with.
pub(crate) const KERNEL_CMDLINE: &str = "console=ttyS0 quiet panic=-1 rdinit=/init";

/// Source of the timestamp writer, compiled with `gcc -static` at build time.
pub(crate) const TSWRITER_SOURCE: &str = include_str!("../guest/tswriter.c");

/// A file of the guest's root filesystem whose contents are embedded in this crate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuestFile {
    /// Path inside the guest, without the leading `/`.
    pub(crate) path: &'static str,
    /// Unix permission bits.
    pub(crate) mode: u32,
    /// The contents.
    pub(crate) contents: &'static str,
}

/// Every embedded file, in the order they are hashed.
pub(crate) const GUEST_FILES: &[GuestFile] = &[
    file("init", 0o755, include_str!("../guest/init.sh")),
    file("etc/inittab", 0o644, include_str!("../guest/inittab")),
    file("etc/passwd", 0o644, include_str!("../guest/passwd")),
    file("etc/group", 0o644, include_str!("../guest/group")),
    file("etc/profile", 0o644, include_str!("../guest/profile")),
    file("sbin/vmsnap-disks", 0o755, include_str!("../guest/vmsnap-disks.sh")),
    file("sbin/vmsnap-agent", 0o755, include_str!("../guest/vmsnap-agent.sh")),
    file("sbin/shutdown", 0o755, include_str!("../guest/shutdown.sh")),
    file("etc/qemu/fsfreeze-hook", 0o755, include_str!("../guest/fsfreeze-hook.sh")),
    file("etc/qemu/fsfreeze-hook.d/10-log", 0o755, include_str!("../guest/fsfreeze-log.sh")),
    // busybox acpid runs /etc/acpi/<ACTION>/<PARAMETER> for the power button event.
    file("etc/acpi/PWRF/00000080", 0o755, include_str!("../guest/power-button.sh")),
    file("etc/vmsnap/udhcpc.sh", 0o755, include_str!("../guest/udhcpc.sh")),
];

const fn file(path: &'static str, mode: u32, contents: &'static str) -> GuestFile {
    GuestFile { path, mode, contents }
}

/// A kernel module the guest loads at boot, unless the kernel has it built in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WantedModule {
    /// Module name, with underscores.
    pub(crate) name: &'static str,
    /// Whether the build fails when the kernel has no such module.
    pub(crate) required: bool,
}

/// The modules the guest needs; their dependencies are added from modules.dep.
pub(crate) const WANTED_MODULES: &[WantedModule] = &[
    module("virtio_pci", true),
    module("virtio_blk", true),
    // SCSI disks (KubeVirt's `bus: scsi`) on the virtio-scsi controller; scsi_mod and
    // scsi_common come in as their dependencies.
    module("virtio_scsi", true),
    module("sd_mod", true),
    module("virtio_console", true),
    module("virtio_net", true),
    module("virtio_rng", false),
    module("crc32c_generic", true),
    module("ext4", true),
    // The ACPI power button, seen by acpid through its input event device.
    module("button", true),
    module("evdev", true),
];

const fn module(name: &'static str, required: bool) -> WantedModule {
    WantedModule { name, required }
}

/// A Debian package at an exact version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Package {
    /// Package name, such as `linux-image-6.1.0-56-cloud-amd64`.
    pub(crate) name: String,
    /// Exact Debian version, such as `6.1.192-2`.
    pub(crate) version: String,
}

/// The Debian packages a build uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recipe {
    /// The kernel image package, fetched with `apt-get download`.
    pub(crate) kernel: Package,
    /// Packages installed on the host whose files are copied into the image,
    /// including the owners of the shared libraries and the C toolchain.
    pub(crate) host_packages: Vec<Package>,
}

impl Recipe {
    /// The recipe hash, hex encoded.
    pub(crate) fn hash(&self) -> String {
        self.hash_with(&embedded_hash())
    }

    fn hash_with(&self, embedded_hash: &str) -> String {
        let mut hasher = Sha256::new();
        hash_field(&mut hasher, "embedded", embedded_hash.as_bytes());
        hash_field(&mut hasher, "kernel", package_line(&self.kernel).as_bytes());
        let mut packages = self.host_packages.clone();
        packages.sort();
        packages.dedup();
        for package in &packages {
            hash_field(&mut hasher, "package", package_line(package).as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

fn package_line(package: &Package) -> String {
    format!("{}={}", package.name, package.version)
}

/// Hash of what this crate itself contributes: format version, command line,
/// module list and embedded files. It identifies images made by this builder.
pub(crate) fn embedded_hash() -> String {
    embedded_hash_of(GUEST_FILES, TSWRITER_SOURCE)
}

fn embedded_hash_of(files: &[GuestFile], tswriter_source: &str) -> String {
    let mut hasher = Sha256::new();
    hash_field(&mut hasher, "format", &FORMAT_VERSION.to_le_bytes());
    hash_field(&mut hasher, "cmdline", KERNEL_CMDLINE.as_bytes());
    for wanted in WANTED_MODULES {
        let line = format!("{} {}", wanted.name, wanted.required);
        hash_field(&mut hasher, "module", line.as_bytes());
    }
    for file in files {
        hash_field(&mut hasher, "path", file.path.as_bytes());
        hash_field(&mut hasher, "mode", &file.mode.to_le_bytes());
        hash_field(&mut hasher, "contents", file.contents.as_bytes());
    }
    hash_field(&mut hasher, "tswriter.c", tswriter_source.as_bytes());
    hex::encode(hasher.finalize())
}

/// Hashes a tagged, length-prefixed field so that no two inputs collide by concatenation.
fn hash_field(hasher: &mut Sha256, tag: &str, value: &[u8]) {
    hasher.update((tag.len() as u64).to_le_bytes());
    hasher.update(tag.as_bytes());
    hasher.update((value.len() as u64).to_le_bytes());
    hasher.update(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> Package {
        Package { name: name.into(), version: version.into() }
    }

    fn recipe() -> Recipe {
        Recipe {
            kernel: package("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2"),
            host_packages: vec![
                package("busybox-static", "1:1.35.0-4+deb12u1+b1"),
                package("qemu-guest-agent", "1:7.2+dfsg-7+deb12u18+b3"),
            ],
        }
    }

    fn with_init(contents: &'static str) -> Vec<GuestFile> {
        GUEST_FILES
            .iter()
            .map(|f| if f.path == "init" { file("init", f.mode, contents) } else { *f })
            .collect()
    }

    #[test]
    fn hash_is_stable_for_the_same_recipe() {
        assert_eq!(recipe().hash(), recipe().hash());
        assert_eq!(recipe().hash().len(), 64);
    }

    #[test]
    fn hash_ignores_the_order_of_host_packages() {
        let mut reordered = recipe();
        reordered.host_packages.reverse();
        assert_eq!(recipe().hash(), reordered.hash());
    }

    #[test]
    fn hash_changes_with_a_package_version() {
        let mut newer = recipe();
        newer.kernel.version = "6.1.193-1".into();
        assert_ne!(recipe().hash(), newer.hash());
        let mut newer_agent = recipe();
        newer_agent.host_packages[1].version = "1:7.2+dfsg-7+deb12u19".into();
        assert_ne!(recipe().hash(), newer_agent.hash());
    }

    #[test]
    fn hash_changes_when_the_init_script_changes() {
        let edited = embedded_hash_of(&with_init("#!/bin/sh\nexec /sbin/init\n"), TSWRITER_SOURCE);
        assert_ne!(embedded_hash(), edited);
        assert_ne!(recipe().hash(), recipe().hash_with(&edited));
    }

    #[test]
    fn hash_is_unchanged_by_an_identical_init_script() {
        let init = GUEST_FILES.iter().find(|f| f.path == "init").unwrap();
        let same = embedded_hash_of(&with_init(init.contents), TSWRITER_SOURCE);
        assert_eq!(embedded_hash(), same);
        assert_eq!(recipe().hash(), recipe().hash_with(&same));
    }

    #[test]
    fn embedded_hash_changes_when_tswriter_changes() {
        let edited = embedded_hash_of(GUEST_FILES, "int main(void) { return 0; }\n");
        assert_ne!(embedded_hash(), edited);
    }

    #[test]
    fn every_embedded_path_is_relative_and_unique() {
        let mut paths: Vec<&str> = GUEST_FILES.iter().map(|f| f.path).collect();
        assert!(paths.iter().all(|p| !p.starts_with('/')));
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), GUEST_FILES.len());
    }
}
