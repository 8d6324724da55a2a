//! Five-field cron expressions (minute granularity), parsed and matched against civil (wall-clock)
//! times. Time zones and daylight saving are not handled here but in [`crate::Schedule`], which
//! walks the zone's offset periods and asks this module for matching wall-clock minutes.
//!
//! Syntax (Vixie cron, as in `crontab(5)` and Kubernetes CronJobs):
//!
//! | field        | values                     |
//! |--------------|----------------------------|
//! | minute       | 0-59                       |
//! | hour         | 0-23                       |
//! | day of month | 1-31                       |
//! | month        | 1-12 or JAN-DEC            |
//! | day of week  | 0-7 or SUN-SAT (0, 7: Sun) |
//!
//! Each field is a comma-separated list of `*`, `N`, `N-M`, each optionally followed by `/STEP`;
//! `N/STEP` means `N-MAX/STEP` (as robfig/cron, which Kubernetes uses, reads it). `?` is `*` in the
//! day fields. Names are case-insensitive and may be range ends (`MON-FRI`). Macros: `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
//!
//! Day matching follows Vixie cron: when the day-of-month field and the day-of-week field both
//! restrict (neither starts with `*`), a day matches if EITHER matches (`0 0 1 * MON` runs on the
//! 1st and on every Monday); otherwise both must match.

use std::fmt;

use jiff::civil::{Date, DateTime, Time};
use jiff::{SignedDuration, ToSpan};

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not five fields.
    #[error(
        "cron expression {expr:?} has {found} fields; expected 5 (minute hour day-of-month month day-of-week) or a macro such as @daily"
    )]
    FieldCount {
        /// The expression.
        expr: String,
        /// How many whitespace-separated fields it has.
        found: usize,
    },
    /// An `@macro` that is not known.
    #[error(
        "unknown cron macro {0:?}; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every DURATION"
    )]
    UnknownMacro(String),
    /// A `TZ=` or `CRON_TZ=` prefix: the zone is a separate setting.
    #[error(
        "cron expression {0:?} names a time zone; give the zone separately (timeZone), not as TZ= in the expression"
    )]
    TimeZoneInExpression(String),
    /// A field item that does not parse.
    #[error("cron {field} field: {problem}")]
    Field {
        /// Which field (`minute`, `hour`, ...).
        field: &'static str,
        /// What is wrong, naming the offending text.
        problem: String,
    },
    /// The day-of-month and month fields never meet (`0 0 30 2 *`).
    #[error("cron expression {0:?} never runs: no month in it has those days of the month")]
    NeverRuns(String),
}

/// One of the five fields: its name, bounds and names for values.
struct FieldSpec {
    name: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
    /// The first value that `names[0]` stands for.
    names_start: u8,
}

const MINUTE: FieldSpec = FieldSpec { name: "minute", min: 0, max: 59, names: &[], names_start: 0 };
const HOUR: FieldSpec = FieldSpec { name: "hour", min: 0, max: 23, names: &[], names_start: 0 };
const DAY_OF_MONTH: FieldSpec =
    FieldSpec { name: "day-of-month", min: 1, max: 31, names: &[], names_start: 0 };
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    names_start: 1,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    names_start: 0,
};

/// A parsed field: a bit per allowed value, and whether it was written starting with `*` (which
/// Vixie cron uses both for day matching and for its daylight-saving rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(self, value: u8) -> bool {
        self.bits & (1u64 << value) != 0
    }

    /// The smallest allowed value >= `from`, if any.
    fn first_from(self, from: u8) -> Option<u8> {
        if from >= 64 {
            return None;
        }
        let rest = self.bits >> from;
        (rest != 0).then(|| from + rest.trailing_zeros() as u8)
    }
}

/// A parsed five-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    source: String,
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    /// Sunday is bit 0 (a 7 in the expression is folded onto 0).
    day_of_week: Field,
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl CronExpr {
    /// Parses a five-field expression or a macro (not `@every`, which is an interval and handled
    /// by [`crate::Schedule::parse`]).
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let trimmed = expr.trim();
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            return Err(CronError::TimeZoneInExpression(expr.to_string()));
        }
        let expanded = if let Some(name) = trimmed.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(CronError::UnknownMacro(trimmed.to_string())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount { expr: expr.to_string(), found: fields.len() });
        }
        let mut day_of_week = parse_field(fields[4], &DAY_OF_WEEK, true)?;
        if day_of_week.has(7) {
            day_of_week.bits = (day_of_week.bits & !(1 << 7)) | 1;
        }
        let parsed = CronExpr {
            source: trimmed.to_string(),
            minute: parse_field(fields[0], &MINUTE, false)?,
            hour: parse_field(fields[1], &HOUR, false)?,
            day_of_month: parse_field(fields[2], &DAY_OF_MONTH, true)?,
            month: parse_field(fields[3], &MONTH, false)?,
            day_of_week,
        };
        if !parsed.can_ever_run() {
            return Err(CronError::NeverRuns(expr.to_string()));
        }
        Ok(parsed)
    }

    /// The expression as written (macros as written too).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Vixie cron's "fixed-time job": neither the minute nor the hour field starts with `*`.
    /// Daylight saving treats these specially (see [`crate::Schedule`]): a fixed time that falls
    /// in a skipped hour runs when the clock jumps, and one in a repeated hour runs once.
    pub fn is_fixed_time(&self) -> bool {
        !self.minute.star && !self.hour.star
    }

    /// Whether the wall-clock minute `dt` (seconds ignored) matches.
    pub fn matches(&self, dt: DateTime) -> bool {
        self.minute.has(dt.minute() as u8) && self.hour.has(dt.hour() as u8) && self.day_matches(dt.date())
    }

    fn day_matches(&self, date: Date) -> bool {
        if !self.month.has(date.month() as u8) {
            return false;
        }
        let dom = self.day_of_month.has(date.day() as u8);
        let dow = self.day_of_week.has(date.weekday().to_sunday_zero_offset() as u8);
        if self.day_of_month.star || self.day_of_week.star { dom && dow } else { dom || dow }
    }

    /// Whether some day of some year matches: only the day-of-month field alone can make that
    /// impossible (`30 2`, `31 4,6,9,11`); a restricted day-of-week field always meets a day.
    fn can_ever_run(&self) -> bool {
        if !self.day_of_week.star && !self.day_of_month.star {
            return true;
        }
        if !self.day_of_week.star && self.day_of_week.bits == 0 {
            return false;
        }
        // Longest each month can be (February: leap years).
        const LONGEST: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12u8)
            .any(|m| self.month.has(m) && (1..=LONGEST[m as usize - 1]).any(|d| self.day_of_month.has(d)))
    }

    /// The first matching wall-clock minute at or after `from` (rounded up to a whole minute) and
    /// before `until` (if given). Looks at most about nine years ahead, enough for a February 29
    /// across a century year that is not a leap year (2096 to 2104); `None` past that.
    pub fn next_match(&self, from: DateTime, until: Option<DateTime>) -> Option<DateTime> {
        let from = ceil_to_minute(from)?;
        let last_day = from.date().checked_add((366 * 9).days()).ok()?;
        let mut date = from.date();
        let mut start = from.time();
        loop {
            if let Some(until) = until
                && date > until.date()
            {
                return None;
            }
            if date > last_day {
                return None;
            }
            if self.day_matches(date)
                && let Some(time) = self.first_time_from(start)
            {
                let found = date.to_datetime(time);
                return match until {
                    Some(until) if found >= until => None,
                    _ => Some(found),
                };
            }
            date = date.tomorrow().ok()?;
            start = Time::midnight();
        }
    }

    /// The first matching time of day at or after `start` (whole minutes), if any that day.
    fn first_time_from(&self, start: Time) -> Option<Time> {
        let mut hour = self.hour.first_from(start.hour() as u8)?;
        let mut minute_from = if hour == start.hour() as u8 { start.minute() as u8 } else { 0 };
        loop {
            if let Some(minute) = self.minute.first_from(minute_from)
                && minute <= 59
            {
                return Time::new(hour as i8, minute as i8, 0, 0).ok();
            }
            hour = self.hour.first_from(hour + 1).filter(|h| *h <= 23)?;
            minute_from = 0;
        }
    }
}

/// `dt` if it is a whole minute, else the next whole minute.
pub(crate) fn ceil_to_minute(dt: DateTime) -> Option<DateTime> {
    let floor = dt.with().second(0).subsec_nanosecond(0).build().ok()?;
    if floor == dt { Some(floor) } else { floor.checked_add(SignedDuration::from_mins(1)).ok() }
}

fn parse_field(text: &str, spec: &FieldSpec, question_mark_is_star: bool) -> Result<Field, CronError> {
    let problem = |problem: String| CronError::Field { field: spec.name, problem };
    let mut bits = 0u64;
    let star = text.starts_with('*') || (question_mark_is_star && text == "?");
    for item in text.split(',') {
        if item.is_empty() {
            return Err(problem(format!("empty list item in {text:?}")));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u8 = step
                    .parse()
                    .map_err(|_| problem(format!("step {step:?} in {item:?} is not a positive number")))?;
                if step == 0 {
                    return Err(problem(format!("step in {item:?} must be at least 1")));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" || (question_mark_is_star && range == "?") {
            (spec.min, spec.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (parse_value(low, spec)?, parse_value(high, spec)?);
            if low > high {
                return Err(problem(format!(
                    "range {range:?} runs backwards ({low} > {high}); wrap-around ranges are not supported, use a list"
                )));
            }
            (low, high)
        } else {
            let value = parse_value(range, spec)?;
            // `N/STEP` is `N-MAX/STEP`.
            (value, if step.is_some() { spec.max } else { value })
        };
        let step = step.unwrap_or(1);
        let mut value = low;
        while value <= high {
            bits |= 1u64 << value;
            match value.checked_add(step) {
                Some(next) => value = next,
                None => break,
            }
        }
    }
    Ok(Field { bits, star })
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u8, CronError> {
    let problem = |problem: String| CronError::Field { field: spec.name, problem };
    let value = if let Some(index) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        spec.names_start + index as u8
    } else {
        text.parse::<u8>().map_err(|_| {
            let names = if spec.names.is_empty() {
                String::new()
            } else {
                format!(" or a name ({})", spec.names.join(", "))
            };
            problem(format!("{text:?} is not a number{names}"))
        })?
    };
    if value < spec.min || value > spec.max {
        return Err(problem(format!("{value} is out of range {}-{}", spec.min, spec.max)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn next(expr: &str, from: DateTime) -> DateTime {
        CronExpr::parse(expr).unwrap().next_match(from, None).unwrap()
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let from = date(2024, 1, 1).at(0, 0, 0, 0); // a Monday
        assert_eq!(next("*/15 * * * *", date(2024, 1, 1).at(0, 1, 0, 0)), date(2024, 1, 1).at(0, 15, 0, 0));
        assert_eq!(
            next("5,10-12 * * * *", date(2024, 1, 1).at(0, 6, 0, 0)),
            date(2024, 1, 1).at(0, 10, 0, 0)
        );
        assert_eq!(next("0 9-17/4 * * *", from), date(2024, 1, 1).at(9, 0, 0, 0));
        assert_eq!(next("0 9-17/4 * * *", date(2024, 1, 1).at(9, 0, 1, 0)), date(2024, 1, 1).at(13, 0, 0, 0));
        assert_eq!(next("30 22/2 * * *", from), date(2024, 1, 1).at(22, 30, 0, 0));
        assert_eq!(next("0 0 * * FRI-sat", from), date(2024, 1, 5).at(0, 0, 0, 0));
        assert_eq!(next("0 0 * * sat,SUN", from), date(2024, 1, 6).at(0, 0, 0, 0));
        assert_eq!(next("0 0 * * 7", from), date(2024, 1, 7).at(0, 0, 0, 0));
        assert_eq!(next("0 0 1 feb,Jul *", from), date(2024, 2, 1).at(0, 0, 0, 0));
        assert_eq!(next("0 0 29 2 *", from), date(2024, 2, 29).at(0, 0, 0, 0));
        assert_eq!(next("0 0 29 2 *", date(2024, 3, 1).at(0, 0, 0, 0)), date(2028, 2, 29).at(0, 0, 0, 0));
        // 2100 is not a leap year: the next 29 February after 2096 is in 2104.
        assert_eq!(next("0 0 29 2 *", date(2096, 3, 1).at(0, 0, 0, 0)), date(2104, 2, 29).at(0, 0, 0, 0));
        // Seconds round up to the next minute.
        assert_eq!(next("* * * * *", date(2024, 1, 1).at(0, 0, 0, 1)), date(2024, 1, 1).at(0, 1, 0, 0));
    }

    #[test]
    fn macros() {
        let from = date(2024, 5, 15).at(10, 30, 0, 0); // a Wednesday
        assert_eq!(next("@hourly", from), date(2024, 5, 15).at(11, 0, 0, 0));
        assert_eq!(next("@daily", from), date(2024, 5, 16).at(0, 0, 0, 0));
        assert_eq!(next("@midnight", from), date(2024, 5, 16).at(0, 0, 0, 0));
        assert_eq!(next("@weekly", from), date(2024, 5, 19).at(0, 0, 0, 0));
        assert_eq!(next("@monthly", from), date(2024, 6, 1).at(0, 0, 0, 0));
        assert_eq!(next("@yearly", from), date(2025, 1, 1).at(0, 0, 0, 0));
        assert_eq!(next("@annually", from), date(2025, 1, 1).at(0, 0, 0, 0));
    }

    #[test]
    fn day_of_month_or_day_of_week_as_vixie_cron() {
        // Both restricted: either matches. 2024-06-01 is a Saturday; the first Monday is the 3rd.
        let from = date(2024, 5, 31).at(12, 0, 0, 0);
        assert_eq!(next("0 0 15 * MON", from), date(2024, 6, 3).at(0, 0, 0, 0));
        assert_eq!(next("0 0 1 * MON", from), date(2024, 6, 1).at(0, 0, 0, 0));
        // One starts with `*`: both must match (Mondays that are odd days of the month).
        assert_eq!(next("0 0 */2 * MON", from), date(2024, 6, 3).at(0, 0, 0, 0));
        assert_eq!(next("0 0 */2 * MON", date(2024, 6, 3).at(0, 1, 0, 0)), date(2024, 6, 17).at(0, 0, 0, 0));
        assert_eq!(next("0 0 ? * MON", from), date(2024, 6, 3).at(0, 0, 0, 0));
    }

    #[test]
    fn fixed_time_is_vixie_crons() {
        assert!(CronExpr::parse("30 2 * * *").unwrap().is_fixed_time());
        assert!(CronExpr::parse("0 1-3 * * *").unwrap().is_fixed_time());
        assert!(CronExpr::parse("@daily").unwrap().is_fixed_time());
        assert!(!CronExpr::parse("@hourly").unwrap().is_fixed_time());
        assert!(!CronExpr::parse("*/15 2 * * *").unwrap().is_fixed_time());
        assert!(!CronExpr::parse("0 */2 * * *").unwrap().is_fixed_time());
    }

    #[test]
    fn bad_expressions_name_the_problem() {
        let err = |e: &str| CronExpr::parse(e).unwrap_err().to_string();
        assert!(err("* * * *").contains("has 4 fields"), "{}", err("* * * *"));
        assert!(err("60 * * * *").contains("minute field: 60 is out of range 0-59"));
        assert!(err("* 24 * * *").contains("hour field: 24 is out of range 0-23"));
        assert!(err("* * 0 * *").contains("day-of-month field: 0 is out of range 1-31"));
        assert!(err("* * * 13 *").contains("month field: 13 is out of range 1-12"));
        assert!(err("* * * * 8").contains("day-of-week field: 8 is out of range 0-7"));
        assert!(err("* * * FOO *").contains("\"FOO\" is not a number or a name (JAN"));
        assert!(err("*/0 * * * *").contains("step in \"*/0\" must be at least 1"));
        assert!(err("5-1 * * * *").contains("runs backwards"));
        assert!(err("1,,2 * * * *").contains("empty list item"));
        assert!(err("@reboot").contains("unknown cron macro \"@reboot\""));
        assert!(err("TZ=UTC 0 * * * *").contains("give the zone separately"));
        assert!(err("0 0 30 2 *").contains("never runs"));
        assert!(err("0 0 31 4,6,9,11 *").contains("never runs"));
        // A restricted day of week rescues an impossible day of month (Vixie's OR).
        assert!(CronExpr::parse("0 0 30 2 MON").is_ok());
    }
}
