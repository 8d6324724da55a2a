//! Restores' downloads: each runs in a task of its own, keyed by the restore's UID, so that a
//! reconcile only starts one and reads where it stands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use vmsnap_backup::{BackupManifest, Repository, RestoreReport, RestoreTarget};
use vmsnap_storage::{ImportImage, VolumeDriver};

use super::staging::Staging;

/// Where a download stands.
#[derive(Debug, Clone)]
pub enum DownloadState {
    /// Writing the disks.
    Running,
    /// Every disk written and checked.
    Done(Vec<RestoreReport>),
    /// A disk could not be restored (the message names the disk and, for a bad chunk, the offset).
    Failed(String),
}

struct Download {
    state: watch::Receiver<DownloadState>,
    started: Instant,
    cancel: Arc<Notify>,
    _task: JoinHandle<()>,
}

/// The downloads in flight or finished and not yet forgotten.
#[derive(Default)]
pub struct Downloads {
    by_uid: Mutex<HashMap<String, Download>>,
}

impl Downloads {
    /// The state of the download of restore `uid` and the seconds since it started, if one
    /// was started since this process began.
    pub fn state(&self, uid: &str) -> Option<(DownloadState, u64)> {
        let map = self.by_uid.lock().expect("not poisoned");
        let download = map.get(uid)?;
        let state = download.state.borrow().clone();
        Some((state, download.started.elapsed().as_secs()))
    }

    /// Waits until the download of `uid` ends, at most `within` (none running: at once), so that
    /// the restore goes on the moment its disks are written rather than at its next look.
    pub async fn settle(&self, uid: &str, within: Duration) {
        let Some(mut state) = self.by_uid.lock().expect("not poisoned").get(uid).map(|d| d.state.clone())
        else {
            return;
        };
        let ended = state.wait_for(|state| !matches!(state, DownloadState::Running));
        // A timeout, or a download forgotten meanwhile (its sender gone): look again either way.
        let _ = tokio::time::timeout(within, ended).await;
    }

    /// Starts writing `disks` of `manifest` into `staging`, in `driver`'s own format (unless a
    /// download of `uid` exists).
    pub fn start(
        &self,
        uid: &str,
        driver: Arc<dyn VolumeDriver>,
        repository: Repository,
        manifest: BackupManifest,
        disks: Vec<String>,
        staging: Staging,
    ) {
        let mut map = self.by_uid.lock().expect("not poisoned");
        if map.contains_key(uid) {
            return;
        }
        let (shared, state) = watch::channel(DownloadState::Running);
        let cancel = Arc::new(Notify::new());
        let cancelled = cancel.clone();
        let runtime = tokio::runtime::Handle::current();
        // On a blocking thread of its own: rustc cannot prove the engine's restore future `Send`
        // for every lifetime (a closure over borrowed chunk references inside it), which
        // `tokio::spawn` needs; `block_on` does not.
        let task = tokio::task::spawn_blocking(move || {
            let result = runtime.block_on(async {
                tokio::select! {
                    result = write_disks(&*driver, &repository, &manifest, &disks, &staging) => Some(result),
                    () = cancelled.notified() => None,
                }
            });
            let end = match result {
                Some(Ok(reports)) => DownloadState::Done(reports),
                None => {
                    // Forgotten (the restore ended or went): its files go with it.
                    if let Err(error) = staging.remove() {
                        tracing::warn!(%error, "could not remove the staging files of a stopped restore");
                    }
                    return;
                }
                Some(Err(message)) => {
                    // Nothing of a failed restore stays on disk.
                    if let Err(error) = staging.remove() {
                        tracing::warn!(%error, "could not remove the staging files of a failed restore");
                    }
                    DownloadState::Failed(message)
                }
            };
            shared.send_replace(end);
        });
        map.insert(uid.to_owned(), Download { state, started: Instant::now(), cancel, _task: task });
    }

    /// Stops (if running) and forgets the download of `uid`.
    pub fn forget(&self, uid: &str) {
        if let Some(download) = self.by_uid.lock().expect("not poisoned").remove(uid) {
            // A stored permit: the task stops even if it has not reached its `select!` yet.
            download.cancel.notify_one();
        }
    }
}

async fn write_disks(
    driver: &dyn VolumeDriver,
    repository: &Repository,
    manifest: &BackupManifest,
    disks: &[String],
    staging: &Staging,
) -> Result<Vec<RestoreReport>, String> {
    let mut reports = Vec::with_capacity(disks.len());
    for disk in disks {
        let size = manifest.disk(disk).map_or(0, |d| d.size);
        let path = staging.prepare(disk).map_err(|e| {
            format!("creating the staging directory for {}: {e}", staging.file(disk).display())
        })?;
        let image = driver
            .create_import_image(&path, size)
            .await
            .map_err(|e| format!("creating the staging image {}: {e}", path.display()))?;
        let report =
            repository.restore_disk(manifest, disk, Staged(image)).await.map_err(|e| e.to_string())?;
        reports.push(report);
    }
    Ok(reports)
}

/// A staging image as the engine's restore target: made all zeros by the driver, of the disk's
/// size; emptied after a failure, so that no import can take it.
struct Staged(ImportImage);

impl RestoreTarget for Staged {
    fn prepare(&self, size: u64) -> std::io::Result<()> {
        if size > self.0.size() {
            return Err(std::io::Error::other(format!(
                "the staging image holds {} bytes, the disk {size}",
                self.0.size()
            )));
        }
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_at(data, offset)
    }

    fn sync(&self) -> std::io::Result<()> {
        self.0.sync()
    }

    fn discard(&self) -> std::io::Result<()> {
        self.0.discard()
    }
}
