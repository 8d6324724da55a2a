//! Prometheus metrics: KubeVirt's `kubevirt_vmsnapshot_succeeded_timestamp_seconds` and vmsnap's
//! freeze-window and time-to-ready histograms, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

/// The controllers' metrics.
#[derive(Default)]
pub struct Metrics {
    succeeded: Mutex<BTreeMap<(String, String, String), i64>>,
    freeze_window: Mutex<Histogram>,
    time_to_ready: Mutex<Histogram>,
}

impl Metrics {
    /// `kubevirt_vmsnapshot_succeeded_timestamp_seconds{name=<vm>,snapshot_name,namespace}`.
    pub fn snapshot_succeeded(&self, vm: &str, snapshot: &str, namespace: &str, creation_secs: i64) {
        self.succeeded
            .lock()
            .expect("metrics lock")
            .insert((vm.into(), snapshot.into(), namespace.into()), creation_secs);
    }

    /// A guest freeze window (freeze call to unfreeze call), as the controller saw it.
    pub fn freeze_window(&self, d: Duration) {
        self.freeze_window.lock().expect("metrics lock").observe(d.as_secs_f64());
    }

    /// Time from a snapshot's creation to `readyToUse`.
    pub fn time_to_ready(&self, d: Duration) {
        self.time_to_ready.lock().expect("metrics lock").observe(d.as_secs_f64());
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP kubevirt_vmsnapshot_succeeded_timestamp_seconds Returns the timestamp of successful virtual machine snapshot.\n# TYPE kubevirt_vmsnapshot_succeeded_timestamp_seconds gauge"
        );
        for ((vm, snap, ns), secs) in self.succeeded.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "kubevirt_vmsnapshot_succeeded_timestamp_seconds{{name=\"{vm}\",namespace=\"{ns}\",snapshot_name=\"{snap}\"}} {secs}"
            );
        }
        self.freeze_window.lock().expect("metrics lock").render(
            "vmsnap_snapshot_freeze_window_seconds",
            "Time from the freeze request to the unfreeze response of an online snapshot.",
            &mut out,
        );
        self.time_to_ready.lock().expect("metrics lock").render(
            "vmsnap_snapshot_time_to_ready_seconds",
            "Time from a VirtualMachineSnapshot's creation to readyToUse.",
            &mut out,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_kubevirt_gauge_and_histograms() {
        let m = Metrics::default();
        m.snapshot_succeeded("vm", "snap", "default", 1_700_000_000);
        m.freeze_window(Duration::from_millis(40));
        let text = m.render();
        assert!(text.contains("kubevirt_vmsnapshot_succeeded_timestamp_seconds{name=\"vm\",namespace=\"default\",snapshot_name=\"snap\"} 1700000000"));
        assert!(text.contains("vmsnap_snapshot_freeze_window_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("vmsnap_snapshot_freeze_window_seconds_count 1"));
    }
}
