//! `vmsnap serve` run as an unprivileged system user keeps its data private to that user: every
//! directory 0700, every file 0600, nothing readable by another user (`nobody` gets EACCES), and a
//! tree left open by an earlier run is closed at the next start or refused when it is not its own.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: db-password}
stringData: {password: hunter2-privacy-test}
";

const CONFIG_MAP: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: private}
";

/// One entry of a tree, as `lstat` sees it.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    kind: &'static str,
    mode: u32,
    uid: u32,
}

fn walk(root: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = match meta.file_type() {
            t if t.is_dir() => "dir",
            t if t.is_file() => "file",
            t if t.is_socket() => "socket",
            t if t.is_symlink() => "symlink",
            _ => "other",
        };
        if kind == "dir" {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        entries.push(Entry { path, kind, mode: meta.permissions().mode() & 0o7777, uid: meta.uid() });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

fn listing(entries: &[Entry]) -> String {
    entries.iter().map(|e| format!("{:o} {} {} {}\n", e.mode, e.uid, e.kind, e.path.display())).collect()
}

/// Every entry belongs to `uid`; directories are 0700, files 0600, sockets closed to others.
#[track_caller]
fn assert_private(entries: &[Entry], uid: u32) {
    let wrong: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.uid != uid
                || match e.kind {
                    "dir" => e.mode != 0o700,
                    "file" => e.mode != 0o600,
                    "socket" => e.mode & 0o077 != 0,
                    _ => true,
                }
        })
        .collect();
    assert!(wrong.is_empty(), "not private to uid {uid}:\n{wrong:#?}\nevery entry:\n{}", listing(entries));
}

/// `nobody` can neither read a file nor list a directory: EACCES every time.
#[track_caller]
fn assert_unreadable_by(other: &Account, entries: &[Entry]) {
    for entry in entries {
        let path = entry.path.to_str().unwrap();
        let out = match entry.kind {
            "dir" => run_as(other, "ls", &[path]),
            _ => run_as(other, "cat", &[path]),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("Permission denied"),
            "{} read {} ({}): exit {:?}, stderr {stderr:?}",
            other.name,
            entry.path.display(),
            entry.kind,
            out.status.code()
        );
    }
}

/// Opens every entry to everyone, as an older vmsnap or a careless copy would have left it.
fn open_to_everyone(entries: &[Entry]) -> usize {
    let mut opened = 0;
    for entry in entries {
        let mode = match entry.kind {
            "dir" => 0o755,
            "file" => 0o644,
            "socket" => 0o777,
            _ => continue,
        };
        std::fs::set_permissions(&entry.path, std::fs::Permissions::from_mode(mode)).unwrap();
        opened += 1;
    }
    opened
}

#[test]
fn a_service_users_data_directory_is_private_to_it_and_kept_so() {
    let user = service_user();
    let nobody = other_user();
    let binary = vmsnap_binary().to_str().unwrap();
    assert!(
        run_as(&user, "test", &["-x", binary]).status.success(),
        "{} cannot run {binary}: every directory above it must be traversable by others",
        user.name
    );
    let dir = TestDir::new("vp");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    nix::unistd::chown(&home, Some(user.uid.into()), Some(user.gid.into())).unwrap();
    let data = home.join("data");
    let with_vm = vmsnap_testing::require_qemu();
    let cache = vmsnap_testing::serve::guest_cache();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serve = Serve::start(
        &data,
        &listen,
        Some(&user),
        &["--accel", "tcg", "--image-cache", cache.to_str().unwrap()],
    );

    serve.apply(SECRET);
    serve.apply(CONFIG_MAP);
    if with_vm {
        // A running VM (QEMU's sockets, pid file, console log, its disk's layers) with a snapshot.
        let example = |name: &str| vmsnap_testing::serve::repository_root().join("examples").join(name);
        serve.kubectl(&["apply", "-f", example("vm.yaml").to_str().unwrap()]).ok();
        let boot = vmsnap_testing::serve::BOOT_TIMEOUT;
        serve.wait_for(["vm", "demo"], "condition=Ready", boot, "the VM start");
        serve.wait_for(["vmi", "demo"], "condition=AgentConnected", boot, "the guest agent connection");
        serve.kubectl(&["apply", "-f", example("snapshot.yaml").to_str().unwrap()]).ok();
        let ready = "jsonpath={.status.readyToUse}=true";
        serve.wait_for(["vmsnapshot", "demo-snapshot"], ready, Duration::from_secs(180), "the snapshot");
    }

    let entries = walk(&data);
    let has = |suffix: &str| entries.iter().any(|e| e.path.ends_with(suffix));
    for expected in [
        "store/store.db",
        "store/store.db-wal",
        "token",
        "kubeconfig",
        "tls/ca.key",
        "volumes/manifest.json",
        "space-reserve",
    ] {
        assert!(has(expected), "no {expected} in the data directory:\n{}", listing(&entries));
    }
    if with_vm {
        assert!(entries.iter().any(|e| e.kind == "socket"), "no QEMU socket:\n{}", listing(&entries));
        assert!(has("qemu.pid"), "no QEMU pid file:\n{}", listing(&entries));
        let layers = entries.iter().filter(|e| e.path.starts_with(data.join("volumes/layers"))).count();
        assert!(layers >= 3, "the disk and its snapshot have no layers:\n{}", listing(&entries));
    }
    assert_private(&entries, user.uid);
    assert_unreadable_by(&nobody, &entries);
    serve.stop();

    // A tree open to everyone (an earlier version, a restored backup) is closed at the next start,
    // with one warning that counts what was fixed.
    let before = walk(&data);
    let opened = open_to_everyone(&before);
    serve.restart();
    let log = serve.run_log();
    let warning = format!("made {opened} of {} paths private to the service user", before.len());
    assert!(log.contains(&warning), "no {warning:?} in:\n{log}");
    assert_eq!(log.matches("paths private to the service user").count(), 1, "{log}");
    let after = walk(&data);
    assert_private(&after, user.uid);
    assert_unreadable_by(&nobody, &after);
    serve.stop();

    // A file of another user in the tree: the start is refused, saying what to do.
    let token = data.join("token");
    nix::unistd::chown(&token, Some(nobody.uid.into()), None).unwrap();
    let mut refused = Serve::spawn(&data, &listen, Some(&user), &["--accel", "tcg"]);
    assert_eq!(refused.await_exit(), 1, "{}", refused.log());
    let expected = format!(
        "{} belongs to nobody, but vmsnap runs as {name}: run vmsnap as nobody, or give the directory to \
         {name} (chown -R {name}: {})",
        token.display(),
        data.display(),
        name = user.name
    );
    assert!(refused.log().contains(&expected), "no {expected:?} in:\n{}", refused.log());
}
