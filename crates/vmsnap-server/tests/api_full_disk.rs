//! On a full disk, writes are refused with a `Status` that names the cause, reads keep working,
//! and deletes keep working so that a user can free space (before: a bare 500 "storage error").
//! The data directory is on a small tmpfs that the test mounts (the tests run as root).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use http::Method;
use serde_json::json;
use support::{get, post, send};
use vmsnap_apiserver::{ApiServer, ApiServerConfig};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// A tmpfs of `size` at a fresh path, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let path = std::env::temp_dir().join(format!("vmsnap-full-disk-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root, as the tests run in CI");
        SmallDisk(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Writes zeros into `path` until the disk is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

fn configmap(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"x": "y".repeat(200_000)}})
}

#[tokio::test]
async fn a_full_disk_is_named_reads_and_deletes_go_on_and_writes_resume_once_space_is_freed() {
    let disk = SmallDisk::mount("48m");
    let data_dir = disk.0.join("data");
    let config = ApiServerConfig {
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        store: Default::default(),
        seed: Vec::new(),
        extra_routes: None,
        certificate_names: Vec::new(),
    };
    let server = ApiServer::start(config).await.unwrap();
    let c = vmsnap_testing::client_for(&server.kubeconfig_path).await.unwrap();
    let (code, body) = post(&c, CONFIGMAPS, &configmap("kept")).await;
    assert_eq!(code, 201, "{body}");

    let filler = disk.0.join("filler");
    fill(&filler);
    let mut refusal = None;
    for i in 0..200 {
        let (code, status) = post(&c, CONFIGMAPS, &configmap(&format!("more-{i}"))).await;
        if code != 201 {
            refusal = Some((code, status));
            break;
        }
    }
    let (code, status) = refusal.expect("the disk fills up");
    assert_eq!(code, 507, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "InsufficientStorage");
    let message = status["message"].as_str().unwrap();
    assert!(message.starts_with("no space left on the device of the data directory"), "{message}");
    assert!(message.contains(&data_dir.display().to_string()), "names the directory: {message}");

    // Reads and deletes go on.
    let (code, kept) = get(&c, &format!("{CONFIGMAPS}/kept")).await;
    assert_eq!((code, kept["data"]["x"].as_str().map(str::len)), (200, Some(200_000)));
    let (code, list) = get(&c, CONFIGMAPS).await;
    assert_eq!(code, 200, "{list}");
    let (code, deleted) =
        send(&c, Method::DELETE, &format!("{CONFIGMAPS}/kept"), "application/json", "").await;
    assert_eq!(code, 200, "a delete on a full disk: {deleted}");
    let (code, _) = get(&c, &format!("{CONFIGMAPS}/kept")).await;
    assert_eq!(code, 404);
    let (code, status) = post(&c, CONFIGMAPS, &configmap("still-full")).await;
    assert_eq!(code, 507, "new objects wait for room: {status}");

    // Space freed on the disk: writes resume.
    std::fs::remove_file(&filler).unwrap();
    let (code, body) = post(&c, CONFIGMAPS, &configmap("after")).await;
    assert_eq!(code, 201, "{body}");
    drop(server);
}
