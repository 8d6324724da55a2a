//! Whether a running QEMU writes a file, read from QEMU's own image locks.
//!
//! QEMU (since 2.10) takes open-file-description byte-range locks on every
//! image it opens: byte `100 + n` while it holds permission bit `n`, byte
//! `200 + n` while it refuses to share it. Permission bit 1 is `write`, so a
//! lock on byte 101 means "a QEMU process has this file open for writing".
//! Probing it with `F_OFD_GETLK` costs one system call and takes no lock.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use crate::error::StorageError;
use crate::id::VolumeId;

/// QEMU's lock byte for the `write` permission (`RAW_LOCK_PERM_BASE + 1`).
const QEMU_WRITE_PERM_BYTE: i64 = 101;

/// Whether another process holds `path` open for writing through QEMU's block layer.
pub(crate) fn written_by_qemu(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: QEMU_WRITE_PERM_BYTE,
        l_len: 1,
        l_pid: 0,
    };
    fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)).map_err(io::Error::from)?;
    Ok(probe.l_type != libc::F_UNLCK as libc::c_short)
}

/// Refuses to touch the file of `volume` while a running QEMU writes it.
pub(crate) fn ensure_not_written_by_qemu(volume: &VolumeId, path: &Path) -> Result<(), StorageError> {
    if written_by_qemu(path).map_err(StorageError::io("check the locks of", path))? {
        return Err(StorageError::InUse { volume: volume.clone(), path: path.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_nobody_locks_is_not_in_use() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(!written_by_qemu(file.path()).unwrap());
    }

    #[test]
    fn a_lock_on_the_write_byte_held_through_another_open_file_is_seen() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let holder = std::fs::OpenOptions::new().read(true).write(true).open(file.path()).unwrap();
        let lock = libc::flock {
            l_type: libc::F_RDLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: QEMU_WRITE_PERM_BYTE,
            l_len: 1,
            l_pid: 0,
        };
        fcntl(&holder, FcntlArg::F_OFD_SETLK(&lock)).unwrap();
        assert!(written_by_qemu(file.path()).unwrap());
        drop(holder);
        assert!(!written_by_qemu(file.path()).unwrap());
    }
}
