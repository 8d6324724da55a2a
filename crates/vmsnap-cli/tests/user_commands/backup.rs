//! `vmsnap repo ...` and `vmsnap backup ...`. No backup controller runs here: the tests play it by
//! writing the status it would write, so what is checked is the command's side of the contract
//! (the objects and Secrets it makes, the requests it sends, how it reads the answers).

use std::path::{Path, PathBuf};

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vmsnap_api::backup::{
    VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, VirtualMachineRepositoryRestore,
    annotation,
};
use vmsnap_api::k8s_openapi::api::core::v1::Secret;

use crate::support::{Env, Out, WAIT};

fn repos(env: &Env) -> Api<VirtualMachineBackupRepository> {
    Api::namespaced(env.client.clone(), "default")
}

fn backups(env: &Env) -> Api<VirtualMachineRepositoryBackup> {
    Api::namespaced(env.client.clone(), "default")
}

fn restores(env: &Env) -> Api<VirtualMachineRepositoryRestore> {
    Api::namespaced(env.client.clone(), "default")
}

fn secrets(env: &Env) -> Api<Secret> {
    Api::namespaced(env.client.clone(), "default")
}

/// The names of the Secrets in the namespace.
async fn secret_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = secrets(env)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    names.sort();
    names
}

/// `key: value` of a Secret's data, as text.
async fn secret_data(env: &Env, name: &str) -> Vec<(String, String)> {
    let secret = secrets(env).get(name).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
}

/// Writes `text` into a file of `dir` and returns its path as a string.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Plays the controller: merges `status` into the object's status.
async fn set_status<K>(api: &Api<K>, name: &str, status: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status })))
        .await
        .unwrap();
}

async fn finish(child: tokio::process::Child) -> Out {
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("vmsnap ends").unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ready(location: &str, backups: i64) -> Value {
    json!({"location": location, "repositoryId": "3f1c9a", "backups": backups, "observedGeneration": 1,
           "conditions": [{"type": "Ready", "status": "True", "reason": "RepositoryReady"}]})
}

/// A repository `name` in the default directory, made through the API and marked ready.
async fn ready_repository(env: &Env, name: &str) {
    let repo: VirtualMachineBackupRepository = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository",
        "metadata": {"name": name}, "spec": {"local": {}, "passphraseSecretRef": {"name": format!("{name}-passphrase")}}
    }))
    .unwrap();
    repos(env).create(&PostParams::default(), &repo).await.unwrap();
    set_status(&repos(env), name, ready(&format!("/data/backups/default/{name}"), 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_add_makes_exactly_its_secrets_and_repository_and_reports_what_it_found() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = file(dir.path(), "pass", "correct horse battery staple\n");
    let before = secret_names(&env).await;

    // The default directory, without waiting: one Secret, the passphrase without its newline.
    let out = env.run(&["repo", "add", "main", "--passphrase-file", &pass, "--no-wait"]).await;
    out.expect(0);
    assert_eq!(out.stdout, "repository \"main\" added (not waiting for it to open)\n");
    let mut expected = before.clone();
    expected.push("main-passphrase".into());
    expected.sort();
    assert_eq!(secret_names(&env).await, expected);
    assert_eq!(
        secret_data(&env, "main-passphrase").await,
        vec![("passphrase".into(), "correct horse battery staple".into())]
    );
    let main = repos(&env).get("main").await.unwrap();
    assert_eq!(
        serde_json::to_value(&main.spec).unwrap(),
        json!({"local": {}, "passphraseSecretRef": {"name": "main-passphrase"}})
    );

    // S3, waiting: the command reports what the controller found.
    let id = file(dir.path(), "id", "vmsnap-test\r\n");
    let key = file(dir.path(), "key", "s3cr3t");
    let child = env.spawn(&[
        "repo",
        "add",
        "off-site",
        "--s3",
        "http://127.0.0.1:8333",
        "--bucket",
        "vm-backups",
        "--prefix",
        "lab",
        "--region",
        "eu-west-1",
        "--access-key-id-file",
        &id,
        "--secret-access-key-file",
        &key,
        "--passphrase-file",
        &pass,
        "--wait",
    ]);
    vmsnap_testing::await_value(&repos(&env), "off-site", WAIT, |_| Some(())).await.unwrap();
    set_status(&repos(&env), "off-site", ready("s3://vm-backups/lab at http://127.0.0.1:8333", 2)).await;
    let out = finish(child).await;
    out.expect(0);
    assert!(out.stdout.starts_with("Repository \"off-site\" is ready ("), "{}", out.stdout);
    assert!(
        out.stdout.contains("  Location:  s3://vm-backups/lab at http://127.0.0.1:8333\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  Backups:   2 (list them with: vmsnap backup list --repo off-site)\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Keep the passphrase safe"), "{}", out.stdout);
    assert_eq!(
        secret_data(&env, "off-site-s3-credentials").await,
        vec![("accessKeyId".into(), "vmsnap-test".into()), ("secretAccessKey".into(), "s3cr3t".into())]
    );
    let off_site = repos(&env).get("off-site").await.unwrap();
    assert_eq!(
        serde_json::to_value(&off_site.spec).unwrap(),
        json!({"s3": {"endpoint": "http://127.0.0.1:8333", "bucket": "vm-backups", "prefix": "lab", "region": "eu-west-1",
                      "credentialsSecretRef": {"name": "off-site-s3-credentials"}},
               "passphraseSecretRef": {"name": "off-site-passphrase"}})
    );

    // The table.
    let list = env.run(&["repo", "list"]).await;
    list.expect(0);
    set_status(&repos(&env), "off-site", json!({"storedSize": "1.5Gi", "deduplicationRatio": "7.0"})).await;
    let list = env.run(&["repo", "list"]).await;
    list.expect(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", list.stdout);
    let columns = |line: &str| {
        line.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(columns(lines[0]), ["NAME", "LOCATION", "READY", "BACKUPS", "STORED", "DEDUP"]);
    assert_eq!(columns(lines[1]), ["main", "<data dir>/backups", "-", "-", "-", "-"]);
    assert_eq!(
        columns(lines[2]),
        ["off-site", "s3://vm-backups/lab at http://127.0.0.1:8333", "True", "2", "1.5Gi", "7.0x"]
    );

    // Delete: the object and its Secrets go, the data is said to stay.
    let out = env.run(&["repo", "delete", "off-site"]).await;
    out.expect(0);
    assert_eq!(
        out.stdout,
        "repository \"off-site\" deleted with its Secrets off-site-passphrase, off-site-s3-credentials.\n\
         The backups stay in s3://vm-backups/lab at http://127.0.0.1:8333: add the repository again with the same passphrase to find them.\n"
    );
    assert_eq!(secret_names(&env).await, expected);
    assert!(repos(&env).get_opt("off-site").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_unopenable_repository_leaves_no_secret_behind() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = file(dir.path(), "pass", "pw\n");
    let id = file(dir.path(), "id", "id");
    let before = secret_names(&env).await;

    // Admission refuses: exit 4, the field named, no Secret made.
    let out = env.run(&["repo", "add", "main", "--dir", "relative/dir", "--passphrase-file", &pass]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: cannot add repository \"main\": spec.local.path: \"relative/dir\" must be an absolute path\n"
    );
    let out = env
        .run(&[
            "repo",
            "add",
            "nas",
            "--s3",
            "http://10.1.2.3:8333",
            "--bucket",
            "vm-backups",
            "--access-key-id-file",
            &id,
            "--secret-access-key-file",
            &id,
            "--passphrase-file",
            &pass,
        ])
        .await;
    out.expect(4);
    assert!(
        out.stderr.contains("spec.s3.endpoint: \"http://10.1.2.3:8333\" uses plain http"),
        "{}",
        out.stderr
    );
    assert_eq!(secret_names(&env).await, before);

    // The controller cannot open it: exit 5 with its reason, and nothing stays.
    let child = env.spawn(&["repo", "add", "main", "--dir", "/srv/backups", "--passphrase-file", &pass]);
    vmsnap_testing::await_value(&repos(&env), "main", WAIT, |_| Some(())).await.unwrap();
    set_status(
        &repos(&env),
        "main",
        json!({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False", "reason": "WrongPassphrase",
               "message": "the passphrase in Secret main-passphrase does not open the repository at /srv/backups"}]}),
    )
    .await;
    let out = finish(child).await;
    out.expect(5);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "error: repository \"main\" was not added: WrongPassphrase: the passphrase in Secret main-passphrase does not open the repository at /srv/backups"
    );
    assert!(repos(&env).get_opt("main").await.unwrap().is_none());
    assert_eq!(secret_names(&env).await, before);

    // A taken name is refused before any Secret is touched.
    ready_repository(&env, "taken").await;
    let out = env.run(&["repo", "add", "taken", "--passphrase-file", &pass]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: repository \"taken\" already exists: pick another name, or remove it with: vmsnap repo delete taken\n"
    );
    assert_eq!(secret_names(&env).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_command_lines_and_missing_objects_get_their_exit_codes() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = file(dir.path(), "pass", "pw");
    let empty = file(dir.path(), "empty", "\n");
    // clap: --s3 without its bucket and keys, --dir with --s3, restore without a target.
    env.run(&["repo", "add", "r", "--s3", "https://s3.example.com", "--passphrase-file", &pass])
        .await
        .expect(2);
    env.run(&["repo", "add", "r", "--dir", "/x", "--bucket", "b", "--passphrase-file", &pass])
        .await
        .expect(2);
    env.run(&["repo", "add", "r"]).await.expect(2);
    env.run(&["repo", "add", "r", "--passphrase-file", &pass, "--wait", "--no-wait"]).await.expect(2);
    env.run(&["backup", "create", "db"]).await.expect(2);
    env.run(&["backup", "restore", "b1"]).await.expect(2);
    env.run(&["backup", "restore", "b1", "--to", "x", "--in-place"]).await.expect(2);
    // Files that cannot be read or are empty.
    let out = env.run(&["repo", "add", "r", "--passphrase-file", "/nonexistent/pass"]).await;
    out.expect(2);
    assert!(
        out.stderr.starts_with("error: --passphrase-file /nonexistent/pass: cannot read it: "),
        "{}",
        out.stderr
    );
    let out = env.run(&["repo", "add", "r", "--passphrase-file", &empty]).await;
    out.expect(2);
    assert_eq!(out.stderr, format!("error: --passphrase-file {empty}: the file is empty\n"));
    // Missing objects: exit 3 with how to list them.
    let out = env.run(&["repo", "verify", "nope"]).await;
    out.expect(3);
    assert_eq!(
        out.stderr,
        "error: repository \"nope\" not found in namespace \"default\": list repositories with: vmsnap repo list\n"
    );
    env.run(&["repo", "prune", "nope"]).await.expect(3);
    env.run(&["repo", "delete", "nope"]).await.expect(3);
    let out = env.run(&["backup", "create", "db", "--repo", "nope"]).await;
    out.expect(3);
    assert!(out.stderr.contains("repository \"nope\" not found"), "{}", out.stderr);
    ready_repository(&env, "main").await;
    let out = env.run(&["backup", "create", "db", "--repo", "main"]).await;
    out.expect(3);
    assert!(out.stderr.starts_with("error: VM \"db\" not found"), "{}", out.stderr);
    let out = env.run(&["backup", "describe", "nope"]).await;
    out.expect(3);
    assert_eq!(
        out.stderr,
        "error: backup \"nope\" not found in namespace \"default\": list backups with: vmsnap backup list\n"
    );
    env.run(&["backup", "verify", "nope"]).await.expect(3);
    env.run(&["backup", "delete", "nope"]).await.expect(3);
    env.run(&["backup", "restore", "nope", "--to", "x"]).await.expect(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_prune_are_requests_answered_with_their_token() {
    let env = Env::start().await;
    ready_repository(&env, "main").await;
    let token = |env: &Env, key: &'static str| {
        let api = repos(env);
        async move {
            vmsnap_testing::await_value(&api, "main", WAIT, |r| {
                r.metadata.annotations.as_ref()?.get(key).cloned()
            })
            .await
            .unwrap()
        }
    };

    // A good verify: an answer to an older request is not taken for this one's.
    set_status(
        &repos(&env),
        "main",
        json!({"lastVerify": {"request": "old", "ok": false, "chunksChecked": 1}}),
    )
    .await;
    let child = env.spawn(&["repo", "verify", "main"]);
    let request = token(&env, annotation::VERIFY_REQUEST).await;
    assert_ne!(request, "old");
    set_status(
        &repos(&env),
        "main",
        json!({"lastVerify": {"request": request, "ok": true, "chunksChecked": 1234, "backupsChecked": 5}}),
    )
    .await;
    let out = finish(child).await;
    out.expect(0);
    assert_eq!(
        out.stdout,
        "Repository \"main\" verified: 1234 chunks of 5 backups read back, decrypted and checked; all good.\n"
    );

    // Bad chunks: listed with what they break, exit 5. A second request has a new token.
    let child = env.spawn(&["repo", "verify", "main"]);
    let second = vmsnap_testing::await_value(&repos(&env), "main", WAIT, |r| {
        r.metadata.annotations.as_ref()?.get(annotation::VERIFY_REQUEST).filter(|t| **t != request).cloned()
    })
    .await
    .unwrap();
    set_status(
        &repos(&env),
        "main",
        json!({"lastVerify": {"request": second, "ok": false, "chunksChecked": 1234, "backupsChecked": 5,
               "badChunks": [{"chunk": "9f2c0d", "problem": "Corrupt", "breaks": ["bk-1 data @ 1048576", "bk-2 data @ 1048576"]}]}}),
    )
    .await;
    let out = finish(child).await;
    out.expect(5);
    assert_eq!(
        out.stdout,
        "CHUNK    PROBLEM   BREAKS\n9f2c0d   Corrupt   bk-1 data @ 1048576; bk-2 data @ 1048576\n"
    );
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "error: repository \"main\" has bad chunks: 1 of 1234 checked; the backups they break cannot be restored whole"
    );

    // Prune.
    let child = env.spawn(&["repo", "prune", "main"]);
    let request = token(&env, annotation::PRUNE_REQUEST).await;
    set_status(
        &repos(&env),
        "main",
        json!({"lastPrune": {"request": request, "chunksDeleted": 42, "bytesFreed": 3145728}}),
    )
    .await;
    let out = finish(child).await;
    out.expect(0);
    assert_eq!(out.stdout, "Repository \"main\" pruned: 42 chunks deleted, 3Mi freed.\n");

    // A backup's verify goes to the backup.
    create_backup(&env, "bk-1", "db", "main").await;
    let child = env.spawn(&["backup", "verify", "bk-1"]);
    let request = vmsnap_testing::await_value(&backups(&env), "bk-1", WAIT, |b| {
        b.metadata.annotations.as_ref()?.get(annotation::VERIFY_REQUEST).cloned()
    })
    .await
    .unwrap();
    set_status(
        &backups(&env),
        "bk-1",
        json!({"lastVerify": {"request": request, "ok": true, "chunksChecked": 17, "backupsChecked": 1}}),
    )
    .await;
    let out = finish(child).await;
    out.expect(0);
    assert!(out.stdout.starts_with("Backup \"bk-1\" verified: 17 chunks of 1 backups"), "{}", out.stdout);
}

/// A backup object of `vm` in `repo`, made through the API.
async fn create_backup(env: &Env, name: &str, vm: &str, repo: &str) {
    let b: VirtualMachineRepositoryBackup = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
        "metadata": {"name": name},
        "spec": {"repository": repo, "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}
    }))
    .unwrap();
    backups(env).create(&PostParams::default(), &b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_create_shows_progress_and_a_summary_and_list_shows_the_table() {
    let env = Env::start().await;
    ready_repository(&env, "main").await;
    env.stopped_vm("db").await;

    let child = env.spawn(&["backup", "create", "db", "--repo", "main", "--name", "db-2", "--full"]);
    let created =
        vmsnap_testing::await_value(&backups(&env), "db-2", WAIT, |b| Some(b.clone())).await.unwrap();
    assert_eq!(
        serde_json::to_value(&created.spec).unwrap(),
        json!({"repository": "main", "forceFull": true, "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db"}})
    );
    let labels = created.metadata.labels.unwrap();
    assert_eq!(
        (labels["backup.vmsnap.io/vm"].as_str(), labels["backup.vmsnap.io/repository"].as_str()),
        ("db", "main")
    );
    let mi = 1i64 << 20;
    set_status(
        &backups(&env),
        "db-2",
        json!({"phase": "InProgress", "conditions": [{"type": "Progressing", "status": "True", "reason": "BackupInProgress", "message": "reading 1 disk"}],
               "progress": {"bytesToRead": 400 * mi, "bytesRead": 100 * mi, "bytesUploaded": 10 * mi, "bytesDeduplicated": 90 * mi, "percent": 25, "elapsedSeconds": 10}}),
    )
    .await;
    set_status(
        &backups(&env),
        "db-2",
        json!({"phase": "Succeeded", "type": "Full", "fullReason": "forceFull", "vmName": "db", "size": "1Gi",
               "pointInTime": "2026-12-06T10:15:00Z", "snapshotName": "db-2-snap",
               "disks": [{"name": "data", "sizeBytes": 1073741824}],
               "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded"}],
               "progress": {"bytesToRead": 400 * mi, "bytesRead": 400 * mi, "bytesUploaded": 40 * mi, "bytesDeduplicated": 300 * mi, "percent": 100, "elapsedSeconds": 20}}),
    )
    .await;
    let out = finish(child).await;
    out.expect(0);
    assert!(out.stderr.contains("Backup \"db-2\" of VM \"db\" to repository \"main\":\n"), "{}", out.stderr);
    assert!(out.stderr.contains("  BackupInProgress: reading 1 disk\n"), "{}", out.stderr);
    assert!(
        out.stderr.contains("  100Mi/400Mi read (25%), 10Mi uploaded, 90Mi deduplicated, 10Mi/s, ETA 30s\n"),
        "{}",
        out.stderr
    );
    let first = out.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("Backup \"db-2\" of VM \"db\" succeeded: Full, read 400Mi, uploaded 40Mi, deduplicated 300Mi (75%), in "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("  Full because: forceFull\n"), "{}", out.stdout);

    // A failed backup: exit 5 with the controller's error.
    let child = env.spawn(&["backup", "create", "db", "--repo", "main", "--name", "db-3"]);
    vmsnap_testing::await_value(&backups(&env), "db-3", WAIT, |_| Some(())).await.unwrap();
    set_status(
        &backups(&env),
        "db-3",
        json!({"phase": "Failed", "error": {"message": "repository main: connection refused"}}),
    )
    .await;
    let out = finish(child).await;
    out.expect(5);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "error: backup \"db-3\" failed: repository main: connection refused"
    );

    // The list, newest first, filtered by VM and repository.
    create_backup(&env, "db-1", "db", "main").await;
    set_status(&backups(&env), "db-1", json!({"phase": "Succeeded", "type": "Incremental", "vmName": "db", "size": "1Gi", "pointInTime": "2026-12-06T11:00:00Z"})).await;
    create_backup(&env, "web-1", "web", "other").await;
    let list = env.run(&["backup", "list"]).await;
    list.expect(0);
    let rows: Vec<Vec<String>> = list
        .stdout
        .lines()
        .map(|l| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "VM", "REPO", "TYPE", "SIZE", "POINT IN TIME", "PHASE"]);
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names.len(), 4, "{}", list.stdout);
    assert_eq!(&names[2..], ["db-1", "db-2"], "{}", list.stdout);
    assert!(
        rows.contains(
            &vec!["db-1", "db", "main", "Incremental", "1Gi", "2026-12-06T11:00:00Z", "Succeeded"]
                .into_iter()
                .map(String::from)
                .collect()
        ),
        "{}",
        list.stdout
    );
    let of_db = env.run(&["backup", "list", "db", "--repo", "main"]).await;
    of_db.expect(0);
    assert_eq!(of_db.stdout.lines().count(), 4, "{}", of_db.stdout);
    assert!(!of_db.stdout.contains("web-1"), "{}", of_db.stdout);
    let none = env.run(&["backup", "list", "nothing"]).await;
    none.expect(0);
    assert_eq!(none.stderr, "No backups of VM \"nothing\" in namespace \"default\".\n");

    let described = env.run(&["backup", "describe", "db-2"]).await;
    described.expect(0);
    assert!(
        described.stdout.contains("Type:            Full\nFull because:    forceFull\n"),
        "{}",
        described.stdout
    );

    // Delete says where the data goes.
    let out = env.run(&["backup", "delete", "db-3"]).await;
    out.expect(0);
    assert!(
        out.stdout.starts_with("backup \"db-3\" deleted: its data is removed from the repository"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_checks_its_target_and_follows_the_restore() {
    let env = Env::start().await;
    ready_repository(&env, "main").await;
    env.stopped_vm("db").await;
    env.stopped_vm("web").await;
    create_backup(&env, "db-1", "db", "main").await;

    // Not complete yet: refused before anything is made.
    let out = env.run(&["backup", "restore", "db-1", "--to", "db-copy"]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: backup \"db-1\" is not complete (phase Pending): wait for it with: vmsnap backup describe db-1\n"
    );
    set_status(&backups(&env), "db-1", json!({"phase": "Succeeded", "type": "Full", "vmName": "db"})).await;
    // Another VM's name is refused.
    let out = env.run(&["backup", "restore", "db-1", "--to", "web"]).await;
    out.expect(4);
    assert!(
        out.stderr.contains("VM \"web\" exists and is not the VM backup \"db-1\" is of"),
        "{}",
        out.stderr
    );
    assert!(restores(&env).list(&Default::default()).await.unwrap().items.is_empty());

    // To a new VM, with progress.
    let child = env.spawn(&["backup", "restore", "db-1", "--to", "db-copy", "--name", "r1"]);
    let created =
        vmsnap_testing::await_value(&restores(&env), "r1", WAIT, |r| Some(r.clone())).await.unwrap();
    assert_eq!(
        serde_json::to_value(&created.spec).unwrap(),
        json!({"backupName": "db-1", "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db-copy"}})
    );
    let mi = 1i64 << 20;
    set_status(&restores(&env), "r1", json!({"phase": "InProgress", "progress": {"bytesToRead": 64 * mi, "bytesWritten": 32 * mi, "percent": 50, "elapsedSeconds": 2}})).await;
    set_status(&restores(&env), "r1", json!({"phase": "Succeeded", "complete": true, "disks": [{"name": "data", "dataVolumeName": "db-copy-data"}]})).await;
    let out = finish(child).await;
    out.expect(0);
    assert!(out.stderr.contains("  32Mi/64Mi written (50%), 16Mi/s, ETA 2s\n"), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("VM \"db-copy\" restored from backup \"db-1\" (restore \"r1\", "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("    data   db-copy-data\n"), "{}", out.stdout);

    // In place: the backed-up VM is the target; a failure is exit 5.
    let child = env.spawn(&["backup", "restore", "db-1", "--in-place", "--name", "r2"]);
    let created =
        vmsnap_testing::await_value(&restores(&env), "r2", WAIT, |r| Some(r.clone())).await.unwrap();
    assert_eq!(created.spec.target.name, "db");
    set_status(&restores(&env), "r2", json!({"phase": "Failed", "error": {"message": "chunk 9f2c0d of backup db-1 disk data @ 1048576 is corrupt"}})).await;
    let out = finish(child).await;
    out.expect(5);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "error: restore \"r2\" failed: chunk 9f2c0d of backup db-1 disk data @ 1048576 is corrupt"
    );
}

/// The message of a refused write.
fn refusal(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_runs_the_backup_admission_rules_on_create_and_update() {
    let env = Env::start().await;
    ready_repository(&env, "main").await;
    let backup = |policy: &str| -> VirtualMachineRepositoryBackup {
        serde_json::from_value(json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
            "metadata": {"name": "b1"},
            "spec": {"repository": "main", "deletionPolicy": policy,
                     "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db"}}
        }))
        .unwrap()
    };
    let (code, message) = refusal(backups(&env).create(&PostParams::default(), &backup("Orphan")).await);
    assert_eq!(code, 422);
    assert!(
        message.ends_with(
            "spec.deletionPolicy: unsupported value \"Orphan\": supported values: \"Delete\", \"Retain\""
        ),
        "{message}"
    );
    backups(&env).create(&PostParams::default(), &backup("Delete")).await.unwrap();
    // deletionPolicy may change, the source may not.
    let retain = json!({"spec": {"deletionPolicy": "Retain"}});
    backups(&env).patch("b1", &PatchParams::default(), &Patch::Merge(&retain)).await.unwrap();
    let other = json!({"spec": {"source": {"name": "web"}}});
    let (code, message) =
        refusal(backups(&env).patch("b1", &PatchParams::default(), &Patch::Merge(&other)).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("spec: Forbidden: the spec of a backup cannot change after creation"),
        "{message}"
    );

    let restore: VirtualMachineRepositoryRestore = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryRestore",
        "metadata": {"name": "r1"},
        "spec": {"backupName": "b1", "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachineInstance", "name": "db"}}
    }))
    .unwrap();
    let (_, message) = refusal(restores(&env).create(&PostParams::default(), &restore).await);
    assert!(message.ends_with("spec.target.kind: unsupported value \"VirtualMachineInstance\": supported values: \"VirtualMachine\""), "{message}");

    let moved = json!({"spec": {"local": {"path": "/elsewhere"}}});
    let (_, message) =
        refusal(repos(&env).patch("main", &PatchParams::default(), &Patch::Merge(&moved)).await);
    assert!(message.contains("spec: Forbidden: the location"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_of_snapshots_and_in_place_restores_are_checked_against_their_vm() {
    let env = Env::start().await;
    ready_repository(&env, "main").await;
    env.stopped_vm("db").await;
    env.stopped_vm("web").await;
    env.create_snapshot("web-snap", "web").await;
    env.create_snapshot("db-snap", "db").await;

    // A snapshot of another VM is refused; one of the VM is the backup's source.
    let out = env.run(&["backup", "create", "db", "--repo", "main", "--from-snapshot", "web-snap"]).await;
    out.expect(4);
    assert!(
        out.stderr.starts_with("error: snapshot \"web-snap\" is of VM \"web\", not of VM \"db\""),
        "{}",
        out.stderr
    );
    env.run(&["backup", "create", "db", "--repo", "main", "--from-snapshot", "nope"]).await.expect(3);
    let out = env
        .run(&[
            "backup",
            "create",
            "db",
            "--repo",
            "main",
            "--from-snapshot",
            "db-snap",
            "--name",
            "b1",
            "--retain",
            "--no-wait",
        ])
        .await;
    out.expect(0);
    assert_eq!(out.stdout, "b1\n");
    let b1 = backups(&env).get("b1").await.unwrap();
    assert_eq!(
        serde_json::to_value(&b1.spec).unwrap(),
        json!({"repository": "main", "deletionPolicy": "Retain",
               "source": {"apiGroup": "snapshot.kubevirt.io", "kind": "VirtualMachineSnapshot", "name": "db-snap"}})
    );
    let out = env.run(&["backup", "delete", "b1"]).await;
    out.expect(0);
    assert_eq!(
        out.stdout,
        "backup \"b1\" deleted: its data stays in the repository (deletionPolicy Retain)\n"
    );

    // A repository that cannot open is refused before a backup is made.
    set_status(
        &repos(&env),
        "main",
        json!({"conditions": [{"type": "Ready", "status": "False", "reason": "WrongPassphrase", "message": "the passphrase does not open it"}]}),
    )
    .await;
    let out = env.run(&["backup", "create", "db", "--repo", "main"]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: repository \"main\" is not ready: WrongPassphrase: the passphrase does not open it: see: vmsnap repo describe main\n"
    );

    // In place onto a running VM: refused, with how to stop it.
    env.running_vm("app").await;
    create_backup(&env, "app-1", "app", "main").await;
    set_status(&backups(&env), "app-1", json!({"phase": "Succeeded", "type": "Full", "vmName": "app"})).await;
    let out = env.run(&["backup", "restore", "app-1", "--in-place"]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: VM \"app\" is running: stop it with: vmsnap vm stop app, or restore to a new VM with --to\n"
    );
    assert!(restores(&env).list(&Default::default()).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_secret_is_reused_when_equal_and_refused_when_different() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = file(dir.path(), "pass", "one\n");
    let other = file(dir.path(), "other", "two\n");
    env.run(&["repo", "add", "main", "--passphrase-file", &pass, "--no-wait"]).await.expect(0);
    let out = env.run(&["repo", "delete", "main", "--keep-secrets"]).await;
    out.expect(0);
    assert!(out.stdout.starts_with("repository \"main\" deleted.\n"), "{}", out.stdout);
    assert!(secret_names(&env).await.contains(&"main-passphrase".to_string()));
    // The same passphrase: the kept Secret is used again.
    env.run(&["repo", "add", "main", "--passphrase-file", &pass, "--no-wait"]).await.expect(0);
    env.run(&["repo", "delete", "main", "--keep-secrets"]).await.expect(0);
    // Another one: refused, and the kept Secret is left as it was.
    let out = env.run(&["repo", "add", "main", "--passphrase-file", &other, "--no-wait"]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: Secret \"main-passphrase\" already exists with other content: delete it with: kubectl delete secret main-passphrase, or pick another repository name\n"
    );
    assert_eq!(secret_data(&env, "main-passphrase").await, vec![("passphrase".into(), "one".into())]);
    assert!(repos(&env).get_opt("main").await.unwrap().is_none());
    // A Secret another repository also names is not deleted with the first.
    env.run(&["repo", "add", "main", "--passphrase-file", &pass, "--no-wait"]).await.expect(0);
    let sharing: VirtualMachineBackupRepository = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository",
        "metadata": {"name": "sharing"}, "spec": {"local": {"path": "/srv/b"}, "passphraseSecretRef": {"name": "main-passphrase"}}
    }))
    .unwrap();
    repos(&env).create(&PostParams::default(), &sharing).await.unwrap();
    let out = env.run(&["repo", "delete", "main"]).await;
    out.expect(0);
    assert!(out.stdout.starts_with("repository \"main\" deleted.\n"), "{}", out.stdout);
    assert!(secret_names(&env).await.contains(&"main-passphrase".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_list_shows_the_age_of_each_vms_newest_succeeded_backup() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    env.stopped_vm("web").await;
    ready_repository(&env, "main").await;
    create_backup(&env, "db-old", "db", "main").await;
    create_backup(&env, "db-new", "db", "main").await;
    create_backup(&env, "web-1", "web", "main").await;
    let an_hour_ago = (vmsnap_api::k8s_openapi::jiff::Timestamp::now()
        - vmsnap_api::k8s_openapi::jiff::SignedDuration::from_hours(1))
    .to_string();
    let two_days_ago = (vmsnap_api::k8s_openapi::jiff::Timestamp::now()
        - vmsnap_api::k8s_openapi::jiff::SignedDuration::from_hours(49))
    .to_string();
    set_status(
        &backups(&env),
        "db-old",
        json!({"phase": "Succeeded", "vmName": "db", "pointInTime": two_days_ago}),
    )
    .await;
    set_status(
        &backups(&env),
        "db-new",
        json!({"phase": "Succeeded", "vmName": "db", "pointInTime": an_hour_ago}),
    )
    .await;
    // A failed backup counts for nobody.
    set_status(
        &backups(&env),
        "web-1",
        json!({"phase": "Failed", "vmName": "web", "pointInTime": an_hour_ago}),
    )
    .await;
    let list = env.run(&["vm", "list"]).await;
    list.expect(0);
    let lines: Vec<Vec<&str>> = list.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0][5], "LAST-BACKUP");
    assert!(matches!(lines[1][5], "59m" | "60m" | "1h"), "db's newest backup is an hour old: {:?}", lines[1]);
    assert_eq!(lines[2][5], "-", "web has no succeeded backup: {:?}", lines[2]);
}
