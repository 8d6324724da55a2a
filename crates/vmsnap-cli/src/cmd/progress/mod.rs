//! Live progress of a snapshot or restore, from WATCHES on the objects involved.
//!
//! The trackers ([`snapshot::SnapshotTracker`], [`restore::RestoreTracker`]) are pure: they take
//! what the watches saw, with the time since the request, and say which steps were reached, in a
//! fixed order. [`watch`] merges the watch streams and runs a tracker to its outcome; [`Progress`]
//! shows the steps: spinners on a terminal, plain lines otherwise (tests, CI, logs).

pub mod object;
pub mod restore;
pub mod snapshot;
pub mod transfer;
pub mod transfer_run;
pub mod watch;

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::output::{OutputArgs, seconds};
use super::parse_duration;

/// How a command that creates an operation (`snapshot create`, `restore`) waits for it.
#[derive(Args, Debug)]
pub struct FollowArgs {
    /// Print the name of the object created and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for it to finish (the snapshot ready, the restore complete).
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Something to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A step was reached `at` this long after the request.
    Step {
        /// `source locked`, `guest frozen`, ...
        label: &'static str,
        /// Time since the request, measured by this client when the watch event arrived.
        at: Duration,
        /// More about it (`2 volumes`, `frozen for 0.031s`).
        detail: Option<String>,
    },
    /// A remark: why it waits, an error the controller retries.
    Note(String),
}

impl Report {
    /// The line printed for it.
    pub fn line(&self) -> String {
        match self {
            Report::Step { label, at, detail: None } => format!("  {label:<18}{:>10}", seconds(*at)),
            Report::Step { label, at, detail: Some(d) } => format!("  {label:<18}{:>10}   {d}", seconds(*at)),
            Report::Note(text) => format!("  {text}"),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step was reached.
    Done,
    /// The controller gave up: why.
    Failed(String),
}

/// What a step is, at a given moment.
pub enum StepState {
    /// Reached, at this time, with this detail.
    Reached(Duration, Option<String>),
    /// Will not happen (optional step), or is over without having been seen.
    Skip,
    /// Not yet.
    Wait,
}

impl StepState {
    /// Reached when `at` is known, else not yet.
    pub fn seen(at: Option<Duration>, detail: Option<String>) -> StepState {
        match at {
            Some(at) => StepState::Reached(at, detail),
            None => StepState::Wait,
        }
    }
}

/// `1 volume`, `2 volumes`.
pub fn volumes(n: usize) -> String {
    if n == 1 { "1 volume".into() } else { format!("{n} volumes") }
}

/// What was reported of one operation: its steps, in a fixed order whatever order the watch events
/// arrive in, the last note and the failure that ended it.
#[derive(Debug)]
pub struct Sequence {
    labels: &'static [&'static str],
    /// `Some(true)` printed, `Some(false)` skipped, `None` not yet.
    done: Vec<Option<bool>>,
    last_note: Option<String>,
    failed: Option<String>,
}

impl Sequence {
    /// A sequence of steps with these labels.
    pub fn new(labels: &'static [&'static str]) -> Sequence {
        Sequence { labels, done: vec![None; labels.len()], last_note: None, failed: None }
    }

    /// The operation failed: why.
    pub fn fail(&mut self, why: String) {
        self.failed = Some(why);
    }

    /// Whether the operation failed.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// The end, if reached: failed, or every step printed or skipped.
    pub fn outcome(&self) -> Option<Outcome> {
        match &self.failed {
            Some(why) => Some(Outcome::Failed(why.clone())),
            None => self.finished().then_some(Outcome::Done),
        }
    }

    /// The note to show, unless it is the one shown last.
    pub fn note(&mut self, note: Option<String>) -> Option<Report> {
        let note = note.filter(|n| self.last_note.as_ref() != Some(n))?;
        self.last_note = Some(note.clone());
        Some(Report::Note(note))
    }

    /// Reports every step that can be reported now, in order, stopping at the first to wait for.
    pub fn advance(&mut self, state: impl Fn(usize) -> StepState) -> Vec<Report> {
        let mut out = Vec::new();
        for i in 0..self.labels.len() {
            if self.done[i].is_some() {
                continue;
            }
            match state(i) {
                StepState::Reached(at, detail) => {
                    out.push(Report::Step { label: self.labels[i], at, detail });
                    self.done[i] = Some(true);
                }
                StepState::Skip => self.done[i] = Some(false),
                StepState::Wait => break,
            }
        }
        out
    }

    /// Whether step `i` was printed.
    pub fn printed(&self, i: usize) -> bool {
        self.done[i] == Some(true)
    }

    /// Whether every step was printed or skipped.
    pub fn finished(&self) -> bool {
        self.done.iter().all(Option::is_some)
    }
}

/// Shows reports on stderr: under a spinner on a terminal, as plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Prints `title` and starts showing progress.
    pub fn start(title: &str) -> Progress {
        errln!("{title}");
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("  {spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message("waiting");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress { bar }
    }

    /// Shows reports.
    pub fn show(&self, reports: &[Report]) {
        for report in reports {
            match &self.bar {
                Some(bar) => bar.println(report.line()),
                None => errln!("{}", report.line()),
            }
        }
    }

    /// What the spinner says it waits for.
    pub fn waiting_for(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("waiting for {what}"));
        }
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The labels of the steps among `reports`.
#[cfg(test)]
pub(crate) fn step_labels(reports: &[Report]) -> Vec<&'static str> {
    reports
        .iter()
        .filter_map(|r| if let Report::Step { label, .. } = r { Some(*label) } else { None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_reported_in_order_and_a_waiting_step_holds_back_later_ones() {
        let mut seq = Sequence::new(&["a", "b", "c"]);
        let ms = Duration::from_millis;
        let out = seq.advance(|i| match i {
            0 => StepState::Reached(ms(1), None),
            1 => StepState::Wait,
            _ => StepState::Reached(ms(3), None),
        });
        assert_eq!(out.len(), 1);
        let out = seq.advance(|i| if i == 1 { StepState::Skip } else { StepState::Reached(ms(3), None) });
        assert_eq!(out, vec![Report::Step { label: "c", at: ms(3), detail: None }]);
        assert!(seq.finished());
        assert!(seq.printed(0) && !seq.printed(1));
    }

    #[test]
    fn a_step_line_has_aligned_label_time_and_detail() {
        let r = Report::Step {
            label: "volumes cut",
            at: Duration::from_millis(67),
            detail: Some("1 volume".into()),
        };
        assert_eq!(r.line(), "  volumes cut           0.067s   1 volume");
    }
}
