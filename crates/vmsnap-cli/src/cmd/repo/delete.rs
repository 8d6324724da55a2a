//! `vmsnap repo delete NAME`: the repository object and the Secrets only it uses. The data in the
//! directory or bucket is not touched: adding the repository again (with the passphrase) finds
//! every backup in it.

use std::process::ExitCode;

use clap::Args;
use kube::api::DeleteParams;
use vmsnap_api::backup::VirtualMachineBackupRepository;
use vmsnap_api::k8s_openapi::api::core::v1::Secret;

use super::list::location;
use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};

/// `vmsnap repo delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The repository.
    name: String,
    /// Keep its Secrets (passphrase, S3 credentials) in the namespace.
    #[arg(long)]
    keep_secrets: bool,
}

/// The Secrets a repository names.
fn secrets_of(r: &VirtualMachineBackupRepository) -> Vec<String> {
    let mut names = vec![r.spec.passphrase_secret_ref.name.clone()];
    names.extend(r.spec.s3.as_ref().map(|s| s.credentials_secret_ref.name.clone()));
    names.retain(|n| !n.is_empty());
    names
}

/// Runs `vmsnap repo delete`.
pub async fn run(args: DeleteArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let repo: VirtualMachineBackupRepository = session.get(Kind::Repository, &args.name).await?;
    let others: Vec<VirtualMachineBackupRepository> = session.list(Kind::Repository, &args.name).await?;
    let shared: Vec<String> = others
        .iter()
        .filter(|o| o.metadata.name.as_deref() != Some(args.name.as_str()))
        .flat_map(secrets_of)
        .collect();
    session
        .api::<VirtualMachineBackupRepository>()
        .delete(&args.name, &DeleteParams::default())
        .await
        .map_err(|e| session.error(e, "delete", Kind::Repository, &args.name))?;
    let mut removed = Vec::new();
    if !args.keep_secrets {
        let api = session.api::<Secret>();
        for secret in secrets_of(&repo).into_iter().filter(|s| !shared.contains(s)) {
            match api.delete(&secret, &DeleteParams::default()).await {
                Ok(_) => removed.push(secret),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => errln!("warning: {}", session.error(e, "delete", Kind::Secret, &secret)),
            }
        }
    }
    let with =
        if removed.is_empty() { String::new() } else { format!(" with its Secrets {}", removed.join(", ")) };
    outln!("repository \"{}\" deleted{with}.", args.name);
    outln!(
        "The backups stay in {}: add the repository again with the same passphrase to find them.",
        location(&repo)
    );
    Ok(ExitCode::SUCCESS)
}
