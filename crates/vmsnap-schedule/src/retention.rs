//! Retention: which snapshots a keep policy keeps, with the semantics of `restic forget
//! --keep-last/--keep-hourly/--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly/--keep-within`
//! (restic's `ApplyPolicy` in `internal/restic/snapshot_policy.go`, now `internal/data/`).
//!
//! How restic decides, and so how this module decides:
//!
//! - Snapshots are walked newest first (a stable sort: equal times keep the order given).
//! - Each rule has a count and a bucket: `last` puts every snapshot in its own bucket, `hourly`
//!   buckets by local year-month-day-hour, `daily` by local date, `weekly` by ISO 8601 week
//!   (`2024-12-30` is in week 1 of 2025), `monthly` by local year-month, `yearly` by local year.
//!   "Local" is the time zone given (restic uses the zone it runs in, `TZ`).
//! - Walking newest first, a snapshot whose bucket differs from the bucket of the previous
//!   snapshot the rule kept is kept by that rule while the rule has count left, and uses one
//!   count. So each rule keeps the newest snapshot of each of its `count` newest buckets. One
//!   snapshot can be kept by several rules at once, using a count of each.
//! - `within` keeps every snapshot newer than the newest snapshot (not in the future of `now`)
//!   minus the duration, in calendar arithmetic as Go's `AddDate` does it (`2024-03-31` minus one
//!   month is `2024-03-02`: month first, the day overflowing into the next month).
//! - Since restic 0.16, the oldest snapshot is kept too by every rule that still has count left
//!   ("oldest hourly snapshot"), so that a short history is not cut shorter than asked;
//!   [`ResticRules::Before0_16`] leaves that out, as restic 0.14 and 0.15 do.
//! - An empty policy keeps everything. (`restic forget` with no policy removes nothing either,
//!   and says so; here it is a normal policy: a schedule without retention keeps all it makes.)
//!   Counts are bounded numbers; restic's `-1` ("unlimited") has no equivalent.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

/// How many snapshots to keep, restic style. All zero (the default) keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KeepPolicy {
    /// Keep the newest `last` snapshots.
    pub last: u32,
    /// Keep the newest snapshot of each of the newest `hourly` hours that have one.
    pub hourly: u32,
    /// ... days.
    pub daily: u32,
    /// ... ISO weeks.
    pub weekly: u32,
    /// ... months.
    pub monthly: u32,
    /// ... years.
    pub yearly: u32,
    /// Keep every snapshot within this duration of the newest one.
    pub within: Option<KeepWithin>,
}

/// Which restic's rules to follow; they differ only on the oldest snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResticRules {
    /// restic 0.16 and later: a rule with count left after the walk also keeps the oldest
    /// snapshot ("oldest daily snapshot").
    #[default]
    Current,
    /// restic 0.14 and 0.15 (Debian 12 ships 0.14): no such rule.
    Before0_16,
}

/// A `restic --keep-within` duration: `1y2m3d4h` (years, months, days, hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KeepWithin {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Calendar days.
    pub days: u32,
    /// Hours of elapsed time.
    pub hours: u32,
}

/// A `within` duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "keep-within duration {0:?} is not of the form 1y2m3d4h (years, months, days, hours; each part optional, at least one)"
)]
pub struct KeepWithinError(pub String);

impl FromStr for KeepWithin {
    type Err = KeepWithinError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || KeepWithinError(text.to_string());
        let mut within = KeepWithin::default();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(error());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
            let number: u32 = rest[..digits].parse().map_err(|_| error())?;
            let unit = rest[digits..].chars().next().ok_or_else(error)?;
            let slot = match unit {
                'y' => &mut within.years,
                'm' => &mut within.months,
                'd' => &mut within.days,
                'h' => &mut within.hours,
                _ => return Err(error()),
            };
            *slot = slot.checked_add(number).ok_or_else(error)?;
            rest = &rest[digits + 1..];
        }
        Ok(within)
    }
}

impl fmt::Display for KeepWithin {
    /// restic's form: `1y2m3d4h`, zero parts left out (`0h` for all zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')];
        let mut any = false;
        for (n, unit) in parts {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

/// A counted rule of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `last`.
    Last,
    /// `hourly`.
    Hourly,
    /// `daily`.
    Daily,
    /// `weekly`.
    Weekly,
    /// `monthly`.
    Monthly,
    /// `yearly`.
    Yearly,
}

impl Rule {
    /// restic's name for what this rule keeps.
    pub fn reason(self) -> &'static str {
        match self {
            Rule::Last => "last snapshot",
            Rule::Hourly => "hourly snapshot",
            Rule::Daily => "daily snapshot",
            Rule::Weekly => "weekly snapshot",
            Rule::Monthly => "monthly snapshot",
            Rule::Yearly => "yearly snapshot",
        }
    }

    /// The bucket of a snapshot at local time `local` that is the `index`th newest.
    fn bucket(self, local: DateTime, index: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(local.year()),
            i64::from(local.month()),
            i64::from(local.day()),
            i64::from(local.hour()),
        );
        match self {
            Rule::Last => index as i64,
            Rule::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Rule::Daily => (y * 100 + m) * 100 + d,
            Rule::Weekly => {
                let week = local.date().iso_week_date();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
        }
    }
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeepReason {
    /// A rule keeps it as the newest of one of its buckets.
    Rule(Rule),
    /// A rule with count left keeps it as the oldest snapshot of all (restic 0.16 and later).
    Oldest(Rule),
    /// It is within the `within` duration of the newest snapshot.
    Within(KeepWithin),
    /// The policy is empty: everything is kept.
    EmptyPolicy,
}

impl fmt::Display for KeepReason {
    /// restic's words (`daily snapshot`, `oldest monthly snapshot`, `within 1m`, `policy is empty`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Rule(rule) => f.write_str(rule.reason()),
            KeepReason::Oldest(rule) => write!(f, "oldest {}", rule.reason()),
            KeepReason::Within(within) => write!(f, "within {within}"),
            KeepReason::EmptyPolicy => f.write_str("policy is empty"),
        }
    }
}

/// One snapshot and the policy's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<Id> {
    /// The caller's identifier.
    pub id: Id,
    /// When the snapshot was taken.
    pub time: Timestamp,
    /// Why it is kept; empty for a snapshot to remove.
    pub reasons: Vec<KeepReason>,
}

/// What a policy keeps and removes, each newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention<Id> {
    /// Snapshots to keep, with their reasons.
    pub keep: Vec<Verdict<Id>>,
    /// Snapshots to remove.
    pub remove: Vec<Verdict<Id>>,
}

impl KeepPolicy {
    /// Whether nothing is asked (which keeps everything).
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }

    /// The most snapshots the counted rules can keep (`last + hourly + ... + yearly`); `within`
    /// and an empty policy have no such bound.
    pub fn max_counted(&self) -> u64 {
        [self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly]
            .iter()
            .map(|n| u64::from(*n))
            .sum()
    }

    /// Applies the policy as current restic does ([`ResticRules::Current`]). Buckets are taken in
    /// `zone`; `now` only matters for `within` (snapshots in the future of `now` do not count as
    /// the newest).
    pub fn apply<Id>(
        &self,
        snapshots: impl IntoIterator<Item = (Id, Timestamp)>,
        zone: &TimeZone,
        now: Timestamp,
    ) -> Retention<Id> {
        self.apply_as(ResticRules::Current, snapshots, zone, now)
    }

    /// Applies the policy with the rules of a given restic version.
    pub fn apply_as<Id>(
        &self,
        rules: ResticRules,
        snapshots: impl IntoIterator<Item = (Id, Timestamp)>,
        zone: &TimeZone,
        now: Timestamp,
    ) -> Retention<Id> {
        let mut list: Vec<(Id, Timestamp)> = snapshots.into_iter().collect();
        // Newest first; `sort_by` is stable, as restic's `sort.Stable`.
        list.sort_by_key(|s| std::cmp::Reverse(s.1));
        let mut retention = Retention { keep: Vec::new(), remove: Vec::new() };
        if self.is_empty() {
            retention.keep = list
                .into_iter()
                .map(|(id, time)| Verdict { id, time, reasons: vec![KeepReason::EmptyPolicy] })
                .collect();
            return retention;
        }
        let within_after = self.within.map(|within| {
            let newest = list.iter().map(|s| s.1).filter(|t| *t < now).max();
            (within, newest.and_then(|newest| go_sub_within(newest, within, zone)))
        });
        struct Counter {
            rule: Rule,
            left: u32,
            last_bucket: Option<i64>,
        }
        let mut counters: Vec<Counter> = [
            (Rule::Last, self.last),
            (Rule::Hourly, self.hourly),
            (Rule::Daily, self.daily),
            (Rule::Weekly, self.weekly),
            (Rule::Monthly, self.monthly),
            (Rule::Yearly, self.yearly),
        ]
        .into_iter()
        .map(|(rule, left)| Counter { rule, left, last_bucket: None })
        .collect();
        let oldest_index = list.len().saturating_sub(1);
        for (index, (id, time)) in list.into_iter().enumerate() {
            let local = zone.to_datetime(time);
            let mut reasons = Vec::new();
            if let Some((within, after)) = within_after {
                // No newest snapshot before `now`: restic compares with the zero time, so all.
                if after.is_none_or(|after| time > after) {
                    reasons.push(KeepReason::Within(within));
                }
            }
            for counter in counters.iter_mut().filter(|c| c.left > 0) {
                let bucket = counter.rule.bucket(local, index);
                let new_bucket = counter.last_bucket != Some(bucket);
                let keeps_oldest = rules == ResticRules::Current && index == oldest_index;
                if new_bucket || keeps_oldest {
                    reasons.push(if new_bucket {
                        KeepReason::Rule(counter.rule)
                    } else {
                        KeepReason::Oldest(counter.rule)
                    });
                    counter.last_bucket = Some(bucket);
                    counter.left -= 1;
                }
            }
            let verdict = Verdict { id, time, reasons };
            if verdict.reasons.is_empty() {
                retention.remove.push(verdict);
            } else {
                retention.keep.push(verdict);
            }
        }
        retention
    }
}

/// `newest` minus `within` as restic computes it: Go's `AddDate(-y, -m, -d)` on the local
/// date-time (months normalised first, the day then overflowing into the next month), then
/// `within.hours` of elapsed time.
fn go_sub_within(newest: Timestamp, within: KeepWithin, zone: &TimeZone) -> Option<Timestamp> {
    let local = zone.to_datetime(newest);
    let month0 = i64::from(local.month()) - 1 - i64::from(within.months);
    let year = i64::from(local.year()) - i64::from(within.years) + month0.div_euclid(12);
    let month = month0.rem_euclid(12) + 1;
    let first = Date::new(i16::try_from(year).ok()?, month as i8, 1).ok()?;
    let day_offset = i64::from(local.day()) - 1 - i64::from(within.days);
    let date = first.checked_add(day_offset.days()).ok()?;
    let shifted = date.to_datetime(local.time());
    // Go's `time.Date` takes a skipped wall-clock time as if the old offset still held and a
    // repeated one in its second occurrence.
    let offset = match zone.to_ambiguous_timestamp(shifted).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { before, .. } => before,
        AmbiguousOffset::Fold { after, .. } => after,
    };
    let at = offset.to_timestamp(shifted).ok()?;
    at.checked_sub(SignedDuration::from_hours(i64::from(within.hours))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    /// Snapshots at the given RFC 3339 times, identified by their index.
    fn snaps(times: &[&str]) -> Vec<(usize, Timestamp)> {
        times.iter().enumerate().map(|(i, t)| (i, ts(t))).collect()
    }

    fn kept(policy: KeepPolicy, times: &[&str], zone: &TimeZone) -> Vec<usize> {
        let mut ids: Vec<usize> = policy
            .apply(snaps(times), zone, ts("2030-01-01T00:00:00Z"))
            .keep
            .into_iter()
            .map(|v| v.id)
            .collect();
        ids.sort();
        ids
    }

    /// A deterministic pseudo-random history: `n` snapshots at irregular times over ~2 years.
    fn history(seed: u64, n: usize) -> Vec<(usize, Timestamp)> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut t = ts("2023-01-01T00:00:00Z");
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let step = (state >> 33) % (3 * 24 * 60) + 1; // up to three days, in minutes
                t = t.checked_add(SignedDuration::from_mins(step as i64)).unwrap();
                (i, t)
            })
            .collect()
    }

    #[test]
    fn an_empty_policy_keeps_everything() {
        let got = KeepPolicy::default().apply(
            snaps(&["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]),
            &utc(),
            ts("2030-01-01T00:00:00Z"),
        );
        assert_eq!(got.keep.len(), 2);
        assert!(got.remove.is_empty());
        assert_eq!(got.keep[0].reasons, [KeepReason::EmptyPolicy]);
        assert_eq!(got.keep[0].id, 1, "newest first");
    }

    #[test]
    fn one_snapshot_can_satisfy_several_rules() {
        let policy = KeepPolicy { last: 1, daily: 2, monthly: 1, ..Default::default() };
        let got = policy.apply(
            snaps(&["2024-01-01T10:00:00Z", "2024-01-02T09:00:00Z", "2024-01-02T10:00:00Z"]),
            &utc(),
            ts("2030-01-01T00:00:00Z"),
        );
        let reasons: Vec<String> = got.keep[0].reasons.iter().map(|r| r.to_string()).collect();
        assert_eq!(reasons, ["last snapshot", "daily snapshot", "monthly snapshot"]);
        assert_eq!(got.keep[1].id, 0);
        assert_eq!(got.keep[1].reasons, [KeepReason::Rule(Rule::Daily)]);
        assert_eq!(got.remove.iter().map(|v| v.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn buckets_are_local_time_and_iso_weeks() {
        // 23:30 UTC on 31 December is already 1 January in Berlin: two years in UTC, one in Berlin.
        let times = ["2024-12-31T23:30:00Z", "2024-12-31T12:00:00Z"];
        let yearly = KeepPolicy { yearly: 5, ..Default::default() };
        assert_eq!(kept(yearly, &times, &utc()), [0, 1]);
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(kept(KeepPolicy { daily: 5, ..Default::default() }, &times, &berlin), [0, 1]);
        assert_eq!(kept(yearly, &["2024-06-01T00:00:00Z", "2025-01-01T00:30:00Z"], &berlin), [0, 1]);
        // 2024-12-30 (Monday) and 2025-01-05 (Sunday) are both ISO week 2025-W01; 2024-12-29 is W52.
        let weekly = KeepPolicy { weekly: 5, ..Default::default() };
        assert_eq!(
            kept(weekly, &["2024-12-29T12:00:00Z", "2024-12-30T12:00:00Z", "2025-01-05T12:00:00Z"], &utc()),
            [0, 2]
        );
    }

    #[test]
    fn within_is_go_calendar_arithmetic_from_the_newest_snapshot() {
        assert_eq!(
            "1y2m3d4h".parse::<KeepWithin>().unwrap(),
            KeepWithin { years: 1, months: 2, days: 3, hours: 4 }
        );
        assert_eq!("2d".parse::<KeepWithin>().unwrap().to_string(), "2d");
        assert!("2w".parse::<KeepWithin>().is_err());
        assert!("".parse::<KeepWithin>().is_err());
        // 31 March minus one month is "31 February", which Go normalises to 2 March (2024: leap).
        let policy = KeepPolicy { within: Some("1m".parse().unwrap()), ..Default::default() };
        let times =
            ["2024-03-31T12:00:00Z", "2024-03-02T12:00:01Z", "2024-03-02T12:00:00Z", "2024-03-01T12:00:00Z"];
        assert_eq!(kept(policy, &times, &utc()), [0, 1]);
        // A snapshot in the future of `now` is not the newest.
        let got = policy.apply(
            snaps(&["2024-03-31T12:00:00Z", "2024-05-31T12:00:00Z"]),
            &utc(),
            ts("2024-04-01T00:00:00Z"),
        );
        assert_eq!(got.keep.len(), 2);
        let got = policy.apply(
            snaps(&["2024-01-31T12:00:00Z", "2024-03-31T12:00:00Z"]),
            &utc(),
            ts("2024-04-01T00:00:00Z"),
        );
        assert_eq!(got.keep.iter().map(|v| v.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn current_restic_keeps_the_oldest_while_counts_are_left() {
        let times = ["2024-01-01T08:00:00Z", "2024-01-01T09:00:00Z", "2024-01-01T10:00:00Z"];
        let daily = KeepPolicy { daily: 3, ..Default::default() };
        let current = daily.apply(snaps(&times), &utc(), ts("2030-01-01T00:00:00Z"));
        assert_eq!(current.keep.iter().map(|v| v.id).collect::<Vec<_>>(), [2, 0]);
        assert_eq!(current.keep[1].reasons[0].to_string(), "oldest daily snapshot");
        let old = daily.apply_as(ResticRules::Before0_16, snaps(&times), &utc(), ts("2030-01-01T00:00:00Z"));
        assert_eq!(old.keep.iter().map(|v| v.id).collect::<Vec<_>>(), [2]);
        // With no count left, neither keeps it.
        let one = KeepPolicy { daily: 1, ..Default::default() };
        assert_eq!(one.apply(snaps(&times), &utc(), ts("2030-01-01T00:00:00Z")).keep.len(), 1);
    }

    #[test]
    fn property_keep_last_n_keeps_exactly_the_newest_n() {
        for seed in 0..20 {
            let all = history(seed, 60);
            for n in [1u32, 5, 59, 60, 100] {
                for rules in [ResticRules::Current, ResticRules::Before0_16] {
                    let got = KeepPolicy { last: n, ..Default::default() }.apply_as(
                        rules,
                        all.clone(),
                        &utc(),
                        ts("2030-01-01T00:00:00Z"),
                    );
                    let want: Vec<usize> = (0..all.len()).rev().take(n as usize).collect();
                    assert_eq!(got.keep.iter().map(|v| v.id).collect::<Vec<_>>(), want, "seed {seed} n {n}");
                    assert_eq!(got.keep.len() + got.remove.len(), all.len());
                }
            }
        }
    }

    #[test]
    fn property_counted_rules_keep_at_most_their_sum_and_always_the_newest() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        for seed in 0..40 {
            let all = history(seed, 300);
            let n = |k: u64| ((seed * 7 + k * 13) % 9) as u32;
            let policy = KeepPolicy {
                last: n(1),
                hourly: n(2),
                daily: n(3),
                weekly: n(4),
                monthly: n(5),
                yearly: n(6),
                within: None,
            };
            for rules in [ResticRules::Current, ResticRules::Before0_16] {
                let got = policy.apply_as(rules, all.clone(), &berlin, ts("2030-01-01T00:00:00Z"));
                assert!(
                    got.keep.len() as u64 <= policy.max_counted().max(1) || policy.is_empty(),
                    "seed {seed}: {policy:?} kept {}",
                    got.keep.len()
                );
                assert_eq!(got.keep.len() + got.remove.len(), all.len());
                if !policy.is_empty() {
                    assert_eq!(
                        got.keep[0].id,
                        all.len() - 1,
                        "the newest is kept by every rule with a count"
                    );
                }
                // Each rule keeps at most its count, and in distinct buckets.
                for (rule, count) in [(Rule::Daily, policy.daily), (Rule::Monthly, policy.monthly)] {
                    let by_rule: Vec<_> =
                        got.keep.iter().filter(|v| v.reasons.contains(&KeepReason::Rule(rule))).collect();
                    assert!(by_rule.len() as u32 <= count);
                    let mut buckets: Vec<i64> =
                        by_rule.iter().map(|v| rule.bucket(berlin.to_datetime(v.time), 0)).collect();
                    buckets.dedup();
                    assert_eq!(buckets.len(), by_rule.len());
                }
                // Newest first, both lists.
                assert!(got.keep.windows(2).all(|w| w[0].time >= w[1].time));
                assert!(got.remove.windows(2).all(|w| w[0].time >= w[1].time));
            }
        }
    }

    #[test]
    fn property_raising_a_count_never_removes_what_was_kept() {
        for seed in 0..20 {
            let all = history(seed, 200);
            for rule in 0..6 {
                let mut small = KeepPolicy { last: 1, daily: 3, ..Default::default() };
                fn slot(p: &mut KeepPolicy, rule: usize) -> &mut u32 {
                    match rule {
                        0 => &mut p.last,
                        1 => &mut p.hourly,
                        2 => &mut p.daily,
                        3 => &mut p.weekly,
                        4 => &mut p.monthly,
                        _ => &mut p.yearly,
                    }
                }
                *slot(&mut small, rule) += 2;
                let mut large = small;
                *slot(&mut large, rule) += 5;
                let ids = |p: KeepPolicy| -> Vec<usize> {
                    let mut v: Vec<usize> = p
                        .apply(all.clone(), &utc(), ts("2030-01-01T00:00:00Z"))
                        .keep
                        .into_iter()
                        .map(|v| v.id)
                        .collect();
                    v.sort();
                    v
                };
                let (small_kept, large_kept) = (ids(small), ids(large));
                assert!(small_kept.iter().all(|id| large_kept.contains(id)), "seed {seed} rule {rule}");
            }
        }
    }
}
