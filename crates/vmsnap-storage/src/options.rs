//! Settings shared by both drivers.

use std::path::PathBuf;

/// How a driver runs. `Default` suits production; tests lower `max_chain_depth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// The `qemu-img` binary (looked up in `PATH` when relative).
    pub qemu_img: PathBuf,
    /// The deepest layer chain [`crate::VolumeDriver::compact`] leaves on a
    /// volume (the active file counts as 1). The qcow2 driver only; at least 2.
    pub max_chain_depth: usize,
    /// The qcow2 cluster size of new layers, in bytes (a power of two, 512 to 2 MiB).
    pub cluster_size: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self { qemu_img: PathBuf::from("qemu-img"), max_chain_depth: 8, cluster_size: 65536 }
    }
}
