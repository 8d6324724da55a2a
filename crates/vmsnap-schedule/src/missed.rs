//! Missed runs, decided as the Kubernetes CronJob controller decides them (`mostRecentScheduleTime`
//! and `syncCronJob` in `pkg/controller/cronjob`): after downtime only the most recent missed run
//! is taken, once, and only if it is still within the starting deadline.

use jiff::{SignedDuration, Timestamp};

use crate::Schedule;

/// Above this many missed runs Kubernetes warns (`TooManyMissedTimes`); so does [`CatchUp`].
pub const TOO_MANY_MISSED: u64 = 100;

/// Counting missed runs stops here (a one-minute schedule down for about 70 days); the count is
/// then a lower bound ([`CatchUp::missed_count_is_lower_bound`]).
const COUNT_LIMIT: u64 = 100_000;

/// What a schedule should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No run is due: the next one is at `next`.
    Wait {
        /// The next run time.
        next: Timestamp,
    },
    /// Run now, for the run time `scheduled` (the most recent one due); record `scheduled` as the
    /// last scheduled time. Older due runs are not taken.
    Run {
        /// The run time this run stands for.
        scheduled: Timestamp,
        /// The run after it.
        next: Timestamp,
    },
    /// The most recent due run is older than the starting deadline: it is not taken (Kubernetes
    /// records a `MissedSchedule` event for it); wait for `next`.
    TooLate {
        /// The run time that was missed.
        scheduled: Timestamp,
        /// The next run time.
        next: Timestamp,
    },
}

/// The decision, and how many run times went by without a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// What to do.
    pub decision: Decision,
    /// Run times in `(last scheduled, now]` that are not taken: all of them when too late, all
    /// but the one taken when running. 0 in the normal case (one run due, taken).
    pub missed: u64,
    /// Run times in `(last scheduled, now]`: `missed`, plus the one taken if any.
    pub due: u64,
    /// Counting stopped at a limit: `due` and `missed` are at least that.
    pub missed_count_is_lower_bound: bool,
}

impl CatchUp {
    /// More than [`TOO_MANY_MISSED`] runs were due at once: worth a warning (clock skew, or a
    /// long outage that a starting deadline would bound).
    pub fn too_many_missed(&self) -> bool {
        self.due > TOO_MANY_MISSED
    }
}

/// Decides what `schedule` does at `now`.
///
/// - `last_scheduled`: the run time of the last run taken (the status' last scheduled time), or
///   `None` if none was taken yet, in which case `created` (the schedule's creation time) stands
///   for it, as in Kubernetes.
/// - `starting_deadline`: how late a run may still start (`startingDeadlineSeconds`); `None` is
///   no limit. As in Kubernetes, a run time `t` may start while `now - t < deadline` (a deadline
///   of 0 never starts anything).
///
/// The run times due are those in `(last_scheduled, now]`. If there are none: wait. Otherwise the
/// most recent one is taken once (the older ones are counted as missed, not run one by one), or,
/// if it is already past the deadline, none is taken.
///
/// Kubernetes reaches the same decision by moving its earliest time up to `now - deadline`, so
/// that a run time past the deadline is simply not seen; this function still reports it as
/// [`Decision::TooLate`] so that the status can say what was missed. Kubernetes estimates the
/// number of missed runs from the gap between two runs; it is counted exactly here.
pub fn catch_up(
    schedule: &Schedule,
    last_scheduled: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
    starting_deadline: Option<SignedDuration>,
) -> CatchUp {
    let earliest = last_scheduled.unwrap_or(created);
    let far_future = || Timestamp::MAX;
    let next_after_now = schedule.next_after(now.max(earliest)).unwrap_or_else(far_future);
    let Some(most_recent) = most_recent_run(schedule, earliest, now) else {
        return CatchUp {
            decision: Decision::Wait { next: next_after_now },
            missed: 0,
            due: 0,
            missed_count_is_lower_bound: false,
        };
    };
    let (due, capped) = count_runs(schedule, earliest, now);
    let in_time = match starting_deadline {
        None => true,
        Some(deadline) => now.duration_since(most_recent) < deadline,
    };
    let (decision, missed) = if in_time {
        (Decision::Run { scheduled: most_recent, next: next_after_now }, due - 1)
    } else {
        (Decision::TooLate { scheduled: most_recent, next: next_after_now }, due)
    };
    CatchUp { decision, missed, due, missed_count_is_lower_bound: capped }
}

/// The latest run time in `(earliest, now]`, found without walking every run since `earliest`:
/// look back from `now` over windows that double until one holds a run.
fn most_recent_run(schedule: &Schedule, earliest: Timestamp, now: Timestamp) -> Option<Timestamp> {
    if schedule.next_after(earliest)? > now {
        return None;
    }
    let mut window = SignedDuration::from_mins(1);
    loop {
        let start = now.checked_sub(window).ok().filter(|s| *s > earliest).unwrap_or(earliest);
        if let Some(first) = schedule.next_after(start).filter(|t| *t <= now) {
            let mut latest = first;
            while let Some(next) = schedule.next_after(latest).filter(|t| *t <= now) {
                latest = next;
            }
            return Some(latest);
        }
        window = window.checked_mul(2)?;
    }
}

/// How many run times fall in `(earliest, now]`, up to [`COUNT_LIMIT`].
fn count_runs(schedule: &Schedule, earliest: Timestamp, now: Timestamp) -> (u64, bool) {
    let mut count = 0;
    let mut cursor = earliest;
    while let Some(next) = schedule.next_after(cursor).filter(|t| *t <= now) {
        count += 1;
        if count == COUNT_LIMIT {
            return (count, true);
        }
        cursor = next;
    }
    (count, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn secs(n: i64) -> Option<SignedDuration> {
        Some(SignedDuration::from_secs(n))
    }

    #[test]
    fn nothing_due_waits_for_the_next_run() {
        let hourly = Schedule::cron("0 * * * *", None).unwrap();
        let got = catch_up(
            &hourly,
            Some(ts("2024-01-01T10:00:00Z")),
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T10:30:00Z"),
            None,
        );
        assert_eq!(got.decision, Decision::Wait { next: ts("2024-01-01T11:00:00Z") });
        assert_eq!(got.missed, 0);
    }

    #[test]
    fn one_due_run_is_taken_and_nothing_is_missed() {
        let hourly = Schedule::cron("0 * * * *", None).unwrap();
        let got = catch_up(
            &hourly,
            Some(ts("2024-01-01T10:00:00Z")),
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T11:00:01Z"),
            secs(60),
        );
        assert_eq!(
            got.decision,
            Decision::Run { scheduled: ts("2024-01-01T11:00:00Z"), next: ts("2024-01-01T12:00:00Z") }
        );
        assert_eq!(got.missed, 0);
    }

    #[test]
    fn after_downtime_the_most_recent_run_is_taken_once() {
        // Down from 10:00 to 13:20: 11:00, 12:00 and 13:00 were due; 13:00 is taken, two missed.
        let hourly = Schedule::cron("0 * * * *", None).unwrap();
        let got = catch_up(
            &hourly,
            Some(ts("2024-01-01T10:00:00Z")),
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T13:20:00Z"),
            None,
        );
        assert_eq!(
            got.decision,
            Decision::Run { scheduled: ts("2024-01-01T13:00:00Z"), next: ts("2024-01-01T14:00:00Z") }
        );
        assert_eq!(got.missed, 2);
        assert!(!got.too_many_missed());
        // Having recorded 13:00 as the last scheduled time, nothing more is due.
        let again = catch_up(
            &hourly,
            Some(ts("2024-01-01T13:00:00Z")),
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T13:20:05Z"),
            None,
        );
        assert_eq!(again.decision, Decision::Wait { next: ts("2024-01-01T14:00:00Z") });
    }

    #[test]
    fn the_starting_deadline_bounds_how_late_a_run_starts() {
        let hourly = Schedule::cron("0 * * * *", None).unwrap();
        let last = Some(ts("2024-01-01T10:00:00Z"));
        let created = ts("2024-01-01T00:00:00Z");
        // 13:00 is 20 minutes old: within a 30-minute deadline, past a 10-minute one.
        let within = catch_up(&hourly, last, created, ts("2024-01-01T13:20:00Z"), secs(1800));
        assert!(
            matches!(within.decision, Decision::Run { scheduled, .. } if scheduled == ts("2024-01-01T13:00:00Z"))
        );
        assert_eq!(within.missed, 2);
        let late = catch_up(&hourly, last, created, ts("2024-01-01T13:20:00Z"), secs(600));
        assert_eq!(
            late.decision,
            Decision::TooLate { scheduled: ts("2024-01-01T13:00:00Z"), next: ts("2024-01-01T14:00:00Z") }
        );
        assert_eq!(late.missed, 3);
        // Exactly at the deadline is too late (Kubernetes: the run time must be after now - deadline).
        let edge = catch_up(&hourly, last, created, ts("2024-01-01T13:10:00Z"), secs(600));
        assert!(matches!(edge.decision, Decision::TooLate { .. }));
        let zero = catch_up(&hourly, last, created, ts("2024-01-01T13:00:00Z"), secs(0));
        assert!(matches!(zero.decision, Decision::TooLate { .. }));
    }

    #[test]
    fn without_a_last_run_the_creation_time_stands_for_it() {
        let daily = Schedule::cron("0 3 * * *", Some("Europe/Berlin")).unwrap();
        let got = catch_up(&daily, None, ts("2024-01-01T12:00:00Z"), ts("2024-01-04T12:00:00Z"), None);
        assert_eq!(
            got.decision,
            Decision::Run { scheduled: ts("2024-01-04T02:00:00Z"), next: ts("2024-01-05T02:00:00Z") }
        );
        assert_eq!(got.missed, 2);
        // Created after its run time today: not due until tomorrow.
        let fresh = catch_up(&daily, None, ts("2024-01-04T12:00:00Z"), ts("2024-01-04T12:00:30Z"), None);
        assert_eq!(fresh.decision, Decision::Wait { next: ts("2024-01-05T02:00:00Z") });
    }

    #[test]
    fn clock_skew_before_the_last_run_waits() {
        let hourly = Schedule::cron("0 * * * *", None).unwrap();
        let got = catch_up(
            &hourly,
            Some(ts("2024-01-01T10:00:00Z")),
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T09:00:00Z"),
            None,
        );
        assert_eq!(got.decision, Decision::Wait { next: ts("2024-01-01T11:00:00Z") });
    }

    #[test]
    fn long_outages_are_counted_and_flagged() {
        let every_minute = Schedule::every("1m").unwrap();
        let got = catch_up(
            &every_minute,
            Some(ts("2024-01-01T00:00:00Z")),
            ts("2023-01-01T00:00:00Z"),
            ts("2024-01-01T03:00:30Z"),
            None,
        );
        assert_eq!(
            got.decision,
            Decision::Run { scheduled: ts("2024-01-01T03:00:00Z"), next: ts("2024-01-01T03:01:00Z") }
        );
        assert_eq!(got.missed, 179);
        assert!(got.too_many_missed());
        assert!(!got.missed_count_is_lower_bound);
        // A year of one-minute runs: the count stops at its limit, the decision is still exact.
        let year = catch_up(
            &every_minute,
            Some(ts("2023-01-01T00:00:00Z")),
            ts("2023-01-01T00:00:00Z"),
            ts("2024-01-01T00:00:30Z"),
            None,
        );
        assert_eq!(
            year.decision,
            Decision::Run { scheduled: ts("2024-01-01T00:00:00Z"), next: ts("2024-01-01T00:01:00Z") }
        );
        assert!(year.missed_count_is_lower_bound);
        assert_eq!(year.missed, COUNT_LIMIT - 1);
    }

    #[test]
    fn catch_up_agrees_with_walking_every_run() {
        // Property: for many (last, now) pairs the decision's run time is the last element of
        // the walked list of runs, and missed is its length minus one.
        let schedules = [
            Schedule::cron("*/20 * * * *", Some("Europe/Berlin")).unwrap(),
            Schedule::cron("30 2 * * *", Some("Europe/Berlin")).unwrap(),
            Schedule::cron("0 9 * * MON-FRI", Some("America/New_York")).unwrap(),
            Schedule::every("7h").unwrap(),
        ];
        let base = ts("2024-03-25T00:00:00Z");
        for schedule in &schedules {
            for last_hours in [0i64, 5, 37, 200] {
                for gap_minutes in [0i64, 1, 19, 61, 1500, 20_000] {
                    let last = base.checked_add(SignedDuration::from_hours(last_hours)).unwrap();
                    let now = last.checked_add(SignedDuration::from_mins(gap_minutes)).unwrap();
                    let walked = schedule.runs_between(last, now, 100_000);
                    let got = catch_up(schedule, Some(last), base, now, None);
                    match walked.last() {
                        None => assert!(matches!(got.decision, Decision::Wait { .. })),
                        Some(latest) => {
                            assert!(
                                matches!(got.decision, Decision::Run { scheduled, .. } if scheduled == *latest)
                            );
                            assert_eq!(got.missed, walked.len() as u64 - 1);
                        }
                    }
                }
            }
        }
    }
}
