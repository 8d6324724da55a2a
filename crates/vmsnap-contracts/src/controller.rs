//! How every controller of vmsnap runs.

use kube::runtime::controller::Config;

/// How many objects one controller reconciles at once: KubeVirt runs a few workers per controller,
/// and an unbounded burst (10,000 new snapshots) held the whole burst in memory.
pub const CONCURRENT_RECONCILES: u16 = 16;

/// kube-runtime's configuration for every controller of vmsnap.
pub fn controller_config() -> Config {
    Config::default().concurrency(CONCURRENT_RECONCILES)
}
