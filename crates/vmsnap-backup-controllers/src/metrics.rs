//! Prometheus metrics of backups and restores, in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Counters per repository and the last successful backup per VM.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (repository key, counter name) -> value.
    counters: BTreeMap<(String, &'static str), u64>,
    /// `namespace/vm` -> unix time of its last successful backup.
    last_success: BTreeMap<String, i64>,
    /// (repository key, outcome) -> (count, seconds summed).
    durations: BTreeMap<(String, &'static str), (u64, f64)>,
}

/// The counters a finished backup adds to.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackupFigures {
    /// Bytes read from disks.
    pub bytes_read: u64,
    /// Sealed bytes uploaded.
    pub bytes_uploaded: u64,
    /// Bytes read but already stored.
    pub bytes_deduplicated: u64,
}

impl Metrics {
    /// Records a finished backup of `vm` (`namespace/name`) to `repository` (`namespace/name`).
    pub fn backup_finished(
        &self,
        repository: &str,
        vm: &str,
        outcome_ok: bool,
        seconds: f64,
        figures: BackupFigures,
        at_unix: i64,
    ) {
        let mut inner = self.inner.lock().expect("not poisoned");
        let outcome = if outcome_ok { "succeeded" } else { "failed" };
        let entry = inner.durations.entry((repository.to_owned(), outcome)).or_default();
        entry.0 += 1;
        entry.1 += seconds;
        if outcome_ok {
            for (name, value) in [
                ("read", figures.bytes_read),
                ("uploaded", figures.bytes_uploaded),
                ("deduplicated", figures.bytes_deduplicated),
            ] {
                *inner.counters.entry((repository.to_owned(), name)).or_default() += value;
            }
            inner.last_success.insert(vm.to_owned(), at_unix);
        }
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().expect("not poisoned");
        let mut out = String::new();
        out.push_str("# HELP vmsnap_backup_bytes_total Bytes of successful backups, by repository and kind (read, uploaded, deduplicated).\n");
        out.push_str("# TYPE vmsnap_backup_bytes_total counter\n");
        for ((repository, kind), value) in &inner.counters {
            let _ = writeln!(
                out,
                "vmsnap_backup_bytes_total{{repository=\"{repository}\",kind=\"{kind}\"}} {value}"
            );
        }
        out.push_str("# HELP vmsnap_backup_duration_seconds Time backups took, by repository and outcome.\n");
        out.push_str("# TYPE vmsnap_backup_duration_seconds summary\n");
        for ((repository, outcome), (count, sum)) in &inner.durations {
            let labels = format!("repository=\"{repository}\",outcome=\"{outcome}\"");
            let _ = writeln!(out, "vmsnap_backup_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "vmsnap_backup_duration_seconds_count{{{labels}}} {count}");
        }
        out.push_str("# HELP vmsnap_backup_last_success_timestamp_seconds When each VM's last successful backup finished.\n");
        out.push_str("# TYPE vmsnap_backup_last_success_timestamp_seconds gauge\n");
        for (vm, at) in &inner.last_success {
            let (namespace, name) = vm.split_once('/').unwrap_or(("", vm));
            let _ = writeln!(
                out,
                "vmsnap_backup_last_success_timestamp_seconds{{namespace=\"{namespace}\",name=\"{name}\"}} {at}"
            );
        }
        out
    }
}
