//! Verify and prune: a request is an annotation set to a fresh token on the repository (or the
//! backup); the controller answers in `status.lastVerify` / `status.lastPrune` carrying the token.
//! The watch is synced before the annotation is set, so the answer cannot be missed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::json;
use vmsnap_api::backup::{
    PruneResult, VerifyResult, VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, annotation,
};

use crate::cmd::client::{ApiObject, ConnectionArgs, Session};
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};
use crate::cmd::output::{Table, display_size, seconds};
use crate::cmd::progress::Progress;
use crate::cmd::progress::object::{Next, ObjectWatch};
use crate::cmd::timestamp_suffix;

/// A token no earlier request used: the time and a few random-enough bits.
pub fn fresh_token() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}-{:08x}", timestamp_suffix(), (nanos as u32) ^ std::process::id().rotate_left(16))
}

/// Sets `annotation` on `kind` `name` to a fresh token and waits until `answer` finds the result
/// carrying it.
async fn request<K, T>(
    session: &Session,
    kind: Kind,
    name: &str,
    key: &str,
    title: &str,
    timeout: Duration,
    answer: impl Fn(&K) -> Option<(Option<String>, T)>,
) -> CliResult<T>
where
    K: ApiObject,
{
    let (mut watch, current) = ObjectWatch::<K>::start(session, name).await?;
    if current.is_none() {
        return Err(session.target(kind, name).not_found());
    }
    let token = fresh_token();
    let patch = json!({"metadata": {"annotations": {key: token}}});
    let start = Instant::now();
    session
        .api::<K>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| session.error(e, "request a check of", kind, name))?;
    let progress = Progress::start(title);
    progress.waiting_for("the controller");
    let deadline = start + timeout;
    loop {
        match watch.next(deadline).await {
            Next::Applied(object) => {
                if let Some((Some(request), result)) = answer(&object)
                    && request == token
                {
                    progress.finish();
                    return Ok(result);
                }
            }
            Next::Deleted => {
                progress.finish();
                return Err(CliError::new(
                    Exit::Failed,
                    format!("{} was deleted before answering", session.target(kind, name).label()),
                ));
            }
            Next::TimedOut => {
                progress.finish();
                return Err(CliError::new(
                    Exit::Timeout,
                    format!(
                        "no answer from the controller within {} (request {key}={token}): it goes on in the background",
                        seconds(timeout)
                    ),
                ));
            }
        }
    }
}

/// `ok, 1234 chunks of 5 backups` or `3 bad chunks of 1234 checked (5 backups)`.
pub fn verify_summary(v: &VerifyResult) -> String {
    match (&v.error, v.ok) {
        (Some(e), _) => format!("could not run: {e}"),
        (None, true) => format!("ok, {} chunks of {} backups", v.chunks_checked, v.backups_checked),
        (None, false) => format!(
            "{}{} bad chunks of {} checked ({} backups)",
            bad_lists(v),
            v.bad_chunks.len(),
            v.chunks_checked,
            v.backups_checked
        ),
    }
}

/// `2 bad chunk lists, ` when a verify found any.
fn bad_lists(v: &VerifyResult) -> String {
    match v.bad_chunk_lists.len() {
        0 => String::new(),
        bad => format!("{bad} bad chunk lists, "),
    }
}

/// `42 chunks deleted, 12Mi freed`, or `42 chunks and 3 chunk lists deleted, ...`.
pub fn prune_summary(p: &PruneResult) -> String {
    let lists = match p.chunk_lists_deleted {
        0 => String::new(),
        lists => format!(" and {lists} chunk lists"),
    };
    match &p.error {
        Some(e) => format!("could not run: {e}"),
        None => format!(
            "{} chunks{lists} deleted, {} freed",
            p.chunks_deleted,
            display_size(p.bytes_freed.max(0) as u64)
        ),
    }
}

/// Prints a verify result; bad chunks (listed with what they break) and a verify that could not
/// run are failures.
fn report_verify(what: &str, v: &VerifyResult) -> CliResult<ExitCode> {
    if let Some(e) = &v.error {
        return Err(CliError::new(Exit::Failed, format!("the verify of {what} could not run: {e}")));
    }
    if v.ok {
        outln!(
            "{} verified: {} chunks of {} backups read back, decrypted and checked; all good.",
            capitalized(what),
            v.chunks_checked,
            v.backups_checked
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["CHUNK", "PROBLEM", "BREAKS"]);
    let lists = v.bad_chunk_lists.iter().map(|bad| (format!("list {}", bad.chunk), bad));
    for (name, bad) in lists.chain(v.bad_chunks.iter().map(|bad| (bad.chunk.clone(), bad))) {
        let breaks = if bad.breaks.is_empty() { "-".to_owned() } else { bad.breaks.join("; ") };
        table.row(vec![name, bad.problem.clone(), breaks]);
    }
    out!("{}", table.render());
    let listed = if v.bad_chunks.len() >= 100 || v.bad_chunk_lists.len() >= 100 {
        " (the first 100 are listed)"
    } else {
        ""
    };
    let message = match v.bad_chunk_lists.len() {
        0 => format!(
            "{what} has bad chunks{listed}: {} of {} checked; the backups they break cannot be restored whole",
            v.bad_chunks.len(),
            v.chunks_checked
        ),
        lists => format!(
            "{what} has bad chunk lists{listed}: {lists} of {} checked (the chunks of the 1,024-chunk stretch each holds are unknown), and {} bad chunks of {} checked; the backups they break cannot be restored whole",
            v.chunk_lists_checked,
            v.bad_chunks.len(),
            v.chunks_checked
        ),
    };
    Err(CliError::new(Exit::Failed, message))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// `vmsnap repo verify NAME`.
pub async fn verify_repository(name: &str, timeout: Duration, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let result = request::<VirtualMachineBackupRepository, _>(
        &session,
        Kind::Repository,
        name,
        annotation::VERIFY_REQUEST,
        &format!("Verifying repository \"{name}\" (every chunk is read back):"),
        timeout,
        |r| r.status.as_ref()?.last_verify.clone().map(|v| (v.request.clone(), v)),
    )
    .await?;
    report_verify(&format!("repository \"{name}\""), &result)
}

/// `vmsnap repo prune NAME`.
pub async fn prune_repository(name: &str, timeout: Duration, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let result = request::<VirtualMachineBackupRepository, _>(
        &session,
        Kind::Repository,
        name,
        annotation::PRUNE_REQUEST,
        &format!("Pruning repository \"{name}\":"),
        timeout,
        |r| r.status.as_ref()?.last_prune.clone().map(|p| (p.request.clone(), p)),
    )
    .await?;
    if let Some(e) = &result.error {
        return Err(CliError::new(
            Exit::Failed,
            format!("the prune of repository \"{name}\" could not run: {e}"),
        ));
    }
    outln!("Repository \"{name}\" pruned: {}.", prune_summary(&result));
    Ok(ExitCode::SUCCESS)
}

/// `vmsnap backup verify NAME`.
pub async fn verify_backup(name: &str, timeout: Duration, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let result = request::<VirtualMachineRepositoryBackup, _>(
        &session,
        Kind::Backup,
        name,
        annotation::VERIFY_REQUEST,
        &format!("Verifying backup \"{name}\" (each of its chunks is read back):"),
        timeout,
        |b| b.status.as_ref()?.last_verify.clone().map(|v| (v.request.clone(), v)),
    )
    .await?;
    report_verify(&format!("backup \"{name}\""), &result)
}

#[cfg(test)]
mod tests {
    use vmsnap_api::backup::BadChunkStatus;

    use super::*;

    #[test]
    fn tokens_differ_between_requests() {
        let a = fresh_token();
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(a, fresh_token());
    }

    #[test]
    fn bad_chunks_are_a_failure_that_says_how_many() {
        let v = VerifyResult {
            ok: false,
            chunks_checked: 10,
            backups_checked: 2,
            bad_chunks: vec![BadChunkStatus {
                chunk: "ab12".into(),
                problem: "Corrupt".into(),
                breaks: vec!["b1 data @ 65536".into()],
            }],
            ..Default::default()
        };
        let e = report_verify("repository \"main\"", &v).unwrap_err();
        assert_eq!(e.exit, Exit::Failed);
        assert!(
            e.message.starts_with("repository \"main\" has bad chunks: 1 of 10 checked"),
            "{}",
            e.message
        );
        assert_eq!(verify_summary(&v), "1 bad chunks of 10 checked (2 backups)");
    }

    #[test]
    fn bad_chunk_lists_are_listed_first_and_said_with_what_they_leave_unknown() {
        let bad = |name: &str| BadChunkStatus {
            chunk: name.into(),
            problem: "Missing".into(),
            breaks: vec!["b1 data @ 0".into()],
        };
        let v = VerifyResult {
            ok: false,
            chunks_checked: 10,
            chunk_lists_checked: 3,
            backups_checked: 2,
            bad_chunk_lists: vec![bad("cd34")],
            bad_chunks: vec![bad("ab12")],
            ..Default::default()
        };
        let e = report_verify("repository \"main\"", &v).unwrap_err();
        assert!(
            e.message.starts_with(
                "repository \"main\" has bad chunk lists: 1 of 3 checked (the chunks of the 1,024-chunk stretch each holds are unknown), and 1 bad chunks of 10 checked"
            ),
            "{}",
            e.message
        );
        assert_eq!(verify_summary(&v), "1 bad chunk lists, 1 bad chunks of 10 checked (2 backups)");
        let pruned = PruneResult {
            chunks_deleted: 4,
            chunk_lists_deleted: 2,
            bytes_freed: 2048,
            ..Default::default()
        };
        assert!(
            prune_summary(&pruned).starts_with("4 chunks and 2 chunk lists deleted, "),
            "{}",
            prune_summary(&pruned)
        );
    }
}
