//! `qemu-img`, run through `tokio::process`, with its stderr in every error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::driver::Progress;

/// Running `qemu-img` failed.
#[derive(Debug, thiserror::Error)]
pub enum QemuImgError {
    /// The binary could not be started.
    #[error("could not run {}; install qemu-utils or set StorageOptions::qemu_img", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("`qemu-img {command}` failed ({status}): {stderr}")]
    Failed {
        /// The arguments, space-separated.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// An empty image could not be written directly.
    #[error("could not write the empty qcow2 image {}", path.display())]
    Write {
        /// The image.
        path: PathBuf,
        /// The file-system error.
        #[source]
        source: std::io::Error,
    },
    /// It succeeded but printed something this crate cannot read.
    #[error("`qemu-img {command}` printed output that could not be read")]
    Output {
        /// The arguments, space-separated.
        command: String,
        /// What serde_json objected to.
        #[source]
        source: serde_json::Error,
    },
}

/// What `qemu-img info --output=json` says about an image (the members used here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ImageInfo {
    /// `raw`, `qcow2`, ...
    pub format: String,
    /// The size the guest sees, in bytes.
    pub virtual_size: u64,
    /// The backing file name as written in the header.
    #[serde(default)]
    pub backing_filename: Option<String>,
    /// The qcow2 cluster size (absent for raw images).
    #[serde(default)]
    pub cluster_size: Option<u64>,
    /// Format-specific details (for qcow2: an external `data-file`, if any).
    #[serde(default)]
    pub format_specific: Option<serde_json::Value>,
}

impl ImageInfo {
    /// The external data file of a qcow2 image, which makes it not self-contained.
    pub fn data_file(&self) -> Option<&str> {
        self.format_specific.as_ref()?.get("data")?.get("data-file")?.as_str()
    }
}

/// One entry of `qemu-img map --output=json` (QEMU 7.2): a run of the virtual
/// disk that the chain maps the same way.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct MapEntry {
    /// First virtual byte.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Which file of the backing chain answers for it (0: the top file).
    pub depth: usize,
    /// Whether some file of the chain allocates it (false: it reads as zeros, or beyond a backing file's end).
    pub present: bool,
    /// Whether it reads as zeros.
    pub zero: bool,
    /// Whether the file at `depth` holds its bytes.
    pub data: bool,
    /// Where those bytes are in that file; absent for compressed clusters.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// The `qemu-img` binary.
#[derive(Debug, Clone)]
pub(crate) struct QemuImg {
    binary: PathBuf,
}

impl QemuImg {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self { binary: binary.into() }
    }

    /// Creates a qcow2 file of `size` bytes; with `backing`, an overlay over that
    /// file name (relative to `path`'s directory), created with `-u` so the
    /// backing chain is not opened: constant time whatever its depth and size.
    pub async fn create_qcow2(
        &self,
        path: &Path,
        size: u64,
        cluster_size: u64,
        backing: Option<&str>,
    ) -> Result<(), QemuImgError> {
        if crate::qcow2::fits(size, cluster_size, backing) {
            // The common case, written directly: no process start (see `crate::qcow2`).
            let (path, backing) = (path.to_owned(), backing.map(str::to_owned));
            let written = tokio::task::spawn_blocking(move || {
                crate::qcow2::create(&path, size, cluster_size, backing.as_deref())
                    .map_err(|source| QemuImgError::Write { path, source })
            })
            .await;
            return written.unwrap_or_else(|join| {
                Err(QemuImgError::Write {
                    path: PathBuf::new(),
                    source: std::io::Error::other(join.to_string()),
                })
            });
        }
        let mut args = args(["create", "-q", "-f", "qcow2", "-o"]);
        args.push(format!("cluster_size={cluster_size}").into());
        if let Some(backing) = backing {
            args.extend(["-F", "qcow2", "-u", "-b", backing].map(OsString::from));
        }
        args.push(path.into());
        args.push(size.to_string().into());
        self.run(args).await.map(drop)
    }

    /// Creates a qcow2 file of `size` bytes whose every cluster is allocated, in guest order, over
    /// a sparse file (`preallocation=metadata`): its data can then be written with plain file writes
    /// at the offsets [`QemuImg::map`] gives, and what is not written reads as zeros.
    pub async fn create_qcow2_mapped(
        &self,
        path: &Path,
        size: u64,
        cluster_size: u64,
    ) -> Result<(), QemuImgError> {
        let mut args = args(["create", "-q", "-f", "qcow2", "-o"]);
        args.push(format!("cluster_size={cluster_size},preallocation=metadata").into());
        args.push(path.into());
        args.push(size.to_string().into());
        self.run(args).await.map(drop)
    }

    /// Reads an image's header. `force_share` (`-U`) reads an image a running
    /// QEMU holds, which is safe for the header fields used here.
    pub async fn info(
        &self,
        path: &Path,
        format: Option<&str>,
        force_share: bool,
    ) -> Result<ImageInfo, QemuImgError> {
        let mut args = args(["info", "--output=json"]);
        if let Some(format) = format {
            args.extend(["-f", format].map(OsString::from));
        }
        if force_share {
            args.push("-U".into());
        }
        args.push(path.into());
        let command = render(&args);
        let stdout = self.run(args).await?;
        serde_json::from_str(&stdout).map_err(|source| QemuImgError::Output { command, source })
    }

    /// How the image's chain maps its virtual disk, in order of `start`,
    /// covering the whole disk. Read with `-U`: callers map sealed files that a
    /// running QEMU may hold read-only, and nothing writes them any more.
    pub async fn map(&self, path: &Path, format: &str) -> Result<Vec<MapEntry>, QemuImgError> {
        let mut args = args(["map", "--output=json", "-U", "-f", format]);
        args.push(path.into());
        self.map_args(args).await
    }

    /// [`QemuImg::map`] of the image that the `json:` block-graph `spec`
    /// describes (files named by open descriptors, a chain cut short by
    /// `"backing": null`).
    pub async fn map_spec(&self, spec: &serde_json::Value) -> Result<Vec<MapEntry>, QemuImgError> {
        let mut args = args(["map", "--output=json", "-U"]);
        args.push(format!("json:{spec}").into());
        self.map_args(args).await
    }

    async fn map_args(&self, args: Vec<OsString>) -> Result<Vec<MapEntry>, QemuImgError> {
        let command = render(&args);
        let stdout = self.run(args).await?;
        serde_json::from_str(&stdout).map_err(|source| QemuImgError::Output { command, source })
    }

    /// Converts `source` into a new file `target`, reporting progress.
    pub async fn convert(
        &self,
        source: (&Path, &str),
        target: (&Path, &str),
        cluster_size: Option<u64>,
        progress: Progress<'_>,
    ) -> Result<(), QemuImgError> {
        let mut args = args(["convert", "-p", "-f", source.1, "-O", target.1]);
        if let Some(cluster_size) = cluster_size {
            args.push("-o".into());
            args.push(format!("cluster_size={cluster_size}").into());
        }
        args.extend([source.0.into(), target.0.into()]);
        self.run_with_progress(args, progress).await
    }

    /// Makes `backing` (a file name relative to `path`'s directory) the backing
    /// file of `path` in safe mode: clusters whose content would change are
    /// first copied into `path`, so what a reader sees is unchanged.
    pub async fn rebase(&self, path: &Path, backing: Option<&str>) -> Result<(), QemuImgError> {
        let mut args = args(["rebase", "-q", "-f", "qcow2"]);
        match backing {
            Some(backing) => args.extend(["-F", "qcow2", "-b", backing].map(OsString::from)),
            None => args.extend(["-b", ""].map(OsString::from)),
        }
        args.push(path.into());
        self.run(args).await.map(drop)
    }

    /// Grows an image to `size` bytes.
    pub async fn resize(&self, path: &Path, format: &str, size: u64) -> Result<(), QemuImgError> {
        let mut args = args(["resize", "-q", "-f", format]);
        args.push(path.into());
        args.push(size.to_string().into());
        self.run(args).await.map(drop)
    }

    fn command(&self, args: &[OsString]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: Vec<OsString>) -> Result<String, QemuImgError> {
        let output = self
            .command(&args)
            .output()
            .await
            .map_err(|source| QemuImgError::Spawn { binary: self.binary.clone(), source })?;
        check(&args, output.status, &output.stderr)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn run_with_progress(
        &self,
        args: Vec<OsString>,
        progress: Progress<'_>,
    ) -> Result<(), QemuImgError> {
        let mut child = self
            .command(&args)
            .spawn()
            .map_err(|source| QemuImgError::Spawn { binary: self.binary.clone(), source })?;
        let (mut stdout, mut stderr) =
            (child.stdout.take().expect("stdout is piped"), child.stderr.take().expect("stderr is piped"));
        let stderr_task = tokio::spawn(async move {
            let mut buffer = Vec::new();
            // A read error only loses diagnostics; the exit status still decides.
            let _ = stderr.read_to_end(&mut buffer).await;
            buffer
        });
        let mut reporter = ProgressReporter::new(progress);
        let mut chunk = [0u8; 512];
        // Progress is best-effort: if stdout fails, the exit status still decides.
        while let Ok(read) = stdout.read(&mut chunk).await {
            if read == 0 {
                break;
            }
            reporter.feed(&chunk[..read]);
        }
        let status = child
            .wait()
            .await
            .map_err(|source| QemuImgError::Spawn { binary: self.binary.clone(), source })?;
        let stderr = stderr_task.await.unwrap_or_default();
        check(&args, status, &stderr)?;
        reporter.finish();
        Ok(())
    }
}

fn args<const N: usize>(fixed: [&str; N]) -> Vec<OsString> {
    fixed.map(OsString::from).into()
}

fn render(args: &[OsString]) -> String {
    args.iter().map(|arg| arg.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

fn check(args: &[OsString], status: ExitStatus, stderr: &[u8]) -> Result<(), QemuImgError> {
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(stderr).trim().to_owned();
    Err(QemuImgError::Failed { command: render(args), status, stderr })
}

/// Turns `qemu-img -p` output (`    (12.50/100%)\r`) into callbacks, each
/// percentage at most once and in increasing order.
struct ProgressReporter<'a> {
    callback: Progress<'a>,
    pending: Vec<u8>,
    last: Option<u8>,
}

impl<'a> ProgressReporter<'a> {
    fn new(callback: Progress<'a>) -> Self {
        Self { callback, pending: Vec::new(), last: None }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\r' || b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(percent) = parse_progress(&String::from_utf8_lossy(&line)) {
                self.report(percent);
            }
        }
    }

    fn finish(&mut self) {
        self.report(100);
    }

    fn report(&mut self, percent: u8) {
        if self.last.is_none_or(|last| percent > last) {
            self.last = Some(percent);
            (self.callback)(percent);
        }
    }
}

/// The whole percentage in one `qemu-img -p` progress line, rounded down.
fn parse_progress(line: &str) -> Option<u8> {
    let inner = line.trim().strip_prefix('(')?.strip_suffix("/100%)")?;
    let value: f64 = inner.parse().ok()?;
    (0.0..=100.0).contains(&value).then(|| value.floor() as u8)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn progress_lines_are_parsed_and_garbage_is_ignored() {
        assert_eq!(parse_progress("    (0.00/100%)"), Some(0));
        assert_eq!(parse_progress("    (12.50/100%)\r"), Some(12));
        assert_eq!(parse_progress("(100.00/100%)"), Some(100));
        for garbage in ["", "(abc/100%)", "(101.00/100%)", "(-1.00/100%)", "12.50/100%", "(12.50/50%)"] {
            assert_eq!(parse_progress(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn progress_split_across_reads_is_reported_once_per_percent_in_order_and_ends_at_100() {
        let seen = Mutex::new(Vec::new());
        let callback = |percent: u8| seen.lock().unwrap().push(percent);
        let mut reporter = ProgressReporter::new(&callback);
        reporter.feed(b"    (0.00/100%)\r    (6.2");
        reporter.feed(b"5/100%)\r    (6.90/100%)\r    (3.00/100%)\r    (50.00/100%)\r\n");
        reporter.finish();
        assert_eq!(*seen.lock().unwrap(), vec![0, 6, 50, 100]);
    }

    #[test]
    fn data_file_is_read_from_the_qcow2_specific_info() {
        let info: ImageInfo = serde_json::from_str(
            r#"{"format": "qcow2", "virtual-size": 1024,
                "format-specific": {"type": "qcow2", "data": {"data-file": "/etc/passwd"}}}"#,
        )
        .unwrap();
        assert_eq!(info.data_file(), Some("/etc/passwd"));
        assert_eq!(info.backing_filename, None);
    }
}
