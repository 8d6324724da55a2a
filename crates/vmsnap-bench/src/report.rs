//! The benchmark report: rows of measurements beside their baselines, with ratios and targets, and
//! notes for what could not be measured.

use std::fmt::Write;

/// One measurement.
#[derive(Clone, Debug)]
pub struct Row {
    /// Section.
    pub section: String,
    /// What was measured.
    pub what: String,
    /// vmsnap's value.
    pub vmsnap: f64,
    /// The baseline's value, if any.
    pub baseline: Option<f64>,
    /// Unit (`ms`, `s`, `MiB/s`, `MiB`, `x`).
    pub unit: String,
    /// The target, in words, and whether it is met.
    pub target: Option<(String, bool)>,
}

impl Row {
    /// A row without baseline or target.
    pub fn new(section: &str, what: impl Into<String>, vmsnap: f64, unit: &str) -> Row {
        Row {
            section: section.into(),
            what: what.into(),
            vmsnap,
            baseline: None,
            unit: unit.into(),
            target: None,
        }
    }

    /// The same row with a baseline value (same unit).
    pub fn baseline(mut self, baseline: f64) -> Row {
        self.baseline = Some(baseline);
        self
    }

    /// The same row with a target and whether it is met.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = Some((target.into(), met));
        self
    }
}

/// A line about something that was not measured: a missing prerequisite and what to do about
/// it, or a section that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Section.
    pub section: String,
    /// What happened, and what to do.
    pub text: String,
}

/// All measurements of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The rows, in order.
    pub rows: Vec<Row>,
    /// The notes, in order.
    pub notes: Vec<Note>,
}

const HEADER: &str =
    "| section | measurement | vmsnap | baseline | vmsnap/baseline | target |\n|---|---|---|---|---|---|\n";

impl Report {
    /// Adds a row and prints it.
    pub fn add(&mut self, row: Row) {
        println!("{}", format_row(&row));
        self.rows.push(row);
    }

    /// Adds a note and prints it.
    pub fn note(&mut self, section: &str, text: impl Into<String>) {
        let note = Note { section: section.into(), text: text.into() };
        println!("{}", format_note(&note));
        self.notes.push(note);
    }

    /// Prints the header of a section's table.
    pub fn section(&self, title: &str) {
        print!("\n## {title}\n\n{HEADER}");
    }

    /// The whole report as a table, followed by the notes.
    pub fn table(&self) -> String {
        let mut out = String::from(HEADER);
        for r in &self.rows {
            let _ = writeln!(out, "{}", format_row(r));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "{}", format_note(n));
            }
        }
        out
    }

    /// The targets of the design and whether each was met, then the count.
    pub fn summary(&self) -> String {
        let mut out = String::from("| section | measurement | vmsnap | target | |\n|---|---|---|---|---|\n");
        let (mut met, mut total) = (0, 0);
        for r in &self.rows {
            if let Some((target, ok)) = &r.target {
                total += 1;
                met += usize::from(*ok);
                let verdict = if *ok { "met" } else { "NOT met" };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {target} | {verdict} |",
                    r.section,
                    r.what,
                    num(r.vmsnap, &r.unit)
                );
            }
        }
        let _ = writeln!(out, "\n{met} of {total} targets met; {} notes.", self.notes.len());
        out
    }
}

fn num(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        "-".into()
    } else if unit == "x" {
        format!("{v:.2}x")
    } else if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

fn format_row(r: &Row) -> String {
    let baseline = r.baseline.map(|b| num(b, &r.unit)).unwrap_or_else(|| "-".into());
    let ratio =
        r.baseline.filter(|b| *b > 0.0).map(|b| format!("{:.2}", r.vmsnap / b)).unwrap_or_else(|| "-".into());
    let target = r
        .target
        .as_ref()
        .map(|(t, ok)| format!("{t}: {}", if *ok { "met" } else { "NOT met" }))
        .unwrap_or_else(|| "-".into());
    format!(
        "| {} | {} | {} | {} | {} | {} |",
        r.section,
        r.what,
        num(r.vmsnap, &r.unit),
        baseline,
        ratio,
        target
    )
}

fn format_note(n: &Note) -> String {
    format!("! {}: {}", n.section, n.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_its_baseline_ratio_and_whether_the_target_is_met() {
        let row = Row::new("freeze", "1 disk, 1 GiB", 40.0, "ms").baseline(80.0).target("<= libvirt", true);
        assert_eq!(
            format_row(&row),
            "| freeze | 1 disk, 1 GiB | 40.0 ms | 80.0 ms | 0.50 | <= libvirt: met |"
        );
        let row = Row::new("snapshot", "ratio 16/1", 1.5, "x").target("<= 1.2", false);
        assert_eq!(format_row(&row), "| snapshot | ratio 16/1 | 1.50x | - | - | <= 1.2: NOT met |");
    }

    #[test]
    fn the_summary_counts_the_targets_and_the_table_ends_with_the_notes() {
        let mut report = Report::default();
        report.rows.push(Row::new("memory", "RSS", 120.0, "MiB").target("<= 150 MiB", true));
        report.rows.push(Row::new("restore", "1 GiB", 1500.0, "ms").target("<= 1000 ms", false));
        report.rows.push(Row::new("storage", "copy", 3.0, "ms"));
        report.notes.push(Note { section: "freeze".into(), text: "libvirt missing".into() });
        let summary = report.summary();
        assert!(summary.contains("| memory | RSS | 120 MiB | <= 150 MiB | met |"), "{summary}");
        assert!(summary.contains("| restore | 1 GiB | 1500 ms | <= 1000 ms | NOT met |"), "{summary}");
        assert!(summary.contains("1 of 2 targets met; 1 notes."), "{summary}");
        assert!(report.table().ends_with("! freeze: libvirt missing\n"), "{}", report.table());
    }
}
