//! Building one image: kernel package, module selection, root filesystem, initramfs, manifest.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cpio::CpioWriter;
use crate::kmod::ModuleTree;
use crate::manifest::Manifest;
use crate::recipe::{self, KERNEL_CMDLINE, Package, Recipe, WANTED_MODULES};
use crate::rootfs::{self, HostInputs};
use crate::{BuildError, TEST_GUEST_IMAGE, debian};

/// Kernel file name inside an image directory.
pub(crate) const KERNEL_FILE: &str = "vmlinuz";
/// Initramfs file name inside an image directory.
pub(crate) const INITRD_FILE: &str = "initrd.cpio";

/// Builds the image for `recipe` into the empty directory `output`, using
/// `work` as scratch space and keeping the kernel package in `downloads`.
pub(crate) fn build_into(
    output: &Path,
    work: &Path,
    downloads: &Path,
    recipe: &Recipe,
    host: &HostInputs,
    progress: &mut dyn FnMut(&str),
) -> Result<Manifest, BuildError> {
    let deb = kernel_deb(downloads, work, &recipe.kernel, progress)?;
    progress(&format!("unpacking {}", deb.display()));
    let kernel_root = work.join("kernel");
    debian::extract(&deb, &kernel_root)?;
    let release = recipe.kernel.name.trim_start_matches("linux-image-").to_owned();
    let vmlinuz = kernel_root.join("boot").join(format!("vmlinuz-{release}"));
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|dir| kernel_root.join(dir).join(&release))
        .find(|dir| dir.is_dir())
        .ok_or_else(|| BuildError::UnexpectedOutput {
            command: format!("dpkg-deb -x {}", deb.display()),
            detail: format!("the package has no modules for kernel {release}"),
        })?;
    let modules = ModuleTree::open(&modules_root, &release)?.select(WANTED_MODULES)?;
    progress(&format!("staging the root filesystem with {} kernel modules", modules.len()));
    let staging = work.join("rootfs");
    rootfs::stage(&staging, work, &host.libraries, &release, &modules)?;

    progress("writing the initramfs");
    let initrd = output.join(INITRD_FILE);
    let file = File::create(&initrd).map_err(BuildError::io("create", &initrd))?;
    let mut writer = CpioWriter::new(BufWriter::new(file));
    writer.add_tree(&staging).map_err(BuildError::io("archive", &staging))?;
    writer.add_char_device("dev/console", 0o600, 5, 1).map_err(BuildError::io("write", &initrd))?;
    let file = writer
        .finish()
        .and_then(|out| out.into_inner().map_err(|e| e.into_error()))
        .map_err(BuildError::io("write", &initrd))?;
    file.sync_all().map_err(BuildError::io("flush", &initrd))?;
    copy_synced(&vmlinuz, &output.join(KERNEL_FILE))?;

    let manifest = Manifest {
        format_version: recipe::FORMAT_VERSION,
        image_name: TEST_GUEST_IMAGE.to_owned(),
        recipe_hash: recipe.hash(),
        embedded_hash: recipe::embedded_hash(),
        kernel_release: release,
        kernel: KERNEL_FILE.to_owned(),
        initrd: INITRD_FILE.to_owned(),
        cmdline: KERNEL_CMDLINE.to_owned(),
        kernel_package: recipe.kernel.clone(),
        host_packages: recipe.host_packages.clone(),
        modules: modules.iter().map(|(_, m)| m.path.clone()).collect(),
        built_at_unix_secs: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    manifest.write(output)?;
    Ok(manifest)
}

/// The kernel package file, downloaded once into `downloads/` (older ones are removed).
fn kernel_deb(
    downloads: &Path,
    work: &Path,
    kernel: &Package,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, BuildError> {
    let cached = downloads.join(format!("{}_{}.deb", kernel.name, kernel.version.replace(':', "%3a")));
    if cached.is_file() {
        return Ok(cached);
    }
    progress(&format!("downloading {}={}", kernel.name, kernel.version));
    let fetch = work.join("download");
    fs::create_dir_all(&fetch).map_err(BuildError::io("create directory", &fetch))?;
    let deb = debian::download(kernel, &fetch)?;
    fs::create_dir_all(downloads).map_err(BuildError::io("create directory", downloads))?;
    for entry in fs::read_dir(downloads).map_err(BuildError::io("read directory", downloads))? {
        let old = entry.map_err(BuildError::io("read directory", downloads))?.path();
        fs::remove_file(&old).map_err(BuildError::io("remove", &old))?;
    }
    fs::rename(&deb, &cached).map_err(BuildError::io("move the download to", &cached))?;
    Ok(cached)
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), BuildError> {
    fs::copy(from, to).map_err(BuildError::io("copy", from))?;
    File::open(to).and_then(|file| file.sync_all()).map_err(BuildError::io("flush", to))
}
