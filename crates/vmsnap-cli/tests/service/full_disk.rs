//! `vmsnap serve` on a full data disk (a small tmpfs, filled to the last byte) still starts, rewrites
//! nothing it does not have to, and deletes objects and their disks so that the user can free
//! space; the space reserve it gives back for that is made again once there is room.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use vmsnap_testing::tmpfs::Tmpfs;

use crate::support::*;

/// Writes `path` until the file system has no byte left, or until it has written as many bytes
/// as were free when it began: a running vmsnap that gives back its space reserve meanwhile keeps
/// that room, which a filler writing on until the disk is full again would take.
fn fill(path: &Path) {
    let stats = nix::sys::statvfs::statvfs(path.parent().unwrap()).unwrap();
    let mut left = stats.blocks_available() * stats.fragment_size();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let block = vec![0x5au8; chunk];
        while left > 0 {
            let len = block.len().min(usize::try_from(left).unwrap());
            match file.write_all(&block[..len]).and_then(|()| file.flush()) {
                Ok(()) => left -= len as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
}

fn assert_full(path: &Path) {
    let stats = nix::sys::statvfs::statvfs(path).unwrap();
    assert_eq!(stats.blocks_available(), 0, "the disk is not full");
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n")
}

const CLAIM: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: scratch}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local
  resources: {requests: {storage: 64Mi}}
";

/// The files of the volume store's layers.
fn layer_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("volumes/layers")).map(|d| d.count()).unwrap_or(0)
}

/// Waits until `check` holds, or panics with `what` and the server's log.
#[track_caller]
fn until(serve: &Serve, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}:\n{}", serve.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_full_data_disk_starts_and_lets_the_user_delete_to_free_space() {
    let dir = TestDir::new("vf");
    let disk = Tmpfs::mount(&dir.path().join("disk"), "48m", 0o755);
    let data = disk.path().join("data");
    let filler = disk.path().join("filler");
    let reserve = data.join("space-reserve");
    let with_disk = vmsnap_testing::require_qemu();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serve = Serve::start(&data, &listen, None, &["--accel", "tcg"]);
    assert_eq!(std::fs::metadata(&reserve).map(|m| m.len()).ok(), Some(8 << 20), "{}", serve.log());

    for name in ["first", "second", "third"] {
        serve.apply(&config_map(name));
    }
    if with_disk {
        serve.apply(CLAIM);
        let bound = "jsonpath={.status.phase}=Bound";
        serve.wait_for(["pvc", "scratch"], bound, Duration::from_secs(60), "the claim bound");
    }
    let layers = layer_files(&data);
    serve.stop();

    // The disk fills up while vmsnap is stopped; it starts anyway.
    let kubeconfig_written = std::fs::metadata(serve.kubeconfig()).unwrap().modified().unwrap();
    fill(&filler);
    assert_full(&filler);
    serve.restart();
    let log = serve.run_log();
    assert!(log.contains("the data disk is full: gave back the 8 MiB space reserve"), "{log}");
    assert!(!reserve.exists());
    assert_eq!(
        std::fs::metadata(serve.kubeconfig()).unwrap().modified().unwrap(),
        kubeconfig_written,
        "the kubeconfig was rewritten"
    );

    // Deletes work: the objects go, and so do the disk's files.
    serve.kubectl(&["delete", "configmap", "first"]).ok();
    let gone = serve.kubectl(&["get", "configmap", "first"]);
    assert!(gone.stderr.contains("NotFound"), "{gone:?}");
    if with_disk {
        assert!(layers > 0, "the claim has no files in the volume store");
        serve.kubectl(&["delete", "pvc", "scratch", "--timeout=60s"]).ok();
        until(&serve, "the claim's disk files to go", Duration::from_secs(60), || {
            layer_files(&data) < layers
        });
    }
    serve.stop();

    // With room again, the next start makes the reserve again; a disk that fills up while vmsnap
    // runs gets it back within seconds, and deletes still work.
    std::fs::remove_file(&filler).unwrap();
    serve.restart();
    assert_eq!(std::fs::metadata(&reserve).map(|m| m.len()).ok(), Some(8 << 20), "{}", serve.log());
    fill(&filler);
    until(&serve, "the reserve to be given back", Duration::from_secs(20), || !reserve.exists());
    serve.kubectl(&["delete", "configmap", "second"]).ok();
    let left = serve.kubectl(&["get", "configmaps", "-o", "name"]);
    assert!(left.ok().contains("configmap/third") && !left.stdout.contains("second"), "{}", left.stdout);
    serve.stop();
}
