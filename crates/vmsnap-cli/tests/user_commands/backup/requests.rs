//! `vmsnap repo verify | prune` and `vmsnap backup verify`: requests answered with their token.

use super::*;

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
