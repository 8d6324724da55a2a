//! Staging the guest's root filesystem in a host directory.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::command::HostCommand;
use crate::kmod::{self, Module};
use crate::recipe::{GUEST_FILES, Package, TSWRITER_SOURCE};
use crate::{BuildError, debian, ldd};

/// A file copied from the host into the guest.
struct HostFile {
    host: &'static str,
    guest: &'static str,
    package: &'static str,
    /// Whether it is a dynamically linked program whose libraries come along.
    dynamic: bool,
}

const HOST_FILES: &[HostFile] = &[
    // busybox-static's binary needs no libraries; it also provides the applets.
    host_file("/bin/busybox", "bin/busybox", "busybox-static", false),
    host_file("/usr/sbin/qemu-ga", "usr/sbin/qemu-ga", "qemu-guest-agent", true),
    host_file("/usr/sbin/mke2fs", "sbin/mke2fs", "e2fsprogs", true),
    host_file("/etc/mke2fs.conf", "etc/mke2fs.conf", "e2fsprogs", false),
];

const fn host_file(
    host: &'static str,
    guest: &'static str,
    package: &'static str,
    dynamic: bool,
) -> HostFile {
    HostFile { host, guest, package, dynamic }
}

/// Packages used on the host without copying their files: the C toolchain that
/// builds tswriter (its static libc ends up in the image).
const TOOLCHAIN_PACKAGES: &[&str] = &["gcc", "libc6-dev"];

/// Directories of the root filesystem that nothing else creates.
const EMPTY_DIRS: &[&str] = &["dev", "proc", "sys", "run", "tmp", "mnt", "root", "usr/bin", "var"];

/// What the build takes from the host, found without changing anything.
#[derive(Debug)]
pub(crate) struct HostInputs {
    /// Shared libraries of the copied programs, the dynamic loader included.
    pub(crate) libraries: Vec<PathBuf>,
    /// Installed packages the copied files and the toolchain come from, at their versions.
    pub(crate) packages: Vec<Package>,
}

impl HostInputs {
    /// Inspects the host: which libraries the programs need and which package versions are installed.
    pub(crate) fn inspect() -> Result<Self, BuildError> {
        let mut names: BTreeSet<String> = HOST_FILES.iter().map(|f| f.package.to_owned()).collect();
        names.extend(TOOLCHAIN_PACKAGES.iter().map(|&p| p.to_owned()));
        let mut libraries = Vec::new();
        for file in HOST_FILES {
            if !Path::new(file.host).exists() {
                return Err(BuildError::PackageNotInstalled { package: file.package.to_owned() });
            }
            if file.dynamic {
                for library in ldd::libraries(Path::new(file.host))? {
                    if !libraries.contains(&library) {
                        libraries.push(library);
                    }
                }
            }
        }
        names.extend(debian::owners(&libraries)?);
        let packages = debian::installed_versions(&names)?;
        Ok(Self { libraries, packages })
    }
}

/// Fills `staging` with the guest's root filesystem. `work` is scratch space.
pub(crate) fn stage(
    staging: &Path,
    work: &Path,
    libraries: &[PathBuf],
    release: &str,
    modules: &[(String, Module)],
) -> Result<(), BuildError> {
    for dir in EMPTY_DIRS {
        create_dir(&staging.join(dir))?;
    }
    link("../run", &staging.join("var/run"))?;
    for file in GUEST_FILES {
        write(&staging.join(file.path), file.contents.as_bytes(), file.mode)?;
    }
    for file in HOST_FILES {
        let target = staging.join(file.guest);
        create_dir(target.parent().unwrap_or(staging))?;
        fs::copy(file.host, &target).map_err(BuildError::io("copy", file.host))?;
    }
    for library in libraries {
        let target = staging.join(library.strip_prefix("/").unwrap_or(library));
        create_dir(target.parent().unwrap_or(staging))?;
        fs::copy(library, &target).map_err(BuildError::io("copy", library))?;
    }
    link("mke2fs", &staging.join("sbin/mkfs.ext4"))?;
    compile_tswriter(work, &staging.join("usr/bin/tswriter"))?;
    stage_modules(staging, release, modules)?;
    link_busybox_applets(staging)
}

fn compile_tswriter(work: &Path, output: &Path) -> Result<(), BuildError> {
    let source = work.join("tswriter.c");
    fs::write(&source, TSWRITER_SOURCE).map_err(BuildError::io("write", &source))?;
    HostCommand::new("gcc", "gcc")
        .args(["-static", "-O2", "-Wall", "-s", "-o"])
        .arg(output)
        .arg(&source)
        .stdout()
        .map(drop)
}

fn stage_modules(staging: &Path, release: &str, modules: &[(String, Module)]) -> Result<(), BuildError> {
    let root = staging.join("lib/modules").join(release);
    for (_, module) in modules {
        write(&root.join(&module.path), &module.contents, 0o644)?;
    }
    write(&root.join("modules.dep"), kmod::modules_dep_text(modules).as_bytes(), 0o644)?;
    let order: String = modules.iter().map(|(_, m)| format!("{}\n", m.path)).collect();
    write(&staging.join("etc/vmsnap/modules"), order.as_bytes(), 0o644)
}

/// Links every busybox applet to `/bin/busybox`, except where a real program already is.
fn link_busybox_applets(staging: &Path) -> Result<(), BuildError> {
    let list = HostCommand::new("/bin/busybox", "busybox-static").arg("--list-full").stdout()?;
    for applet in String::from_utf8_lossy(&list).lines().map(str::trim) {
        if applet.is_empty() || applet.starts_with('/') || applet.contains("..") {
            continue;
        }
        let path = staging.join(applet);
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        create_dir(path.parent().unwrap_or(staging))?;
        link("/bin/busybox", &path)?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), BuildError> {
    fs::create_dir_all(dir).map_err(BuildError::io("create directory", dir))
}

fn link(target: &str, path: &Path) -> Result<(), BuildError> {
    symlink(target, path).map_err(BuildError::io("create symlink", path))
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), BuildError> {
    create_dir(path.parent().unwrap_or(path))?;
    fs::write(path, contents).map_err(BuildError::io("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("set permissions of", path))
}
