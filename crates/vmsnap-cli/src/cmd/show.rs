//! What the `list` and `describe` commands share: the name argument, `-o` printing the API objects
//! instead of a table or a description, the line said when there is nothing to list, and
//! conditions in words.

use std::process::ExitCode;

use clap::Args;
use vmsnap_api::snapshot::Condition;

use super::client::{ApiObject, Session};
use super::errors::{CliResult, Kind};
use super::output::{OutputArgs, Table, print_objects};

/// `vmsnap KIND describe NAME`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The name of the object to show.
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Gets the object `args` names; with `-o` prints it instead and returns `None` (nothing more to
/// show).
pub async fn object_to_describe<K: ApiObject>(
    session: &Session,
    kind: Kind,
    args: &DescribeArgs,
) -> CliResult<Option<K>> {
    let object: K = session.get(kind, &args.name).await?;
    match args.output.output {
        Some(format) => {
            print_objects(std::slice::from_ref(&object), format, true)?;
            Ok(None)
        }
        None => Ok(Some(object)),
    }
}

/// Prints a list: with `-o` the objects (as a `List`), else `nothing` on stderr when there is no
/// object, else the table `table` makes of them.
pub fn print_list<K: ApiObject>(
    objects: &[K],
    output: &OutputArgs,
    nothing: impl FnOnce() -> String,
    table: impl FnOnce(&[K]) -> Table,
) -> CliResult<ExitCode> {
    if let Some(format) = output.output {
        print_objects(objects, format, false)?;
    } else if objects.is_empty() {
        errln!("{}", nothing());
    } else {
        out!("{}", table(objects).render());
    }
    Ok(ExitCode::SUCCESS)
}

/// `Conditions:` then one line each: `  Type Status Reason: message` (no `: ` without a message).
pub fn print_conditions(conditions: &[Condition]) {
    if conditions.is_empty() {
        return;
    }
    outln!("Conditions:");
    for c in conditions {
        let message = c.message.as_deref().filter(|m| !m.is_empty()).map(|m| format!(": {m}"));
        outln!(
            "  {} {} {}{}",
            c.type_,
            c.status,
            c.reason.as_deref().unwrap_or_default(),
            message.unwrap_or_default()
        );
    }
}
