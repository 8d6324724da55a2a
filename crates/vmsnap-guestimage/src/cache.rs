//! The image cache: looking images up, and building them under a lock with an atomic rename.
//!
//! Layout under the cache root:
//!
//! ```text
//! test-guest/
//!   .lock                  flock(2)ed by the one process building
//!   .build-XXXXXX/         a build in progress (removed if found stale)
//!   downloads/<pkg>_<version>.deb
//!   <recipe-hash>/         a complete image: vmlinuz, initrd.cpio, manifest.json
//! ```
//!
//! An image directory only ever appears by renaming a finished build, so a
//! directory with a usable manifest is complete whatever happened before.

use std::fs::{self, File};
use std::path::Path;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::assemble::build_into;
use crate::manifest::Manifest;
use crate::recipe::{self, Recipe};
use crate::rootfs::HostInputs;
use crate::{BuildError, GuestImage, TEST_GUEST_IMAGE, debian};

const CACHE_DIR: &str = "test-guest";
const LOCK_FILE: &str = ".lock";
const BUILD_PREFIX: &str = ".build-";
const DOWNLOADS_DIR: &str = "downloads";

pub(crate) fn ensure_built(
    cache_root: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<GuestImage, BuildError> {
    let base =
        std::path::absolute(cache_root.join(CACHE_DIR)).map_err(BuildError::io("resolve", cache_root))?;
    let kernel = debian::resolve_kernel()?;
    let host = HostInputs::inspect()?;
    let recipe = Recipe { kernel, host_packages: host.packages.clone() };
    let hash = recipe.hash();
    let dir = base.join(&hash);
    if let Some(image) = load(&dir, &hash) {
        progress(&format!("test guest is cached in {}", dir.display()));
        return Ok(image);
    }

    fs::create_dir_all(&base).map_err(BuildError::io("create directory", &base))?;
    let _lock = lock(&base, progress)?;
    if let Some(image) = load(&dir, &hash) {
        progress(&format!("test guest was built meanwhile in {}", dir.display()));
        return Ok(image);
    }
    remove_stale_builds(&base)?;
    let started = Instant::now();
    let build = tempfile::Builder::new()
        .prefix(BUILD_PREFIX)
        .tempdir_in(&base)
        .map_err(BuildError::io("create a build directory in", &base))?;
    let output = build.path().join("image");
    fs::create_dir(&output).map_err(BuildError::io("create directory", &output))?;
    let downloads = base.join(DOWNLOADS_DIR);
    let manifest = build_into(&output, build.path(), &downloads, &recipe, &host, progress)?;
    if dir.exists() {
        // An unusable leftover (an older format, or damaged by hand): replace it.
        fs::remove_dir_all(&dir).map_err(BuildError::io("remove", &dir))?;
    }
    sync_dir(&output)?;
    fs::rename(&output, &dir).map_err(BuildError::io("rename the finished build to", &dir))?;
    sync_dir(&base)?;
    progress(&format!("built test guest {} in {:.1} s", dir.display(), started.elapsed().as_secs_f64()));
    Ok(image_of(&dir, &manifest))
}

pub(crate) fn find_built(cache_root: &Path) -> Option<GuestImage> {
    let base = std::path::absolute(cache_root.join(CACHE_DIR)).ok()?;
    let embedded = recipe::embedded_hash();
    fs::read_dir(&base)
        .ok()?
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let name = dir.file_name()?.to_str()?.to_owned();
            let manifest = Manifest::read(&dir).ok()?;
            let ours = manifest.recipe_hash == name && manifest.embedded_hash == embedded;
            (ours && manifest.is_usable_in(&dir)).then_some((dir, manifest))
        })
        .max_by_key(|(_, manifest)| manifest.built_at_unix_secs)
        .map(|(dir, manifest)| image_of(&dir, &manifest))
}

/// The image in `dir` if it is complete and was built from the recipe `hash`.
fn load(dir: &Path, hash: &str) -> Option<GuestImage> {
    let manifest = Manifest::read(dir).ok()?;
    (manifest.recipe_hash == hash && manifest.is_usable_in(dir)).then(|| image_of(dir, &manifest))
}

fn image_of(dir: &Path, manifest: &Manifest) -> GuestImage {
    GuestImage {
        kernel: dir.join(&manifest.kernel),
        initrd: dir.join(&manifest.initrd),
        cmdline: manifest.cmdline.clone(),
        recipe_hash: manifest.recipe_hash.clone(),
        image_name: TEST_GUEST_IMAGE,
    }
}

/// Takes the build lock, waiting for another builder if there is one.
fn lock(base: &Path, progress: &mut dyn FnMut(&str)) -> Result<Flock<File>, BuildError> {
    let path = base.join(LOCK_FILE);
    let open = || {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(BuildError::io("open", &path))
    };
    let flock_error = |errno: Errno| BuildError::io("lock", &path)(errno.into());
    match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            progress("waiting for another process that is building the test guest");
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| flock_error(errno))
        }
        Err((_, errno)) => Err(flock_error(errno)),
    }
}

/// Removes builds left by crashed builders; called with the lock held, so none is live.
fn remove_stale_builds(base: &Path) -> Result<(), BuildError> {
    for entry in fs::read_dir(base).map_err(BuildError::io("read directory", base))? {
        let path = entry.map_err(BuildError::io("read directory", base))?.path();
        let stale = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(BUILD_PREFIX));
        if stale {
            fs::remove_dir_all(&path).map_err(BuildError::io("remove stale build", &path))?;
        }
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BuildError> {
    File::open(dir).and_then(|file| file.sync_all()).map_err(BuildError::io("flush", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::{INITRD_FILE, KERNEL_FILE};
    use crate::recipe::{KERNEL_CMDLINE, Package};
    use std::path::PathBuf;

    #[test]
    fn find_built_ignores_incomplete_and_foreign_directories() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join(CACHE_DIR);
        let stale = base.join(".build-abc/image");
        fs::create_dir_all(&stale).unwrap();
        let half = base.join("0".repeat(64));
        fs::create_dir_all(&half).unwrap();
        fs::write(half.join(KERNEL_FILE), "kernel").unwrap();
        assert!(find_built(root.path()).is_none());
    }

    fn fake_image(base: &Path, hash: &str, built_at_unix_secs: u64) -> PathBuf {
        let dir = base.join(hash);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(KERNEL_FILE), "kernel").unwrap();
        fs::write(dir.join(INITRD_FILE), "initrd").unwrap();
        let package = Package { name: "linux-image-test".into(), version: "1".into() };
        Manifest {
            format_version: recipe::FORMAT_VERSION,
            image_name: TEST_GUEST_IMAGE.into(),
            recipe_hash: hash.into(),
            embedded_hash: recipe::embedded_hash(),
            kernel_release: "test".into(),
            kernel: KERNEL_FILE.into(),
            initrd: INITRD_FILE.into(),
            cmdline: KERNEL_CMDLINE.into(),
            kernel_package: package,
            host_packages: Vec::new(),
            modules: Vec::new(),
            built_at_unix_secs,
        }
        .write(&dir)
        .unwrap();
        dir
    }

    #[test]
    fn find_built_returns_the_newest_complete_image_of_this_builder() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join(CACHE_DIR);
        fake_image(&base, &"a".repeat(64), 100);
        let newest = fake_image(&base, &"b".repeat(64), 200);

        let image = find_built(root.path()).unwrap();

        assert_eq!(image.kernel, newest.join(KERNEL_FILE));
        assert_eq!(image.initrd, newest.join(INITRD_FILE));
        assert_eq!(image.recipe_hash, "b".repeat(64));
        assert_eq!(image.cmdline, KERNEL_CMDLINE);
        assert_eq!(load(&newest, &"b".repeat(64)), Some(image));
        assert_eq!(load(&newest, &"c".repeat(64)), None);
    }

    #[test]
    fn lock_is_exclusive_between_open_files() {
        let base = tempfile::tempdir().unwrap();
        let _held = lock(base.path(), &mut |_| {}).unwrap();
        let other = File::options().write(true).open(base.path().join(LOCK_FILE)).unwrap();
        let attempt = Flock::lock(other, FlockArg::LockExclusiveNonblock);
        assert!(matches!(attempt, Err((_, Errno::EWOULDBLOCK))));
    }
}
