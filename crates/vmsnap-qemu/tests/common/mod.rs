//! Finding the QEMU binaries the real-process tests need.

use std::path::PathBuf;
use std::time::Duration;

use vmsnap_qemu::ConnectError;

/// The path of `name`, looked up in `PATH` and the sbin directories (where
/// Debian puts `qemu-ga`). When it is missing the test is skipped with a
/// message, unless `VMSNAP_REQUIRE_QEMU=1`, which turns a missing binary into a failure.
pub fn require_binary(name: &str) -> Option<PathBuf> {
    let path_dirs =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let found = path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var("VMSNAP_REQUIRE_QEMU").as_deref() != Ok("1"),
            "{name} is required because VMSNAP_REQUIRE_QEMU=1, but it is not installed"
        );
        eprintln!("skipping: {name} is not installed (set VMSNAP_REQUIRE_QEMU=1 to make this a failure)");
    }
    found
}

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
