//! Repository objects: status when the repository opens, conditions naming what to fix when it
//! does not, and recovery when the missing Secret appears.

use kube::api::Api;
use vmsnap_api::backup::VirtualMachineBackupRepository;
use vmsnap_api::snapshot::find_condition;

use crate::support::{Env, PASSPHRASE, await_some};

/// The Ready condition once it has `status`, as (reason, message).
async fn await_ready(
    env: &Env,
    name: &str,
    status: &str,
) -> (String, String, VirtualMachineBackupRepository) {
    let api: Api<VirtualMachineBackupRepository> = env.api();
    await_some(&api, name, |repo| {
        let ready = find_condition(&repo.status.as_ref()?.conditions, "Ready")?;
        (ready.status == status).then(|| {
            (
                ready.reason.clone().unwrap_or_default(),
                ready.message.clone().unwrap_or_default(),
                repo.clone(),
            )
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_reports_what_it_holds_and_names_what_to_fix_when_it_cannot_open() {
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    let path = env.dir.path().join("repo");
    env.local_repository("main", &path, "pass").await;
    let (reason, message, repo) = await_ready(&env, "main", "True").await;
    assert_eq!(reason, "RepositoryReady");
    assert!(message.contains("0 backup(s)"), "{message}");
    let status = repo.status.unwrap();
    assert_eq!(status.location.as_deref(), Some(path.to_str().unwrap()));
    // The id is the repository's own (its plain `config`), read by the engine directly.
    let opened = env.open_local(&path).await;
    assert_eq!(status.repository_id.as_deref(), Some(opened.config().id.as_str()));
    assert_eq!(status.format_version, Some(i64::from(vmsnap_backup::FORMAT_VERSION)));
    assert_eq!((status.backups, status.chunks, status.stored_bytes), (Some(0), Some(0), Some(0)));
    assert_eq!(status.observed_generation, repo.metadata.generation);
    assert!(path.join("config").is_file(), "the empty location got a repository");

    // A second object over the same location with another passphrase.
    env.passphrase_secret("other", "not the passphrase").await;
    env.local_repository("wrong", &path, "other").await;
    let (reason, message, _) = await_ready(&env, "wrong", "False").await;
    assert_eq!(reason, "WrongPassphrase");
    assert!(message.contains("wrong passphrase") && message.contains("\"other\""), "{message}");

    // A Secret that does not exist yet: named, then the repository opens once it is created.
    let elsewhere = env.dir.path().join("elsewhere");
    env.local_repository("later", &elsewhere, "later-pass").await;
    let (reason, message, _) = await_ready(&env, "later", "False").await;
    assert_eq!(reason, "SecretMissing");
    assert!(message.contains("Secret default/later-pass does not exist"), "{message}");
    assert!(message.contains("create it"), "{message}");
    env.passphrase_secret("later-pass", PASSPHRASE).await;
    let (reason, _, _) = await_ready(&env, "later", "True").await;
    assert_eq!(reason, "RepositoryReady");

    // A relative path is refused, naming the field.
    let refused = env
        .kubectl()
        .run_stdin_async(
            &["apply", "-f", "-"],
            "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineBackupRepository\nmetadata: {name: relative}\nspec:\n  local: {path: some/dir}\n  passphraseSecretRef: {name: pass}\n",
        )
        .await;
    let refusal = refused.err();
    assert!(refusal.contains("spec.local.path: \"some/dir\" must be an absolute path"), "{refusal}");

    // kubectl shows the columns.
    let out = env.kubectl().run_async(&["get", "vmrepo", "main"]).await;
    let text = out.ok();
    assert!(
        text.contains("LOCATION") && text.contains(path.to_str().unwrap()) && text.contains("True"),
        "{text}"
    );
}
