//! Transfers around the page cache (`O_DIRECT`): a restore's writes of an imported disk and a
//! backup's reads of a snapshot's files. Each moves many GiB once and never again, so copying it
//! through the page cache costs CPU in the kernel's copy and evicts what the running VMs read.
//! On the 2-core test machine a buffered read of 12 GiB took 5.8 s of system time with 1 MiB
//! reads and 21.6 s with 64 KiB ones, against 0.9 s around the page cache; profiled during a full
//! backup, the kernel's copy (`_copy_to_iter`) took 30 % of both CPUs, against 8 % for hashing
//! the same bytes, and the guest beside it wrote at 0.8 of its idle speed.
//!
//! A transfer goes around the page cache only when the file system takes `O_DIRECT` and the
//! transfer is aligned to [`DIRECT_ALIGN`] (file offset and length; memory too, or it goes through
//! a buffer of the calling thread that is). Anything else is buffered, and so is a transfer the
//! file system refuses (`EINVAL`). The kernel keeps both coherent: a direct read first writes back
//! what is dirty in the page cache over its range, and a direct write drops the cached pages.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;

/// The alignment of a transfer around the page cache: its memory, file offset and length (the
/// largest logical block size of common disks).
const DIRECT_ALIGN: usize = 4096;

thread_local! {
    /// Each thread's buffer for transfers whose own memory is not aligned.
    static BOUNCE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `path` opened for writes around the page cache, or `None` where its file system does not do
/// them.
pub(crate) fn open_for_writes(path: &Path) -> Option<File> {
    OpenOptions::new().write(true).custom_flags(nix::fcntl::OFlag::O_DIRECT.bits()).open(path).ok()
}

/// The file `file` is, opened again for reads around the page cache (through `/proc/self/fd`, so
/// it is the same file even if its path was since removed or replaced), or `None` where its file
/// system does not do them.
pub(crate) fn reopen_for_reads(file: &File) -> Option<File> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_DIRECT.bits()).open(path).ok()
}

/// Whether `len` bytes at file offset `at` may go around the page cache.
fn aligned(at: u64, len: usize) -> bool {
    len.is_multiple_of(DIRECT_ALIGN) && at.is_multiple_of(DIRECT_ALIGN as u64)
}

/// Whether a transfer failed only because the file system refused it around the page cache.
fn refused(result: &io::Result<()>) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL))
}

/// Writes `data` at `at` through `direct` when it may go around the page cache; `false` when it
/// did not (not aligned, or refused): the caller writes it buffered.
pub(crate) fn write_at(direct: &File, data: &[u8], at: u64) -> io::Result<bool> {
    if !aligned(at, data.len()) {
        return Ok(false);
    }
    let written = if data.as_ptr().addr().is_multiple_of(DIRECT_ALIGN) {
        direct.write_all_at(data, at)
    } else {
        BOUNCE.with_borrow_mut(|bounce| {
            let staged = aligned_slice(bounce, data.len());
            staged.copy_from_slice(data);
            direct.write_all_at(staged, at)
        })
    };
    if refused(&written) { Ok(false) } else { written.map(|()| true) }
}

/// Fills `buf` from `at` through `direct` when it may go around the page cache; `false` when it
/// did not (not aligned, or refused): the caller reads it buffered.
pub(crate) fn read_at(direct: &File, buf: &mut [u8], at: u64) -> io::Result<bool> {
    if !aligned(at, buf.len()) {
        return Ok(false);
    }
    let read = if buf.as_ptr().addr().is_multiple_of(DIRECT_ALIGN) {
        direct.read_exact_at(buf, at)
    } else {
        BOUNCE.with_borrow_mut(|bounce| {
            let staged = aligned_slice(bounce, buf.len());
            direct.read_exact_at(staged, at).map(|()| buf.copy_from_slice(staged))
        })
    };
    if refused(&read) { Ok(false) } else { read.map(|()| true) }
}

/// `len` bytes of `buffer` starting at an address aligned to [`DIRECT_ALIGN`] (grown if need be).
pub(crate) fn aligned_slice(buffer: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buffer.len() < len + DIRECT_ALIGN {
        *buffer = vec![0; len + DIRECT_ALIGN];
    }
    let skew = buffer.as_ptr().align_offset(DIRECT_ALIGN);
    &mut buffer[skew..skew + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_transfers_go_around_the_page_cache_from_any_memory_and_others_are_left_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3 * DIRECT_ALIGN + 7).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let direct = reopen_for_reads(&file).expect("the test directory's file system takes O_DIRECT");

        // Aligned memory or not (one byte into a buffer), the same bytes.
        let mut buffer = vec![0u8; 2 * DIRECT_ALIGN + 1];
        for skew in [0, 1] {
            let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
            let target = &mut buffer[start + skew..start + skew + DIRECT_ALIGN];
            assert!(read_at(&direct, target, DIRECT_ALIGN as u64).unwrap());
            assert_eq!(target, &data[DIRECT_ALIGN..2 * DIRECT_ALIGN]);
        }
        // Not aligned (offset, length): not done here; nothing is read.
        let mut target = vec![0u8; DIRECT_ALIGN];
        assert!(!read_at(&direct, &mut target, 7).unwrap());
        assert!(!read_at(&direct, &mut target[..100], 0).unwrap());
        assert!(target.iter().all(|&b| b == 0));
        // Past the end of the file: an error, not zeros.
        let error = read_at(&direct, &mut target, 4 * DIRECT_ALIGN as u64).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);

        // The file's path removed: the descriptor opened again is still the same file.
        std::fs::remove_file(&path).unwrap();
        let again = reopen_for_reads(&file).expect("an unlinked file opens through /proc/self/fd");
        assert!(read_at(&again, &mut target, 0).unwrap());
        assert_eq!(target, &data[..DIRECT_ALIGN]);

        // Writes: aligned from unaligned memory through the thread's buffer, the rest left over.
        let written = dir.path().join("w");
        std::fs::write(&written, vec![0u8; 2 * DIRECT_ALIGN]).unwrap();
        let direct = open_for_writes(&written).unwrap();
        let source = &data[1..1 + DIRECT_ALIGN];
        assert!(write_at(&direct, source, DIRECT_ALIGN as u64).unwrap());
        assert!(!write_at(&direct, &data[..10], 0).unwrap());
        let content = std::fs::read(&written).unwrap();
        assert_eq!(&content[DIRECT_ALIGN..], source);
        assert!(content[..DIRECT_ALIGN].iter().all(|&b| b == 0));
    }

    #[test]
    fn an_aligned_slice_is_aligned_and_of_the_length_asked() {
        let mut buffer = Vec::new();
        for len in [4096, 65536, 4096, 524288] {
            let slice = aligned_slice(&mut buffer, len);
            assert_eq!(slice.len(), len);
            assert_eq!(slice.as_ptr() as usize % DIRECT_ALIGN, 0);
        }
    }
}
