//! Durable file operations. Blocking; call them from `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::steps::Steps;

/// Replaces `path` with `bytes` atomically and durably: write a temporary
/// file beside it, fsync it, rename it over `path`, fsync the directory.
/// A crash at any point leaves either the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], steps: &Steps) -> io::Result<()> {
    let temp = temp_path(path);
    let dir = path.parent().expect("the manifest lives in a directory");
    {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    steps.reach("manifest.temp-written");
    fs::rename(&temp, path)?;
    steps.reach("manifest.renamed");
    sync_dir(dir)
}

/// Runs blocking file-system work off the async threads. A panic inside (a
/// crash test's step hook) continues as a panic of the caller.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// The temporary file [`write_atomic`] uses for `path`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path").to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes a file's content durable (whichever process wrote it).
pub(crate) fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Makes the entries of a directory (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// The regular files (and symlinks) directly inside `dir`.
pub(crate) fn list_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Whether two paths name the same file: equal after resolving symlinks and
/// `..`, or equal as given when either cannot be resolved.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        write_atomic(&path, b"one", &Steps::default()).unwrap();
        write_atomic(&path, b"two", &Steps::default()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(list_files(dir.path()).unwrap(), vec![path]);
    }

    #[test]
    fn remove_if_exists_tolerates_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        assert!(remove_if_exists(&path).unwrap());
        assert!(!remove_if_exists(&path).unwrap());
    }
}
