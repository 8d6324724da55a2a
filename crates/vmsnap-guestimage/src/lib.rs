//! Builds the small test guest (Debian cloud kernel, busybox, qemu-ga, mke2fs) into a cached initramfs.
//!
//! vmsnap's tests and demo need a real guest with a real guest agent. This crate
//! makes one from Debian packages: the current cloud kernel (found through the
//! `linux-image-cloud-amd64` metapackage, fetched with `apt-get download` and
//! unpacked with `dpkg-deb -x`, never installed on the host) and an initramfs
//! holding the kernel modules it needs, static busybox, `qemu-ga` and `mke2fs`
//! from the host's installed packages with their shared libraries, and
//! `tswriter`, compiled from C at build time. It boots in about three seconds
//! under TCG.
//!
//! # How a VM refers to it
//!
//! The KubeVirt way, with a kernel boot container whose image name is
//! [`TEST_GUEST_IMAGE`]:
//!
//! ```yaml
//! spec:
//!   template:
//!     spec:
//!       domain:
//!         firmware:
//!           kernelBoot:
//!             container:
//!               image: vmsnap.local/test-guest:latest
//! ```
//!
//! The agent does not pull that image: it resolves the name locally, with
//! [`find_built`] or [`ensure_built`], to the kernel, initramfs and command
//! line of a [`GuestImage`] in its cache. Data disks are PVCs or DataVolumes as
//! usual. To boot their own disk image instead, users import it into a
//! DataVolume and give the VM a disk from it and no `kernelBoot`.
//!
//! # What the guest does
//!
//! - Each virtio and SCSI disk is mounted at `/mnt/<serial>`; the host sets the
//!   serial to the volume name. The guest reads at most 20 bytes of a virtio-blk
//!   serial (`/sys/block/vdX/serial`) and 36 of a SCSI one (the Unit Serial
//!   Number VPD page, `/sys/block/sdX/device/vpd_pg80`). A disk without a
//!   serial is mounted at `/mnt/<vdX>` (`/mnt/<sdX>`). A blank disk (first 128 KiB all zero) is
//!   formatted with ext4 first; a disk holding anything else is never
//!   formatted. Hotplugged disks are formatted and mounted within a second, and
//!   unplugged ones are unmounted.
//! - `qemu-ga` runs on the virtio-serial port named `org.qemu.guest_agent.0`,
//!   with `/etc/qemu/fsfreeze-hook`, which runs every script in
//!   `/etc/qemu/fsfreeze-hook.d/`. The shipped one appends
//!   `freeze <microseconds>` and `thaw <microseconds>` (CLOCK_REALTIME) to
//!   `/run/fsfreeze-hook.log`, on tmpfs, which is never frozen. With
//!   `vmsnap.agent=off` on the kernel command line (`kernelBoot.kernelArgs`)
//!   the guest has no `qemu-ga` at all, like an image without a guest agent.
//! - `tswriter FILE INTERVAL_US` (with `-s` to fsync each line) detaches at
//!   once, printing its daemon's pid, then appends `<CLOCK_REALTIME µs> <seq>`
//!   to FILE every interval with one `write()` per line. Writes block while the
//!   filesystem is frozen, so the largest gap between two lines is the freeze
//!   window an application saw. `tswriter --now` prints the current time in µs.
//! - `guest-shutdown` and the ACPI power button (QMP `system_powerdown`) sync,
//!   unmount the data disks and power off (or reboot, for `guest-shutdown`
//!   with mode `reboot`).
//! - The serial console `ttyS0` has a root shell, `eth0` is brought up with
//!   DHCP when there is a virtio-net NIC, and the console shows
//!   `vmsnap-guest: ready (agent on /dev/vportNpM, uptime S s)` once the agent
//!   has opened its port.
//!
//! # The cache
//!
//! Images live in `<cache_root>/test-guest/<recipe-hash>/` with a
//! `manifest.json` that carries a format version. The recipe hash covers the
//! files embedded in this crate, the builder's format version and the exact
//! Debian package versions used, so an image is rebuilt only when one of them
//! changes. A build happens in a temporary directory renamed into place when
//! complete, under a lock file, so concurrent builders and crashes leave no
//! half image that looks complete.

mod assemble;
mod cache;
mod command;
mod cpio;
mod debian;
mod error;
mod kmod;
mod ldd;
mod manifest;
mod modinfo;
mod recipe;
mod rootfs;

use std::path::{Path, PathBuf};

pub use error::BuildError;

/// The image name a VM gives in
/// `spec.template.spec.domain.firmware.kernelBoot.container.image` to boot the test guest.
pub const TEST_GUEST_IMAGE: &str = "vmsnap.local/test-guest:latest";

/// The least guest memory, in MiB, the test guest is given: a kernel boot with
/// less is raised to it. Measured with QEMU 7.2 under TCG (q35, one 1 GiB data
/// disk): the guest boots, formats and mounts the disk and answers on its agent
/// with 92 MiB; with 88 MiB the kernel runs out of memory unpacking the
/// initramfs. The floor keeps room above that for the image to grow and for
/// `mke2fs` and test programs to run (`tests/test_guest.rs` boots it with exactly this).
pub const MIN_MEMORY_MIB: u32 = 128;

/// Environment variable that overrides [`test_cache_root`].
pub const CACHE_ENV: &str = "VMSNAP_GUEST_CACHE";

/// A built test guest: what QEMU needs for `-kernel`, `-initrd` and `-append`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// The kernel (`-kernel`), an absolute path.
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`), an absolute path.
    pub initrd: PathBuf,
    /// The kernel command line (`-append`).
    pub cmdline: String,
    /// Hex SHA-256 of the recipe the image was built from.
    pub recipe_hash: String,
    /// The name VMs use for this image, [`TEST_GUEST_IMAGE`].
    pub image_name: &'static str,
}

/// Returns the test guest for the current recipe, building it first if the
/// cache under `cache_root` does not hold it yet.
///
/// A cache hit runs no download and no build; it only asks apt's local lists
/// which cloud kernel is current and dpkg which package versions are
/// installed (about a second). A build needs `apt-get download` to reach a
/// Debian mirror, and the host packages `busybox-static`, `qemu-guest-agent`,
/// `e2fsprogs`, `gcc` and `libc6-dev`. `progress` receives one line per step.
pub fn ensure_built(cache_root: &Path, progress: &mut dyn FnMut(&str)) -> Result<GuestImage, BuildError> {
    cache::ensure_built(cache_root, progress)
}

/// Returns the newest complete test guest under `cache_root` that this
/// version of the builder made, without running any program. It may be older
/// than what [`ensure_built`] would build now if Debian has published a newer
/// package since.
pub fn find_built(cache_root: &Path) -> Option<GuestImage> {
    cache::find_built(cache_root)
}

/// The cache root that tests share so the guest is built once per checkout:
/// `$VMSNAP_GUEST_CACHE` if set, else `target/guest-cache` in the workspace.
pub fn test_cache_root() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let workspace = crate_dir.parent().and_then(Path::parent).unwrap_or(crate_dir);
            workspace.join("target/guest-cache")
        }
    }
}
