//! Where `vmsnap serve` keeps its files under the data directory.

use std::path::{Path, PathBuf};

/// The longest runtime directory path: QEMU's unix sockets live in `<runtime>/<VMI uid>/`, and a
/// socket address holds at most 107 bytes.
const MAX_RUNTIME_DIR_LEN: usize = 57;

/// The layout of a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPaths {
    root: PathBuf,
}

impl DataPaths {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_owned() }
    }

    /// The test guest image cache.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Where users put disk images for DataVolumes to import with `file://` URLs.
    pub fn import(&self) -> PathBuf {
        self.root.join("import")
    }

    /// The default home of `local` backup repositories without a path (`<namespace>/<name>`).
    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// Where restores from backups stage disk images for DataVolumes to import (a file import
    /// root of the storage controllers).
    pub fn restore_staging(&self) -> PathBuf {
        self.root.join("restore-staging")
    }

    /// The storage driver's volume store (layers and their manifest).
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Where `http` DataVolume sources are downloaded before import: inside the volume store, on
    /// the same file system, in a subdirectory its recovery ignores.
    pub fn scratch(&self) -> PathBuf {
        self.volumes().join("scratch")
    }

    /// One directory per running VM (QEMU sockets, console log, ephemeral disks): `<root>/vms` if
    /// that path is short enough for the sockets in it, else a directory under `/tmp` named after
    /// a hash of the data directory, so that every start with the same data directory finds the
    /// VMs of the previous one.
    pub fn runtime(&self) -> PathBuf {
        let preferred = self.root.join("vms");
        if preferred.as_os_str().len() <= MAX_RUNTIME_DIR_LEN {
            return preferred;
        }
        PathBuf::from(format!("/tmp/vmsnap-vms-{:016x}", fnv1a(self.root.as_os_str().as_encoded_bytes())))
    }
}

/// FNV-1a, 64 bits: a stable name from a path (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_data_directory_keeps_its_vms_inside_it() {
        assert_eq!(DataPaths::new(Path::new("/var/lib/vmsnap")).runtime(), Path::new("/var/lib/vmsnap/vms"));
    }

    #[test]
    fn a_long_data_directory_gets_a_stable_short_runtime_directory() {
        let long = Path::new("/home/someone/projects/with/a/rather/long/path/to/vmsnap-data");
        let runtime = DataPaths::new(long).runtime();
        assert!(runtime.as_os_str().len() <= MAX_RUNTIME_DIR_LEN, "{}", runtime.display());
        assert_eq!(runtime, DataPaths::new(long).runtime());
        assert_ne!(runtime, DataPaths::new(&long.join("other")).runtime());
    }
}
