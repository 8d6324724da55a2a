//! Checks on a file before it is imported.

use std::path::Path;

use crate::error::StorageError;
use crate::qemu_img::{ImageInfo, QemuImg};

/// Reads `source`'s header and refuses what cannot be imported safely: a
/// format other than raw or qcow2, or a qcow2 image that refers to other files
/// (a backing file or an external data file would make `qemu-img convert` read
/// host files the caller did not name).
pub(crate) async fn inspect_source(qemu_img: &QemuImg, source: &Path) -> Result<ImageInfo, StorageError> {
    let unsupported = |reason: String| StorageError::UnsupportedImage { path: source.to_owned(), reason };
    if !source.is_file() {
        return Err(unsupported("it is not a regular file".into()));
    }
    let info = qemu_img.info(source, None, false).await?;
    if info.format != "raw" && info.format != "qcow2" {
        return Err(unsupported(format!("its format is {}; convert it to raw or qcow2 first", info.format)));
    }
    if let Some(backing) = &info.backing_filename {
        return Err(unsupported(format!(
            "it has the backing file {backing:?}; flatten it with `qemu-img convert` first"
        )));
    }
    if let Some(data_file) = info.data_file() {
        return Err(unsupported(format!(
            "its data lives in the external file {data_file:?}; flatten it with `qemu-img convert` first"
        )));
    }
    Ok(info)
}

/// Takes the handed-over file `source` as the new file `target`, a hard link (no data copied);
/// `false` if it cannot (another file system, say), and the caller copies instead.
pub(crate) async fn take_handed_over(source: &Path, target: &Path) -> bool {
    let (source, target) = (source.to_owned(), target.to_owned());
    crate::fsutil::blocking(move || match std::fs::hard_link(&source, &target) {
        Ok(()) => true,
        Err(error) => {
            tracing::info!(source = %source.display(), %error, "copying a handed-over image: it cannot be linked");
            false
        }
    })
    .await
}
