//! A schedule: a cron expression or an interval, in an IANA time zone, and its next run time.

use std::fmt;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

use crate::cron::{CronError, CronExpr, ceil_to_minute};
use crate::interval::{Interval, IntervalError};

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(transparent)]
    Cron(#[from] CronError),
    /// The interval does not parse.
    #[error(transparent)]
    Interval(#[from] IntervalError),
    /// The time zone is not in the IANA database.
    #[error("unknown time zone {0:?}: expected an IANA name such as UTC, Europe/Berlin or America/New_York")]
    UnknownTimeZone(String),
}

/// When a schedule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// At the wall-clock minutes a cron expression matches, in the schedule's zone.
    Cron(CronExpr),
    /// Every fixed interval of elapsed time (see [`Interval`] for where the ticks fall).
    Every(Interval),
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Cron(expr) => write!(f, "{expr}"),
            When::Every(interval) => write!(f, "@every {interval}"),
        }
    }
}

/// A schedule: when it runs and in which time zone.
///
/// # Daylight saving
///
/// Cron expressions are wall-clock times in the schedule's zone, and a daylight-saving change
/// behaves as in Vixie cron (ISC cron, cronie: the cron of most Linux systems), which splits jobs
/// into *fixed-time* ones (neither the minute nor the hour field starts with `*`: `30 2 * * *`,
/// `0 9-17 * * 1-5`, `@daily`) and *wildcard* ones (`@hourly`, `*/15 * * * *`, `0 */2 * * *`):
///
/// - Clocks go forward (a wall-clock hour is skipped): a fixed time inside the skipped hour runs
///   once, at the instant of the change (a daily `30 2 * * *` in Europe/Berlin runs at 03:00 CEST
///   on the last Sunday of March: once, not never); wildcard times inside it do not exist and are
///   not run (`@hourly` runs at 01:00 CET then 03:00 CEST, an hour of elapsed time apart).
/// - Clocks go back (a wall-clock hour repeats): a fixed time inside the repeated hour runs once,
///   at its first occurrence (`30 2 * * *` runs at 02:30 CEST, not again at 02:30 CET); wildcard
///   times run in both occurrences (`@hourly` runs at 02:00 CEST and 02:00 CET, an hour apart).
///
/// So a daily job runs exactly once every day and an hourly one every elapsed hour. Kubernetes
/// CronJobs (robfig/cron) differ here: they skip a fixed time in a skipped hour and run it twice
/// in a repeated one; we take Vixie's rules because they are what cron users rely on.
///
/// Intervals are elapsed time and ignore the zone (see [`Interval`]).
#[derive(Debug, Clone)]
pub struct Schedule {
    when: When,
    zone: TimeZone,
    zone_name: String,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.when == other.when && self.zone_name == other.zone_name
    }
}

/// How many zone offset periods `next_after` walks before giving up: each is at least hours
/// long, and a matching minute is found within nine years of civil time anyway.
const MAX_PERIODS: usize = 64;

impl Schedule {
    /// A schedule from its parts; `time_zone` is an IANA name, UTC when `None`.
    pub fn new(when: When, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let zone_name = time_zone.unwrap_or("UTC").trim().to_string();
        let zone =
            TimeZone::get(&zone_name).map_err(|_| ScheduleError::UnknownTimeZone(zone_name.clone()))?;
        Ok(Schedule { when, zone, zone_name })
    }

    /// A cron expression (five fields, a macro, or `@every DURATION`) in `time_zone`.
    pub fn cron(expr: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let trimmed = expr.trim();
        let when = match trimmed.strip_prefix("@every") {
            Some(rest) if rest.starts_with(char::is_whitespace) => When::Every(rest.trim().parse()?),
            _ => When::Cron(CronExpr::parse(trimmed)?),
        };
        Self::new(when, time_zone)
    }

    /// An interval (`15m`, `1h`, `1h30m`, `1d`).
    pub fn every(interval: &str) -> Result<Self, ScheduleError> {
        Self::new(When::Every(interval.parse()?), None)
    }

    /// When it runs.
    pub fn when(&self) -> &When {
        &self.when
    }

    /// The IANA name of its time zone.
    pub fn time_zone_name(&self) -> &str {
        &self.zone_name
    }

    /// Its time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The first run strictly after `after`; `None` only when none falls within about nine years
    /// (which parsing already rules out) or the end of representable time.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.when {
            When::Every(interval) => next_interval_tick(*interval, after),
            When::Cron(expr) => next_cron_run(expr, &self.zone, after),
        }
    }

    /// The runs in `(after, until]`, oldest first, at most `limit` of them.
    pub fn runs_between(&self, after: Timestamp, until: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut runs = Vec::new();
        let mut cursor = after;
        while runs.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= until => {
                    runs.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        runs
    }
}

fn next_interval_tick(interval: Interval, after: Timestamp) -> Option<Timestamp> {
    let step = i64::from(interval.minutes()) * 60;
    let seconds = after.as_second(); // floor: sub-second parts are past the tick at that second
    let next = (seconds.div_euclid(step) + 1).checked_mul(step)?;
    Timestamp::from_second(next).ok()
}

/// Walks the zone's offset periods from `after`: within a period wall-clock and elapsed time
/// move together, so the first matching wall-clock minute is the next run; at a transition the
/// daylight-saving rules of [`Schedule`] apply.
fn next_cron_run(expr: &CronExpr, zone: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    let fixed = expr.is_fixed_time();
    let mut offset = zone.to_offset(after);
    // The earliest wall-clock minute a run may have in the current period (inclusive).
    let floor_minute = offset.to_datetime(after).with().second(0).subsec_nanosecond(0).build().ok()?;
    let mut lower = floor_minute.checked_add(SignedDuration::from_mins(1)).ok()?;
    // Fixed times are not repeated: if `after` is in the repeated hour after clocks went back,
    // the wall-clock times before the end of that hour already ran in the first occurrence.
    let mut repeated_until = if fixed { repeated_hour_end(zone, after) } else { None };
    let mut period_start = after;
    for _ in 0..MAX_PERIODS {
        let transition = zone.following(period_start).next();
        let period_end: Option<DateTime> = transition.as_ref().map(|t| offset.to_datetime(t.timestamp()));
        let from = match repeated_until {
            Some(end) if end > lower => end,
            _ => lower,
        };
        if let Some(found) = expr.next_match(from, period_end) {
            return offset.to_timestamp(found).ok();
        }
        // No match before the period ends; without a transition the search horizon was reached.
        let transition = transition?;
        let at = transition.timestamp();
        let new_offset = transition.offset();
        repeated_until = None;
        if new_offset > offset {
            // Clocks go forward: wall-clock [at+old, at+new) never happens.
            if fixed {
                let skipped_from = offset.to_datetime(at);
                let skipped_until = new_offset.to_datetime(at);
                if expr.next_match(skipped_from, Some(skipped_until)).is_some() {
                    return Some(at);
                }
            }
        } else if new_offset < offset && fixed {
            // Clocks go back: wall-clock [at+new, at+old) happens a second time.
            repeated_until = Some(offset.to_datetime(at));
        }
        offset = new_offset;
        lower = ceil_to_minute(new_offset.to_datetime(at))?;
        period_start = at;
    }
    None
}

/// If `t` falls in the second occurrence of a repeated wall-clock hour (after clocks went back),
/// the wall-clock time at which that repetition ends.
fn repeated_hour_end(zone: &TimeZone, t: Timestamp) -> Option<DateTime> {
    let just_after = t.checked_add(SignedDuration::from_nanos(1)).ok()?;
    let transition = zone.preceding(just_after).next()?;
    let at = transition.timestamp();
    let before: Offset = zone.to_offset(at.checked_sub(SignedDuration::from_nanos(1)).ok()?);
    let after = transition.offset();
    if after >= before {
        return None;
    }
    let end_of_repeat = before.to_datetime(at);
    (after.to_datetime(t) < end_of_repeat).then_some(end_of_repeat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The next `count` runs after `from`, as RFC 3339 strings with the zone's offset.
    fn runs(schedule: &Schedule, from: &str, count: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = ts(from);
        for _ in 0..count {
            cursor = schedule.next_after(cursor).unwrap();
            out.push(cursor.to_zoned(schedule.time_zone().clone()).strftime("%Y-%m-%dT%H:%M%:z").to_string());
        }
        out
    }

    #[test]
    fn utc_is_the_default_zone() {
        let schedule = Schedule::cron("30 2 * * *", None).unwrap();
        assert_eq!(schedule.time_zone_name(), "UTC");
        assert_eq!(
            runs(&schedule, "2024-03-30T12:00:00Z", 2),
            ["2024-03-31T02:30+00:00", "2024-04-01T02:30+00:00"]
        );
    }

    #[test]
    fn berlin_spring_forward_fixed_time_in_the_skipped_hour_runs_once_when_clocks_jump() {
        // 2024-03-31 02:00 CET -> 03:00 CEST.
        let schedule = Schedule::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            runs(&schedule, "2024-03-29T12:00:00Z", 4),
            [
                "2024-03-30T02:30+01:00",
                "2024-03-31T03:00+02:00",
                "2024-04-01T02:30+02:00",
                "2024-04-02T02:30+02:00"
            ]
        );
        // Several fixed times in the skipped hour make one run, and one with 03:00 itself.
        let schedule = Schedule::cron("0,30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            runs(&schedule, "2024-03-31T00:00:00Z", 2),
            ["2024-03-31T03:00+02:00", "2024-04-01T02:00+02:00"]
        );
        let schedule = Schedule::cron("30 2,3 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            runs(&schedule, "2024-03-31T00:00:00Z", 3),
            ["2024-03-31T03:00+02:00", "2024-03-31T03:30+02:00", "2024-04-01T02:30+02:00"]
        );
        // Asked from the instant of the jump itself, it is not run again.
        let schedule = Schedule::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(runs(&schedule, "2024-03-31T01:00:00Z", 1), ["2024-04-01T02:30+02:00"]);
    }

    #[test]
    fn berlin_fall_back_fixed_time_in_the_repeated_hour_runs_once() {
        // 2024-10-27 03:00 CEST -> 02:00 CET.
        let schedule = Schedule::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            runs(&schedule, "2024-10-26T12:00:00Z", 3),
            ["2024-10-27T02:30+02:00", "2024-10-28T02:30+01:00", "2024-10-29T02:30+01:00"]
        );
        // Asked from inside the repeated hour (02:10 CET), the second 02:30 is not a run.
        assert_eq!(runs(&schedule, "2024-10-27T01:10:00Z", 1), ["2024-10-28T02:30+01:00"]);
        // Asked between the two occurrences (02:45 CEST), likewise.
        assert_eq!(runs(&schedule, "2024-10-27T00:45:00Z", 1), ["2024-10-28T02:30+01:00"]);
        // A fixed time after the repeated hour on that day still runs.
        let schedule = Schedule::cron("30 2,3 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            runs(&schedule, "2024-10-27T00:00:00Z", 3),
            ["2024-10-27T02:30+02:00", "2024-10-27T03:30+01:00", "2024-10-28T02:30+01:00"]
        );
    }

    #[test]
    fn berlin_wildcard_jobs_follow_elapsed_time() {
        let hourly = Schedule::cron("@hourly", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            runs(&hourly, "2024-03-30T23:30:00Z", 3),
            ["2024-03-31T01:00+01:00", "2024-03-31T03:00+02:00", "2024-03-31T04:00+02:00"]
        );
        assert_eq!(
            runs(&hourly, "2024-10-26T23:30:00Z", 4),
            [
                "2024-10-27T02:00+02:00",
                "2024-10-27T02:00+01:00",
                "2024-10-27T03:00+01:00",
                "2024-10-27T04:00+01:00"
            ]
        );
        let quarter = Schedule::cron("*/15 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            runs(&quarter, "2024-10-27T00:50:00Z", 6),
            [
                "2024-10-27T02:00+01:00",
                "2024-10-27T02:15+01:00",
                "2024-10-27T02:30+01:00",
                "2024-10-27T02:45+01:00",
                "2024-10-28T02:00+01:00",
                "2024-10-28T02:15+01:00"
            ]
        );
        // The skipped hour's wildcard times do not exist.
        assert_eq!(runs(&quarter, "2024-03-31T00:00:00Z", 1), ["2024-04-01T02:00+02:00"]);
    }

    #[test]
    fn new_york_transitions() {
        // 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.
        let daily = Schedule::cron("30 1 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            runs(&daily, "2024-11-02T12:00:00Z", 3),
            ["2024-11-03T01:30-04:00", "2024-11-04T01:30-05:00", "2024-11-05T01:30-05:00"]
        );
        let daily = Schedule::cron("15 2 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            runs(&daily, "2024-03-09T12:00:00Z", 3),
            ["2024-03-10T03:00-04:00", "2024-03-11T02:15-04:00", "2024-03-12T02:15-04:00"]
        );
        let half_hourly = Schedule::cron("*/30 * * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            runs(&half_hourly, "2024-11-03T05:00:00Z", 4),
            [
                "2024-11-03T01:30-04:00",
                "2024-11-03T01:00-05:00",
                "2024-11-03T01:30-05:00",
                "2024-11-03T02:00-05:00"
            ]
        );
        let weekly = Schedule::cron("0 9 * * MON", Some("America/New_York")).unwrap();
        assert_eq!(
            runs(&weekly, "2024-03-05T00:00:00Z", 2),
            ["2024-03-11T09:00-04:00", "2024-03-18T09:00-04:00"]
        );
    }

    #[test]
    fn a_daily_fixed_time_runs_exactly_once_every_local_day_for_years() {
        for zone in ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"] {
            for time in ["0 0", "30 1", "30 2", "0 3"] {
                let schedule = Schedule::cron(&format!("{time} * * *"), Some(zone)).unwrap();
                let tz = schedule.time_zone().clone();
                let all =
                    schedule.runs_between(ts("2022-12-31T00:00:00Z"), ts("2026-01-02T00:00:00Z"), 10_000);
                let days: Vec<_> = all.iter().map(|t| t.to_zoned(tz.clone()).date()).collect();
                for pair in days.windows(2) {
                    assert_eq!(pair[0].tomorrow().unwrap(), pair[1], "{zone} {time}: {pair:?}");
                }
                assert!(all.len() >= 3 * 365, "{zone} {time}: {}", all.len());
            }
        }
    }

    #[test]
    fn intervals_are_elapsed_time_aligned_to_the_epoch() {
        let schedule = Schedule::every("15m").unwrap();
        assert_eq!(schedule.next_after(ts("2024-01-01T10:07:13Z")), Some(ts("2024-01-01T10:15:00Z")));
        assert_eq!(schedule.next_after(ts("2024-01-01T10:15:00Z")), Some(ts("2024-01-01T10:30:00Z")));
        assert_eq!(schedule.next_after(ts("2024-01-01T10:14:59.9Z")), Some(ts("2024-01-01T10:15:00Z")));
        let hourly = Schedule::cron("@every 1h", Some("Europe/Berlin")).unwrap();
        assert_eq!(hourly.when(), &When::Every("1h".parse().unwrap()));
        // Across the fall-back change: one hour of elapsed time between runs.
        assert_eq!(hourly.next_after(ts("2024-10-27T00:00:00Z")), Some(ts("2024-10-27T01:00:00Z")));
        assert_eq!(hourly.next_after(ts("1969-12-31T23:30:00Z")), Some(ts("1970-01-01T00:00:00Z")));
    }

    #[test]
    fn bad_schedules_name_the_problem() {
        let err = Schedule::cron("@daily", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time zone \"Mars/Olympus\": expected an IANA name such as UTC, Europe/Berlin or America/New_York"
        );
        assert!(Schedule::every("30s").unwrap_err().to_string().contains("whole number of minutes"));
        assert!(
            Schedule::cron("@every 10s", None).unwrap_err().to_string().contains("whole number of minutes")
        );
        assert!(Schedule::cron("61 * * * *", None).unwrap_err().to_string().contains("minute field"));
    }

    #[test]
    fn next_after_is_strictly_later_and_never_skips_a_run() {
        // Property: walking minute by minute, every minute that next_after lands on from the
        // previous run is the first run after it, across both Berlin transitions of 2024.
        for expr in ["*/7 * * * *", "30 2 * * *", "0 */2 * * *", "10,40 1-3 * * *"] {
            let schedule = Schedule::cron(expr, Some("Europe/Berlin")).unwrap();
            for (start, end) in [
                ("2024-03-30T22:00:00Z", "2024-03-31T04:00:00Z"),
                ("2024-10-26T22:00:00Z", "2024-10-27T04:00:00Z"),
            ] {
                let mut probe = ts(start);
                while probe < ts(end) {
                    let next = schedule.next_after(probe).unwrap();
                    assert!(next > probe, "{expr}: {probe} -> {next}");
                    let step_back = next.checked_sub(SignedDuration::from_secs(1)).unwrap();
                    if step_back > probe {
                        assert_eq!(schedule.next_after(step_back), Some(next), "{expr} from {step_back}");
                    }
                    probe = probe.checked_add(SignedDuration::from_mins(1)).unwrap();
                }
            }
        }
    }
}
