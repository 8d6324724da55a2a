//! The baseline: restic (Debian's package) backing up a raw image of the disk to its own bucket of
//! the same SeaweedFS server, through its S3 backend, as people back up VM images today.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vmsnap_testing::seaweedfs::{ACCESS_KEY, SECRET_KEY};

/// How to install restic, for the error when it is missing.
const INSTALL: &str = "apt-get install -y --no-install-recommends restic";

/// A restic repository in an S3 bucket.
pub(crate) struct Restic {
    repository: String,
    cache: PathBuf,
}

/// What one `restic backup` did.
pub(crate) struct ResticBackup {
    /// Wall time of the command.
    pub took: Duration,
    /// `data_added` of its summary: the bytes it added to the repository (before compression).
    pub data_added: u64,
}

/// Fails unless `restic` runs, naming how to install it; returns its name and version
/// (`restic 0.14.0`).
pub(crate) async fn require() -> anyhow::Result<String> {
    let out = tokio::process::Command::new("restic").arg("version").output().await.with_context(|| {
        format!("restic is not installed, and the backup section compares with it: {INSTALL}")
    })?;
    anyhow::ensure!(
        out.status.success(),
        "`restic version` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout);
    Ok(version.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
}

impl Restic {
    /// `restic init` of a repository in `bucket` at the S3 `endpoint`, with its local cache under
    /// `cache` (restic's default behaviour, kept: it speeds up its incrementals).
    pub async fn init(endpoint: &str, bucket: &str, cache: &Path) -> anyhow::Result<Restic> {
        let restic = Restic { repository: format!("s3:{endpoint}/{bucket}"), cache: cache.to_owned() };
        restic.run(&["init"], None).await?;
        Ok(restic)
    }

    /// `restic backup --force` of `file` (read whole: restic would otherwise skip a file whose
    /// metadata it saw before), run in the file's directory so that the snapshot holds its name.
    pub async fn backup(&self, file: &Path) -> anyhow::Result<ResticBackup> {
        let name = file.file_name().context("a file name")?.to_string_lossy().into_owned();
        super::settle().await?;
        let started = Instant::now();
        let out = self.run(&["backup", "--force", "--json", &name], file.parent()).await?;
        let took = started.elapsed();
        let summary = out
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|v| v["message_type"] == "summary")
            .context("restic backup printed no summary")?;
        let data_added = summary["data_added"].as_u64().context("no data_added in restic's summary")?;
        Ok(ResticBackup { took, data_added })
    }

    /// `restic restore latest` into `target`; returns the time and the restored file named `name`.
    pub async fn restore(&self, target: &Path, name: &str) -> anyhow::Result<(Duration, PathBuf)> {
        super::settle().await?;
        let started = Instant::now();
        self.run(&["restore", "latest", "--target", &target.to_string_lossy()], None).await?;
        let took = started.elapsed();
        let file = find_file(target, name)
            .with_context(|| format!("restic restored no {name} under {}", target.display()))?;
        Ok((took, file))
    }

    async fn run(&self, args: &[&str], dir: Option<&Path>) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new("restic");
        command
            .arg("--repo")
            .arg(&self.repository)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("RESTIC_PASSWORD", "vmsnap bench baseline")
            .stdin(std::process::Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let out = command.output().await.with_context(|| format!("run restic {}", args[0]))?;
        if !out.status.success() {
            // The last lines: restic prints every retry before giving up.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.trim().lines().collect();
            bail!("restic {} failed: {}", args.join(" "), lines[lines.len().saturating_sub(5)..].join("\n"));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}
