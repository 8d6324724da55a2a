//! Leases: how an in-flight backup tells a concurrent prune which chunks to leave alone.
//!
//! A backup puts `leases/<backup id>` before it reads the repository's index or uploads anything;
//! the store's time of that object is the lease's *start*. It renews the lease by putting
//! `leases/<backup id>.alive` at least every quarter of the time to live, and deletes both on
//! commit or abort. A lease is *live* at store time `t` when `t < latest(start, renewal) + ttl`.
//! All times are the store's own `last_modified`, never a client's clock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::ObjectKind;
use crate::error::{Error, Result};
use crate::repository::{Repository, from_json, to_json};
use crate::{BackupId, layout};

/// The default time to live of a lease: a backup that has not renewed its lease for this long is
/// presumed dead (crashed) and no longer protects its chunks.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(6 * 3600);

const ALIVE_SUFFIX: &str = ".alive";

/// The sealed body of a lease object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LeaseBody {
    pub(crate) backup: BackupId,
    pub(crate) ttl_seconds: u64,
    pub(crate) host: String,
}

/// A lease held by this process.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) backup: BackupId,
    pub(crate) ttl: Duration,
    /// Store time of the latest start or renewal.
    last_store_time: DateTime<Utc>,
    /// Local monotonic time of the latest renewal, to know when the next one is due.
    last_local: Instant,
}

impl Lease {
    /// Puts the lease and reads back its store time.
    pub(crate) async fn acquire(repo: &Repository, backup: BackupId, ttl: Duration) -> Result<Lease> {
        let body = LeaseBody {
            backup: backup.clone(),
            ttl_seconds: ttl.as_secs(),
            host: std::env::var("HOSTNAME").unwrap_or_default(),
        };
        let path = start_path(&backup);
        let sealed = repo.keys().seal(ObjectKind::Lease, backup.as_str(), &to_json(&body));
        repo.put(&path, sealed).await?;
        let start = store_time(repo, &path).await?;
        Ok(Lease { backup, ttl, last_store_time: start, last_local: Instant::now() })
    }

    /// Takes over the lease of backup `backup` that a process put and did not release (it was
    /// killed): renews it, keeping its start, so that everything uploaded under it since stays
    /// protected from a prune. `None` when there is no such lease or it lapsed (a prune may have
    /// collected what it protected; start a new backup then).
    pub(crate) async fn adopt(
        repo: &Repository,
        backup: &BackupId,
    ) -> Result<Option<(Lease, DateTime<Utc>)>> {
        let path = start_path(backup);
        let Some(start) = repo.head(&path).await? else { return Ok(None) };
        let Some(sealed) = repo.get(&path).await? else { return Ok(None) };
        let plain = repo
            .keys()
            .open(ObjectKind::Lease, backup.as_str(), &sealed, 1 << 20)
            .map_err(|e| Error::CorruptObject { path: path.clone(), reason: e.to_string() })?;
        let body: LeaseBody = from_json(&path, &plain)?;
        let renewed = repo.head(&alive_path(backup)).await?.map(|m| m.last_modified);
        let last = renewed.map_or(start.last_modified, |r| r.max(start.last_modified));
        let mut lease = Lease {
            backup: backup.clone(),
            ttl: Duration::from_secs(body.ttl_seconds),
            last_store_time: last,
            last_local: Instant::now(),
        };
        match lease.renew(repo).await {
            Ok(()) => Ok(Some((lease, start.last_modified))),
            Err(Error::LeaseLapsed { .. }) => {
                // Nothing it protected can be relied on: it goes, as a prune would remove it.
                lease.release(repo).await?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Renews the lease when a quarter of its time to live has passed.
    pub(crate) async fn renew_if_due(&mut self, repo: &Repository) -> Result<()> {
        if self.last_local.elapsed() >= self.ttl / 4 { self.renew(repo).await } else { Ok(()) }
    }

    /// Renews the lease and checks that it never lapsed: the store times of two renewals in a row
    /// are less than the time to live apart.
    pub(crate) async fn renew(&mut self, repo: &Repository) -> Result<()> {
        let path = alive_path(&self.backup);
        repo.put(&path, Vec::new()).await?;
        let now = store_time(repo, &path).await?;
        let gap = now - self.last_store_time;
        if gap.num_milliseconds() >= self.ttl.as_millis() as i64 {
            return Err(Error::LeaseLapsed {
                backup: self.backup.clone(),
                gap_seconds: gap.num_seconds(),
                ttl_seconds: self.ttl.as_secs(),
            });
        }
        self.last_store_time = now;
        self.last_local = Instant::now();
        Ok(())
    }

    /// Drops the lease (after the manifest is written, or on abort).
    pub(crate) async fn release(self, repo: &Repository) -> Result<()> {
        repo.delete(&alive_path(&self.backup)).await?;
        repo.delete(&start_path(&self.backup)).await
    }
}

/// Removes the lease objects of `backup`, if any.
pub(crate) async fn remove(repo: &Repository, backup: &BackupId) -> Result<()> {
    repo.delete(&alive_path(backup)).await?;
    repo.delete(&start_path(backup)).await
}

fn start_path(backup: &BackupId) -> String {
    format!("{}{backup}", layout::LEASES)
}

fn alive_path(backup: &BackupId) -> String {
    format!("{}{backup}{ALIVE_SUFFIX}", layout::LEASES)
}

async fn store_time(repo: &Repository, path: &str) -> Result<DateTime<Utc>> {
    repo.head(path).await?.map(|meta| meta.last_modified).ok_or_else(|| Error::CorruptObject {
        path: path.to_string(),
        reason: "the object just written is not there (the store does not read its own writes)".to_string(),
    })
}

/// A lease as a prune sees it.
#[derive(Debug, Clone)]
pub(crate) struct ObservedLease {
    pub(crate) backup: BackupId,
    pub(crate) start: DateTime<Utc>,
    pub(crate) last_renewed: DateTime<Utc>,
    pub(crate) ttl: Duration,
}

impl ObservedLease {
    pub(crate) fn live_at(&self, t: DateTime<Utc>) -> bool {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        t < self.last_renewed.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    pub(crate) async fn remove(&self, repo: &Repository) -> Result<()> {
        repo.delete(&alive_path(&self.backup)).await?;
        repo.delete(&start_path(&self.backup)).await
    }
}

/// Every lease in the repository, with its store times.
pub(crate) async fn observe(repo: &Repository) -> Result<Vec<ObservedLease>> {
    let objects = repo.list(layout::LEASES).await?;
    let mut leases = Vec::new();
    for meta in objects.iter().filter(|m| !m.location.as_ref().ends_with(ALIVE_SUFFIX)) {
        let path = meta.location.to_string();
        let backup: BackupId = crate::repository::backup_id_of(&path, layout::LEASES)?;
        let Some(sealed) = repo.get(&path).await? else { continue };
        let plain = repo
            .keys()
            .open(ObjectKind::Lease, backup.as_str(), &sealed, 1 << 20)
            .map_err(|e| Error::CorruptObject { path: path.clone(), reason: e.to_string() })?;
        let body: LeaseBody = from_json(&path, &plain)?;
        let renewed = objects
            .iter()
            .find(|m| m.location.as_ref() == alive_path(&backup))
            .map(|m| m.last_modified)
            .unwrap_or(meta.last_modified);
        leases.push(ObservedLease {
            backup,
            start: meta.last_modified,
            last_renewed: renewed.max(meta.last_modified),
            ttl: Duration::from_secs(body.ttl_seconds),
        });
    }
    Ok(leases)
}
