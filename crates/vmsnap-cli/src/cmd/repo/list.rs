//! `vmsnap repo list` and `vmsnap repo describe NAME`, and what a repository's conditions mean.

use std::process::ExitCode;

use vmsnap_api::backup::{VirtualMachineBackupRepository, reason};
use vmsnap_api::snapshot::{condition_type, find_condition};

use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};
use crate::cmd::output::{OutputArgs, Table, display_size, timestamp};
use crate::cmd::show::{DescribeArgs, object_to_describe, print_conditions, print_list};

/// Where a repository is, from its status, else from its spec.
pub fn location(r: &VirtualMachineBackupRepository) -> String {
    if let Some(location) = r.status.as_ref().and_then(|s| s.location.clone()) {
        return location;
    }
    match (&r.spec.local, &r.spec.s3) {
        (Some(local), _) => local.path.clone().unwrap_or_else(|| "<data dir>/backups".into()),
        (_, Some(s3)) => {
            let prefix =
                s3.prefix.as_deref().map(|p| format!("/{}", p.trim_matches('/'))).unwrap_or_default();
            format!("s3://{}{prefix} at {}", s3.bucket, s3.endpoint)
        }
        _ => "-".into(),
    }
}

/// What a repository's conditions say.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Open with its passphrase, for the current spec.
    Ready,
    /// It will not open until something changes: why (`WrongPassphrase: ...`).
    Failed(String),
    /// Not yet: what it waits for, if said.
    Pending(Option<String>),
}

/// Reads the Ready and Failure conditions (the Ready reasons that need a person's fix are final).
pub fn readiness(r: &VirtualMachineBackupRepository) -> Readiness {
    let Some(status) = &r.status else { return Readiness::Pending(None) };
    let current = match (status.observed_generation, r.metadata.generation) {
        (Some(seen), Some(generation)) => seen >= generation,
        _ => true,
    };
    let ready = find_condition(&status.conditions, condition_type::READY);
    let failure = find_condition(&status.conditions, condition_type::FAILURE).filter(|c| c.is_true());
    let said = |c: &vmsnap_api::snapshot::Condition| {
        let reason = c.reason.clone().unwrap_or_default();
        match c.message.as_deref().filter(|m| !m.is_empty()) {
            Some(m) if reason.is_empty() => m.to_owned(),
            Some(m) => format!("{reason}: {m}"),
            None => reason,
        }
    };
    if let Some(f) = failure {
        return Readiness::Failed(said(f));
    }
    match ready {
        Some(c) if c.is_true() && current => Readiness::Ready,
        Some(c) if !c.is_true() && current => {
            let final_reasons = [
                reason::WRONG_PASSPHRASE,
                reason::UNSUPPORTED_FORMAT,
                reason::REPOSITORY_UNREACHABLE,
                reason::SECRET_MISSING,
                reason::INVALID_SPEC,
                reason::FAILED,
            ];
            if c.reason.as_deref().is_some_and(|r| final_reasons.contains(&r)) {
                Readiness::Failed(said(c))
            } else {
                Readiness::Pending(Some(said(c)).filter(|s| !s.is_empty()))
            }
        }
        _ => Readiness::Pending(None),
    }
}

fn ready_column(r: &VirtualMachineBackupRepository) -> String {
    r.status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, condition_type::READY))
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "-".into())
}

/// Runs `vmsnap repo list`.
pub async fn list(output: OutputArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let mut repos: Vec<VirtualMachineBackupRepository> = session.list(Kind::Repository, "").await?;
    repos.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let nothing = || {
        format!(
            "No repositories in namespace \"{}\": add one with: vmsnap repo add NAME --passphrase-file FILE",
            session.namespace
        )
    };
    print_list(&repos, &output, nothing, table)
}

fn table(repos: &[VirtualMachineBackupRepository]) -> Table {
    let mut table = Table::new(&["NAME", "LOCATION", "READY", "BACKUPS", "STORED", "DEDUP"]);
    for r in repos {
        let status = r.status.clone().unwrap_or_default();
        table.row(vec![
            r.metadata.name.clone().unwrap_or_default(),
            location(r),
            ready_column(r),
            status.backups.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            status
                .stored_size
                .or_else(|| status.stored_bytes.map(|b| display_size(b.max(0) as u64)))
                .unwrap_or_else(|| "-".into()),
            status.deduplication_ratio.map(|d| format!("{d}x")).unwrap_or_else(|| "-".into()),
        ]);
    }
    table
}

/// Runs `vmsnap repo describe`.
pub async fn describe(args: DescribeArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let Some(r) =
        object_to_describe::<VirtualMachineBackupRepository>(&session, Kind::Repository, &args).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let status = r.status.clone().unwrap_or_default();
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    outln!("Name:            {}", args.name);
    outln!("Location:        {}", location(&r));
    outln!("Ready:           {}", ready_column(&r));
    outln!("Repository id:   {}", dash(status.repository_id.clone()));
    outln!("Format version:  {}", dash(status.format_version.map(|v| v.to_string())));
    outln!("Chunk size:      {}", dash(status.chunk_size.clone()));
    outln!("Read limit:      {}", read_limit(&r));
    outln!("Backups:         {}", dash(status.backups.map(|v| v.to_string())));
    outln!("Chunks:          {}", dash(status.chunks.map(|v| v.to_string())));
    outln!("Stored:          {}", dash(status.stored_size.clone()));
    outln!("Deduplication:   {}", dash(status.deduplication_ratio.map(|d| format!("{d}x"))));
    outln!("Passphrase:      Secret {}", r.spec.passphrase_secret_ref.name);
    if let Some(s3) = &r.spec.s3 {
        outln!("S3 credentials:  Secret {}", s3.credentials_secret_ref.name);
    }
    match &status.last_verify {
        Some(v) => {
            outln!("Last verify:     {} {}", timestamp(v.time.as_ref()), super::request::verify_summary(v))
        }
        None => outln!("Last verify:     never"),
    }
    match &status.last_prune {
        Some(p) => {
            outln!("Last prune:      {} {}", timestamp(p.time.as_ref()), super::request::prune_summary(p))
        }
        None => outln!("Last prune:      never"),
    }
    print_conditions(&status.conditions);
    Ok(ExitCode::SUCCESS)
}

/// The repository's read limit as `256Mi/s`, marked when it is the default.
pub(super) fn read_limit(r: &VirtualMachineBackupRepository) -> String {
    match r.spec.read_limit.as_deref() {
        Some(limit) => format!("{limit}/s"),
        None => format!(
            "{}/s (default)",
            vmsnap_api::quantity::format_bytes(vmsnap_api::backup::DEFAULT_READ_LIMIT)
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn repo(status: serde_json::Value) -> VirtualMachineBackupRepository {
        serde_json::from_value(json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository",
            "metadata": {"name": "main", "generation": 2},
            "spec": {"local": {}, "passphraseSecretRef": {"name": "main-passphrase"}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_repository_is_ready_for_its_current_spec_and_failed_for_reasons_that_need_a_fix() {
        let ready = json!([{"type": "Ready", "status": "True", "reason": "RepositoryReady"}]);
        assert_eq!(readiness(&repo(json!({"observedGeneration": 2, "conditions": ready}))), Readiness::Ready);
        assert_eq!(
            readiness(&repo(json!({"observedGeneration": 1, "conditions": ready}))),
            Readiness::Pending(None)
        );
        let wrong = json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "False", "reason": "WrongPassphrase", "message": "the passphrase does not open the repository"}]});
        assert_eq!(
            readiness(&repo(wrong)),
            Readiness::Failed("WrongPassphrase: the passphrase does not open the repository".into())
        );
        let waiting = json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting", "message": "opening"}]});
        assert_eq!(readiness(&repo(waiting)), Readiness::Pending(Some("Waiting: opening".into())));
    }
}
