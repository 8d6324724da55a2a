//! Fixed intervals (`--every 15m`, `1h30m`, `1d`): whole minutes, at least one.

use std::fmt;
use std::str::FromStr;

use jiff::SignedDuration;

/// Why an interval was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    /// Not a sequence of `<number><unit>`.
    #[error("interval {0:?} is not a duration such as 15m, 1h, 1h30m or 1d (units: d, h, m, s)")]
    Syntax(String),
    /// Shorter than a minute, or not whole minutes.
    #[error("interval {0:?} must be a whole number of minutes, at least 1m")]
    NotWholeMinutes(String),
    /// Too long to compute with.
    #[error("interval {0:?} is too long")]
    TooLong(String),
}

/// A fixed interval between runs, in whole minutes.
///
/// Runs of an interval schedule are the instants that are whole multiples of the interval since
/// the Unix epoch (1970-01-01T00:00:00Z): `15m` runs at :00, :15, :30 and :45 of every hour, `1h`
/// at the top of every UTC hour, `1d` at 00:00 UTC. Elapsed time, not wall-clock time: daylight
/// saving and the schedule's time zone do not move them. Use a cron expression for wall-clock
/// times in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    minutes: u32,
}

/// The longest interval accepted: a year of minutes is plenty for a snapshot schedule.
const MAX_MINUTES: u64 = 366 * 24 * 60;

impl Interval {
    /// An interval of `minutes` (at least 1, at most a year).
    pub fn from_minutes(minutes: u32) -> Result<Self, IntervalError> {
        if minutes == 0 {
            return Err(IntervalError::NotWholeMinutes(format!("{minutes}m")));
        }
        if u64::from(minutes) > MAX_MINUTES {
            return Err(IntervalError::TooLong(format!("{minutes}m")));
        }
        Ok(Interval { minutes })
    }

    /// The interval in minutes.
    pub fn minutes(self) -> u32 {
        self.minutes
    }

    /// The interval as a duration.
    pub fn duration(self) -> SignedDuration {
        SignedDuration::from_mins(i64::from(self.minutes))
    }
}

impl FromStr for Interval {
    type Err = IntervalError;

    /// Parses `<number><unit>...` with units `d` (24 h), `h`, `m`, `s` (Go's `1h0m0s` included).
    fn from_str(text: &str) -> Result<Self, IntervalError> {
        let syntax = || IntervalError::Syntax(text.to_string());
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(syntax());
        }
        let mut seconds: u64 = 0;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(syntax)?;
            if digits == 0 {
                return Err(syntax());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| IntervalError::TooLong(text.into()))?;
            let unit = rest[digits..].chars().next().ok_or_else(syntax)?;
            let scale = match unit {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(syntax()),
            };
            let part = number.checked_mul(scale).ok_or_else(|| IntervalError::TooLong(text.into()))?;
            seconds = seconds.checked_add(part).ok_or_else(|| IntervalError::TooLong(text.into()))?;
            rest = &rest[digits + unit.len_utf8()..];
        }
        if seconds == 0 || !seconds.is_multiple_of(60) {
            return Err(IntervalError::NotWholeMinutes(text.to_string()));
        }
        if seconds / 60 > MAX_MINUTES {
            return Err(IntervalError::TooLong(text.to_string()));
        }
        Ok(Interval { minutes: (seconds / 60) as u32 })
    }
}

impl fmt::Display for Interval {
    /// The shortest form: `1d`, `1h30m`, `15m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, hours, minutes) = (self.minutes / 1440, self.minutes / 60 % 24, self.minutes % 60);
        if days > 0 {
            write!(f, "{days}d")?;
        }
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, minutes, shown) in [
            ("1m", 1, "1m"),
            ("15m", 15, "15m"),
            ("1h", 60, "1h"),
            ("1h30m", 90, "1h30m"),
            ("90m", 90, "1h30m"),
            ("1d", 1440, "1d"),
            ("1h0m0s", 60, "1h"),
            ("120s", 2, "2m"),
        ] {
            let interval: Interval = text.parse().unwrap();
            assert_eq!(interval.minutes(), minutes, "{text}");
            assert_eq!(interval.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_whole_minutes() {
        let err = |t: &str| t.parse::<Interval>().unwrap_err();
        assert_eq!(err("30s"), IntervalError::NotWholeMinutes("30s".into()));
        assert_eq!(err("90s"), IntervalError::NotWholeMinutes("90s".into()));
        assert_eq!(err("0m"), IntervalError::NotWholeMinutes("0m".into()));
        assert_eq!(err(""), IntervalError::Syntax("".into()));
        assert_eq!(err("1x"), IntervalError::Syntax("1x".into()));
        assert_eq!(err("h"), IntervalError::Syntax("h".into()));
        assert_eq!(err("10"), IntervalError::Syntax("10".into()));
        assert_eq!(err("-5m"), IntervalError::Syntax("-5m".into()));
        assert_eq!(err("400d"), IntervalError::TooLong("400d".into()));
        assert!(err("1.5h").to_string().contains("such as 15m"));
    }
}
