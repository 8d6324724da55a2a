//! Room to recover from a full disk. On a full data disk SQLite cannot even open the store (it
//! needs its `-wal` and `-shm` files), so `vmsnap serve` could not start, and without it no snapshot
//! can be deleted to free space. A file of reserved space in the data directory is given back when
//! the disk fills up (at start, and while running): that is room for the store to open and for
//! deletes to be recorded. It is made again at a start with room to spare.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

/// The reserve's file name in the data directory.
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
    /// The reserve of `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        SpaceReserve { path: data_dir.join(RESERVE_FILE), bytes: RESERVE_BYTES }
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

    /// Checks every `every` whether the disk filled up, and gives the reserve back if so.
    pub fn watch(self, every: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let reserve = self.clone();
                match tokio::task::spawn_blocking(move || reserve.release_if_full()).await {
                    Ok(Ok(true)) => self.warn_released(),
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(path = %self.path.display(), %error, "cannot check the space reserve")
                    }
                    Err(_) => return,
                }
            }
        })
    }

    /// The warning for a released reserve: what happened and what the user should do.
    pub fn warn_released(&self) {
        tracing::warn!(
            path = %self.path.display(),
            "the data disk is full: gave back the {} MiB space reserve so that vmsnap keeps working and \
             objects can be deleted; free space (delete snapshots, VMs or disks, or files on that disk), \
             then restart vmsnap to make the reserve again",
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
