//! The manifest file of a driver: versioned JSON, replaced atomically.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ManifestError, StorageError};
use crate::fsutil;
use crate::steps::Steps;

/// The only manifest format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// Where a driver keeps its manifest, and which driver it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct ManifestFile {
    path: PathBuf,
    driver: &'static str,
    steps: Steps,
}

impl ManifestFile {
    pub fn new(path: PathBuf, driver: &'static str, steps: Steps) -> Self {
        Self { path, driver, steps }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the manifest, or `None` if there is none. The version and the
    /// driver are checked before the rest, so a newer format gets a clear error.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StorageError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StorageError::io("read", &self.path)(error)),
        };
        let parse = |source| ManifestError::Parse { path: self.path.clone(), source };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(parse)?;
        let version = value.get("formatVersion").and_then(serde_json::Value::as_u64);
        if version != Some(FORMAT_VERSION) {
            let path = self.path.clone();
            return Err(ManifestError::UnsupportedVersion {
                path,
                found: version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        let driver = value.get("driver").and_then(serde_json::Value::as_str).unwrap_or_default();
        if driver != self.driver {
            let (path, found) = (self.path.clone(), driver.to_owned());
            return Err(ManifestError::WrongDriver { path, found, expected: self.driver }.into());
        }
        Ok(Some(serde_json::from_value(value).map_err(parse)?))
    }

    /// Reads and validates the manifest, or creates an empty one if there is
    /// none and `data_dir` holds no files. Data files without a manifest mean
    /// the manifest was lost, not that the files are garbage: that is an error,
    /// and nothing is cleaned up.
    pub async fn load_or_init<T: Serialize + DeserializeOwned>(
        &self,
        data_dir: &Path,
        empty: impl FnOnce() -> T,
        validate: impl Fn(&T) -> Result<(), String>,
    ) -> Result<T, StorageError> {
        if let Some(manifest) = self.load::<T>()? {
            validate(&manifest)
                .map_err(|reason| ManifestError::Inconsistent { path: self.path.clone(), reason })?;
            return Ok(manifest);
        }
        let files = fsutil::list_files(data_dir).map_err(StorageError::io("list", data_dir))?;
        if !files.is_empty() {
            return Err(ManifestError::Missing { path: self.path.clone(), files: files.len() }.into());
        }
        let manifest = empty();
        self.store(&manifest).await?;
        Ok(manifest)
    }

    /// Replaces the manifest with `value`, durably (see [`fsutil::write_atomic`]).
    pub async fn store<T: Serialize>(&self, value: &T) -> Result<(), StorageError> {
        let mut bytes = serde_json::to_vec_pretty(value).expect("manifests always serialise");
        bytes.push(b'\n');
        let (path, steps) = (self.path.clone(), self.steps.clone());
        fsutil::blocking(move || fsutil::write_atomic(&path, &bytes, &steps))
            .await
            .map_err(StorageError::io("write the manifest", &self.path))
    }
}
