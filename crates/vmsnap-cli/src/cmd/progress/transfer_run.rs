//! Creating a backup or a restore and following it to its end: the object is watched before it is
//! created (so no version is missed), its byte counters drive a [`TransferBar`], its Progressing
//! condition is shown as a note, and the end is the object done, failed, deleted or not done in time.

use std::time::{Duration, Instant};

use clap::Args;
use vmsnap_api::backup::{
    BackupPhase, RestorePhase, TransferCounters, VirtualMachineRepositoryBackup,
    VirtualMachineRepositoryRestore,
};
use vmsnap_api::snapshot::{Condition, SnapshotError, condition_type, find_condition};

use super::object::{Next, ObjectWatch};
use super::transfer::{Direction, TransferBar};
use crate::cmd::client::{ApiObject, Session};
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};
use crate::cmd::output::{OutputArgs, create_and_print, print_objects, seconds};
use crate::cmd::parse_duration;

/// A kind whose status reports a transfer: a backup or a restore.
pub trait Transfer: ApiObject {
    /// Its kind, for the one-line error of a refused creation.
    const KIND: Kind;
    /// What it is called in messages (`backup`).
    const NOUN: &'static str;
    /// Which bytes its counters count.
    const DIRECTION: Direction;
    /// Where it is, from its status.
    fn state(&self) -> TransferState;
}

/// What a transfer's status says.
#[derive(Debug, Default)]
pub struct TransferState {
    /// Its conditions.
    pub conditions: Vec<Condition>,
    /// Its byte counters, once the controller reports them.
    pub progress: Option<TransferCounters>,
    /// Its error, if it failed.
    pub error: Option<SnapshotError>,
    /// It failed.
    pub failed: bool,
    /// It is done.
    pub done: bool,
}

impl Transfer for VirtualMachineRepositoryBackup {
    const KIND: Kind = Kind::Backup;
    const NOUN: &'static str = "backup";
    const DIRECTION: Direction = Direction::Backup;

    fn state(&self) -> TransferState {
        let st = self.status.clone().unwrap_or_default();
        TransferState {
            failed: st.phase == Some(BackupPhase::Failed),
            done: st.phase == Some(BackupPhase::Succeeded),
            conditions: st.conditions,
            progress: st.progress,
            error: st.error,
        }
    }
}

impl Transfer for VirtualMachineRepositoryRestore {
    const KIND: Kind = Kind::BackupRestore;
    const NOUN: &'static str = "restore";
    const DIRECTION: Direction = Direction::Restore;

    fn state(&self) -> TransferState {
        let st = self.status.clone().unwrap_or_default();
        TransferState {
            failed: st.phase == Some(RestorePhase::Failed),
            done: st.complete == Some(true) || st.phase == Some(RestorePhase::Succeeded),
            conditions: st.conditions,
            progress: st.progress,
            error: st.error,
        }
    }
}

/// How `backup create` and `backup restore` wait for what they create.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// Wait until it is done, showing progress (the default).
    #[arg(long, conflicts_with = "no_wait")]
    wait: bool,
    /// Print the name of the object created and return without waiting.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for it.
    #[arg(long, default_value = "2h", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What to create and how to follow it.
pub struct TransferRequest<'a, K> {
    /// Its name.
    pub name: &'a str,
    /// The object.
    pub object: &'a K,
    /// The line printed above the bar.
    pub title: String,
    /// The command that follows it after a timeout (`vmsnap backup describe NAME`).
    pub follow_with: String,
}

/// Creates a backup or restore and, unless `--no-wait`, follows it until it is done. Returns it as
/// it ended and when its creation was requested, for the caller's summary; `None` once it is
/// printed instead (its name with `--no-wait`, the object with `-o`). A failure, a deletion or a
/// timeout is the error.
pub async fn create_and_follow<K: Transfer>(
    session: &Session,
    request: TransferRequest<'_, K>,
    args: &TransferArgs,
) -> CliResult<Option<(K, Instant)>> {
    if args.no_wait {
        create_and_print(session, K::KIND, request.name, request.object, args.output.output).await?;
        return Ok(None);
    }
    let (done, start) = follow(session, request, args.timeout).await?;
    match args.output.output {
        Some(format) => {
            print_objects(&[done], format, true)?;
            Ok(None)
        }
        None => Ok(Some((done, start))),
    }
}

/// Watches, creates and follows the object until it is done.
async fn follow<K: Transfer>(
    session: &Session,
    request: TransferRequest<'_, K>,
    timeout: Duration,
) -> CliResult<(K, Instant)> {
    let name = request.name;
    let noun = K::NOUN;
    let (mut watch, _) = ObjectWatch::<K>::start(session, name).await?;
    let start = Instant::now();
    let created = session.create(K::KIND, name, request.object).await?;
    let uid = created.meta().uid.clone();
    let mut bar = TransferBar::start(&request.title, K::DIRECTION);
    let deadline = start + timeout;
    let ended = loop {
        match watch.next(deadline).await {
            // A version of an object of the same name from before ours.
            Next::Applied(o) if o.meta().uid != uid => {}
            Next::Applied(o) => {
                let state = o.state();
                bar.note(progressing_note(&state.conditions));
                if let Some(progress) = &state.progress {
                    bar.update(progress);
                }
                if state.failed {
                    let why = failure(&state.error, &state.conditions);
                    break Err(CliError::new(Exit::Failed, format!("{noun} \"{name}\" failed: {why}")));
                }
                if state.done {
                    break Ok((o, start));
                }
            }
            Next::Deleted => {
                break Err(CliError::new(
                    Exit::Failed,
                    format!("{noun} \"{name}\" was deleted while it ran"),
                ));
            }
            Next::TimedOut => {
                break Err(CliError::new(
                    Exit::Timeout,
                    format!(
                        "{noun} \"{name}\" is not done after {}: it goes on in the background; follow it with: {}",
                        seconds(timeout),
                        request.follow_with
                    ),
                ));
            }
        }
    };
    bar.finish();
    ended
}

/// `Reason: message` of a Progressing condition, as a note.
pub fn progressing_note(conditions: &[Condition]) -> Option<String> {
    let c = find_condition(conditions, condition_type::PROGRESSING)?;
    let reason = c.reason.clone().unwrap_or_default();
    match c.message.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(format!("{reason}: {m}")),
        None => Some(reason).filter(|r| !r.is_empty()),
    }
}

/// Why it failed: `status.error`, else the Failure condition.
pub fn failure(error: &Option<SnapshotError>, conditions: &[Condition]) -> String {
    error
        .as_ref()
        .and_then(|e| e.message.clone())
        .or_else(|| {
            find_condition(conditions, condition_type::FAILURE)
                .and_then(|c| c.message.clone().or_else(|| c.reason.clone()))
        })
        .unwrap_or_else(|| "no reason given".into())
}
