//! CPU quantities (`2`, `500m`, `1.5`) as whole vCPUs.
//!
//! Byte quantities are parsed by `vmsnap_api::quantity`; CPU quantities need
//! the decimal sub-unit suffixes (`m`, `u`, `n`) and exponents it does not
//! take. The grammar is the apimachinery one: a decimal number followed by a
//! binary suffix (`Ki` .. `Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M` ..
//! `E`) or an exponent (`e3`, `E-2`).

/// A quantity string that is not a valid Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid quantity; write a number with an optional suffix, e.g. 256Mi, 1Gi or 500m")]
pub struct ParseQuantityError {
    /// The text given.
    pub value: String,
}

/// Parses `text` into its value as a float (bytes for memory, cores for CPU).
pub fn parse(text: &str) -> Result<f64, ParseQuantityError> {
    let error = || ParseQuantityError { value: text.to_owned() };
    let text = text.trim();
    let split = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number == "+" || number == "-" || number == "." {
        return Err(error());
    }
    let value: f64 = number.parse().map_err(|_| error())?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| error())?;
            10f64.powi(power)
        }
        _ => return Err(error()),
    };
    Ok(value * multiplier)
}

/// A CPU quantity as a whole number of vCPUs, rounded up, at least 1.
pub fn cpus(text: &str) -> Result<u32, ParseQuantityError> {
    let value = parse(text)?;
    if value < 0.0 || !value.is_finite() {
        return Err(ParseQuantityError { value: text.to_owned() });
    }
    Ok((value.ceil() as u32).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_decimal_and_exponent_suffixes_are_understood() {
        assert_eq!(parse("256Mi").unwrap(), (256u64 << 20) as f64);
        assert_eq!(parse("1.5Gi").unwrap(), (3u64 << 29) as f64);
        assert_eq!(parse("1G").unwrap(), 1e9);
        assert_eq!(parse("129e6").unwrap(), 129e6);
        assert_eq!(parse("250m").unwrap(), 0.25);
    }

    #[test]
    fn cpu_quantities_round_up_to_whole_vcpus() {
        assert_eq!(cpus("500m").unwrap(), 1);
        assert_eq!(cpus("2").unwrap(), 2);
        assert_eq!(cpus("1500m").unwrap(), 2);
        assert_eq!(cpus("0").unwrap(), 1);
    }

    #[test]
    fn malformed_quantities_are_refused_with_the_value() {
        for bad in ["", "Mi", "12XB", "1.2.3", "-1", "e3"] {
            let error = cpus(bad).unwrap_err();
            assert_eq!(error.value, bad);
        }
    }
}
