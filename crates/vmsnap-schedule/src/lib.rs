//! The scheduling core of vmsnap's snapshot schedules: pure logic over [`jiff`] timestamps, no
//! I/O and no Kubernetes, so that the controller, the CLI and the console agree on it.
//!
//! - **When** ([`Schedule`]): a five-field cron expression ([`CronExpr`], minute granularity,
//!   names, ranges, steps, lists, `@daily`-style macros) or a fixed [`Interval`] (`15m`, `1h`),
//!   in an IANA time zone (UTC by default). [`Schedule::next_after`] gives the next run;
//!   daylight-saving changes follow Vixie cron (documented on [`Schedule`]).
//! - **Missed runs** ([`catch_up`]): after downtime, the most recent missed run is taken once, or
//!   skipped if past the starting deadline, and the missed ones are counted, as the Kubernetes
//!   CronJob controller does.
//! - **Retention** ([`KeepPolicy`]): which snapshots to keep, exactly as `restic forget
//!   --keep-last/-hourly/-daily/-weekly/-monthly/-yearly/-within` keeps them (checked against
//!   restic itself in `tests/restic_oracle.rs`).
//!
//! The cron parser is this crate's own (about 200 lines) rather than `croner` or `cron`: those
//! compute with chrono, not jiff; neither has Vixie cron's daylight-saving rules (fixed-time jobs
//! in a skipped hour run at the change, in a repeated hour once), which need the parser to say
//! whether a field was written with `*`; and the zone-walking that gives those rules needs only
//! "the next matching wall-clock minute", which is small and tested here.

mod cron;
mod interval;
mod missed;
mod retention;
mod schedule;

pub use cron::{CronError, CronExpr};
pub use interval::{Interval, IntervalError};
pub use missed::{CatchUp, Decision, TOO_MANY_MISSED, catch_up};
pub use retention::{
    KeepPolicy, KeepReason, KeepWithin, KeepWithinError, ResticRules, Retention, Rule, Verdict,
};
pub use schedule::{Schedule, ScheduleError, When};
