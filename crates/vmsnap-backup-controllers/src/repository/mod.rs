//! The repository controller: opens (or creates) each `VirtualMachineBackupRepository`, reports
//! what it holds (`Ready` says why not when it cannot be opened, and what to fix), makes an object
//! for each backup found in it that has none ([`import`]), and runs the verifies and prunes asked
//! for with annotations ([`maintenance`]). It looks again every minute, and when a Secret a
//! repository reads changes. A deleted repository object is forgotten; its data stays.

mod import;
pub(crate) mod maintenance;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::backup::{
    BackupPhase, VirtualMachineBackupRepository, VirtualMachineBackupRepositoryStatus,
    VirtualMachineRepositoryBackup, annotation, format_chunk_size, reason,
};
use vmsnap_api::quantity::short_bytes;
use vmsnap_api::snapshot::{Condition, condition_type};
use vmsnap_backup::Repository;

use crate::error::retry_after;
use crate::open::{self, default_local_path};
use crate::status::{StatusWrites, condition, publish, with_condition};
use crate::{Context, OpenError, ReconcileError};

/// How often a repository is looked at again (backups written by others, space used).
const RESYNC: Duration = Duration::from_secs(60);

/// Runs the repository controller until the task is aborted.
pub(crate) async fn run(ctx: Arc<Context>) {
    let repositories = Api::<VirtualMachineBackupRepository>::all(ctx.client.clone());
    tokio::spawn(forget_deleted(ctx.clone(), repositories.clone()));
    let controller = Controller::new(repositories, watcher::Config::default())
        .with_config(vmsnap_contracts::controller::controller_config());
    let store = controller.store();
    controller
        .watches(Api::<Secret>::all(ctx.client.clone()), watcher::Config::default(), move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|repo| repo.namespace() == namespace && reads_secret(repo, &name))
                .map(|repo| ObjectRef::from_obj(&*repo))
                .collect::<Vec<_>>()
        })
        // A backup committed, failed or deleted changes what the repository holds: look now
        // rather than at the next resync. (Progress writes of running backups are not mapped.)
        .watches(
            Api::<VirtualMachineRepositoryBackup>::all(ctx.client.clone()),
            watcher::Config::default(),
            |backup| {
                let finished =
                    backup.status.as_ref().and_then(|s| s.phase.as_ref()).is_some_and(BackupPhase::is_final);
                (finished || backup.meta().deletion_timestamp.is_some()).then(|| {
                    ObjectRef::new(&backup.spec.repository).within(&backup.namespace().unwrap_or_default())
                })
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Drops deleted repositories from the cache (no finalizer: deleting the object keeps the data,
/// so there is nothing to wait for).
async fn forget_deleted(ctx: Arc<Context>, repositories: Api<VirtualMachineBackupRepository>) {
    let mut events = watcher(repositories, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        if let Ok(watcher::Event::Delete(repo)) = event {
            ctx.repositories.forget(&repo.namespace().unwrap_or_default(), &repo.name_any());
        }
    }
}

fn reads_secret(repo: &VirtualMachineBackupRepository, secret: &str) -> bool {
    repo.spec.passphrase_secret_ref.name == secret
        || repo.spec.s3.as_ref().is_some_and(|s3| s3.credentials_secret_ref.name == secret)
}

fn error_policy(
    repo: Arc<VirtualMachineBackupRepository>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    retry_after(repo.as_ref(), error, Duration::from_secs(5))
}

async fn reconcile(
    repo: Arc<VirtualMachineBackupRepository>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    if repo.meta().deletion_timestamp.is_some() {
        ctx.repositories.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let api: Api<VirtualMachineBackupRepository> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut writes = StatusWrites::of(&api, repo.as_ref());
    let current = repo.status.clone().unwrap_or_default();
    let conditions = current.conditions.clone();
    let location = location_of(&repo, &ctx);
    let opened = ctx.repositories.open_with_backend(&ctx.client, &repo, &ctx.config.local_root).await;
    let (repository, backend) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let message = what_to_fix(&error, &repo);
            let was_ready = conditions.iter().any(|c| c.type_ == condition_type::READY && c.is_true());
            let conditions = with_condition(
                &conditions,
                condition(condition_type::READY, false, error.reason(), &message),
            );
            let desired = VirtualMachineBackupRepositoryStatus {
                location: location.clone(),
                conditions,
                observed_generation: repo.meta().generation,
                ..current.clone()
            };
            write_status(&mut writes, &repo, desired).await?;
            if was_ready || repo.status.is_none() {
                publish(&ctx, &repo.object_ref(&()), true, error.reason(), message).await;
            }
            return Ok(Action::requeue(RESYNC));
        }
    };
    let manifests = match repository.list_backups().await {
        Ok(manifests) => manifests,
        Err(error) => {
            let message = format!("the repository opened but its backups cannot be listed: {error}");
            let conditions = with_condition(
                &conditions,
                condition(condition_type::READY, false, reason::REPOSITORY_UNREACHABLE, message),
            );
            writes.patch(json!({"conditions": conditions})).await?;
            return Ok(Action::requeue(RESYNC));
        }
    };
    let usage = usage::usage(&backend, &manifests).await.map_err(|e| {
        ReconcileError::Repository(vmsnap_backup::Error::Backend {
            location: repository.location().to_owned(),
            kind: repository.backend_kind(),
            operation: "list",
            path: vmsnap_backup::layout::CHUNKS.to_owned(),
            source: e,
        })
    })?;
    let config = repository.config();
    let ready = condition(
        condition_type::READY,
        true,
        reason::REPOSITORY_READY,
        format!(
            "opened: {} backup(s) in {} chunk(s), {}{}",
            usage.backups,
            usage.chunks,
            short_bytes(usage.stored_bytes),
            chunk_size_note(&repo, config.chunk_size)
        ),
    );
    let conditions = with_condition(&conditions, ready);
    let desired = VirtualMachineBackupRepositoryStatus {
        location,
        repository_id: Some(config.id.clone()),
        format_version: Some(i64::from(config.version)),
        chunk_size: Some(format_chunk_size(config.chunk_size)),
        backups: Some(usage.backups as i64),
        chunks: Some(usage.chunks as i64),
        stored_bytes: Some(usage.stored_bytes as i64),
        stored_size: Some(short_bytes(usage.stored_bytes)),
        deduplication_ratio: usage.deduplication_ratio(),
        conditions: conditions.clone(),
        observed_generation: repo.meta().generation,
        ..current.clone()
    };
    write_status(&mut writes, &repo, desired).await?;
    import::import_missing(&ctx, &repo, &manifests).await?;
    run_requests(&ctx, &mut writes, &repo, &repository, conditions).await?;
    Ok(Action::requeue(RESYNC))
}

/// What the Ready message adds when `spec.chunkSize` is not the chunk size of the repository
/// found at the location (made before, by another object or with another size): not an error,
/// the repository works in its own chunk size, but the spec's is not what is used.
fn chunk_size_note(repo: &VirtualMachineBackupRepository, actual: u32) -> String {
    match repo.spec.chunk_size.as_deref() {
        Some(wanted) if open::chunk_size(repo).ok() != Some(actual) => format!(
            "; its chunk size is {} (it was made so), not spec.chunkSize {wanted}: a chunk size is chosen only when a repository is created",
            format_chunk_size(actual)
        ),
        _ => String::new(),
    }
}

/// Writes `desired` when it differs from the object's status (an unchanged status is not
/// written: every write wakes the controller again).
async fn write_status(
    writes: &mut StatusWrites<VirtualMachineBackupRepository>,
    repo: &VirtualMachineBackupRepository,
    desired: VirtualMachineBackupRepositoryStatus,
) -> Result<(), ReconcileError> {
    if repo.status.as_ref() != Some(&desired) {
        writes.patch(serde_json::to_value(&desired).expect("a status serializes")).await?;
    }
    Ok(())
}

/// Runs the verify and prune asked for and not yet answered.
async fn run_requests(
    ctx: &Context,
    writes: &mut StatusWrites<VirtualMachineBackupRepository>,
    repo: &VirtualMachineBackupRepository,
    repository: &Repository,
    mut conditions: Vec<Condition>,
) -> Result<(), ReconcileError> {
    let name = repo.name_any();
    let status = repo.status.clone().unwrap_or_default();
    let annotations = repo.annotations();
    let pending = |key: &str, answered: Option<&str>| {
        annotations.get(key).filter(|token| !token.is_empty() && Some(token.as_str()) != answered).cloned()
    };
    let verify_token =
        pending(annotation::VERIFY_REQUEST, status.last_verify.as_ref().and_then(|v| v.request.as_deref()));
    let prune_token =
        pending(annotation::PRUNE_REQUEST, status.last_prune.as_ref().and_then(|p| p.request.as_deref()));
    if verify_token.is_none() && prune_token.is_none() {
        return Ok(());
    }
    if let Some(token) = verify_token {
        conditions = with_condition(
            &conditions,
            condition(
                condition_type::PROGRESSING,
                true,
                "Verifying",
                format!("verifying every chunk (request {token})"),
            ),
        );
        writes.patch(json!({"conditions": conditions})).await?;
        let names =
            maintenance::backup_names(&ctx.client, &repo.namespace().unwrap_or_default(), &name).await?;
        let result = maintenance::verify(repository, vmsnap_backup::VerifyScope::All, &token, &names).await;
        let summary = maintenance::verify_summary(&result);
        let failed = !result.ok;
        conditions =
            with_condition(&conditions, condition(condition_type::PROGRESSING, false, "Verified", &summary));
        writes.patch_outcome(json!({"lastVerify": result, "conditions": conditions})).await?;
        publish(
            ctx,
            &repo.object_ref(&()),
            failed,
            if failed { "VerifyFailed" } else { "Verified" },
            summary,
        )
        .await;
    }
    if let Some(token) = prune_token {
        conditions = with_condition(
            &conditions,
            condition(
                condition_type::PROGRESSING,
                true,
                "Pruning",
                format!("deleting unreferenced chunks (request {token})"),
            ),
        );
        writes.patch(json!({"conditions": conditions})).await?;
        let result = maintenance::prune(repository, &token).await;
        let summary = match &result.error {
            Some(error) => error.clone(),
            None => format!(
                "pruned {} chunk(s), {} freed",
                result.chunks_deleted,
                short_bytes(result.bytes_freed as u64)
            ),
        };
        conditions =
            with_condition(&conditions, condition(condition_type::PROGRESSING, false, "Pruned", &summary));
        writes.patch_outcome(json!({"lastPrune": result, "conditions": conditions})).await?;
        publish(ctx, &repo.object_ref(&()), result.error.is_some(), "Pruned", summary).await;
    }
    Ok(())
}

/// Where the repository is, for people, without credentials.
fn location_of(repo: &VirtualMachineBackupRepository, ctx: &Context) -> Option<String> {
    if let Some(local) = &repo.spec.local {
        return Some(match local.path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => path.to_owned(),
            None => default_local_path(
                &ctx.config.local_root,
                &repo.namespace().unwrap_or_default(),
                &repo.name_any(),
            )
            .display()
            .to_string(),
        });
    }
    let s3 = repo.spec.s3.as_ref()?;
    let endpoint = match s3.endpoint.split_once("://") {
        // `user:password@host` in a URL is a credential: never shown.
        Some((scheme, rest)) => {
            format!("{scheme}://{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host))
        }
        None => s3.endpoint.clone(),
    };
    let prefix = s3.prefix.as_deref().unwrap_or_default().trim_matches('/');
    Some(format!("s3://{}/{prefix} at {endpoint}", s3.bucket))
}

/// The open error, and what to change to fix it.
fn what_to_fix(error: &OpenError, repo: &VirtualMachineBackupRepository) -> String {
    let passphrase = &repo.spec.passphrase_secret_ref;
    let key = passphrase.key_or(vmsnap_api::backup::PASSPHRASE_KEY);
    match error {
        OpenError::InvalidSpec(_) => format!("{error}: fix the spec"),
        OpenError::SecretMissing { .. } => format!(
            "{error}: create it (spec.passphraseSecretRef names Secret {:?} key {key:?}{})",
            passphrase.name,
            repo.spec
                .s3
                .as_ref()
                .map(|s3| format!(", spec.s3.credentialsSecretRef names Secret {:?} with keys accessKeyId and secretAccessKey", s3.credentials_secret_ref.name))
                .unwrap_or_default()
        ),
        OpenError::WrongPassphrase(_) => format!(
            "{error}: put the passphrase the repository was created with in Secret {:?} key {key:?}",
            passphrase.name
        ),
        OpenError::UnsupportedFormat(_) => format!(
            "{error}: open it with a vmsnap that reads that format version, or point this repository at another location"
        ),
        OpenError::Unreachable(_) | OpenError::Api { .. } => {
            format!("{error}: check that the location exists and is reachable, and the credentials")
        }
    }
}
