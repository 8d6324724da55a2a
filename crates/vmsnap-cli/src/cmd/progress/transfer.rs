//! The progress of a backup or a restore from its `status.progress` (byte counters the controller
//! updates about once a second): a bar with the bytes read (written), uploaded and deduplicated,
//! the rate and the time left on a terminal; plain lines on stderr otherwise, one per phase or
//! note change and one per tenth of the work done.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use vmsnap_api::backup::TransferCounters;

use crate::cmd::output::display_size;

/// What is moving: disks read and uploaded (backup), or downloaded and written (restore).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Reading disks, uploading chunks.
    Backup,
    /// Downloading chunks, writing disks.
    Restore,
}

fn bytes_of(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

/// Bytes done so far and in all (`None` while unknown).
pub fn done_and_total(direction: Direction, c: &TransferCounters) -> (u64, Option<u64>) {
    let done = match direction {
        Direction::Backup => bytes_of(c.bytes_read),
        Direction::Restore => bytes_of(c.bytes_written),
    };
    (done, c.bytes_to_read.map(|t| t.max(0) as u64))
}

/// Bytes per second since the transfer started.
pub fn rate(direction: Direction, c: &TransferCounters) -> Option<f64> {
    let elapsed = c.elapsed_seconds.filter(|s| *s > 0)? as f64;
    Some(done_and_total(direction, c).0 as f64 / elapsed)
}

/// Time left at the average rate so far.
pub fn eta(direction: Direction, c: &TransferCounters) -> Option<Duration> {
    let (done, total) = done_and_total(direction, c);
    let left = total?.checked_sub(done).filter(|left| *left > 0)?;
    let rate = rate(direction, c).filter(|r| *r > 0.0)?;
    Some(Duration::from_secs_f64(left as f64 / rate))
}

/// `1m05s`, `42s`, `1h02m`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The pieces of a counters line: what is done, the byte counts, the rate and time left.
struct Parts {
    done: String,
    bytes: Vec<String>,
    pace: Vec<String>,
}

fn parts(direction: Direction, c: &TransferCounters) -> Parts {
    let (done, total) = done_and_total(direction, c);
    let verb = match direction {
        Direction::Backup => "read",
        Direction::Restore => "written",
    };
    let mut head = match total {
        Some(total) => format!("{}/{} {verb}", display_size(done), display_size(total)),
        None => format!("{} {verb}", display_size(done)),
    };
    if let Some(p) = c.percent {
        head.push_str(&format!(" ({p}%)"));
    }
    let mut bytes = Vec::new();
    if direction == Direction::Backup {
        bytes.push(format!("{} uploaded", display_size(bytes_of(c.bytes_uploaded))));
        bytes.push(format!("{} deduplicated", display_size(bytes_of(c.bytes_deduplicated))));
        if let Some(reused) = c.bytes_reused.filter(|r| *r > 0) {
            bytes.push(format!("{} reused from the base", display_size(reused as u64)));
        }
    }
    let mut pace = Vec::new();
    if let Some(rate) = rate(direction, c) {
        pace.push(format!("{}/s", display_size(rate as u64)));
    }
    if let Some(eta) = eta(direction, c) {
        pace.push(format!("ETA {}", short_duration(eta)));
    }
    Parts { done: head, bytes, pace }
}

/// One line of counters: `1Gi/4Gi read (25%), 100Mi uploaded, 900Mi deduplicated, 45.0Mi/s, ETA 1m02s`.
pub fn counters_line(direction: Direction, c: &TransferCounters) -> String {
    let p = parts(direction, c);
    std::iter::once(p.done).chain(p.bytes).chain(p.pace).collect::<Vec<_>>().join(", ")
}

/// The bar's message: the rate and time left first, as a narrow terminal cuts the end.
fn bar_message(direction: Direction, c: &TransferCounters) -> String {
    let p = parts(direction, c);
    std::iter::once(p.done).chain(p.pace).chain(p.bytes).collect::<Vec<_>>().join(", ")
}

/// Shows the transfer on stderr.
pub struct TransferBar {
    direction: Direction,
    bar: Option<ProgressBar>,
    last_note: Option<String>,
    last_tenth: Option<i32>,
}

impl TransferBar {
    /// Prints `title` and starts showing progress.
    pub fn start(title: &str, direction: Direction) -> TransferBar {
        errln!("{title}");
        let bar = std::io::stderr().is_terminal().then(|| {
            // Length 1 until the total is known: an empty bar (a length of 0 draws a full one).
            let bar = ProgressBar::new(1);
            // `wide_msg` cuts the counters to the terminal's width rather than wrapping the line.
            if let Ok(style) = ProgressStyle::with_template("  {spinner} [{bar:20}] {elapsed:>4} {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("waiting");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        TransferBar { direction, bar, last_note: None, last_tenth: None }
    }

    /// What the controller says it does or waits for (the Progressing condition), shown once per change.
    pub fn note(&mut self, note: Option<String>) {
        let Some(note) = note.filter(|n| self.last_note.as_ref() != Some(n)) else { return };
        match &self.bar {
            Some(bar) => {
                bar.println(format!("  {note}"));
                bar.set_message(note.clone());
            }
            None => errln!("  {note}"),
        }
        self.last_note = Some(note);
    }

    /// New counters.
    pub fn update(&mut self, c: &TransferCounters) {
        let (done, total) = done_and_total(self.direction, c);
        match &self.bar {
            Some(bar) => {
                if let Some(total) = total {
                    bar.set_length(total);
                }
                bar.set_position(done);
                bar.set_message(bar_message(self.direction, c));
            }
            None => {
                let line = counters_line(self.direction, c);
                let tenth = c.percent.unwrap_or(0) / 10;
                if self.last_tenth.is_none_or(|t| tenth > t) {
                    errln!("  {line}");
                    self.last_tenth = Some(tenth);
                }
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: i64 = 1 << 20;

    #[test]
    fn a_backup_line_shows_read_uploaded_deduplicated_rate_and_time_left() {
        let c = TransferCounters {
            bytes_to_read: Some(400 * MI),
            bytes_read: Some(100 * MI),
            bytes_uploaded: Some(10 * MI),
            bytes_deduplicated: Some(90 * MI),
            percent: Some(25),
            elapsed_seconds: Some(10),
            ..Default::default()
        };
        assert_eq!(
            counters_line(Direction::Backup, &c),
            "100Mi/400Mi read (25%), 10Mi uploaded, 90Mi deduplicated, 10Mi/s, ETA 30s"
        );
        assert_eq!(eta(Direction::Backup, &c), Some(Duration::from_secs(30)));
        assert_eq!(
            bar_message(Direction::Backup, &c),
            "100Mi/400Mi read (25%), 10Mi/s, ETA 30s, 10Mi uploaded, 90Mi deduplicated"
        );
    }

    #[test]
    fn a_restore_line_counts_written_bytes_and_nothing_is_guessed_before_the_first_second() {
        let c = TransferCounters {
            bytes_to_read: Some(2048 * MI),
            bytes_written: Some(1024 * MI),
            elapsed_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(counters_line(Direction::Restore, &c), "1Gi/2Gi written");
        assert_eq!(eta(Direction::Restore, &c), None);
        let done = TransferCounters { bytes_written: Some(2048 * MI), elapsed_seconds: Some(4), ..c };
        assert_eq!(counters_line(Direction::Restore, &done), "2Gi/2Gi written, 512Mi/s");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
    }
}
