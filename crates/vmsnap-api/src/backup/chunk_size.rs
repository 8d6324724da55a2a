//! A repository's chunk size (`spec.chunkSize`): the bounds the backup engine accepts, and the
//! one reading of the field that admission, the repository controller and the CLI share.
//!
//! `vmsnap-backup` depends on no workspace crate, so it keeps its own copies of these bounds;
//! `vmsnap-backup-controllers`, which reads both, fails to compile if they ever differ.

use crate::quantity::{self, ParseQuantityError};

/// The smallest chunk size, 64 KiB: a qcow2 cluster (chunks are whole clusters, so that a run of
/// changed clusters maps onto whole chunks).
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
/// The largest chunk size, 64 MiB (a chunk is held in memory several times over while in flight).
pub const MAX_CHUNK_SIZE: u32 = 64 * 1024 * 1024;
/// The chunk size of a repository created without `spec.chunkSize`, 512 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 512 * 1024;

/// Why a `chunkSize` was refused; each message says what a chunk size may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkSizeError {
    /// Not a quantity, or a negative one, or too large for 64 bits.
    Quantity(ParseQuantityError),
    /// A size, but not a power of two within [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
    OutOfRange {
        /// The text given.
        text: String,
        /// Its value in bytes.
        bytes: u64,
    },
}

impl std::fmt::Display for ChunkSizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkSizeError::Quantity(error) => {
                write!(f, "{error}; a chunk size is {}", allowed_chunk_sizes())
            }
            ChunkSizeError::OutOfRange { text, bytes } => {
                write!(f, "{text:?} ({bytes} bytes) is not {}", allowed_chunk_sizes())
            }
        }
    }
}

impl std::error::Error for ChunkSizeError {}

/// What a chunk size may be, for messages: `a power of two from 64Ki to 64Mi (64Ki, 128Ki, ...)`.
fn allowed_chunk_sizes() -> String {
    format!(
        "a power of two from {} to {} ({}, {}, {}, ... {})",
        quantity::format_bytes(u64::from(MIN_CHUNK_SIZE)),
        quantity::format_bytes(u64::from(MAX_CHUNK_SIZE)),
        quantity::format_bytes(u64::from(MIN_CHUNK_SIZE)),
        quantity::format_bytes(u64::from(MIN_CHUNK_SIZE) * 2),
        quantity::format_bytes(u64::from(MIN_CHUNK_SIZE) * 4),
        quantity::format_bytes(u64::from(MAX_CHUNK_SIZE)),
    )
}

/// Reads a chunk size given as a Kubernetes quantity (`4Mi`, `524288`, `1Mi`): the number of bytes
/// when it is a power of two within the engine's bounds.
pub fn parse_chunk_size(text: &str) -> Result<u32, ChunkSizeError> {
    let bytes = quantity::parse_bytes(text).map_err(ChunkSizeError::Quantity)?;
    let in_range = (u64::from(MIN_CHUNK_SIZE)..=u64::from(MAX_CHUNK_SIZE)).contains(&bytes);
    if !in_range || !bytes.is_power_of_two() {
        return Err(ChunkSizeError::OutOfRange { text: text.to_owned(), bytes });
    }
    Ok(bytes as u32)
}

/// A chunk size as a quantity, the way `status.chunkSize` shows it (`512Ki`, `4Mi`).
pub fn format_chunk_size(chunk_size: u32) -> String {
    quantity::format_bytes(u64::from(chunk_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_from_a_cluster_to_64_mebibytes_are_chunk_sizes() {
        assert_eq!(parse_chunk_size("64Ki"), Ok(65536));
        assert_eq!(parse_chunk_size("512Ki"), Ok(DEFAULT_CHUNK_SIZE));
        assert_eq!(parse_chunk_size("4Mi"), Ok(4 << 20));
        assert_eq!(parse_chunk_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_chunk_size("0.5Mi"), Ok(512 << 10));
        assert_eq!(parse_chunk_size("64Mi"), Ok(MAX_CHUNK_SIZE));
        assert_eq!(format_chunk_size(DEFAULT_CHUNK_SIZE), "512Ki");
        assert_eq!(format_chunk_size(4 << 20), "4Mi");
    }

    #[test]
    fn other_sizes_are_refused_naming_the_allowed_ones() {
        for (text, bytes) in
            [("32Ki", 32768), ("3Mi", 3 << 20), ("4M", 4_000_000), ("128Mi", 128 << 20), ("0", 0)]
        {
            let error = parse_chunk_size(text).unwrap_err();
            assert_eq!(error, ChunkSizeError::OutOfRange { text: text.into(), bytes });
            assert_eq!(
                error.to_string(),
                format!(
                    "{text:?} ({bytes} bytes) is not a power of two from 64Ki to 64Mi (64Ki, 128Ki, 256Ki, ... 64Mi)"
                )
            );
        }
        for text in ["4 Mi", "4MiB", "", "big"] {
            let error = parse_chunk_size(text).unwrap_err();
            assert!(error.to_string().starts_with(quantity::FORMAT_MESSAGE), "{text}: {error}");
        }
        assert!(parse_chunk_size("-4Mi").unwrap_err().to_string().contains("is negative"));
    }
}
