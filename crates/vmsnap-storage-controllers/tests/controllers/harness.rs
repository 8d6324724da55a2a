//! An API server seeded with the storage defaults, the storage controllers
//! beside it over a real `LayeredDriver` in a temporary directory, a fake node
//! agent for attached volumes, and helpers to write and read volume data.

use std::time::Duration;

use vmsnap_storage::StorageOptions;
pub use vmsnap_testing::storage::StorageEnv as Env;

/// How long a test waits for the controllers to converge.
pub const WAIT: Duration = Duration::from_secs(20);
pub const MIB: u64 = 1 << 20;

/// A server with the controllers running, or `None` (skip) without the QEMU tools.
pub async fn start() -> Option<Env> {
    let mut env = without_controllers().await?;
    env.start_controllers().await;
    Some(env)
}

/// A server and a driver, with the controllers not started yet.
pub async fn without_controllers() -> Option<Env> {
    let mut env = Env::new(StorageOptions::default(), WAIT).await?;
    env.config.group_wait = Duration::from_secs(2);
    Some(env)
}
