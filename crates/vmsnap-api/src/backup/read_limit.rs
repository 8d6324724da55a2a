//! A repository's read limit (`spec.readLimit`): how fast backups to it read a VM's disks,
//! sustained, and the one reading of the field that admission, the backup controller and the CLI
//! share.
//!
//! `vmsnap-backup` depends on no workspace crate, so it keeps its own default
//! (`ReadLimit::DEFAULT`); `vmsnap-backup-controllers`, which reads both, fails to compile if they
//! ever differ.

use crate::quantity::{self, ParseQuantityError};

/// The read limit of a repository without `spec.readLimit`: 256 MiB per second.
pub const DEFAULT_READ_LIMIT: u64 = 256 << 20;
/// The lowest read limit accepted, 1 MiB per second (a 100 GiB disk then takes over a day).
pub const MIN_READ_LIMIT: u64 = 1 << 20;

/// Why a `readLimit` was refused; each message says what a read limit may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadLimitError {
    /// Not a quantity, or a negative one, or too large for 64 bits.
    Quantity(ParseQuantityError),
    /// A quantity below [`MIN_READ_LIMIT`].
    TooLow {
        /// The text given.
        text: String,
        /// Its value in bytes per second.
        bytes: u64,
    },
}

impl std::fmt::Display for ReadLimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadLimitError::Quantity(error) => write!(f, "{error}; {}", allowed_read_limits()),
            ReadLimitError::TooLow { text, bytes } => {
                write!(f, "{text:?} ({bytes} bytes per second) is too low; {}", allowed_read_limits())
            }
        }
    }
}

impl std::error::Error for ReadLimitError {}

/// What a read limit may be, for messages.
fn allowed_read_limits() -> String {
    format!(
        "a read limit is bytes per second as a quantity, at least {} (the default is {})",
        quantity::format_bytes(MIN_READ_LIMIT),
        quantity::format_bytes(DEFAULT_READ_LIMIT)
    )
}

/// Reads a read limit given as a Kubernetes quantity of bytes per second (`256Mi`, `1Gi`,
/// `100M`).
pub fn parse_read_limit(text: &str) -> Result<u64, ReadLimitError> {
    let bytes = quantity::parse_bytes(text).map_err(ReadLimitError::Quantity)?;
    if bytes < MIN_READ_LIMIT {
        return Err(ReadLimitError::TooLow { text: text.to_owned(), bytes });
    }
    Ok(bytes)
}

/// The read limit of a repository whose `spec.readLimit` is `field`: its value, or the default.
pub fn read_limit_or_default(field: Option<&str>) -> Result<u64, ReadLimitError> {
    field.map_or(Ok(DEFAULT_READ_LIMIT), parse_read_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_limit_is_a_quantity_of_at_least_a_mebibyte_per_second() {
        assert_eq!(parse_read_limit("256Mi"), Ok(DEFAULT_READ_LIMIT));
        assert_eq!(parse_read_limit("1Gi"), Ok(1 << 30));
        assert_eq!(parse_read_limit("100M"), Ok(100_000_000));
        assert_eq!(parse_read_limit("1Mi"), Ok(MIN_READ_LIMIT));
        assert_eq!(read_limit_or_default(None), Ok(DEFAULT_READ_LIMIT));
        assert_eq!(read_limit_or_default(Some("64Mi")), Ok(64 << 20));
    }

    #[test]
    fn other_values_are_refused_saying_what_a_read_limit_is() {
        let error = parse_read_limit("512Ki").unwrap_err();
        assert_eq!(error, ReadLimitError::TooLow { text: "512Ki".into(), bytes: 512 << 10 });
        assert_eq!(
            error.to_string(),
            "\"512Ki\" (524288 bytes per second) is too low; a read limit is bytes per second as a quantity, at least 1Mi (the default is 256Mi)"
        );
        assert!(parse_read_limit("0").is_err());
        for text in ["256 Mi", "256MiB/s", "", "fast"] {
            let error = parse_read_limit(text).unwrap_err();
            assert!(error.to_string().starts_with(quantity::FORMAT_MESSAGE), "{text}: {error}");
            assert!(error.to_string().ends_with("(the default is 256Mi)"), "{text}: {error}");
        }
        assert!(parse_read_limit("-1Mi").unwrap_err().to_string().contains("is negative"));
    }
}
