//! What the schedule's pure tests build their observations from.

use jiff::Timestamp;

use super::names::snapshot_name;
use super::observed::{ScheduledSnapshot, SnapshotState};

/// A timestamp from RFC 3339 text.
pub(super) fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// The snapshot schedule `s` made of `vm` at 10:`minute` on 2025-01-01, in `state`, with no error.
pub(super) fn snap(vm: &str, minute: u32, state: SnapshotState) -> ScheduledSnapshot {
    let run_time = ts(&format!("2025-01-01T10:{minute:02}:00Z"));
    ScheduledSnapshot { name: snapshot_name("s", vm, run_time), vm: vm.into(), run_time, state, error: None }
}
