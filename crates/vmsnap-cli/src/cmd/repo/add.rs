//! `vmsnap repo add NAME (--dir PATH | --s3 URL --bucket B ...) --passphrase-file F [--chunk-size Q]`: the Secrets
//! and the repository object, then (unless `--no-wait`) the controller's answer: ready with the
//! backups it found, or why not.
//!
//! Nothing is left half-made: the repository is first created with `dryRun=All` (admission and a
//! taken name are refused before any Secret exists), the Secrets this command made are deleted
//! again when the repository is refused, and a repository that does not open (wrong passphrase,
//! unreachable) is removed with them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{ArgGroup, Args};
use kube::api::{DeleteParams, PostParams};
use vmsnap_api::backup::{
    LocalRepository, PASSPHRASE_KEY, S3Repository, SecretKeySelector, SecretName,
    VirtualMachineBackupRepository, VirtualMachineBackupRepositorySpec, parse_chunk_size, parse_read_limit,
    s3_secret_key,
};
use vmsnap_api::k8s_openapi::ByteString;
use vmsnap_api::k8s_openapi::api::core::v1::Secret;
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::list::{Readiness, readiness};
use crate::cmd::client::{ConnectionArgs, Session};
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};
use crate::cmd::output::{OutputArgs, print_objects, seconds};
use crate::cmd::parse_duration;
use crate::cmd::progress::Progress;
use crate::cmd::progress::object::{Next, ObjectWatch};

pub const EXAMPLES: &str = "Examples:
  vmsnap repo add main --passphrase-file ~/.vmsnap-passphrase       # <data dir>/backups/NAMESPACE/main
  vmsnap repo add nas --dir /mnt/nas/vm-backups --passphrase-file pass.txt
  vmsnap repo add big --dir /srv/vm-backups --chunk-size 4Mi --passphrase-file pass.txt   # for multi-TiB disks
  vmsnap repo add off-site --s3 http://127.0.0.1:8333 --bucket vm-backups --prefix lab \\
      --access-key-id-file key-id.txt --secret-access-key-file secret.txt --passphrase-file pass.txt";

/// `vmsnap repo add`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("where").args(["dir", "s3"])))]
pub struct AddArgs {
    /// The repository's name.
    name: String,
    /// A directory on the machine running vmsnap serve (absolute) [default: <data dir>/backups/NAMESPACE/NAME]
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// The endpoint of an S3-compatible object store (`https://...`; plain `http://` on loopback only).
    #[arg(long, value_name = "URL", requires_all = ["bucket", "access_key_id_file", "secret_access_key_file"])]
    s3: Option<String>,
    /// The bucket (it must exist).
    #[arg(long, requires = "s3")]
    bucket: Option<String>,
    /// A prefix in the bucket under which the repository lives.
    #[arg(long, requires = "s3")]
    prefix: Option<String>,
    /// The bucket's region [default: us-east-1]
    #[arg(long, requires = "s3")]
    region: Option<String>,
    /// A file holding the S3 access key id.
    #[arg(long, value_name = "FILE", requires = "s3")]
    access_key_id_file: Option<PathBuf>,
    /// A file holding the S3 secret access key.
    #[arg(long, value_name = "FILE", requires = "s3")]
    secret_access_key_file: Option<PathBuf>,
    /// A file holding the passphrase that encrypts the repository (a trailing newline is not part of it).
    /// Keep a copy: without it nobody can read the backups.
    #[arg(long, value_name = "FILE")]
    passphrase_file: PathBuf,
    /// The size of the chunks disks are cut into, a power of two from 64Ki to 64Mi, fixed for the
    /// repository's life; read only when the location holds no repository yet. Larger: fewer objects
    /// and smaller manifests (for big disks, or S3 per-request costs); smaller: less uploaded after
    /// small scattered writes [default: 512Ki]
    #[arg(long, value_name = "QUANTITY", value_parser = parse_chunk_size_arg)]
    chunk_size: Option<String>,
    /// How fast backups read a VM's disks, sustained, in bytes per second (at least 1Mi), after
    /// the first 64 MiB of each disk: lower leaves the running guests more of the machine. Change
    /// it later with `vmsnap repo set NAME --read-limit 64Mi` [default: 256Mi]
    #[arg(long, value_name = "QUANTITY", value_parser = parse_read_limit_arg)]
    read_limit: Option<String>,
    /// Wait until the repository is open (the default).
    #[arg(long, conflicts_with = "no_wait")]
    wait: bool,
    /// Create the Secrets and the repository and return without waiting.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the repository to open.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

/// Checks `--chunk-size` here, with the server's rule, so that a typo is refused before anything is
/// made; the text goes to the server as written.
fn parse_chunk_size_arg(text: &str) -> Result<String, String> {
    parse_chunk_size(text).map(|_| text.to_owned()).map_err(|error| error.to_string())
}

/// Checks `--read-limit` here, with the server's rule; the text goes to the server as written.
fn parse_read_limit_arg(text: &str) -> Result<String, String> {
    parse_read_limit(text).map(|_| text.to_owned()).map_err(|error| error.to_string())
}

/// The passphrase Secret of repository `name`.
pub fn passphrase_secret(name: &str) -> String {
    format!("{name}-passphrase")
}

/// The S3 credentials Secret of repository `name`.
pub fn credentials_secret(name: &str) -> String {
    format!("{name}-s3-credentials")
}

/// The content of `path`, without its trailing line break; empty content is an error.
fn read_secret_file(flag: &str, path: &Path) -> CliResult<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(Exit::Usage, format!("{flag} {}: cannot read it: {e}", path.display())))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(CliError::new(Exit::Usage, format!("{flag} {}: the file is empty", path.display())));
    }
    Ok(value.to_owned())
}

/// A Secret to create: its name and data.
struct SecretToMake {
    name: String,
    data: BTreeMap<String, String>,
}

impl SecretToMake {
    fn object(&self) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some([("app.kubernetes.io/managed-by".to_string(), "vmsnap".to_string())].into()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                self.data.iter().map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))).collect(),
            ),
            ..Default::default()
        }
    }
}

/// The repository object and the Secrets it needs, from the command line.
fn plan(args: &AddArgs) -> CliResult<(VirtualMachineBackupRepository, Vec<SecretToMake>)> {
    let passphrase = read_secret_file("--passphrase-file", &args.passphrase_file)?;
    let mut secrets = vec![SecretToMake {
        name: passphrase_secret(&args.name),
        data: [(PASSPHRASE_KEY.to_string(), passphrase)].into(),
    }];
    let (local, s3) = match (&args.s3, &args.dir) {
        (Some(endpoint), _) => {
            let (Some(bucket), Some(id_file), Some(key_file)) =
                (&args.bucket, &args.access_key_id_file, &args.secret_access_key_file)
            else {
                unreachable!("clap requires --bucket and both key files with --s3");
            };
            secrets.push(SecretToMake {
                name: credentials_secret(&args.name),
                data: [
                    (
                        s3_secret_key::ACCESS_KEY_ID.to_string(),
                        read_secret_file("--access-key-id-file", id_file)?,
                    ),
                    (
                        s3_secret_key::SECRET_ACCESS_KEY.to_string(),
                        read_secret_file("--secret-access-key-file", key_file)?,
                    ),
                ]
                .into(),
            });
            let s3 = S3Repository {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                prefix: args.prefix.clone(),
                region: args.region.clone(),
                credentials_secret_ref: SecretName { name: credentials_secret(&args.name) },
            };
            (None, Some(s3))
        }
        (None, dir) => {
            let path = dir.as_ref().map(|d| d.display().to_string());
            (Some(LocalRepository { path }), None)
        }
    };
    let spec = VirtualMachineBackupRepositorySpec {
        local,
        s3,
        passphrase_secret_ref: SecretKeySelector { name: passphrase_secret(&args.name), key: None },
        chunk_size: args.chunk_size.clone(),
        read_limit: args.read_limit.clone(),
    };
    Ok((VirtualMachineBackupRepository::new(&args.name, spec), secrets))
}

/// Runs `vmsnap repo add`.
pub async fn run(args: AddArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let (repository, secrets) = plan(&args)?;
    let session = conn.connect().await?;
    let api = session.api::<VirtualMachineBackupRepository>();
    // Admission and a taken name first, before any Secret exists.
    api.create(&PostParams { dry_run: true, ..Default::default() }, &repository)
        .await
        .map_err(|e| session.error(e, "add", Kind::Repository, &args.name))?;

    let mut made = Vec::new();
    for secret in &secrets {
        match create_secret(&session, secret).await {
            Ok(true) => made.push(secret.name.clone()),
            Ok(false) => {}
            Err(e) => {
                remove_secrets(&session, &made).await;
                return Err(e);
            }
        }
    }
    let watch = if args.no_wait { None } else { Some(ObjectWatch::start(&session, &args.name).await) };
    let watch = match watch.transpose() {
        Ok(w) => w,
        Err(e) => {
            remove_secrets(&session, &made).await;
            return Err(e);
        }
    };
    let start = Instant::now();
    let created = match session.create(Kind::Repository, &args.name, &repository).await {
        Ok(c) => c,
        Err(e) => {
            remove_secrets(&session, &made).await;
            return Err(e);
        }
    };
    let Some((mut watch, _)) = watch else {
        match args.output.output {
            Some(format) => print_objects(&[created], format, true)?,
            None => outln!("repository \"{}\" added (not waiting for it to open)", args.name),
        }
        return Ok(ExitCode::SUCCESS);
    };

    let progress = Progress::start(&format!("Opening repository \"{}\":", args.name));
    progress.waiting_for("the repository controller");
    let deadline = start + args.timeout;
    let outcome = loop {
        match watch.next(deadline).await {
            Next::Applied(r) => match readiness(&r) {
                Readiness::Ready => break Ok(r),
                Readiness::Failed(why) => break Err(why),
                Readiness::Pending(note) => {
                    if let Some(note) = note {
                        progress.waiting_for(&note);
                    }
                }
            },
            Next::Deleted => break Err(format!("repository \"{}\" was deleted while opening", args.name)),
            Next::TimedOut => {
                progress.finish();
                return Err(CliError::new(
                    Exit::Timeout,
                    format!(
                        "repository \"{}\" did not open within {}: it stays, and opens once reachable; see: vmsnap repo describe {}",
                        args.name,
                        seconds(args.timeout),
                        args.name
                    ),
                ));
            }
        }
    };
    progress.finish();
    match outcome {
        Ok(r) => {
            if let Some(format) = args.output.output {
                print_objects(&[r], format, true)?;
                return Ok(ExitCode::SUCCESS);
            }
            let status = r.status.unwrap_or_default();
            outln!("Repository \"{}\" is ready ({}).", args.name, seconds(start.elapsed()));
            outln!("  Location:  {}", status.location.as_deref().unwrap_or("-"));
            if let Some(id) = &status.repository_id {
                outln!("  Id:        {id}");
            }
            let backups = status.backups.unwrap_or(0);
            outln!(
                "  Backups:   {backups}{}",
                if backups > 0 {
                    format!(" (list them with: vmsnap backup list --repo {})", args.name)
                } else {
                    String::new()
                }
            );
            outln!("  Keep the passphrase safe: without it nobody, vmsnap included, can read these backups.");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            // A repository that does not open is not kept, nor the Secrets made for it: fix the
            // cause and add it again.
            let _ = api.delete(&args.name, &DeleteParams::default()).await;
            remove_secrets(&session, &made).await;
            Err(CliError::new(Exit::Failed, format!("repository \"{}\" was not added: {why}", args.name)))
        }
    }
}

/// Creates a Secret: `Ok(true)` if made, `Ok(false)` if one with the same data exists (reused).
async fn create_secret(session: &Session, secret: &SecretToMake) -> CliResult<bool> {
    let api = session.api::<Secret>();
    match api.create(&PostParams::default(), &secret.object()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" || s.code == 409 => {
            let existing = session.get::<Secret>(Kind::Secret, &secret.name).await?;
            if existing.data == secret.object().data {
                return Ok(false);
            }
            Err(CliError::new(
                Exit::Conflict,
                format!(
                    "Secret \"{}\" already exists with other content: delete it with: kubectl delete secret {}, or pick another repository name",
                    secret.name, secret.name
                ),
            ))
        }
        Err(e) => Err(session.error(e, "create", Kind::Secret, &secret.name)),
    }
}

/// Deletes the Secrets this command made (best effort: the error being reported matters more).
async fn remove_secrets(session: &Session, names: &[String]) {
    let api = session.api::<Secret>();
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}
