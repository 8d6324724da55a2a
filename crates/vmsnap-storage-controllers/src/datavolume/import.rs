//! Imports of `http` DataVolume sources, run as background tasks (an import
//! takes as long as the data) keyed by the PVC's UID.
//!
//! A task downloads into the scratch directory (or reads a `file://` source in
//! place), imports the file into the engine volume of the PVC, then binds the
//! PVC and marks the DataVolume `Succeeded`. It reports `progress` on the way.
//! On failure it marks the DataVolume `Failed` with `restartCount` + 1; the
//! reconcile starts the next attempt after a backoff. A task whose PVC is
//! being deleted is told to stop; if its import completed anyway, it deletes
//! the volume it made.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use vmsnap_api::cdi::{DataVolume, dv_phase};
use vmsnap_storage::VolumeId;

use super::fetch::{self, Source, Timeouts};
use super::populate::finish;
use super::status::{Desired, Running, set_status};
use crate::context::Context;
use crate::error::{ReconcileError, full_message};

/// The state of the import into one PVC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportState {
    /// A task is running.
    Running,
    /// The last attempt failed at this instant, making this many failures in a row.
    Failed(Instant, i32),
}

struct Entry {
    state: ImportState,
    cancel: Arc<AtomicBool>,
    task: Option<tokio::task::AbortHandle>,
}

/// The imports of this process.
#[derive(Default)]
pub struct Imports {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Imports {
    /// The state of the import into the PVC `key`, if any.
    pub fn state(&self, key: &str) -> Option<ImportState> {
        self.entries.lock().expect("not poisoned").get(key).map(|entry| entry.state)
    }

    /// Asks the import into `key` to stop; `true` once nothing runs for it.
    pub fn stop(&self, key: &str) -> bool {
        let mut entries = self.entries.lock().expect("not poisoned");
        match entries.get(key) {
            Some(entry) if entry.state == ImportState::Running => {
                entry.cancel.store(true, Ordering::Relaxed);
                false
            }
            Some(_) => {
                entries.remove(key);
                true
            }
            None => true,
        }
    }

    /// Aborts every running import (at shutdown; recovery removes what they left).
    pub fn abort_all(&self) {
        for entry in self.entries.lock().expect("not poisoned").values() {
            if let Some(task) = &entry.task {
                task.abort();
            }
        }
    }

    fn begin(&self, key: &str) -> Option<Arc<AtomicBool>> {
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.get(key).is_some_and(|entry| entry.state == ImportState::Running) {
            return None;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        entries.insert(
            key.to_owned(),
            Entry { state: ImportState::Running, cancel: cancel.clone(), task: None },
        );
        Some(cancel)
    }

    fn attach(&self, key: &str, task: tokio::task::AbortHandle) {
        if let Some(entry) = self.entries.lock().expect("not poisoned").get_mut(key) {
            entry.task = Some(task);
        }
    }

    /// Records the end of the task: `Some(restarts)` after a failure (the
    /// entry stays, for the backoff), `None` after a success or a stop.
    fn end(&self, key: &str, failed: Option<i32>) {
        let mut entries = self.entries.lock().expect("not poisoned");
        match failed {
            Some(restarts) => {
                if let Some(entry) = entries.get_mut(key) {
                    entry.state = ImportState::Failed(Instant::now(), restarts);
                    entry.task = None;
                }
            }
            None => {
                entries.remove(key);
            }
        }
    }
}

/// Empties (or creates) the scratch directory at startup.
pub async fn prepare_scratch(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// What an import task needs.
pub struct ImportJob {
    /// The DataVolume.
    pub dv: DataVolume,
    /// Its PVC.
    pub claim: PersistentVolumeClaim,
    /// The PVC's class.
    pub class: Arc<StorageClass>,
    /// The engine volume to create.
    pub volume: VolumeId,
    /// Where to read from.
    pub source: Source,
    /// The requested size in bytes.
    pub size_bytes: u64,
    /// Failures in a row before this attempt.
    pub restarts: i32,
}

/// Starts the import for `job` unless one is running; `false` if one was.
pub fn start(ctx: &Arc<Context>, job: ImportJob) -> bool {
    let key = job.claim.uid().unwrap_or_default();
    let Some(cancel) = ctx.imports.begin(&key) else { return false };
    let task_ctx = ctx.clone();
    let task_key = key.clone();
    let task = tokio::spawn(async move {
        match run(&task_ctx, &job, &cancel).await {
            Ok(()) | Err(ImportFailure::Cancelled) => task_ctx.imports.end(&task_key, None),
            Err(ImportFailure::Failed(message)) => {
                // The registry first: the status write triggers the reconcile that schedules the retry.
                let restarts = job.restarts + 1;
                task_ctx.imports.end(&task_key, Some(restarts));
                record_failure(&task_ctx, &job, restarts, &message).await;
            }
        }
    });
    ctx.imports.attach(&key, task.abort_handle());
    true
}

/// How long after its last failure an import is tried again.
pub fn retry_delay(ctx: &Context, restart_count: i32) -> Duration {
    crate::context::backoff(ctx.config.retry_min, ctx.config.retry_max, restart_count.max(1) as u32)
}

enum ImportFailure {
    Cancelled,
    Failed(String),
}

async fn run(ctx: &Arc<Context>, job: &ImportJob, cancel: &AtomicBool) -> Result<(), ImportFailure> {
    let (tx, rx) = tokio::sync::watch::channel(0.0f64);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let transfer = async {
        let result = transfer(ctx, job, cancel, &tx).await;
        let _ = stop.send(true);
        result
    };
    // The reporter is stopped and awaited, not dropped: a progress write in flight must land
    // before the outcome's, or it could overwrite it.
    let (info, ()) = tokio::join!(transfer, report_progress(ctx, job, rx, stopped));
    let info = info?;
    if cancel.load(Ordering::Relaxed) {
        // The PVC is going away: do not leave a volume nothing will bind.
        if let Err(error) = ctx.driver.delete_volume(&job.volume).await {
            tracing::warn!(volume = %job.volume, error = %full_message(&error), "could not delete the volume of a stopped import");
        }
        return Err(ImportFailure::Cancelled);
    }
    finish(ctx, &job.dv, &job.claim, &job.class, &info)
        .await
        .map_err(|error| ImportFailure::Failed(error.message()))
}

/// Downloads (for http) and imports; progress goes 0–50 % for the download and 50–100 % for the import.
async fn transfer(
    ctx: &Context,
    job: &ImportJob,
    cancel: &AtomicBool,
    progress: &tokio::sync::watch::Sender<f64>,
) -> Result<vmsnap_storage::VolumeInfo, ImportFailure> {
    let (path, scratch, import_base) = match &job.source {
        Source::File(path) => (path.clone(), None, 0.0),
        source @ Source::Http { .. } => {
            let scratch: PathBuf = ctx.config.scratch_dir.join(format!("{}.img", job.volume));
            let timeouts =
                Timeouts { connect: ctx.config.import_connect_timeout, idle: ctx.config.import_idle_timeout };
            let report = |received: u64, total: Option<u64>| {
                if let Some(total) = total.filter(|t| *t > 0) {
                    progress.send_replace(received as f64 / total as f64 * 50.0);
                }
            };
            let downloaded = fetch::download(source, &scratch, timeouts, report, cancel).await;
            if let Err(error) = downloaded {
                let _ = tokio::fs::remove_file(&scratch).await;
                return Err(match error {
                    fetch::FetchError::Cancelled => ImportFailure::Cancelled,
                    error => ImportFailure::Failed(full_message(&error)),
                });
            }
            (scratch.clone(), Some(scratch), 50.0)
        }
    };
    let handed_over = matches!(&job.source, Source::File(path) if is_handed_over(path, &ctx.config.handed_over_import_roots));
    let weight = 100.0 - import_base;
    let on_progress = |percent: u8| {
        progress.send_replace(import_base + f64::from(percent) * weight / 100.0);
    };
    let imported = ctx
        .driver
        .import_volume(
            &job.volume,
            vmsnap_storage::Import {
                source: &path,
                size_bytes: Some(job.size_bytes),
                progress: &on_progress,
                handed_over,
            },
        )
        .await;
    if let Some(scratch) = scratch {
        let _ = tokio::fs::remove_file(&scratch).await;
    }
    if handed_over && imported.is_ok() {
        // Taken: the file's other name goes, so that nothing else imports or writes it.
        if let Err(error) = tokio::fs::remove_file(&path).await {
            tracing::warn!(file = %path.display(), %error, "could not remove an imported handed-over file");
        }
    }
    imported.map_err(|error| {
        ImportFailure::Failed(
            ReconcileError::storage(format!("import into volume {}", job.volume))(error).message(),
        )
    })
}

/// Whether the (canonical) `path` is under one of the handed-over `roots`.
fn is_handed_over(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().filter_map(|root| root.canonicalize().ok()).any(|root| path.starts_with(root))
}

/// Refuses a (canonical) `path` under a handed-over root to a DataVolume of another namespace
/// than the one it was made for. The server's files there are in a directory per namespace
/// (`<root>/<namespace>/...`): a restore's staging file holds a decrypted disk, which only its
/// own namespace may take.
pub(crate) fn check_handed_over_namespace(
    path: &Path,
    roots: &[PathBuf],
    namespace: &str,
) -> Result<(), String> {
    for root in roots.iter().filter_map(|root| root.canonicalize().ok()) {
        let Ok(relative) = path.strip_prefix(&root) else { continue };
        let mut components = relative.components();
        let owner = components.next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        let is_directory = components.next().is_some();
        return match owner {
            Some(owner) if is_directory && owner == namespace => Ok(()),
            Some(owner) if is_directory => Err(format!(
                "{} was made by the server for namespace {owner}; a DataVolume in namespace {namespace} may not import it",
                path.display()
            )),
            _ => Err(format!(
                "{} is in {}, which holds the server's own files for import, a directory per namespace; name a file under {}/{namespace}",
                path.display(),
                root.display(),
                root.display()
            )),
        };
    }
    Ok(())
}

/// Writes `progress` (at most every 200 ms) until told to stop.
async fn report_progress(
    ctx: &Context,
    job: &ImportJob,
    mut progress: tokio::sync::watch::Receiver<f64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut written: Option<String> = None;
    loop {
        let percent = format!("{:.2}%", *progress.borrow_and_update());
        if written.as_deref() != Some(percent.as_str()) {
            let desired = Desired {
                phase: dv_phase::IMPORT_IN_PROGRESS,
                progress: Some(percent.clone()),
                restart_count: None,
                running: Running::Transferring,
            };
            match set_status(ctx, &job.dv, Some(&job.claim), &desired).await {
                Ok(()) => written = Some(percent),
                Err(error) => tracing::debug!(error = %error.message(), "could not report import progress"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
        tokio::select! {
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

async fn record_failure(ctx: &Context, job: &ImportJob, restarts: i32, message: &str) {
    let desired = Desired {
        phase: dv_phase::FAILED,
        progress: None,
        restart_count: Some(restarts),
        running: Running::Failed(message.to_owned()),
    };
    if let Err(error) = set_status(ctx, &job.dv, Some(&job.claim), &desired).await {
        tracing::warn!(error = %error.message(), "could not record an import failure");
    }
    let note = format!("Unable to import into PVC {}: {message}", job.claim.name_any());
    ctx.event(&job.dv.object_ref(&()), EventType::Warning, "ImportFailed", "Import", note).await;
}
