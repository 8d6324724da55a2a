//! `vmsnap repo add`: the Secrets and the repository it makes, what it refuses, the Secrets it keeps.

use super::*;

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

/// `vmsnap repo add NAME --dir /srv/NAME FLAG VALUE --passphrase-file PASS --no-wait`.
async fn add_local_with(env: &Env, name: &str, flag: &str, value: &str, pass: &str) -> Out {
    let dir = format!("/srv/{name}");
    env.run(&["repo", "add", name, "--dir", &dir, flag, value, "--passphrase-file", pass, "--no-wait"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_size_is_checked_sent_as_written_and_described() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = file(dir.path(), "pass", "pw\n");
    let before = secret_names(&env).await;

    // Not a power of two, or not a quantity: a usage error naming what is allowed, nothing made.
    let add = |chunk_size: &'static str| add_local_with(&env, "big", "--chunk-size", chunk_size, &pass);
    let out = add("3Mi").await;
    out.expect(2);
    assert!(
        out.stderr.contains(
            "invalid value '3Mi' for '--chunk-size <QUANTITY>': \"3Mi\" (3145728 bytes) is not a power of two from 64Ki to 64Mi (64Ki, 128Ki, 256Ki, ... 64Mi)"
        ),
        "{}",
        out.stderr
    );
    let out = add("4MB").await;
    out.expect(2);
    assert!(
        out.stderr.contains("got \"4MB\"; a chunk size is a power of two from 64Ki to 64Mi"),
        "{}",
        out.stderr
    );
    assert_eq!(secret_names(&env).await, before);
    assert!(repos(&env).get_opt("big").await.unwrap().is_none());

    // A good one goes into the spec as written.
    add("4Mi").await.expect(0);
    let big = repos(&env).get("big").await.unwrap();
    assert_eq!(
        serde_json::to_value(&big.spec).unwrap(),
        json!({"local": {"path": "/srv/big"}, "passphraseSecretRef": {"name": "big-passphrase"}, "chunkSize": "4Mi"})
    );

    // describe shows the repository's own chunk size, from the status.
    let out = env.run(&["repo", "describe", "big"]).await;
    out.expect(0);
    assert!(out.stdout.contains("Chunk size:      -\n"), "{}", out.stdout);
    set_status(&repos(&env), "big", json!({"chunkSize": "4Mi"})).await;
    let out = env.run(&["repo", "describe", "big"]).await;
    out.expect(0);
    assert!(out.stdout.contains("Chunk size:      4Mi\n"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_limit_is_checked_sent_as_written_described_with_its_default_and_changed_by_repo_set() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = file(dir.path(), "pass", "pw\n");
    let before = secret_names(&env).await;
    let add =
        |name: &'static str, limit: &'static str| add_local_with(&env, name, "--read-limit", limit, &pass);

    // Too low, or not a quantity: a usage error naming what is allowed, nothing made.
    let out = add("slow", "100Ki").await;
    out.expect(2);
    assert!(
        out.stderr.contains(
            "invalid value '100Ki' for '--read-limit <QUANTITY>': \"100Ki\" (102400 bytes per second) is too low; a read limit is bytes per second as a quantity, at least 1Mi (the default is 256Mi)"
        ),
        "{}",
        out.stderr
    );
    add("slow", "64MB/s").await.expect(2);
    assert_eq!(secret_names(&env).await, before);
    assert!(repos(&env).get_opt("slow").await.unwrap().is_none());

    // A good one goes into the spec as written, and describe shows it, or the default.
    add("slow", "64Mi").await.expect(0);
    let slow = repos(&env).get("slow").await.unwrap();
    assert_eq!(slow.spec.read_limit.as_deref(), Some("64Mi"));
    let out = env.run(&["repo", "describe", "slow"]).await;
    out.expect(0);
    assert!(out.stdout.contains("Read limit:      64Mi/s\n"), "{}", out.stdout);
    env.run(&["repo", "add", "plain", "--dir", "/srv/plain", "--passphrase-file", &pass, "--no-wait"])
        .await
        .expect(0);
    let out = env.run(&["repo", "describe", "plain"]).await;
    out.expect(0);
    assert!(out.stdout.contains("Read limit:      256Mi/s (default)\n"), "{}", out.stdout);

    // `repo set` changes it, and `default` removes it; a bad value or repository changes nothing.
    let out = env.run(&["repo", "set", "plain", "--read-limit", "128Mi"]).await;
    out.expect(0);
    assert_eq!(
        out.stdout,
        "repository \"plain\": read limit 128Mi/s (was 256Mi/s (default)); backups read it when they start.\n"
    );
    assert_eq!(repos(&env).get("plain").await.unwrap().spec.read_limit.as_deref(), Some("128Mi"));
    let out = env.run(&["repo", "set", "slow", "--read-limit", "default"]).await;
    out.expect(0);
    assert!(out.stdout.contains("read limit 256Mi/s (default) (was 64Mi/s)"), "{}", out.stdout);
    assert_eq!(repos(&env).get("slow").await.unwrap().spec.read_limit, None);
    let out = env.run(&["repo", "set", "plain", "--read-limit", "10Ki"]).await;
    out.expect(2);
    assert!(out.stderr.contains("at least 1Mi (the default is 256Mi), or \"default\""), "{}", out.stderr);
    let out = env.run(&["repo", "set", "nowhere", "--read-limit", "2Mi"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("nowhere") && out.stderr.contains("not found"), "{}", out.stderr);
    assert_eq!(repos(&env).get("plain").await.unwrap().spec.read_limit.as_deref(), Some("128Mi"));
}
