//! Go `time.Duration` strings, as Kubernetes `metav1.Duration` carries them (`"5m0s"`, `"300ms"`, `"0s"`).

use std::time::Duration;

/// A duration string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDurationError {
    /// The text that was given.
    pub input: String,
}

impl std::fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "time: invalid duration {:?} (expected a Go duration such as \"5m0s\", \"30s\" or \"1h\")",
            self.input
        )
    }
}

impl std::error::Error for ParseDurationError {}

/// Parses a Go duration (`"1h2m3.5s"`, `"300ms"`, `"0s"`, `"0"`). Negative durations are refused.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let err = || ParseDurationError { input: input.to_owned() };
    if input.is_empty() || input.starts_with('-') {
        return Err(err());
    }
    let parsed: kube_core::Duration = input.trim_start_matches('+').parse().map_err(|_| err())?;
    Ok(parsed.into())
}

/// Parses a `failureDeadline`: a Go duration (`"5m0s"`, `"30s"`), or a bare number of seconds
/// (`20`, `"20"`, `"1.5"`), as vmsnap's documentation promises and users write it. Negative values
/// and anything else are refused.
pub fn parse_deadline(input: &str) -> Result<Duration, ParseDurationError> {
    let text = input.trim();
    if !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.matches('.').count() <= 1
    {
        let secs: f64 = text.parse().map_err(|_| ParseDurationError { input: input.to_owned() })?;
        if secs.is_finite() && secs <= u32::MAX as f64 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(ParseDurationError { input: input.to_owned() });
    }
    parse(text)
}

/// Formats a duration the way Go's `time.Duration.String()` does: `5m0s`, `1h0m0s`, `1.5s`, `300ms`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs_nanos = nanos - u128::from(total_secs - total_secs % 60) * 1_000_000_000;
    let secs = trim_fraction(secs_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(300)), "5m0s");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(300)), "300ms");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("5m0s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn a_deadline_is_a_go_duration_or_a_number_of_seconds() {
        assert_eq!(parse_deadline("20").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_deadline("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_deadline("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_deadline("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_deadline("-20").is_err());
        assert!(parse_deadline("-1m").is_err());
        assert!(parse_deadline("soon").is_err());
        assert!(parse_deadline("1.2.3").is_err());
        assert!(parse_deadline("").is_err());
        assert!(parse_deadline("99999999999999999999").is_err());
    }

    #[test]
    fn refuses_garbage_and_negative_durations() {
        assert!(parse("five minutes").is_err());
        assert!(parse("").is_err());
        assert!(parse("-5m").is_err());
        assert!(parse("10").is_err());
    }
}
