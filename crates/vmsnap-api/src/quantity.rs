//! Kubernetes resource quantities as byte counts: `1Gi`, `512Mi`, `1G`, `1.5Gi`, `1073741824`.

/// A quantity could not be read as a number of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseQuantityError(pub String);

impl std::fmt::Display for ParseQuantityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', got {:?}",
            self.0
        )
    }
}

impl std::error::Error for ParseQuantityError {}

/// Parses a quantity into bytes (rounded up to a whole byte).
pub fn parse_bytes(text: &str) -> Result<u64, ParseQuantityError> {
    let err = || ParseQuantityError(text.to_owned());
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let n: f64 = num.parse().map_err(|_| err())?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return Err(err()),
    };
    Ok((n * mult).ceil() as u64)
}

/// Formats bytes the way Kubernetes prints them: the largest binary unit that divides exactly
/// (`1Gi`, `1536Mi`), else plain bytes.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [("Ti", 1u64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Formats bytes for people: `1.5 GiB`, `512 MiB`, `900 B`.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut i = 0;
    while value >= 1024.0 && i + 1 < units.len() {
        value /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else if value >= 10.0 {
        format!("{value:.0} {}", units[i])
    } else {
        format!("{value:.1} {}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("1Zi").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(1536 << 20), "1536Mi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(parse_bytes(&format_bytes(17 << 30)), Ok(17 << 30));
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
