//! Kubernetes resource quantities (`1Gi`, `500M`, `1073741824`, `1.5Gi`) as byte counts, for the
//! size of a snapshot (the sum of its VolumeSnapshots' `restoreSize`).

/// Parses a quantity into bytes; `None` for text that is not a quantity.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some((number * factor).ceil() as u64)
}

/// Bytes in binary units: `0`, `512`, `1Ki`, `1Gi`, `1.5Gi`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut unit = None;
    let mut value = bytes as f64;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        None => bytes.to_string(),
        Some(u) if value.fract() == 0.0 => format!("{value}{u}"),
        Some(u) => format!("{value:.1}{u}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_decimal_and_plain_quantities_parse_to_bytes() {
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_bytes("1073741824"), Some(1 << 30));
        assert_eq!(parse_bytes("1e3"), Some(1000));
        assert_eq!(parse_bytes("12Qi"), None);
        assert_eq!(parse_bytes(""), None);
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(512), "512");
        assert_eq!(format_bytes(2 << 30), "2Gi");
        assert_eq!(format_bytes(3 << 29), "1.5Gi");
    }
}
