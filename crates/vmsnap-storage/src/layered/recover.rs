//! Startup recovery: reconcile `layers/` with the manifest.
//!
//! 1. Every layer the manifest lists must exist. A missing one is an error
//!    naming it and who needs it, raised before anything is cleaned up.
//! 2. Intents left by a crash are resolved from the evidence: for a live
//!    switch, the file QEMU writes; for a rebase, the backing file named in the
//!    active layer's header; for a resize, the file's virtual size.
//! 3. Layers nothing reaches any more are dropped from the manifest (commit),
//!    then every file in `layers/` the manifest does not list is removed: the
//!    half-made files of interrupted operations. A listed layer is never removed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::LayeredDriver;
use super::manifest::{Intent, Manifest};
use crate::driver::RecoveryReport;
use crate::error::StorageError;
use crate::fsutil;
use crate::live::LiveBlockOps;

impl LayeredDriver {
    pub(super) async fn recover_inner(
        &self,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<RecoveryReport, StorageError> {
        // Recovery runs alone: it holds the manifest lock throughout.
        let mut state = self.store.state.lock().await;
        self.verify_files(&state).await?;

        let mut next = state.clone();
        let (mut completed, mut undone) = self.apply_live_switch_outcomes(&mut next, live, None).await?;
        for intent in std::mem::take(&mut next.intents) {
            match intent {
                Intent::Rebase { layer, from, to, .. } => {
                    if self.rebase_done(&layer, from.as_ref(), to.as_ref()).await? {
                        next.layers.get_mut(&layer).expect("validated").backing = to;
                        completed += 1;
                    } else {
                        undone += 1;
                    }
                }
                Intent::Resize { volume, .. } => {
                    self.apply_resize_outcome(&mut next, &volume).await?;
                    completed += 1;
                }
                Intent::LiveSwitch { .. } => unreachable!("resolved above"),
            }
        }
        let removed_layers = next.remove_unreachable().len();
        if next != *state {
            self.store.commit(&mut state, next).await?;
        }

        let referenced: BTreeSet<PathBuf> = state.layers.keys().map(|id| self.layer_path(id)).collect();
        let removed_files = self.store.remove_strays(&referenced).await?;
        let report = RecoveryReport {
            removed_files,
            removed_layers,
            intents_completed: completed,
            intents_undone: undone,
            volumes: state.volumes.len(),
            snapshots: state.snapshots.len(),
            referenced_files: referenced.len(),
        };
        tracing::info!(?report, root = %self.store.root.display(), "storage recovered");
        Ok(report)
    }

    /// Fails on the first layer whose file is missing, naming what needs it.
    async fn verify_files(&self, manifest: &Manifest) -> Result<(), StorageError> {
        let files: Vec<_> = manifest
            .layers
            .iter()
            .map(|(id, layer)| (id.clone(), self.store.data_dir.join(&layer.file)))
            .collect();
        let missing = fsutil::blocking(move || files.into_iter().find(|(_, path)| !path.is_file())).await;
        let Some((layer, path)) = missing else { return Ok(()) };
        let referenced_by = manifest
            .volumes
            .iter()
            .find(|(_, volume)| manifest.chain(&volume.active_layer).contains(&layer))
            .map(|(id, _)| format!("volume {id}"))
            .or_else(|| {
                let mut snapshots = manifest.snapshots.iter();
                snapshots
                    .find(|(_, s)| manifest.chain(&s.layer).contains(&layer))
                    .map(|(id, _)| format!("snapshot {id}"))
            })
            .unwrap_or_else(|| format!("layer {layer} of the manifest"));
        Err(StorageError::MissingFile { path, referenced_by })
    }
}
