//! Choosing, fetching and unpacking Debian packages, and asking dpkg about the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::BuildError;
use crate::command::HostCommand;
use crate::recipe::Package;

/// The metapackage whose dependency names the current cloud kernel.
pub(crate) const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// Finds the cloud kernel package that apt would install for the metapackage now.
/// This reads apt's local lists only; it does not download anything.
pub(crate) fn resolve_kernel() -> Result<Package, BuildError> {
    let command =
        HostCommand::new("apt-cache", "apt").args(["show", "--no-all-versions", KERNEL_METAPACKAGE]);
    let output = command.output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.trim().is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(BuildError::KernelNotFound {
            metapackage: KERNEL_METAPACKAGE,
            detail: format!("apt-cache: {}", stderr.trim()),
        });
    }
    kernel_dependency(&text).ok_or_else(|| BuildError::KernelNotFound {
        metapackage: KERNEL_METAPACKAGE,
        detail: "its Depends names no linux-image-*-cloud-amd64 at an exact version".into(),
    })
}

/// Picks `linux-image-<release>-cloud-amd64 (= <version>)` out of `apt-cache show` output.
fn kernel_dependency(show: &str) -> Option<Package> {
    let depends = show.lines().find_map(|line| line.strip_prefix("Depends:"))?;
    depends.split(',').find_map(|dependency| {
        let (name, constraint) = dependency.trim().split_once(' ')?;
        let version = constraint.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
        let is_kernel =
            name.starts_with("linux-image-") && name.ends_with("-cloud-amd64") && name != KERNEL_METAPACKAGE;
        is_kernel.then(|| Package { name: name.to_owned(), version: version.to_owned() })
    })
}

/// The installed versions of `names`; any package not installed is an error.
pub(crate) fn installed_versions(names: &BTreeSet<String>) -> Result<Vec<Package>, BuildError> {
    let command = HostCommand::new("dpkg-query", "dpkg")
        .args(["-W", "-f=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"])
        .args(names);
    let output = command.output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut installed = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        if let (Some(name), Some(version), Some(status)) = (fields.next(), fields.next(), fields.next())
            && status.starts_with("ii")
        {
            installed.insert(name.to_owned(), version.to_owned());
        }
    }
    let mut packages = names
        .iter()
        .map(|name| {
            // dpkg-query prints the bare name of a package queried as name:arch.
            let bare = name.split(':').next().unwrap_or(name);
            match installed.get(name).or_else(|| installed.get(bare)) {
                Some(version) => Ok(Package { name: bare.to_owned(), version: version.clone() }),
                None => Err(BuildError::PackageNotInstalled { package: bare.to_owned() }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    packages.sort();
    packages.dedup();
    Ok(packages)
}

/// The installed packages that own `files`. Debian 12 records some files under
/// `/lib` and others under `/usr/lib` (merged /usr), so both spellings are asked.
pub(crate) fn owners(files: &[PathBuf]) -> Result<BTreeSet<String>, BuildError> {
    let candidates: Vec<Vec<PathBuf>> = files.iter().map(|file| spellings(file)).collect();
    let command = HostCommand::new("dpkg-query", "dpkg").arg("-S").args(candidates.iter().flatten());
    let line = command.line().to_owned();
    // dpkg-query exits 1 when some spellings are unknown; the others are still printed.
    let output = command.output()?;
    let by_path = parse_search(&String::from_utf8_lossy(&output.stdout));
    let mut packages = BTreeSet::new();
    for (file, spellings) in files.iter().zip(&candidates) {
        let owner = spellings.iter().find_map(|spelling| by_path.get(spelling));
        let Some(owner) = owner else {
            return Err(BuildError::UnexpectedOutput {
                command: line,
                detail: format!("no installed package owns {}", file.display()),
            });
        };
        packages.extend(owner.iter().cloned());
    }
    Ok(packages)
}

/// The ways dpkg may have recorded `file`: as given, with or without `/usr`,
/// and with its directory resolved.
fn spellings(file: &Path) -> Vec<PathBuf> {
    let mut all = vec![file.to_path_buf()];
    if let Ok(rest) = file.strip_prefix("/usr") {
        all.push(Path::new("/").join(rest));
    } else {
        all.push(Path::new("/usr").join(file.strip_prefix("/").unwrap_or(file)));
    }
    if let (Some(dir), Some(name)) = (file.parent(), file.file_name())
        && let Ok(dir) = fs::canonicalize(dir)
    {
        all.push(dir.join(name));
    }
    all.dedup();
    all
}

/// Parses `dpkg-query -S` lines such as `libc6:amd64, libc6-dbg: /lib/x/libc.so.6`.
fn parse_search(text: &str) -> BTreeMap<PathBuf, Vec<String>> {
    let mut by_path = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("diversion ") {
            continue;
        }
        if let Some((packages, path)) = line.split_once(": ") {
            let packages = packages.split(", ").map(|p| p.trim().to_owned()).collect();
            by_path.insert(PathBuf::from(path.trim()), packages);
        }
    }
    by_path
}

/// Downloads `package` at its exact version into `dir` with `apt-get download`
/// and returns the `.deb`. `dir` must contain no other `.deb`.
pub(crate) fn download(package: &Package, dir: &Path) -> Result<PathBuf, BuildError> {
    HostCommand::new("apt-get", "apt")
        .args(["download", "-q"])
        .arg(format!("{}={}", package.name, package.version))
        .current_dir(dir)
        .stdout()?;
    let entries = fs::read_dir(dir).map_err(BuildError::io("read directory", dir))?;
    for entry in entries {
        let path = entry.map_err(BuildError::io("read directory", dir))?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            return Ok(path);
        }
    }
    Err(BuildError::UnexpectedOutput {
        command: format!("apt-get download {}={}", package.name, package.version),
        detail: format!("no .deb appeared in {}", dir.display()),
    })
}

/// Unpacks the files of `deb` into `dir` without installing anything.
pub(crate) fn extract(deb: &Path, dir: &Path) -> Result<(), BuildError> {
    HostCommand::new("dpkg-deb", "dpkg").arg("-x").arg(deb).arg(dir).stdout().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Package: linux-image-cloud-amd64\n\
        Source: linux-signed-amd64 (6.1.192+2)\n\
        Version: 6.1.192-2\n\
        Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\n\
        Description: Linux for x86-64 cloud (meta-package)\n";

    #[test]
    fn kernel_dependency_is_the_exact_package_the_metapackage_pins() {
        let kernel = kernel_dependency(SHOW).unwrap();
        assert_eq!(kernel.name, "linux-image-6.1.0-56-cloud-amd64");
        assert_eq!(kernel.version, "6.1.192-2");
    }

    #[test]
    fn kernel_dependency_skips_unrelated_dependencies() {
        let show = "Depends: kmod, linux-image-6.12.9-cloud-amd64 (= 6.12.9-1), initramfs-tools\n";
        assert_eq!(kernel_dependency(show).unwrap().name, "linux-image-6.12.9-cloud-amd64");
        assert_eq!(kernel_dependency("Depends: kmod, linux-base (>= 4.3~)\n"), None);
    }

    #[test]
    fn search_output_maps_each_path_to_its_packages() {
        let text = "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6\n\
            diversion by foo from: /bin/sh\n\
            libglib2.0-0:amd64, libglib2.0-dev: /usr/lib/x86_64-linux-gnu/libglib-2.0.so.0\n";
        let by_path = parse_search(text);
        assert_eq!(by_path[Path::new("/lib/x86_64-linux-gnu/libc.so.6")], ["libc6:amd64"]);
        assert_eq!(
            by_path[Path::new("/usr/lib/x86_64-linux-gnu/libglib-2.0.so.0")],
            ["libglib2.0-0:amd64", "libglib2.0-dev"]
        );
        assert_eq!(by_path.len(), 2);
    }

    #[test]
    fn spellings_cover_both_sides_of_merged_usr() {
        let all = spellings(Path::new("/lib/x86_64-linux-gnu/libglib-2.0.so.0"));
        assert!(all.contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu/libglib-2.0.so.0")));
        let all = spellings(Path::new("/usr/sbin/qemu-ga"));
        assert!(all.contains(&PathBuf::from("/sbin/qemu-ga")));
    }
}
