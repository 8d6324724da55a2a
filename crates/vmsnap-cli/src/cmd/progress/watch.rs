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
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};

use super::{Outcome, Progress, Report};
use crate::cmd::client::{ApiObject, Session};
use crate::cmd::errors::{CliError, CliResult, Exit, Kind};

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

    /// What it means for syncing.
    pub fn signal(&self) -> Signal<'_> {
        match self {
            Change::Synced => Signal::Synced,
            Change::Failed(e) => Signal::Failed(e),
            _ => Signal::Object,
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

/// The watches every operation on a VM has, each change wrapped by its function: the operation's
/// object `name`, the VM `vm` and the VM's instance.
pub fn object_and_vm<K, S: Send + 'static>(
    session: &Session,
    name: &str,
    vm: &str,
    object: fn(Change<K>) -> S,
    vm_seen: fn(Change<VirtualMachine>) -> S,
    vmi_seen: fn(Change<VirtualMachineInstance>) -> S,
) -> Vec<BoxStream<'static, S>>
where
    K: ApiObject,
{
    vec![
        named(session.api::<K>(), name).map(object).boxed(),
        named(session.api::<VirtualMachine>(), vm).map(vm_seen).boxed(),
        named(session.api::<VirtualMachineInstance>(), vm).map(vmi_seen).boxed(),
    ]
}

/// Merges streams into one.
pub fn merge<T: Seen>(streams: Vec<BoxStream<'static, T>>) -> SelectAll<BoxStream<'static, T>> {
    futures::stream::select_all(streams)
}

/// Waits until each of `count` watches has listed its objects (the initial objects are passed
/// over: what counts comes after the creation). A watch in `optional` that fails is given up; any
/// other failure is the error.
async fn sync<T: Seen>(
    stream: &mut SelectAll<BoxStream<'static, T>>,
    count: usize,
    optional: &[usize],
    session: &Session,
) -> CliResult<()> {
    let mut synced = vec![false; count];
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
            Signal::Failed(_) if optional.contains(&source) => synced[source] = true,
            Signal::Failed(e) if !synced[source] => return Err(watch_error(e, session)),
            _ => {}
        }
    }
    Ok(())
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

impl Followed {
    /// Done, or the error of a failure (`failed` says it from the controller's why) or of a
    /// timeout (`timed_out` says it).
    pub fn done(
        self,
        failed: impl FnOnce(&str) -> String,
        timed_out: impl FnOnce() -> String,
    ) -> CliResult<()> {
        match self {
            Followed::Outcome(Outcome::Done) => Ok(()),
            Followed::Outcome(Outcome::Failed(why)) => Err(CliError::new(Exit::Failed, failed(&why))),
            Followed::TimedOut => Err(CliError::new(Exit::Timeout, timed_out())),
        }
    }
}

/// A pure tracker of one operation (a snapshot, a restore) that [`create_and_follow`] runs: it
/// takes what the merged watches saw and says which steps were reached.
pub trait Tracker {
    /// What the merged watches of the operation see.
    type Seen: Seen;
    /// The object whose creation starts the operation.
    type Object: ApiObject;
    /// Its kind, for the one-line error of a refused creation.
    const KIND: Kind;
    /// What the spinner says it waits for (`the snapshot`).
    const WAITING_FOR: &'static str;
    /// The watches (indexes into the merged stream) that may fail to start without failing it.
    const OPTIONAL_WATCHES: &'static [usize] = &[];

    /// The object was created: from now on, observations of it count.
    fn created(&mut self, object: &Self::Object) -> Vec<Report>;
    /// One change the watches saw, `at` this long after the request.
    fn observe(&mut self, seen: Self::Seen, at: Duration) -> Vec<Report>;
    /// The end, if reached.
    fn outcome(&self) -> Option<Outcome>;
    /// Whether to wait a little longer (a grace period) for a last event after the outcome is
    /// nearly reached.
    fn lingers(&self) -> bool {
        false
    }
    /// The grace period passed without that last event.
    fn give_up(&mut self) -> Vec<Report> {
        Vec::new()
    }
}

/// What to create and how to show it being followed.
pub struct Request<'a, K> {
    /// Its name.
    pub name: &'a str,
    /// The object.
    pub object: &'a K,
    /// The line printed above the steps.
    pub title: String,
    /// How long to follow it.
    pub timeout: Duration,
}

/// How a followed operation went.
pub struct Run<T: Tracker> {
    /// How following it ended.
    pub followed: Followed,
    /// The tracker, with everything it saw.
    pub tracker: T,
    /// The object as the API server created it.
    pub created: T::Object,
    /// When the creation was requested.
    pub start: Instant,
}

/// Syncs every watch of `stream` (so that no change after the creation can be missed), creates
/// the object, then feeds the watches to `tracker` until it reaches an outcome or the time is up.
pub async fn create_and_follow<T: Tracker>(
    session: &Session,
    request: Request<'_, T::Object>,
    stream: &mut SelectAll<BoxStream<'static, T::Seen>>,
    mut tracker: T,
) -> CliResult<Run<T>> {
    let watches = stream.len();
    sync(stream, watches, T::OPTIONAL_WATCHES, session).await?;
    let progress = Progress::start(&request.title);
    let start = Instant::now();
    let created =
        session.create(T::KIND, request.name, request.object).await.inspect_err(|_| progress.finish())?;
    progress.show(&tracker.created(&created));
    progress.waiting_for(T::WAITING_FOR);
    let followed = follow(stream, &progress, start, request.timeout, &mut tracker).await;
    progress.finish();
    Ok(Run { followed, tracker, created, start })
}

/// Feeds `stream` to `tracker` until it reaches an outcome or `timeout` passes. When the tracker
/// lingers, it waits a short extra time (at most `grace`) for a last event, then gives up on it.
async fn follow<T: Tracker>(
    stream: &mut SelectAll<BoxStream<'static, T::Seen>>,
    progress: &Progress,
    start: Instant,
    timeout: Duration,
    tracker: &mut T,
) -> Followed {
    let deadline = tokio::time::Instant::from_std(start + timeout);
    let grace = Duration::from_secs(10);
    let mut linger_until: Option<tokio::time::Instant> = None;
    let mut warned = false;
    loop {
        if let Some(o) = tracker.outcome() {
            return Followed::Outcome(o);
        }
        if tracker.lingers() {
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
                let reports = tracker.observe(item, start.elapsed());
                progress.show(&reports);
            }
            Ok(None) => return Followed::TimedOut,
            Err(_) if linger_until.is_some() && tokio::time::Instant::now() < deadline => {
                progress.show(&tracker.give_up());
                linger_until = None;
            }
            Err(_) => return Followed::TimedOut,
        }
    }
}
