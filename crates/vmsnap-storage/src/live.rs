//! [`LiveBlockOps`]: what the engine needs from the node agent for volumes
//! attached to a running QEMU.
//!
//! A running QEMU holds the active file of each attached volume open with a
//! write lock, so the engine cannot seal or rebase that file with `qemu-img`.
//! Instead it prepares files (an empty overlay, a base to stream down to) and
//! asks the agent to make QEMU use them through QMP. The engine never speaks
//! QMP itself; the node agent implements this trait over `vmsnap-qemu`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::StorageError;
use crate::id::VolumeId;

/// The node agent's side of operations on attached volumes.
///
/// Every method must be idempotent with respect to a crash of the engine: the
/// engine records its intent before calling, and after a restart it only asks
/// [`LiveBlockOps::active_file`] to learn what happened.
#[async_trait]
pub trait LiveBlockOps: Send + Sync {
    /// The file QEMU currently writes for `volume` (the top of its block
    /// chain), or `None` if the volume is not attached to a running VM.
    /// An error means the agent cannot tell; the engine then does not guess.
    async fn active_file(&self, volume: &VolumeId) -> Result<Option<PathBuf>, LiveError>;

    /// Switches every listed volume to its new overlay at one point in time.
    ///
    /// Each overlay is an existing, empty qcow2 file whose header already names
    /// the current file as its backing file. For QEMU: `blockdev-add` each
    /// overlay with `"backing": null`, then one `transaction` of
    /// `blockdev-snapshot` actions for all the listed disks of the same VM
    /// (QEMU flushes the old top inside the transaction). Returns once QEMU
    /// writes to the overlays. On error, the engine asks
    /// [`LiveBlockOps::active_file`] for each volume to learn which switches happened.
    async fn switch_to_overlays(&self, switches: &[LiveSwitch]) -> Result<(), LiveError>;

    /// Copies the data of the layers between the active file and `base` into
    /// the active file, then makes `base` its backing file (`None`: copy
    /// everything, leaving no backing file).
    ///
    /// For QEMU: `block-stream` on the top node with `base-node` set to the node
    /// of `base` and `backing-file` set to [`StreamRequest::backing_file`], wait
    /// for `BLOCK_JOB_COMPLETED` without error, then `blockdev-del` any node the
    /// agent added that is no longer in the chain, so that QEMU holds none of the
    /// streamed files any more. Returns only after all of that.
    async fn stream_into_active(&self, request: &StreamRequest) -> Result<(), LiveError>;
}

/// The file QEMU writes for `volume` as `live` reports it; `None` when the
/// volume is not attached, or when there is no agent to ask.
pub(crate) async fn reported_active_file(
    live: Option<&dyn LiveBlockOps>,
    volume: &VolumeId,
) -> Result<Option<PathBuf>, StorageError> {
    let Some(live) = live else { return Ok(None) };
    live.active_file(volume).await.map_err(|source| StorageError::Live {
        action: "report the active file",
        volume: volume.clone(),
        source,
    })
}

/// One volume of a [`LiveBlockOps::switch_to_overlays`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSwitch {
    /// The attached volume.
    pub volume: VolumeId,
    /// The file QEMU writes now (as reported by [`LiveBlockOps::active_file`]).
    pub current: PathBuf,
    /// The new, empty overlay whose backing file is `current`.
    pub overlay: PathBuf,
}

/// The argument of [`LiveBlockOps::stream_into_active`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// The attached volume.
    pub volume: VolumeId,
    /// The file QEMU writes for it, which receives the data.
    pub active: PathBuf,
    /// The layer that becomes the active file's backing file; `None` to flatten the whole chain.
    pub base: Option<PathBuf>,
    /// The backing file name to record in the active file's header: the
    /// base's file name, relative to the active file's directory, so the store
    /// stays movable.
    pub backing_file: Option<String>,
}

impl StreamRequest {
    /// The base layer, as a path.
    pub fn base(&self) -> Option<&Path> {
        self.base.as_deref()
    }
}

/// A live block operation failed in the node agent.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LiveError {
    /// What failed, in the agent's words.
    pub message: String,
    /// The underlying error (a QMP command error, a lost connection...).
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl LiveError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    /// An error with a message and its cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self { message: message.into(), source: Some(source.into()) }
    }
}
