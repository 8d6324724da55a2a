//! What the user commands print: aligned tables (kubectl's style, no borders), or the API objects
//! as YAML, JSON or `kind.group/name` with `-o`.

use std::time::Duration;

use clap::{Args, ValueEnum};
use kube::Resource;
use serde::Serialize;
use serde_json::{Value, json};
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vmsnap_api::k8s_openapi::jiff::Timestamp;

use super::client::{ApiObject, Session};
use super::errors::{CliError, CliResult, Exit, Kind};

/// `-o yaml|json|name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The API objects as YAML.
    Yaml,
    /// The API objects as JSON.
    Json,
    /// `kind.group/name`, one per line.
    Name,
}

/// The output flag.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Print the API objects instead of a table or summary.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// Writes what a user command prints (through `outln!`/`out!`). When the reader went away
/// (`vmsnap snapshot list | head -1`), the command ends there, quietly and with status 0, as `ls`
/// does: Rust ignores SIGPIPE, so `println!` would panic on the EPIPE instead. Any other write
/// error ends it with status 1.
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let written = std::io::stdout().lock().write_fmt(text);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            errln!("error: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// Writes a message of the binary to stderr (through `errln!`/`err!`). A stderr that cannot take
/// it (closed, or its reader gone) loses the message: there is nowhere left to report that, and
/// the command's exit code still says how it ended.
pub fn write_stderr(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// `kind.group/name`, as `kubectl -o name` prints it.
pub fn qualified_name<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let kind = K::kind(&()).to_lowercase();
    let group = K::group(&());
    let name = obj.meta().name.clone().unwrap_or_default();
    if group.is_empty() { format!("{kind}/{name}") } else { format!("{kind}.{group}/{name}") }
}

/// Prints objects in `format`: one object as itself, several (or none) as a `List`, like kubectl.
pub fn print_objects<K>(objects: &[K], format: Format, single: bool) -> CliResult<()>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    if format == Format::Name {
        for obj in objects {
            outln!("{}", qualified_name(obj));
        }
        return Ok(());
    }
    let values: Vec<Value> = objects.iter().map(to_value).collect::<CliResult<_>>()?;
    let document = match (single, values.as_slice()) {
        (true, [one]) => one.clone(),
        _ => {
            json!({"apiVersion": "v1", "kind": "List", "items": values, "metadata": {"resourceVersion": ""}})
        }
    };
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&document).map(|s| s + "\n").map_err(encode_error)?,
        Format::Yaml => serde_norway::to_string(&document).map_err(encode_error)?,
        Format::Name => unreachable!("handled above"),
    };
    out!("{text}");
    Ok(())
}

/// `--no-wait`: creates `object` and prints it with `-o`, else its name.
pub async fn create_and_print<K>(
    session: &Session,
    kind: Kind,
    name: &str,
    object: &K,
    format: Option<Format>,
) -> CliResult<std::process::ExitCode>
where
    K: ApiObject,
{
    let created = session.create(kind, name, object).await?;
    match format {
        Some(format) => print_objects(&[created], format, true)?,
        None => outln!("{name}"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn to_value<K: Serialize>(obj: &K) -> CliResult<Value> {
    serde_json::to_value(obj).map_err(encode_error)
}

fn encode_error(e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Error, format!("cannot encode the output: {e}"))
}

/// Columns aligned on the widest cell, three spaces apart, the last one unpadded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str]) -> Table {
        Table { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The age of a timestamp as kubectl shows it (`45s`, `3m20s`, `17m`, `5h3m`, `2d4h`, `40d`).
pub fn age(time: Option<&Time>) -> String {
    match time {
        Some(t) => {
            let secs = Timestamp::now().duration_since(t.0).as_secs().max(0) as u64;
            human_age(secs)
        }
        None => "<unknown>".into(),
    }
}

fn human_age(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 => match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            mm => format!("{h}h{mm}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => match h % 24 {
            0 => format!("{d}d"),
            hh => format!("{d}d{hh}h"),
        },
        _ => format!("{d}d"),
    }
}

/// A duration measured by this client: `0.012s`, `12.345s`, `2m05.1s`.
pub fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.3}s")
    } else {
        let m = (secs / 60.0).floor();
        format!("{m}m{:04.1}s", secs - m * 60.0)
    }
}

/// An RFC 3339 timestamp, or `-`.
pub fn timestamp(time: Option<&Time>) -> String {
    time.map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| "-".into())
}

/// Bytes in binary units: `0`, `512`, `1Ki`, `1Gi`, `1.5Gi`.
pub fn display_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut unit = None;
    let mut value = bytes as f64;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        None => bytes.to_string(),
        Some(u) if value.fract() == 0.0 => format!("{value}{u}"),
        Some(u) => format!("{value:.1}{u}"),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn sizes_display_in_binary_units_with_one_decimal() {
        assert_eq!(display_size(0), "0");
        assert_eq!(display_size(512), "512");
        assert_eq!(display_size(2 << 30), "2Gi");
        assert_eq!(display_size(3 << 29), "1.5Gi");
    }
    use super::*;

    #[test]
    fn columns_are_aligned_on_the_widest_cell_and_the_last_is_not_padded() {
        let mut t = Table::new(&["NAME", "PHASE", "AGE"]);
        t.row(vec!["a-long-name".into(), "Succeeded".into(), "5s".into()]);
        t.row(vec!["b".into(), "".into(), "10m".into()]);
        assert_eq!(
            t.render(),
            "NAME          PHASE       AGE\na-long-name   Succeeded   5s\nb                         10m\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(45), "45s");
        assert_eq!(human_age(200), "3m20s");
        assert_eq!(human_age(17 * 60), "17m");
        assert_eq!(human_age(5 * 3600 + 180), "5h3m");
        assert_eq!(human_age(20 * 3600), "20h");
        assert_eq!(human_age(2 * 86400 + 4 * 3600), "2d4h");
        assert_eq!(human_age(40 * 86400), "40d");
    }

    #[test]
    fn client_durations_have_millisecond_precision() {
        assert_eq!(seconds(Duration::from_millis(12)), "0.012s");
        assert_eq!(seconds(Duration::from_millis(125_100)), "2m05.1s");
    }
}
