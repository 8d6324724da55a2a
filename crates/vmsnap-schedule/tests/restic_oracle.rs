//! The retention oracle: restic itself decides what `restic forget --keep-*` keeps on a simulated
//! 400-day history of hourly runs, and [`KeepPolicy`] must keep exactly the same snapshots.
//!
//! The history is the hourly runs of an `@hourly` schedule in Europe/Berlin over 400 days
//! (2023-12-02 to 2025-01-05: three calendar years, a leap day, both daylight-saving changes
//! and an ISO week that straddles New Year), thinned to about 150 snapshots so that restic can
//! make them in well under a minute: every 113th run (the hour of day rotates), every run of the
//! last 30 hours and around the DST changes, the leap day, a month end, a week end and New
//! Year, and in those stretches a second snapshot 29 minutes into every fourth hour.
//!
//! restic makes one snapshot per `restic backup --time`; the repository is cached in the cargo
//! target directory (keyed by the history), so only the first run pays for the backups.
//! restic must be installed (`./x test` installs it through `scripts/setup.sh --test`): without
//! it this test fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use vmsnap_schedule::{KeepPolicy, ResticRules, Schedule};

const ZONE: &str = "Europe/Berlin";
const PASSWORD: &str = "vmsnap-retention-oracle";

fn restic(repo: &Path, tz: &str, args: &[&str]) -> Output {
    let output = Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", tz)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .output()
        .unwrap_or_else(|e| panic!("cannot run restic ({e}): run `./x test` (its setup installs restic) or `apt-get install restic`"));
    assert!(
        output.status.success(),
        "restic {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// restic's version, and which of its retention rules it follows.
fn restic_rules() -> (String, ResticRules) {
    let output = Command::new("restic").arg("version").output().unwrap_or_else(|e| {
        panic!("restic is not installed ({e}): run `./x test` (its setup installs restic) or `apt-get install restic`")
    });
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected `restic version` output: {text:?}"));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let rules = if (major, minor) < (0, 16) { ResticRules::Before0_16 } else { ResticRules::Current };
    (version.to_string(), rules)
}

/// The thinned hourly history (see the file's doc), oldest first.
fn history(zone: &TimeZone) -> Vec<Timestamp> {
    let local = |text: &str| text.parse::<DateTime>().unwrap().to_zoned(zone.clone()).unwrap().timestamp();
    let end = local("2025-01-05T23:00");
    let start = end.checked_sub(SignedDuration::from_hours(400 * 24)).unwrap();
    let hourly = Schedule::cron("@hourly", Some(ZONE)).unwrap();
    let runs = hourly.runs_between(start, end, 20_000);
    assert!(runs.len() >= 400 * 24, "{} hourly runs", runs.len());
    let dense: Vec<(Timestamp, Timestamp)> = [
        ("2025-01-04T21:00", "2025-01-05T23:00"), // the last 26 hours
        ("2024-12-31T22:00", "2025-01-01T02:00"), // New Year, inside ISO week 2025-W01
        ("2024-11-17T22:00", "2024-11-18T01:00"), // Sunday to Monday: a week boundary
        ("2024-10-27T00:00", "2024-10-27T04:00"), // clocks go back: 02:00 happens twice
        ("2024-09-30T22:00", "2024-10-01T01:00"), // a month end
        ("2024-03-31T00:00", "2024-03-31T04:00"), // clocks go forward: no 02:00
        ("2024-02-29T22:00", "2024-03-01T01:00"), // the leap day
    ]
    .iter()
    .map(|(from, to)| (local(from), local(to)))
    .collect();
    let mut times = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        let in_dense = dense.iter().any(|(from, to)| run >= from && run <= to);
        if index % 113 == 0 || in_dense {
            times.push(*run);
        }
        if in_dense && index % 4 == 0 {
            times.push(run.checked_add(SignedDuration::from_mins(29)).unwrap());
        }
    }
    times
}

/// A repository holding one snapshot per history time, made once and cached by the history.
fn repository(times: &[Timestamp], zone: &TimeZone) -> PathBuf {
    let key = times
        .iter()
        .fold(0xcbf29ce484222325u64, |hash, t| (hash ^ t.as_second() as u64).wrapping_mul(0x100000001b3));
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let cached = root.join(format!("restic-oracle-{key:016x}"));
    if cached.join("complete").exists() {
        return cached.join("repo");
    }
    let building = tempfile::tempdir_in(&root).unwrap();
    let repo = building.path().join("repo");
    let data = building.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("disk.img"), b"one tiny file").unwrap();
    restic(&repo, "UTC", &["init", "--quiet"]);
    // restic parses --time in its local zone, where a repeated hour is ambiguous: give each
    // backup a fixed-offset zone equal to Berlin's offset at that instant, so that the stored
    // time carries that offset (which restic reads back as Berlin local time).
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(time) = times.get(index) else { break };
                    let offset = zone.to_offset(*time);
                    let hours = offset.seconds() / 3600;
                    assert_eq!(offset.seconds() % 3600, 0, "whole-hour offsets only");
                    let fixed_zone = format!("Etc/GMT{}{}", if hours > 0 { '-' } else { '+' }, hours.abs());
                    let civil = offset.to_datetime(*time).strftime("%Y-%m-%d %H:%M:%S").to_string();
                    restic(
                        &repo,
                        &fixed_zone,
                        &[
                            "backup",
                            "--quiet",
                            "--no-cache",
                            "--host",
                            "h",
                            "--time",
                            &civil,
                            data.to_str().unwrap(),
                        ],
                    );
                }
            });
        }
    });
    std::fs::write(building.path().join("complete"), b"").unwrap();
    let kept_dir = building.keep();
    match std::fs::rename(&kept_dir, &cached) {
        Ok(()) => cached.join("repo"),
        // Another run cached it meanwhile: use ours.
        Err(_) => kept_dir.join("repo"),
    }
}

fn parse_times(json: &serde_json::Value) -> BTreeSet<Timestamp> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|snapshot| snapshot["time"].as_str().unwrap().parse::<Timestamp>().unwrap())
        .collect()
}

struct Case {
    flags: &'static [&'static str],
    policy: KeepPolicy,
}

#[test]
fn keep_policy_keeps_what_restic_forget_keeps_on_a_400_day_hourly_history() {
    let (version, rules) = restic_rules();
    let zone = TimeZone::get(ZONE).unwrap();
    let times = history(&zone);
    assert!(times.len() <= 180, "{} snapshots: too many for restic to make quickly", times.len());
    let repo = repository(&times, &zone);

    // restic holds exactly the history, read back in Berlin time.
    let listed = restic(&repo, ZONE, &["snapshots", "--json", "--no-cache"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(parse_times(&listed), times.iter().copied().collect::<BTreeSet<_>>());

    let p = KeepPolicy::default;
    let cases = [
        Case { flags: &["--keep-last", "5"], policy: KeepPolicy { last: 5, ..p() } },
        Case {
            flags: &[
                "--keep-hourly",
                "24",
                "--keep-daily",
                "7",
                "--keep-weekly",
                "4",
                "--keep-monthly",
                "12",
                "--keep-yearly",
                "2",
            ],
            policy: KeepPolicy { hourly: 24, daily: 7, weekly: 4, monthly: 12, yearly: 2, ..p() },
        },
        Case { flags: &["--keep-daily", "30"], policy: KeepPolicy { daily: 30, ..p() } },
        Case {
            flags: &["--keep-hourly", "100", "--keep-weekly", "10"],
            policy: KeepPolicy { hourly: 100, weekly: 10, ..p() },
        },
        Case {
            flags: &["--keep-last", "3", "--keep-daily", "60", "--keep-monthly", "24", "--keep-yearly", "5"],
            policy: KeepPolicy { last: 3, daily: 60, monthly: 24, yearly: 5, ..p() },
        },
        Case { flags: &["--keep-weekly", "60"], policy: KeepPolicy { weekly: 60, ..p() } },
        Case { flags: &["--keep-yearly", "1"], policy: KeepPolicy { yearly: 1, ..p() } },
        Case { flags: &["--keep-hourly", "1000"], policy: KeepPolicy { hourly: 1000, ..p() } },
        Case {
            flags: &["--keep-within", "1m15d", "--keep-monthly", "3"],
            policy: KeepPolicy { within: Some("1m15d".parse().unwrap()), monthly: 3, ..p() },
        },
        Case {
            flags: &["--keep-within", "2d12h", "--keep-last", "2"],
            policy: KeepPolicy { within: Some("2d12h".parse().unwrap()), last: 2, ..p() },
        },
    ];
    let now = Timestamp::now();
    let mut failures = Vec::new();
    for case in &cases {
        let mut args = vec!["forget", "--dry-run", "--json", "--no-cache", "--host", "h"];
        args.extend_from_slice(case.flags);
        let output = restic(&repo, ZONE, &args);
        let groups: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("restic forget output is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
        });
        let groups = groups.as_array().unwrap();
        assert_eq!(groups.len(), 1, "one host and path: one group");
        let restic_kept = parse_times(&groups[0]["keep"]);
        let restic_removed = parse_times(&groups[0]["remove"]);
        assert_eq!(restic_kept.len() + restic_removed.len(), times.len());

        let ours = case.policy.apply_as(rules, times.iter().map(|t| ((), *t)), &zone, now);
        let our_kept: BTreeSet<Timestamp> = ours.keep.iter().map(|v| v.time).collect();
        eprintln!(
            "restic {version} forget {}: restic keeps {}, we keep {} of {}",
            case.flags.join(" "),
            restic_kept.len(),
            our_kept.len(),
            times.len()
        );
        if our_kept != restic_kept {
            let show = |set: &BTreeSet<Timestamp>| -> Vec<String> {
                set.iter().map(|t| t.to_zoned(zone.clone()).strftime("%F %T%:z").to_string()).collect()
            };
            failures.push(format!(
                "{}: only restic keeps {:?}; only we keep {:?}",
                case.flags.join(" "),
                show(&restic_kept.difference(&our_kept).copied().collect()),
                show(&our_kept.difference(&restic_kept).copied().collect()),
            ));
        }
    }
    assert!(failures.is_empty(), "kept sets differ from restic {version}:\n{}", failures.join("\n"));
}
