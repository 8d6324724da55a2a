//! Room to recover from a full disk: one reserve file, given back when the disk fills up.
//!
//! On a full disk SQLite cannot even open the store (it needs its `-wal` and `-shm` files), and a
//! delete is a write too (SQLite appends it to its write-ahead log, and the store's log keeps the
//! deleted value): without room, nothing could be deleted to free space. So one file of reserved
//! space is kept (`vmsnap serve` puts it in its data directory, [`SpaceReserve::new`]; a store
//! opened alone keeps it beside its database). It is given back:
//!
//! - at start when the disk is full ([`SpaceReserve::at_start`], before the store opens),
//! - while running when the disk is nearly full (`vmsnap serve` checks it periodically with
//!   [`SpaceReserve::release_if_full`]),
//! - when a store write fails for lack of space ([`SpaceReserve::release`]); until the disk has
//!   room again the store refuses new objects (updates and deletes go on), so that the room given
//!   back serves the deletes ([`SpaceReserve::short_of_space`] makes it again once there is room).

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The reserve's file name in `vmsnap serve`'s data directory.
pub const RESERVE_FILE: &str = "space-reserve";

/// The reserve's size: enough for the store to open and record deletes, and for the volume
/// manifest to be rewritten.
pub const RESERVE_BYTES: u64 = 8 << 20;

/// The reserve of one data directory.
#[derive(Debug, Clone)]
pub struct SpaceReserve {
    path: PathBuf,
    bytes: u64,
}

/// What [`SpaceReserve::at_start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveAction {
    /// The reserve is there and the disk has room.
    Kept,
    /// The reserve was made.
    Created,
    /// The disk is full: the reserve was deleted to make room.
    Released,
    /// There is no reserve and not enough room to make one.
    Missing,
}

impl SpaceReserve {
    /// The reserve of `data_dir` ([`RESERVE_FILE`] in it).
    pub fn new(data_dir: &Path) -> Self {
        Self::at(data_dir.join(RESERVE_FILE))
    }

    /// The reserve kept in the file `path`.
    pub fn at(path: PathBuf) -> Self {
        SpaceReserve { path, bytes: RESERVE_BYTES }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// At start, before the store opens: gives the reserve back when the disk is full, makes it
    /// when it is missing and the disk has room for it three times over.
    pub fn at_start(&self) -> io::Result<ReserveAction> {
        if self.release_if_full()? {
            return Ok(ReserveAction::Released);
        }
        if self.path.exists() {
            return Ok(ReserveAction::Kept);
        }
        if available_bytes(self.directory())? < 3 * self.bytes {
            return Ok(ReserveAction::Missing);
        }
        self.create()?;
        Ok(ReserveAction::Created)
    }

    /// Deletes the reserve when less than half of its size is left free on its file system.
    /// Returns whether it did.
    pub fn release_if_full(&self) -> io::Result<bool> {
        if !self.path.exists() || available_bytes(self.directory())? >= self.bytes / 2 {
            return Ok(false);
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the reserve back after a write failed for lack of space.
    pub fn release(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => self.warn_released(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot give back the space reserve")
            }
        }
    }

    /// Whether the disk is short of space: the reserve is given back and there is not yet room to
    /// make it again (it is made again as soon as there is). One `stat` while the reserve is there.
    pub fn short_of_space(&self) -> bool {
        if self.path.exists() {
            return false;
        }
        let room = available_bytes(self.directory()).is_ok_and(|free| free >= 3 * self.bytes);
        !(room && self.create().is_ok())
    }

    /// The warning for a released reserve: what happened and what the user should do.
    pub fn warn_released(&self) {
        tracing::warn!(
            path = %self.path.display(),
            "the data disk is full: gave back the {} MiB space reserve so that vmsnap keeps working and \
             objects can be deleted; free space (delete snapshots, VMs or disks, or files on that disk): \
             new objects are refused until there is room, and the reserve is made again then",
            self.bytes >> 20
        );
    }

    fn directory(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Writes the reserve under a temporary name and renames it, so that a reserve that exists is
    /// whole.
    fn create(&self) -> io::Result<()> {
        let temp = self.path.with_extension("tmp");
        let made = (|| {
            let file = std::fs::File::create(&temp)?;
            allocate(&file, self.bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        made
    }
}

/// Allocates `bytes` for `file`: with `posix_fallocate` where the file system has it, else by
/// writing bytes that do not compress (a compressing file system would store zeros in no space).
fn allocate(file: &std::fs::File, bytes: u64) -> io::Result<()> {
    let length = i64::try_from(bytes).map_err(io::Error::other)?;
    match nix::fcntl::posix_fallocate(file.as_fd(), 0, length) {
        Ok(()) => return Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL) => {}
        Err(errno) => return Err(errno.into()),
    }
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut block = vec![0u8; 1 << 16];
    let mut writer = io::BufWriter::new(file);
    let mut left = bytes;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            // xorshift64: cheap bytes that no compressor shrinks.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        writer.write_all(&block[..n])?;
        left -= n as u64;
    }
    writer.flush()
}

/// Bytes an unprivileged write could still use on the file system holding `dir`.
fn available_bytes(dir: &Path) -> io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir)?;
    Ok(stats.blocks_available().saturating_mul(stats.fragment_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_with_room_gets_a_whole_reserve_once() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = SpaceReserve::new(dir.path());
        if available_bytes(dir.path()).unwrap() < 3 * RESERVE_BYTES {
            panic!("the test needs {} MiB free in {}", (3 * RESERVE_BYTES) >> 20, dir.path().display());
        }
        assert_eq!(reserve.at_start().unwrap(), ReserveAction::Created);
        assert_eq!(std::fs::metadata(reserve.path()).unwrap().len(), RESERVE_BYTES);
        assert!(!reserve.path().with_extension("tmp").exists());
        assert_eq!(reserve.at_start().unwrap(), ReserveAction::Kept);
        assert!(!reserve.release_if_full().unwrap(), "a disk with room keeps its reserve");
    }
}
