//! How every controller of vmsnap runs.

use kube::runtime::controller::Config;
use kube::runtime::events::{Event, EventType};

/// How many objects one controller reconciles at once: KubeVirt runs a few workers per controller,
/// and an unbounded burst (10,000 new snapshots) held the whole burst in memory.
pub const CONCURRENT_RECONCILES: u16 = 16;

/// kube-runtime's configuration for every controller of vmsnap.
pub fn controller_config() -> Config {
    Config::default().concurrency(CONCURRENT_RECONCILES)
}

/// An event of a controller: Warning or Normal, its reason (also its action) and note.
pub fn event(warning: bool, reason: &str, note: String) -> Event {
    Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    }
}
