//! Settings shared by both drivers.

use std::fmt;
use std::path::PathBuf;

/// How a driver runs. `Default` suits production; tests lower `max_chain_depth`.
#[derive(Clone)]
pub struct StorageOptions {
    /// The `qemu-img` binary (looked up in `PATH` when relative).
    pub qemu_img: PathBuf,
    /// The deepest layer chain [`crate::VolumeDriver::compact`] leaves on a
    /// volume (the active file counts as 1). The qcow2 driver only; at least 2.
    pub max_chain_depth: usize,
    /// The qcow2 cluster size of new layers, in bytes (a power of two, 512 to 2 MiB).
    pub cluster_size: u64,
    /// Called at every named step of every operation, where the crash tests
    /// inject faults (see `steps.rs`); only with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    pub step_hook: Option<crate::StepHook>,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            qemu_img: PathBuf::from("qemu-img"),
            max_chain_depth: 8,
            cluster_size: 65536,
            #[cfg(feature = "fault-injection")]
            step_hook: None,
        }
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("StorageOptions");
        debug
            .field("qemu_img", &self.qemu_img)
            .field("max_chain_depth", &self.max_chain_depth)
            .field("cluster_size", &self.cluster_size);
        #[cfg(feature = "fault-injection")]
        debug.field("step_hook", &self.step_hook.as_ref().map(|_| "set"));
        debug.finish()
    }
}
