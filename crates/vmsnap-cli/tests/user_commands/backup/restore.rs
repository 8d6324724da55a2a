//! `vmsnap backup restore`: the target checked, the restore followed.

use super::*;

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
