//! Verifies and prunes asked for with the `verify-request` / `prune-request` annotations: each
//! runs once per token, with `Progressing` saying so, and its result carries the token.

use std::collections::HashMap;

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};
use vmsnap_api::backup::{BadChunkStatus, PruneResult, VerifyResult, VirtualMachineRepositoryBackup};
use vmsnap_backup::{
    ChunkProblem, ChunkUse, PruneOptions, PruneReport, Repository, VerifyReport, VerifyScope,
};

use crate::status::now;

/// The names of the backup objects of one repository, by backup id: a verify names the backups a
/// bad chunk breaks as the user knows them (`kubectl get vmrbackup NAME`), with their ids.
pub(crate) type BackupNames = HashMap<String, String>;

/// The [`BackupNames`] of repository `repository` in `namespace`.
pub(crate) async fn backup_names(
    client: &Client,
    namespace: &str,
    repository: &str,
) -> Result<BackupNames, kube::Error> {
    let backups: Api<VirtualMachineRepositoryBackup> = Api::namespaced(client.clone(), namespace);
    let listed = backups.list(&ListParams::default()).await?;
    Ok(listed
        .items
        .iter()
        .filter(|b| b.spec.repository == repository)
        .filter_map(|b| Some((b.status.as_ref()?.backup_id.clone()?, b.name_any())))
        .collect())
}

/// Bad chunks listed in a status at most (the count is in the message).
const MAX_BAD_CHUNKS: usize = 100;
/// Uses of one bad chunk listed at most.
const MAX_BREAKS: usize = 20;

/// Runs a verify of `scope` (every backup, for a repository); the result for `status.lastVerify`.
pub(crate) async fn verify(
    repository: &Repository,
    scope: VerifyScope,
    token: &str,
    names: &BackupNames,
) -> VerifyResult {
    match repository.verify(scope).await {
        Ok(report) => verify_result(&report, token, names),
        Err(error) => VerifyResult {
            request: Some(token.to_owned()),
            time: Some(now()),
            ok: false,
            error: Some(format!("the verify could not run: {error}")),
            ..VerifyResult::default()
        },
    }
}

/// The result of a verify that could not start (`why` says what is missing).
pub(crate) fn verify_not_run(token: &str, why: String) -> VerifyResult {
    VerifyResult {
        request: Some(token.to_owned()),
        time: Some(now()),
        ok: false,
        error: Some(why),
        ..VerifyResult::default()
    }
}

/// A verify report as a status: each use of a bad chunk (or chunk list) as
/// `NAME (ID) DISK @ OFFSET`, or `ID DISK @ OFFSET` for a backup that no object names.
pub(crate) fn verify_result(report: &VerifyReport, token: &str, names: &BackupNames) -> VerifyResult {
    let chunks = report.bad_chunks.iter().map(|bad| (bad.chunk.to_string(), &bad.problem, &bad.used_by));
    let lists = report.bad_chunk_lists.iter().map(|bad| (bad.list.to_string(), &bad.problem, &bad.used_by));
    VerifyResult {
        request: Some(token.to_owned()),
        time: Some(now()),
        ok: report.is_ok(),
        chunks_checked: report.chunks_checked as i64,
        chunk_lists_checked: report.chunk_lists_checked as i64,
        backups_checked: report.backups as i64,
        bad_chunk_lists: bad_statuses(lists, names),
        bad_chunks: bad_statuses(chunks, names),
        error: None,
    }
}

/// The first [`MAX_BAD_CHUNKS`] bad objects `(name, problem, uses)` as statuses.
fn bad_statuses<'a>(
    bad: impl Iterator<Item = (String, &'a ChunkProblem, &'a Vec<ChunkUse>)>,
    names: &BackupNames,
) -> Vec<BadChunkStatus> {
    bad.take(MAX_BAD_CHUNKS)
        .map(|(name, problem, used_by)| {
            let mut breaks: Vec<String> = used_by
                .iter()
                .take(MAX_BREAKS)
                .map(|u| {
                    let id = u.backup.to_string();
                    match names.get(&id) {
                        Some(name) => format!("{name} ({id}) {} @ {}", u.disk, u.offset),
                        None => format!("{id} {} @ {}", u.disk, u.offset),
                    }
                })
                .collect();
            if used_by.len() > MAX_BREAKS {
                breaks.push(format!("and {} more", used_by.len() - MAX_BREAKS));
            }
            BadChunkStatus { chunk: name, problem: problem_name(problem).into(), breaks }
        })
        .collect()
}

fn problem_name(problem: &ChunkProblem) -> &'static str {
    match problem {
        ChunkProblem::Missing => "Missing",
        ChunkProblem::Unreadable(_) => "Unreadable",
        ChunkProblem::Corrupt(_) => "Corrupt",
    }
}

/// Runs a prune; the result for `status.lastPrune`.
pub(crate) async fn prune(repository: &Repository, token: &str) -> PruneResult {
    match repository.prune(PruneOptions::default()).await {
        Ok(report) => prune_result(&report, token),
        Err(error) => PruneResult {
            request: Some(token.to_owned()),
            time: Some(now()),
            error: Some(format!("the prune could not run: {error}")),
            ..PruneResult::default()
        },
    }
}

fn prune_result(report: &PruneReport, token: &str) -> PruneResult {
    PruneResult {
        request: Some(token.to_owned()),
        time: Some(now()),
        chunks_deleted: report.chunks_deleted as i64,
        chunk_lists_deleted: report.chunk_lists_deleted as i64,
        bytes_freed: report.bytes_deleted as i64,
        error: None,
    }
}

/// A one-line summary of a verify for conditions and events.
pub(crate) fn verify_summary(result: &VerifyResult) -> String {
    if let Some(error) = &result.error {
        return error.clone();
    }
    if result.ok {
        return format!(
            "verified {} backup(s): all {} chunk(s) are intact",
            result.backups_checked, result.chunks_checked
        );
    }
    let broken: std::collections::BTreeSet<&str> = result
        .bad_chunks
        .iter()
        .chain(&result.bad_chunk_lists)
        .flat_map(|b| &b.breaks)
        .filter_map(|b| b.split(' ').next())
        .collect();
    let lists = match result.bad_chunk_lists.len() {
        0 => String::new(),
        bad => format!("{bad} bad chunk list(s) of {} checked and ", result.chunk_lists_checked),
    };
    format!(
        "verify found {lists}{} bad chunk(s) of {} checked, breaking backup(s) {}",
        result.bad_chunks.len(),
        result.chunks_checked,
        broken.into_iter().collect::<Vec<_>>().join(", ")
    )
}
