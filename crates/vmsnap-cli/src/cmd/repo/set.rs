//! `vmsnap repo set NAME --read-limit QUANTITY|default`: what may change on a repository after
//! `repo add` (its read limit; a backup reads it when it starts).

use std::process::ExitCode;

use clap::Args;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vmsnap_api::backup::{VirtualMachineBackupRepository, parse_read_limit};

use super::list::read_limit;
use crate::cmd::client::ConnectionArgs;
use crate::cmd::errors::{CliResult, Kind};

/// The word that puts a setting back to its default.
const DEFAULT: &str = "default";

pub const EXAMPLES: &str =
    "Examples:\n  vmsnap repo set main --read-limit 64Mi\n  vmsnap repo set main --read-limit default";

/// `vmsnap repo set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// The repository.
    name: String,
    /// How fast backups read a VM's disks, sustained, in bytes per second (at least 1Mi), after
    /// the first 64 MiB of each disk; `default` for 256Mi. A backup already running keeps its own.
    #[arg(long, value_name = "QUANTITY|default", value_parser = parse_read_limit_setting)]
    read_limit: ReadLimitSetting,
}

/// `--read-limit`: a quantity as written, or the default (`spec.readLimit` removed).
#[derive(Debug, Clone)]
struct ReadLimitSetting(Option<String>);

/// Checks `--read-limit` here, with the server's rule (as `repo add` does).
fn parse_read_limit_setting(text: &str) -> Result<ReadLimitSetting, String> {
    if text == DEFAULT {
        return Ok(ReadLimitSetting(None));
    }
    parse_read_limit(text)
        .map(|_| ReadLimitSetting(Some(text.to_owned())))
        .map_err(|error| format!("{error}, or \"{DEFAULT}\""))
}

/// Runs `vmsnap repo set`.
pub async fn run(args: SetArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    let before: VirtualMachineBackupRepository = session.get(Kind::Repository, &args.name).await?;
    let patch = json!({"spec": {"readLimit": args.read_limit.0}});
    let after = session
        .api::<VirtualMachineBackupRepository>()
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| session.error(e, "update", Kind::Repository, &args.name))?;
    outln!(
        "repository \"{}\": read limit {} (was {}); backups read it when they start.",
        args.name,
        read_limit(&after),
        read_limit(&before)
    );
    Ok(ExitCode::SUCCESS)
}
