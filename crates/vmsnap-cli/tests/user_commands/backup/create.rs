//! `vmsnap backup create`, `backup list` and the backup column of `vm list`.

use super::*;

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
