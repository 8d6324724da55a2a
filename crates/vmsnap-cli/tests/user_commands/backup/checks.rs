//! Wrong command lines, missing objects, and backups and restores checked against their VM before anything is made.

use super::*;

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
