//! The benchmark report: rows of measurements beside their baselines, with ratios and targets.

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
    /// Unit (`ms`, `MiB/s`, `x`).
    pub unit: String,
    /// The target, in words, and whether it is met.
    pub target: Option<(String, bool)>,
}

/// All measurements of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The rows, in order.
    pub rows: Vec<Row>,
}

impl Report {
    /// Adds a row and prints it.
    pub fn add(&mut self, row: Row) {
        println!("{}", format_row(&row));
        self.rows.push(row);
    }

    /// The whole report as a table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| section | measurement | vmsnap | baseline | vmsnap/baseline | target |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let _ = writeln!(out, "{}", format_row(r));
        }
        out
    }
}

fn num(v: f64, unit: &str) -> String {
    if unit == "x" {
        format!("{v:.2}x")
    } else if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
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
