//! Kubernetes resource quantities (`1Gi`, `512Mi`, `1G`, `1.5Gi`, `500m`, `1e9`, `1073741824`): the
//! one parser of the project, with apimachinery's grammar (`resource.ParseQuantity`) and exact
//! arithmetic, so that the API server, the node agent, the storage driver and the CLI agree on what
//! a quantity is and what it is worth.
//!
//! The grammar: an optional sign, digits with at most one decimal point (at least one digit), then
//! a binary suffix (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`), a decimal suffix (`n` `u` `m` `k` `M` `G` `T` `P`
//! `E`), a decimal exponent (`e3`, `E-2`), or nothing.

/// What Go's `resource.ParseQuantity` says of text that is not a quantity.
pub const FORMAT_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A quantity could not be read, or not as the non-negative whole number asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseQuantityError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub kind: QuantityErrorKind,
}

/// Why a quantity was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityErrorKind {
    /// Not a quantity at all (apimachinery's format error).
    Format,
    /// A quantity, but negative where a size or a count is needed.
    Negative,
    /// A quantity too large for 64 bits.
    TooLarge,
}

impl std::fmt::Display for ParseQuantityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            QuantityErrorKind::Format => write!(f, "{FORMAT_MESSAGE}, got {:?}", self.text),
            QuantityErrorKind::Negative => {
                write!(f, "{:?} is negative; a size or a count must not be", self.text)
            }
            QuantityErrorKind::TooLarge => write!(f, "{:?} is too large", self.text),
        }
    }
}

impl std::error::Error for ParseQuantityError {}

/// A parsed quantity, exactly: `mantissa * 10^decimal_exponent * 2^binary_exponent`, negated when
/// `negative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    decimal_exponent: i32,
    binary_exponent: u32,
}

/// Parses `text` with apimachinery's grammar.
pub fn parse(text: &str) -> Result<Quantity, ParseQuantityError> {
    let error = |kind| ParseQuantityError { text: text.to_owned(), kind };
    let format = || error(QuantityErrorKind::Format);
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(format());
    }
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or_else(|| error(QuantityErrorKind::TooLarge))?;
    }
    let (suffix_exponent, binary_exponent) = match suffix {
        "" => (0, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E']).ok_or_else(format)?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format());
            }
            let value: i32 = exponent.parse().map_err(|_| error(QuantityErrorKind::TooLarge))?;
            (value, 0)
        }
    };
    let decimal_exponent = suffix_exponent
        .checked_sub(fraction.len() as i32)
        .ok_or_else(|| error(QuantityErrorKind::TooLarge))?;
    Ok(Quantity { negative: negative && mantissa != 0, mantissa, decimal_exponent, binary_exponent })
}

impl Quantity {
    /// The value rounded up to a whole number, for sizes and counts (`1.5` is 2, `500m` is 1).
    pub fn ceil(&self) -> Result<u64, QuantityErrorKind> {
        if self.negative {
            return Err(QuantityErrorKind::Negative);
        }
        let too_large = QuantityErrorKind::TooLarge;
        let scaled = self.mantissa.checked_shl(self.binary_exponent).ok_or(too_large)?;
        if self.binary_exponent > 0 && scaled >> self.binary_exponent != self.mantissa {
            return Err(too_large);
        }
        let value = if self.decimal_exponent >= 0 {
            let power = 10u128.checked_pow(self.decimal_exponent as u32).ok_or(too_large)?;
            scaled.checked_mul(power).ok_or(too_large)?
        } else {
            match 10u128.checked_pow(self.decimal_exponent.unsigned_abs()) {
                Some(power) => scaled.div_ceil(power),
                // Smaller than any power of ten a u128 holds: a fraction of one, or zero.
                None => u128::from(scaled > 0),
            }
        };
        u64::try_from(value).map_err(|_| too_large)
    }

    /// Whether the quantity is negative.
    pub fn is_negative(&self) -> bool {
        self.negative
    }
}

/// Parses a size in bytes (rounded up to a whole byte); a negative size is an error.
pub fn parse_bytes(text: &str) -> Result<u64, ParseQuantityError> {
    parse(text)?.ceil().map_err(|kind| ParseQuantityError { text: text.to_owned(), kind })
}

/// Parses a CPU quantity as whole vCPUs: rounded up, at least one (`500m` is 1, `2` is 2).
pub fn parse_cpus(text: &str) -> Result<u32, ParseQuantityError> {
    let cores = parse(text)?.ceil().map_err(|kind| ParseQuantityError { text: text.to_owned(), kind })?;
    u32::try_from(cores.max(1))
        .map_err(|_| ParseQuantityError { text: text.to_owned(), kind: QuantityErrorKind::TooLarge })
}

/// Formats bytes the way Kubernetes prints them: the largest binary unit that divides exactly
/// (`1Gi`, `1536Mi`), else plain bytes.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [
        ("Ei", 1u64 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Formats bytes for people: `1.5 GiB`, `512 MiB`, `900 B`.
pub fn human_bytes(bytes: u64) -> String {
    let (number, prefix) = binary_scaled(bytes);
    format!("{number} {prefix}B")
}

/// Formats bytes short, for a status column: `1.5Gi`, `512Mi`, `900`.
pub fn short_bytes(bytes: u64) -> String {
    let (number, prefix) = binary_scaled(bytes);
    format!("{number}{prefix}")
}

/// `bytes` in the largest binary unit it reaches, as the number (whole below that unit's 1024,
/// one decimal under 10 unless whole) and the unit's prefix (`""`, `Ki`, ... `Ei`).
fn binary_scaled(bytes: u64) -> (String, &'static str) {
    const PREFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < PREFIXES.len() {
        value /= 1024.0;
        unit += 1;
    }
    let number = if unit == 0 {
        bytes.to_string()
    } else if value >= 10.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    (number, PREFIXES[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_decimal_and_exponent_forms_are_exact() {
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1e9"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1E3"), Ok(1000));
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert_eq!(parse_bytes("+2Ki"), Ok(2048));
        assert_eq!(parse_bytes(".5Ki"), Ok(512));
        assert_eq!(parse_bytes("1528Mi"), Ok(1528 << 20));
        // 0.1 and 0.3 are not exact in binary floating point; here they are.
        assert_eq!(parse_bytes("0.3k"), Ok(300));
        assert_eq!(parse_bytes("1.000000001G"), Ok(1_000_000_001));
        assert_eq!(parse_bytes("8Ei"), Ok(1 << 63));
    }

    #[test]
    fn fractions_round_up_to_whole_units() {
        assert_eq!(parse_bytes("1m"), Ok(1));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1.5"), Ok(2));
        assert_eq!(parse_cpus("500m"), Ok(1));
        assert_eq!(parse_cpus("2"), Ok(2));
        assert_eq!(parse_cpus("2.1"), Ok(3));
        assert_eq!(parse_cpus("0"), Ok(1));
        assert_eq!(parse_bytes("1e-40"), Ok(1));
    }

    #[test]
    fn apimachinery_refuses_what_is_refused_here() {
        for text in
            ["", "lots", "1Zi", "1K", "1ki", "1.2.3", "1e", "1e+", "Gi", ".", "1 Gi", "1Gi ", "--1", "1ee3"]
        {
            let error = parse(text).unwrap_err();
            assert_eq!(error.kind, QuantityErrorKind::Format, "{text:?}");
            assert!(error.to_string().starts_with(FORMAT_MESSAGE), "{error}");
        }
    }

    #[test]
    fn negative_and_huge_sizes_are_refused_with_their_reason() {
        assert_eq!(parse_bytes("-1Gi").unwrap_err().kind, QuantityErrorKind::Negative);
        assert!(parse("-1Gi").unwrap().is_negative());
        assert_eq!(parse_bytes("-0"), Ok(0));
        assert_eq!(parse_bytes("16Ei").unwrap_err().kind, QuantityErrorKind::TooLarge);
        assert_eq!(parse_bytes("1e30").unwrap_err().kind, QuantityErrorKind::TooLarge);
        assert_eq!(parse_cpus("5e9").unwrap_err().kind, QuantityErrorKind::TooLarge);
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(1536 << 20), "1536Mi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(parse_bytes(&format_bytes(17 << 30)), Ok(17 << 30));
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
    }

    #[test]
    fn short_sizes_use_binary_units_with_one_decimal_below_ten() {
        assert_eq!(short_bytes(900), "900");
        assert_eq!(short_bytes(1024), "1Ki");
        assert_eq!(short_bytes(1536), "1.5Ki");
        assert_eq!(short_bytes(512 << 20), "512Mi");
        assert_eq!(short_bytes((12 << 30) / 10), "1.2Gi");
        assert_eq!(short_bytes(15 << 30), "15Gi");
    }
}
