//! Verifies of one backup, asked for with the `verify-request` annotation: its chunks are read
//! back and checked; the result is `status.lastVerify`, carrying the token.

use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vmsnap_api::backup::{
    VerifyResult, VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, annotation,
};
use vmsnap_api::snapshot::condition_type;
use vmsnap_backup::{BackupId, VerifyScope};

use crate::repository::maintenance;
use crate::status::{StatusWrites, condition, publish, with_condition};
use crate::{Context, ReconcileError};

/// The verify token of `backup` not answered yet.
pub(crate) fn pending_request(backup: &VirtualMachineRepositoryBackup) -> Option<String> {
    let answered =
        backup.status.as_ref().and_then(|s| s.last_verify.as_ref()).and_then(|v| v.request.as_deref());
    backup
        .annotations()
        .get(annotation::VERIFY_REQUEST)
        .filter(|token| !token.is_empty() && Some(token.as_str()) != answered)
        .cloned()
}

/// Verifies the chunks of the committed `backup` and records the result for `token`.
pub(crate) async fn verify(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
    token: &str,
) -> Result<(), ReconcileError> {
    let namespace = backup.namespace().unwrap_or_default();
    let api: Api<VirtualMachineRepositoryBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let conditions = backup.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let conditions = with_condition(
        &conditions,
        condition(
            condition_type::PROGRESSING,
            true,
            "Verifying",
            format!("verifying the backup's chunks (request {token})"),
        ),
    );
    let mut writes = StatusWrites::of(&api, backup);
    writes.patch(json!({"conditions": conditions})).await?;
    let result = run(ctx, backup, token).await?;
    let summary = maintenance::verify_summary(&result);
    let failed = !result.ok;
    let conditions =
        with_condition(&conditions, condition(condition_type::PROGRESSING, false, "Verified", &summary));
    writes.patch_outcome(json!({"lastVerify": result, "conditions": conditions})).await?;
    publish(ctx, &backup.object_ref(&()), failed, if failed { "VerifyFailed" } else { "Verified" }, summary)
        .await;
    Ok(())
}

async fn run(
    ctx: &Context,
    backup: &VirtualMachineRepositoryBackup,
    token: &str,
) -> Result<VerifyResult, ReconcileError> {
    let repository_name = &backup.spec.repository;
    let repositories: Api<VirtualMachineBackupRepository> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let Some(repo) = repositories.get_opt(repository_name).await? else {
        let why = format!(
            "the verify could not run: VirtualMachineBackupRepository {repository_name} does not exist"
        );
        return Ok(maintenance::verify_not_run(token, why));
    };
    let repository = match ctx.repositories.open(&ctx.client, &repo, &ctx.config.local_root).await {
        Ok(repository) => repository,
        Err(error) => {
            let why =
                format!("the verify could not run: repository {repository_name} does not open: {error}");
            return Ok(maintenance::verify_not_run(token, why));
        }
    };
    let id = backup
        .status
        .as_ref()
        .and_then(|s| s.backup_id.as_deref())
        .and_then(|id| id.parse::<BackupId>().ok());
    let names =
        maintenance::backup_names(&ctx.client, &backup.namespace().unwrap_or_default(), repository_name)
            .await?;
    Ok(match id {
        Some(id) => maintenance::verify(&repository, VerifyScope::Backup(id), token, &names).await,
        None => {
            maintenance::verify_not_run(token, "the verify could not run: status.backupId is not set".into())
        }
    })
}
