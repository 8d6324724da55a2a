//! Room to delete on a full disk.
//!
//! A delete is a write too: SQLite appends the change to its write-ahead log, and the store's log
//! keeps the deleted value. On a full disk, deletes would fail like everything else and the user
//! could not free space through the API. So the store keeps a reserve file of
//! [`RESERVE_BYTES`] beside the database: when a write fails for lack of space, the reserve is
//! released, and until the disk has room again the writer refuses new objects (updates and
//! deletes go on), so that the released space serves the deletes.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The size of the reserve.
pub const RESERVE_BYTES: u64 = 8 * 1024 * 1024;

/// The reserve file of a store directory, and whether it is in place.
pub(crate) struct Reserve {
    path: PathBuf,
    in_place: bool,
}

impl Reserve {
    /// Puts the reserve in place if the disk has room for it.
    pub fn open(dir: &Path) -> Reserve {
        let mut reserve = Reserve { path: dir.join("reserve"), in_place: false };
        reserve.refill();
        reserve
    }

    /// Whether new objects are refused: the reserve is released and the disk still short of room.
    pub fn short_of_space(&mut self) -> bool {
        if !self.in_place && free_bytes(&self.path).is_some_and(|free| free >= 2 * RESERVE_BYTES) {
            self.refill();
        }
        !self.in_place
    }

    /// Releases the reserve after a write failed for lack of space.
    pub fn release(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if self.in_place {
            tracing::warn!(path = %self.path.display(), "the disk of the store is full: released the reserve so that deletes can free space; new objects are refused until there is room");
        }
        self.in_place = false;
    }

    fn refill(&mut self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
            self.in_place = true;
            return;
        }
        // Real blocks (zeros written, not a sparse file), so that removing them frees space.
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&self.path)?;
            let chunk = vec![0u8; 1024 * 1024];
            for _ in 0..RESERVE_BYTES / chunk.len() as u64 {
                file.write_all(&chunk)?;
            }
            // No fsync: file systems account written blocks at once, and a reserve lost in a
            // crash is simply written again at the next start.
            Ok(())
        })();
        self.in_place = written.is_ok();
        if !self.in_place {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.parent()?;
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}
