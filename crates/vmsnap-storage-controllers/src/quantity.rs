//! Kubernetes resource quantities (`1Gi`, `512Mi`, `1G`, `1.5Gi`, `1e9`, plain
//! bytes) as byte counts, and byte counts back as quantities.

use std::fmt;

/// A quantity that is not a valid size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid storage quantity: {reason}; write it like 1Gi, 512Mi, 10G or 1073741824")]
pub struct InvalidQuantity {
    /// The rejected text.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a quantity into bytes, rounding any fraction of a byte up.
pub fn parse_bytes(text: &str) -> Result<u64, InvalidQuantity> {
    let fail = |reason| Err(InvalidQuantity { value: text.to_owned(), reason });
    let trimmed = text.trim();
    let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if unsigned.starts_with('-') {
        return fail("it is negative");
    }
    let number_end = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return fail("it has no digits");
    }
    if fraction.contains('.') {
        return fail("it has more than one decimal point");
    }
    // The value is mantissa / 10^scale * multiplier (* 10^exponent).
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = match mantissa.checked_mul(10).and_then(|m| m.checked_add(u128::from(digit - b'0'))) {
            Some(m) => m,
            None => return fail("it is too large"),
        };
    }
    let mut scale = fraction.len() as u32;
    let (multiplier, exponent): (u128, i32) = match suffix {
        "" => (1, 0),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        _ => match suffix.strip_prefix(['e', 'E']).map(str::parse::<i32>) {
            Some(Ok(exponent)) if (-30..=30).contains(&exponent) => (1, exponent),
            _ => {
                return fail(
                    "its suffix is not one of Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or an exponent",
                );
            }
        },
    };
    let mut numerator = match mantissa.checked_mul(multiplier) {
        Some(n) => n,
        None => return fail("it is too large"),
    };
    if exponent >= 0 {
        for _ in 0..exponent {
            numerator = match numerator.checked_mul(10) {
                Some(n) => n,
                None => return fail("it is too large"),
            };
        }
    } else {
        scale += exponent.unsigned_abs();
    }
    let denominator = match 10u128.checked_pow(scale) {
        Some(d) => d,
        None => return fail("it has too many decimal places"),
    };
    u64::try_from(numerator.div_ceil(denominator)).or_else(|_| fail("it is too large"))
}

/// A byte count as a quantity: the largest binary suffix that divides it
/// exactly (`1Gi`, `1536Mi`), or plain bytes.
pub fn format_bytes(bytes: u64) -> String {
    Bytes(bytes).to_string()
}

struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SUFFIXES: [(&str, u32); 6] =
            [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];
        let bytes = self.0;
        if bytes != 0 {
            for (suffix, shift) in SUFFIXES {
                if bytes.trailing_zeros() >= shift {
                    return write!(f, "{}{suffix}", bytes >> shift);
                }
            }
        }
        write!(f, "{bytes}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes_parse_to_bytes() {
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("10k"), Ok(10_000));
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert_eq!(parse_bytes("+2Ki"), Ok(2048));
        assert_eq!(parse_bytes(" 3Ti "), Ok(3 << 40));
    }

    #[test]
    fn fractions_and_exponents_round_up_to_whole_bytes() {
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("0.5"), Ok(1));
        assert_eq!(parse_bytes("1e3"), Ok(1000));
        assert_eq!(parse_bytes("1E9"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1500m"), Ok(2));
        assert_eq!(parse_bytes(".5Ki"), Ok(512));
    }

    #[test]
    fn malformed_quantities_are_refused_with_the_value() {
        for bad in ["", "Gi", "-1Gi", "1.2.3", "1Xi", "1gi", "99999999999999999999Ei", "1e99"] {
            let error = parse_bytes(bad).unwrap_err();
            assert_eq!(error.value, bad);
            assert!(error.to_string().contains("1Gi"), "{error}");
        }
    }

    #[test]
    fn byte_counts_format_with_the_largest_exact_binary_suffix() {
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(3 << 29), "1536Mi");
        assert_eq!(format_bytes(16 << 20), "16Mi");
        assert_eq!(format_bytes(512), "512");
        assert_eq!(format_bytes(1536), "1536");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(2 << 40), "2Ti");
    }

    #[test]
    fn formatting_then_parsing_gives_the_same_bytes() {
        for bytes in [0, 1, 512, 4096, 1 << 20, (1 << 30) + 512, 5 << 40, u64::MAX] {
            assert_eq!(parse_bytes(&format_bytes(bytes)), Ok(bytes), "{bytes}");
        }
    }
}
