//! [`LayeredDriver`]: volumes as chains of qcow2 layers.
//!
//! Layout under the root directory:
//!
//! ```text
//! manifest.json          the state (see `manifest::Manifest`), replaced atomically
//! layers/<id>.qcow2      one file per layer; headers name backing files relative to layers/
//! ```
//!
//! Concurrency: an operation first locks the ids it touches (see [`Locks`]),
//! then does its slow work (qemu-img, QMP through the agent) without the
//! manifest lock, then takes the manifest lock only to commit. Under its id
//! locks, what it read from the manifest cannot change underneath it.

mod compact;
mod image;
mod manifest;
mod recover;
mod seal;
mod volumes;

use std::path::{Path, PathBuf};

use self::manifest::Manifest;
use crate::error::StorageError;
use crate::fsutil;
use crate::id::LayerId;
use crate::options::StorageOptions;
use crate::store::Store;

/// The qcow2 layer-chain driver (`qcow2-layers`): constant-time snapshot,
/// restore and clone, shared reference-counted layers, crash-safe metadata and
/// background chain compaction.
#[derive(Debug)]
pub struct LayeredDriver {
    store: Store<Manifest>,
    options: StorageOptions,
}

impl LayeredDriver {
    /// Opens (or initialises) the store under `root`. Call
    /// [`VolumeDriver::recover`](crate::VolumeDriver::recover) next, before serving requests.
    pub async fn open(root: impl Into<PathBuf>, options: StorageOptions) -> Result<Self, StorageError> {
        if options.max_chain_depth < 2 {
            return Err(StorageError::invalid(format!(
                "max_chain_depth is {}, but a volume with snapshots needs at least 2",
                options.max_chain_depth
            )));
        }
        Ok(Self { store: Store::open(root.into(), &options).await?, options })
    }

    /// The root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.store.root
    }

    fn layer_path(&self, id: &LayerId) -> PathBuf {
        self.store.path(id)
    }

    /// Makes newly created layer files durable before a manifest refers to them.
    async fn sync_new_files(&self, files: Vec<PathBuf>) -> Result<(), StorageError> {
        let dir = self.store.data_dir.clone();
        fsutil::blocking(move || {
            for file in &files {
                fsutil::sync_file(file).map_err(StorageError::io("sync", file))?;
            }
            fsutil::sync_dir(&dir).map_err(StorageError::io("sync", &dir))
        })
        .await
    }

    /// The files of layers a commit freed.
    fn files_of(&self, freed: &[(LayerId, manifest::Layer)]) -> Vec<PathBuf> {
        freed.iter().map(|(id, _)| self.layer_path(id)).collect()
    }
}
