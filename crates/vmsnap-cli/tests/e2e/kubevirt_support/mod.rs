//! Helpers of the port of KubeVirt's snapshot and restore functional tests
//! (`tests/storage/snapshot.go` and `restore.go` of kubevirt/kubevirt): the API as `virtClient`
//! offers it ([`api`]), KubeVirt's VM and DataVolume factories mapped to vmsnap's test guest
//! ([`libvmi`]), the waits and checks of `libstorage`, `libvmops` and `events` ([`libstorage`]),
//! and the guest's serial console for the guests without an agent ([`console`]).
//!
//! Each test starts its own `vmsnap serve` (under a second) and works in KubeVirt's test namespace.

pub mod api;
pub mod console;
pub mod guest;
pub mod libstorage;
pub mod libvmi;

use std::ops::Deref;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use self::api::*;
use crate::support::{Vmsnap, start};

/// `testsuite.GetTestNamespace(nil)`.
pub const TEST_NAMESPACE: &str = "kubevirt-test-default1";

/// `testsuite.NamespaceTestAlternative`.
pub const ALTERNATIVE_NAMESPACE: &str = "kubevirt-test-alternative";

/// The StorageClass with VolumeSnapshot support (`libstorage.GetSnapshotStorageClass`).
pub const SNAPSHOT_STORAGE_CLASS: &str = "local";

/// A `vmsnap serve` with its test namespaces, and an API client in the first (`virtClient`).
pub struct Cluster {
    /// The server.
    pub vmsnap: Vmsnap,
    /// The API, in [`TEST_NAMESPACE`].
    pub api: Api,
    started: Instant,
}

impl Drop for Cluster {
    /// With `VMSNAP_TEST_TIMES=FILE`, appends the test's name and wall time to FILE (to measure
    /// what the port costs).
    fn drop(&mut self) {
        let Some(path) = std::env::var_os("VMSNAP_TEST_TIMES") else { return };
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        let line = format!("{:7.1} {test}\n", self.started.elapsed().as_secs_f64());
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        let _ = file.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
}

impl Deref for Cluster {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Cluster {
    /// Starts `vmsnap serve` under TCG and creates the test namespaces; `None` without QEMU.
    pub async fn start() -> Option<Cluster> {
        let started = Instant::now();
        let vmsnap = start("tcg")?;
        let client = vmsnap.client().await.expect("a client");
        let api = Api::new(client, TEST_NAMESPACE);
        for namespace in [TEST_NAMESPACE, ALTERNATIVE_NAMESPACE] {
            api.create(NAMESPACE, &serde_json::json!({"metadata": {"name": namespace}})).await;
        }
        guest::prepare_images(&vmsnap);
        Some(Cluster { vmsnap, api, started })
    }
}

/// `Eventually(probe, timeout, poll).Should(...)`: polls until `probe` answers `Ok`, and panics
/// after `timeout` with `what` and the last answer.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(poll).await,
        }
    }
}

/// `Consistently(probe, duration, poll).Should(...)`: panics the first time `probe` answers `Err`
/// within `duration`.
pub async fn consistently(
    what: &str,
    duration: Duration,
    poll: Duration,
    mut probe: impl AsyncFnMut() -> Result<(), String>,
) {
    let started = Instant::now();
    while started.elapsed() < duration {
        if let Err(seen) = probe().await {
            panic!("{what} stopped holding after {:?}: {seen}", started.elapsed());
        }
        tokio::time::sleep(poll).await;
    }
}

/// How often the waits look again. The originals poll every 1 to 5 s; the test guest and the
/// embedded server answer within milliseconds, so a short poll only makes the tests faster.
pub const POLL: Duration = Duration::from_millis(250);

/// Seconds, for the timeouts copied from the original tests.
pub const fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// `rand.String(n)` of k8s.io/apimachinery: lower-case consonants and digits.
pub fn rand_string(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A JSON list as a vector (`null` is the empty list, as a nil Go slice).
pub fn items(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// `Expect(left).To(Equal(right))` for JSON: panics listing the paths where they differ.
#[track_caller]
pub fn assert_json_eq(left: &Value, right: &Value, what: &str) {
    let mut differences = Vec::new();
    json_differences("", left, right, &mut differences);
    assert!(differences.is_empty(), "{what}: they differ at\n{}", differences.join("\n"));
}

fn json_differences(path: &str, left: &Value, right: &Value, out: &mut Vec<String>) {
    match (left, right) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                json_differences(&format!("{path}/{key}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_differences(&format!("{path}/{i}"), x, y, out);
            }
        }
        _ if left != right => out.push(format!("  {path}: {left} != {right}")),
        _ => {}
    }
}
