//! Following one object by name with a WATCH, for the commands that change an object and wait for
//! its controller's answer (a repository becoming ready, a verify or prune result, a backup or
//! restore running): the watch is synced before the change is made, so no later version is missed.

use std::time::Instant;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::watch::{self, Change};
use crate::cmd::client::{ApiObject, Session};
use crate::cmd::errors::{CliError, CliResult, Exit};

/// A synced watch on one object.
pub struct ObjectWatch<K> {
    stream: BoxStream<'static, Change<K>>,
    session: Session,
    warned: bool,
}

/// What the watch saw next.
pub enum Next<K> {
    /// A version of the object.
    Applied(K),
    /// The object is gone.
    Deleted,
    /// The deadline passed first.
    TimedOut,
}

impl<K: ApiObject> ObjectWatch<K> {
    /// Starts watching `name` and waits until the initial list is done: returns the watch and
    /// the object as it is now (if it exists).
    pub async fn start(session: &Session, name: &str) -> CliResult<(ObjectWatch<K>, Option<K>)> {
        let mut stream = watch::named(session.api::<K>(), name).boxed();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut current = None;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Change::Synced)) => break,
                Ok(Some(Change::Applied(o))) => current = Some(o),
                Ok(Some(Change::Deleted(_))) => current = None,
                Ok(Some(Change::Failed(e))) => return Err(watch::watch_error(&e, session)),
                Ok(None) | Err(_) => {
                    return Err(CliError::new(
                        Exit::Timeout,
                        format!("cannot watch the API server at {}: no answer within 60s", session.server),
                    ));
                }
            }
        }
        Ok((ObjectWatch { stream, session: session.clone(), warned: false }, current))
    }

    /// The next change of the object, or [`Next::TimedOut`] at `deadline`. A watch that breaks
    /// is retried (with a note, once).
    pub async fn next(&mut self, deadline: Instant) -> Next<K> {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Change::Applied(o))) => return Next::Applied(o),
                Ok(Some(Change::Deleted(_))) => return Next::Deleted,
                Ok(Some(Change::Failed(e))) => {
                    if !self.warned {
                        errln!("  watch interrupted, retrying: {}", watch::watch_error(&e, &self.session));
                        self.warned = true;
                    }
                }
                Ok(Some(Change::Synced)) => {}
                Ok(None) | Err(_) => return Next::TimedOut,
            }
        }
    }
}
