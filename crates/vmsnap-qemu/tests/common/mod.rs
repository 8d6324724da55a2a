//! Helpers of the real-process tests: finding the QEMU binaries, connecting to a fresh socket.

use std::time::Duration;

use vmsnap_qemu::ConnectError;
pub use vmsnap_testing::images::require_binary;

/// Calls `connect` until it stops failing with [`ConnectError::Io`]: a child
/// process creates its socket file before it listens on it, so the first
/// attempts may be refused.
pub async fn connect_retrying<T, F: Future<Output = Result<T, ConnectError>>>(
    timeout: Duration,
    mut connect: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match connect().await {
            Ok(connected) => return connected,
            Err(ConnectError::Io { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("could not connect within {timeout:?}: {error}"),
        }
    }
}
