//! Helpers of the end-to-end tests: a real `vmsnap serve` with real guests, driven by kubectl and
//! the vmsnap CLI.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
pub use vmsnap_testing::serve::{BOOT_TIMEOUT, Vmsnap, repository_root};

/// Long enough for any snapshot or restore of the test guest, short enough to fail a stuck test.
pub const OPERATION_TIMEOUT: &str = "120s";

/// Starts `vmsnap serve` (the binary under test) with `accel`, or `None` without QEMU.
pub fn start(accel: &str) -> Option<Vmsnap> {
    Vmsnap::start(std::path::Path::new(env!("CARGO_BIN_EXE_vmsnap")), accel, &[]).expect("start vmsnap serve")
}

/// A path under `examples/`.
pub fn example(name: &str) -> String {
    repository_root().join("examples").join(name).display().to_string()
}

/// `kubectl get KIND NAME -o json`.
pub async fn get_json(vmsnap: &Vmsnap, kind: &str, name: &str) -> Result<Value> {
    let out = vmsnap.kubectl_run(&["get", kind, name, "-o", "json"]).await;
    if out.code != 0 {
        bail!("kubectl get {kind} {name}: {}", out.stderr);
    }
    serde_json::from_str(&out.stdout).context("kubectl printed JSON")
}

/// Whether `kubectl get KIND NAME` finds the object.
pub async fn exists(vmsnap: &Vmsnap, kind: &str, name: &str) -> bool {
    let out = vmsnap.kubectl_run(&["get", kind, name, "-o", "name"]).await;
    if out.code != 0 && !out.stderr.contains("NotFound") {
        panic!("kubectl get {kind} {name}: {}", out.stderr);
    }
    out.code == 0
}

/// Runs `kubectl ARGS` and panics with its output unless it succeeded; returns stdout.
pub async fn kubectl(vmsnap: &Vmsnap, args: &[&str]) -> String {
    vmsnap.kubectl_run(args).await.ok().to_owned()
}

/// Waits until VM `vm` runs with its guest agent connected (`kubectl wait`, as a user would).
pub async fn await_running_with_agent(vmsnap: &Vmsnap, vm: &str) {
    let timeout = format!("--timeout={}s", BOOT_TIMEOUT.as_secs());
    // The VM exists already; its instance may not yet, and `kubectl wait` fails on a missing object.
    let out = vmsnap.kubectl_run(&["wait", "vm", vm, "--for", "condition=Ready", &timeout]).await;
    assert_eq!(out.code, 0, "{vm} did not become ready: {}\n{}", out.stderr, tail(&vmsnap.log()));
    let out = vmsnap.kubectl_run(&["wait", "vmi", vm, "--for", "condition=AgentConnected", &timeout]).await;
    assert_eq!(out.code, 0, "{vm} did not get its guest agent: {}\n{}", out.stderr, tail(&vmsnap.log()));
}

/// Creates the example snapshot (`demo-snapshot` of VM `demo`) and waits until it is Ready.
pub async fn take_example_snapshot(vmsnap: &Vmsnap) {
    kubectl(vmsnap, &["create", "-f", &example("snapshot.yaml")]).await;
    let timeout = format!("--timeout={OPERATION_TIMEOUT}");
    kubectl(vmsnap, &["wait", "vmsnapshot", "demo-snapshot", "--for", "condition=Ready", &timeout]).await;
}

/// Waits until VM `vm` is stopped and its VMI gone.
pub async fn await_stopped(vmsnap: &Vmsnap, vm: &str) {
    kubectl(
        vmsnap,
        &["wait", "vm", vm, "--for=jsonpath={.status.printableStatus}=Stopped", "--timeout=120s"],
    )
    .await;
    kubectl(vmsnap, &["wait", "vmi", vm, "--for=delete", "--timeout=60s"]).await;
}

/// Waits until restore `name` has `status.complete: true`.
pub async fn await_restore_complete(vmsnap: &Vmsnap, name: &str) -> Value {
    let timeout = format!("--timeout={OPERATION_TIMEOUT}");
    let out = vmsnap
        .kubectl_run(&["wait", "vmrestore", name, "--for=jsonpath={.status.complete}=true", &timeout])
        .await;
    let restore = get_json(vmsnap, "vmrestore", name).await.unwrap_or_default();
    assert_eq!(out.code, 0, "restore {name} did not complete: {}\n{restore:#}", out.stderr);
    restore
}

/// The last lines of a log, for failure messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The conditions of an object as `(type, status, reason)`.
pub fn conditions(object: &Value) -> Vec<(String, String, String)> {
    let text = |c: &Value, key: &str| c[key].as_str().unwrap_or_default().to_owned();
    object["status"]["conditions"]
        .as_array()
        .map(|list| list.iter().map(|c| (text(c, "type"), text(c, "status"), text(c, "reason"))).collect())
        .unwrap_or_default()
}

/// A JSON array of strings as a vector.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Polls `probe` every 200 ms until it is true, failing after `timeout` with `what`.
pub async fn until(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let started = std::time::Instant::now();
    while !probe().await {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
