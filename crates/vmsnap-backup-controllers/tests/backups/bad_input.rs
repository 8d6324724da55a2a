//! Bad input the other tests do not cover, each answered by a condition naming the problem and
//! what to do, with nothing half-created: an S3 endpoint nothing listens on (within a bounded
//! time), a bucket that does not exist, a credentials Secret that does not exist, a repository of
//! another format version (left as it is), and a backup of a snapshot that is not ready (nothing
//! written to the repository while it waits).

use std::time::{Duration, Instant};

use kube::api::Api;
use vmsnap_api::backup::{VirtualMachineBackupRepository, VirtualMachineRepositoryBackup};
use vmsnap_api::snapshot::{Condition, find_condition};

use crate::seaweed::{ACCESS_KEY, SECRET_KEY, Seaweed, SeaweedRepository};
use crate::support::{Env, PASSPHRASE, await_some};

fn s3_repository(name: &str, endpoint: &str, bucket: &str, credentials: &str) -> String {
    format!(
        "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineBackupRepository\nmetadata: {{name: {name}}}\nspec:\n  s3: {{endpoint: {endpoint:?}, bucket: {bucket}, credentialsSecretRef: {{name: {credentials}}}}}\n  passphraseSecretRef: {{name: pass}}\n"
    )
}

/// The repository's Ready condition once it is False.
async fn not_ready(env: &Env, name: &str) -> Condition {
    let repos: Api<VirtualMachineBackupRepository> = env.api();
    await_some(&repos, name, |r| {
        let ready = find_condition(&r.status.as_ref()?.conditions, "Ready")?.clone();
        (ready.status == "False").then_some(ready)
    })
    .await
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens on it.
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_repositories_and_an_unready_snapshot_are_named_and_nothing_is_half_created() {
    let Some(seaweed) = Seaweed::start() else { return };
    seaweed.create_bucket("vms");
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    env.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s3}}\nstringData: {{accessKeyId: {ACCESS_KEY:?}, secretAccessKey: {SECRET_KEY:?}}}\n"
    ))
    .await;

    // Nothing listens at the endpoint: unreachable, named, within the bounded retries.
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let asked = Instant::now();
    env.apply(&s3_repository("nowhere", &nowhere, "vms", "s3")).await;
    let ready = not_ready(&env, "nowhere").await;
    let took = asked.elapsed();
    let message = ready.message.clone().unwrap_or_default();
    assert_eq!(ready.reason.as_deref(), Some("RepositoryUnreachable"), "{ready:?}");
    assert!(message.contains(&nowhere) && message.contains("reachable"), "{message}");
    assert!(took < Duration::from_secs(60), "the unreachable endpoint took {took:?} to be reported");

    // A bucket that does not exist: named, and not created.
    env.apply(&s3_repository("nobucket", &seaweed.endpoint, "missing-bucket", "s3")).await;
    let ready = not_ready(&env, "nobucket").await;
    let message = ready.message.clone().unwrap_or_default();
    assert_eq!(ready.reason.as_deref(), Some("RepositoryUnreachable"), "{ready:?}");
    assert!(message.contains("bucket missing-bucket") && message.contains("create the bucket"), "{message}");
    let again = vmsnap_backup::Repository::init(seaweed.backend("missing-bucket", ""), PASSPHRASE).await;
    assert!(
        matches!(again, Err(vmsnap_backup::Error::LocationMissing { .. })),
        "the bucket was not created: {:?}",
        again.map(|_| ())
    );

    // A credentials Secret that does not exist: named, with its keys.
    env.apply(&s3_repository("nocredentials", &seaweed.endpoint, "vms", "absent")).await;
    let ready = not_ready(&env, "nocredentials").await;
    let message = ready.message.clone().unwrap_or_default();
    assert_eq!(ready.reason.as_deref(), Some("SecretMissing"), "{ready:?}");
    assert!(message.contains("Secret default/absent does not exist"), "{message}");
    assert!(message.contains("accessKeyId and secretAccessKey"), "{message}");
    assert!(seaweed.keys("vms", "").is_empty(), "nothing was written to the bucket");

    // A repository of another format version: named, and left as it is (not initialized over).
    let future = env.dir.path().join("future");
    let repository =
        vmsnap_backup::Repository::init(vmsnap_backup::Backend::local(&future).unwrap(), PASSPHRASE)
            .await
            .unwrap();
    drop(repository);
    let config = future.join("config");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("\"version\": {}", vmsnap_backup::FORMAT_VERSION), "\"version\": 99");
    std::fs::write(&config, &text).unwrap();
    env.local_repository("future", &future, "pass").await;
    let ready = not_ready(&env, "future").await;
    let message = ready.message.clone().unwrap_or_default();
    assert_eq!(ready.reason.as_deref(), Some("UnsupportedFormat"), "{ready:?}");
    assert!(message.contains("version 99") && message.contains("this build reads"), "{message}");
    assert!(message.contains("a vmsnap that reads"), "says what to do: {message}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text, "the repository is left as it is");

    // A backup of a snapshot that is not ready (of a VM that does not exist): it waits, saying
    // for what, and writes nothing to the repository meanwhile.
    let path = env.dir.path().join("repo");
    env.local_repository("main", &path, "pass").await;
    env.await_repository_ready("main").await;
    env.apply(
        "apiVersion: snapshot.kubevirt.io/v1beta1\nkind: VirtualMachineSnapshot\nmetadata: {name: early}\nspec:\n  source: {apiGroup: kubevirt.io, kind: VirtualMachine, name: not-yet}\n",
    )
    .await;
    env.backup("of-early", "main", "VirtualMachineSnapshot/early").await;
    let backups: Api<VirtualMachineRepositoryBackup> = env.api();
    let (phase, progressing) = await_some(&backups, "of-early", |b| {
        let status = b.status.clone()?;
        let progressing = find_condition(&status.conditions, "Progressing")?.clone();
        (progressing.reason.as_deref() == Some("SnapshotInProgress")).then_some((status.phase, progressing))
    })
    .await;
    assert_eq!(phase.as_deref(), Some("Pending"));
    assert_eq!(
        progressing.message.as_deref(),
        Some("waiting for VirtualMachineSnapshot early to be ready"),
        "{progressing:?}"
    );
    for dir in ["manifests", "leases", "chunks"] {
        let entries: Vec<_> =
            std::fs::read_dir(path.join(dir)).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(entries.is_empty(), "nothing in {dir}/ while the backup waits: {entries:?}");
    }
}
