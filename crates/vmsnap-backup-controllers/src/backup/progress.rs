//! A run's counters, shared between the reads and the writer of `status.progress`, which
//! writes them about once a second while they change.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::Api;
use serde_json::json;
use vmsnap_api::backup::{TransferCounters, VirtualMachineRepositoryBackup};
use vmsnap_backup::Progress;

use crate::status::patch_status;

/// How often `status.progress` is written while a backup runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The counters of a run, shared with the progress writer.
#[derive(Default)]
pub(super) struct Counters {
    /// Figures of the disks done.
    done: TransferTotals,
    /// The disk being read.
    pub(super) current: Progress,
    /// Bytes the disks not started yet will read (their extents).
    pub(super) to_read_later: u64,
}

#[derive(Default, Clone, Copy)]
struct TransferTotals {
    to_read: u64,
    read: u64,
    uploaded: u64,
    deduplicated: u64,
    reused: u64,
}

impl Counters {
    /// The counters for `status.progress`; the percent is of the bytes to read (reused chunks
    /// and holes cost nothing).
    pub(super) fn transfer(&self, started: Instant) -> TransferCounters {
        let c = &self.current;
        let d = self.done;
        let to_read = d.to_read + c.bytes_to_read + self.to_read_later;
        let read = d.read + c.bytes_read;
        TransferCounters {
            bytes_to_read: Some(to_read as i64),
            bytes_read: Some(read as i64),
            bytes_uploaded: Some((d.uploaded + c.bytes_uploaded) as i64),
            bytes_deduplicated: Some((d.deduplicated + c.bytes_deduplicated) as i64),
            bytes_reused: Some((d.reused + c.bytes_reused) as i64),
            bytes_written: None,
            percent: Some((read * 100).checked_div(to_read).map_or(100, |percent| percent.min(100)) as i32),
            elapsed_seconds: Some(started.elapsed().as_secs() as i64),
        }
    }

    pub(super) fn finish_disk(&mut self) {
        let c = std::mem::take(&mut self.current);
        self.done.to_read += c.bytes_to_read;
        self.done.read += c.bytes_read;
        self.done.uploaded += c.bytes_uploaded;
        self.done.deduplicated += c.bytes_deduplicated;
        self.done.reused += c.bytes_reused;
    }
}

/// Writes `status.progress` every [`PROGRESS_EVERY`] while it changes, until told to stop.
pub(super) async fn write_progress(
    api: Api<VirtualMachineRepositoryBackup>,
    name: String,
    counters: Arc<Mutex<Counters>>,
    started: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let transfer = counters.lock().expect("not poisoned").transfer(started);
        if last.as_ref() != Some(&transfer) {
            if let Err(error) = patch_status(&api, &name, json!({"progress": transfer})).await {
                tracing::debug!(%error, backup = %name, "could not write progress");
            }
            last = Some(transfer);
        }
        tokio::select! {
            () = tokio::time::sleep(PROGRESS_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use vmsnap_backup::Progress;

    use super::Counters;

    #[test]
    fn progress_adds_the_disks_done_to_the_one_being_read_and_counts_percent_in_bytes_to_read() {
        let mut counters = Counters { to_read_later: 40, ..Counters::default() };
        counters.current =
            Progress { bytes_to_read: 40, bytes_read: 40, bytes_uploaded: 30, ..Progress::default() };
        counters.to_read_later -= 40;
        counters.finish_disk();
        counters.current =
            Progress { bytes_to_read: 160, bytes_read: 10, bytes_reused: 7, ..Progress::default() };
        let transfer = counters.transfer(Instant::now());
        assert_eq!(transfer.bytes_to_read, Some(200));
        assert_eq!(transfer.bytes_read, Some(50));
        assert_eq!(transfer.bytes_uploaded, Some(30));
        assert_eq!(transfer.bytes_reused, Some(7));
        assert_eq!(transfer.percent, Some(25));
        assert_eq!(Counters::default().transfer(Instant::now()).percent, Some(100), "nothing to read: done");
    }
}
