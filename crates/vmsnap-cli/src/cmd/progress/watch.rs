//! Watch streams for progress: each object kind is a kube-runtime watcher, merged into one stream
//! of [`Seen`] values, synced (initial list done) before the snapshot or restore is created so
//! that no change after the creation can be missed.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

use super::{Outcome, Progress, Report};
use crate::cmd::client::Session;
use crate::cmd::errors::{CliError, CliResult, Exit};

/// A change seen by one watch.
#[derive(Debug)]
pub enum Change<K> {
    /// The initial list is done: later changes are live.
    Synced,
    /// The object was created or changed.
    Applied(K),
    /// The object was deleted.
    Deleted(K),
    /// The watch failed (it is retried with a backoff).
    Failed(watcher::Error),
}

impl<K> Change<K> {
    /// The object, if it exists after this change (`Some(None)`: it was deleted).
    pub fn object(&self) -> Option<Option<&K>> {
        match self {
            Change::Applied(o) => Some(Some(o)),
            Change::Deleted(_) => Some(None),
            _ => None,
        }
    }
}

/// The changes of the objects `api` lists with `config`.
pub fn changes<K>(api: Api<K>, config: watcher::Config) -> impl Stream<Item = Change<K>> + Send + 'static
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).default_backoff().filter_map(|event| async move {
        match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => Some(Change::Applied(o)),
            Ok(watcher::Event::Delete(o)) => Some(Change::Deleted(o)),
            Ok(watcher::Event::InitDone) => Some(Change::Synced),
            Ok(watcher::Event::Init) => None,
            Err(e) => Some(Change::Failed(e)),
        }
    })
}

/// The changes of the object named `name`.
pub fn named<K>(api: Api<K>, name: &str) -> impl Stream<Item = Change<K>> + Send + 'static
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    changes(api, watcher::Config::default().fields(&format!("metadata.name={name}")))
}

/// What the merged watches of one operation saw: `Seen::source()` tells which watch, and how
/// far along it is.
pub trait Seen: Send + 'static {
    /// Which watch it came from (0-based), whether it means "synced", and the failure if any.
    fn signal(&self) -> (usize, Signal<'_>);
}

/// What a change means for syncing.
pub enum Signal<'a> {
    /// The watch is synced.
    Synced,
    /// The watch failed.
    Failed(&'a watcher::Error),
    /// An object change.
    Object,
}

/// Merges streams into one.
pub fn merge<T: Seen>(streams: Vec<BoxStream<'static, T>>) -> SelectAll<BoxStream<'static, T>> {
    futures::stream::select_all(streams)
}

/// Waits until each of `count` watches has listed its objects, passing the initial objects to
/// `seen`. A watch in `optional` that fails is given up; any other failure is the error.
pub async fn sync<T: Seen>(
    stream: &mut SelectAll<BoxStream<'static, T>>,
    count: usize,
    optional: &[usize],
    session: &Session,
    mut seen: impl FnMut(T),
) -> CliResult<Vec<usize>> {
    let mut synced = vec![false; count];
    let mut given_up = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while synced.iter().any(|s| !s) {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let Ok(Some(item)) = next else {
            return Err(CliError::new(
                Exit::Timeout,
                format!("cannot watch the API server at {}: no answer within 60s", session.server),
            ));
        };
        let (source, signal) = item.signal();
        match signal {
            Signal::Synced => synced[source] = true,
            Signal::Failed(_) if optional.contains(&source) => {
                if !synced[source] {
                    given_up.push(source);
                }
                synced[source] = true;
            }
            Signal::Failed(e) if !synced[source] => return Err(watch_error(e, session)),
            _ => seen(item),
        }
    }
    Ok(given_up)
}

/// The one-line error of a failed watch.
pub fn watch_error(error: &watcher::Error, session: &Session) -> CliError {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(&**s),
        watcher::Error::WatchError(s) => Some(&**s),
        _ => None,
    };
    match status {
        Some(s) if s.code == 401 => CliError::new(
            Exit::Connection,
            format!(
                "the API server at {} refused the credentials: check the token in the kubeconfig",
                session.server
            ),
        ),
        Some(s) if s.code == 403 => {
            CliError::new(Exit::Connection, format!("not allowed to watch the progress: {}", s.message))
        }
        Some(s) => CliError::new(Exit::Error, format!("cannot watch the progress: {}", s.message)),
        None => CliError::new(
            Exit::Connection,
            format!(
                "cannot watch the API server at {}: is vmsnap serve running? ({})",
                session.server,
                crate::cmd::errors::root_cause(error)
            ),
        ),
    }
}

/// How following an operation ended.
pub enum Followed {
    /// The tracker reached an outcome.
    Outcome(Outcome),
    /// The time ran out first.
    TimedOut,
}

/// Feeds `stream` to `observe` until `outcome` says it is over or `timeout` passes. `linger`
/// asks for a short extra wait (at most `grace`) for a last event; `give_up` is then called.
#[allow(clippy::too_many_arguments)] // Each piece is one concern of the loop; a struct would only rename them.
pub async fn follow<T: Seen>(
    stream: &mut SelectAll<BoxStream<'static, T>>,
    progress: &Progress,
    start: Instant,
    timeout: Duration,
    mut observe: impl FnMut(T, Duration) -> Vec<Report>,
    outcome: impl Fn() -> Option<Outcome>,
    linger: impl Fn() -> bool,
    mut give_up: impl FnMut() -> Vec<Report>,
) -> Followed {
    let deadline = tokio::time::Instant::from_std(start + timeout);
    let grace = Duration::from_secs(10);
    let mut linger_until: Option<tokio::time::Instant> = None;
    let mut warned = false;
    loop {
        if let Some(o) = outcome() {
            return Followed::Outcome(o);
        }
        if linger() {
            linger_until.get_or_insert_with(|| tokio::time::Instant::now() + grace);
        }
        let until = linger_until.map_or(deadline, |l| l.min(deadline));
        match tokio::time::timeout_at(until, stream.next()).await {
            Ok(Some(item)) => {
                if let (_, Signal::Failed(e)) = item.signal() {
                    if !warned {
                        progress.show(&[Report::Note(format!("watch interrupted, retrying: {e}"))]);
                        warned = true;
                    }
                    continue;
                }
                let reports = observe(item, start.elapsed());
                progress.show(&reports);
            }
            Ok(None) => return Followed::TimedOut,
            Err(_) if linger_until.is_some() && tokio::time::Instant::now() < deadline => {
                progress.show(&give_up());
                linger_until = None;
            }
            Err(_) => return Followed::TimedOut,
        }
    }
}
