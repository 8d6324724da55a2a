//! Leader election on a `coordination.k8s.io/v1` Lease, so that two `vmsnap controller` replicas are
//! safe: only the holder runs the controllers; a holder that stops renewing is replaced after the
//! lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (host name and pid).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the lease.
    Leading,
    /// Another replica holds a live lease.
    Following(String),
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else { return true };
    let duration = spec.lease_duration_seconds.unwrap_or(15) as f64;
    now.duration_since(renewed.0).as_secs_f64() > duration
}

/// Tries once to acquire or renew the lease.
pub async fn try_acquire(client: &Client, cfg: &LeaseConfig) -> Result<Attempt, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = Timestamp::now();
    let mine = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
                spec: Some(mine(0, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following("another replica".into())),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let transitions = spec.lease_transitions.unwrap_or(0);
            let new_spec = if holder == cfg.identity {
                mine(transitions, spec.acquire_time.clone())
            } else if expired(&spec, now) || holder.is_empty() {
                mine(transitions + 1, None)
            } else {
                return Ok(Attempt::Following(holder));
            };
            lease.spec = Some(new_spec);
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following(holder)),
                Err(e) => Err(e),
            }
        }
    }
}

/// Runs `lead` while this replica holds the lease: acquires, renews, and cancels `lead` (by dropping
/// it) when the lease is lost; then competes again. Never returns.
pub async fn run_elected<F, Fut, T>(client: Client, cfg: LeaseConfig, mut lead: F) -> !
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    loop {
        match try_acquire(&client, &cfg).await {
            Ok(Attempt::Leading) => {
                tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became the leader; starting the controllers");
                let leading = lead();
                tokio::pin!(leading);
                let mut last_renewal = std::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = &mut leading => break,
                        _ = tokio::time::sleep(cfg.renew_every) => {
                            match try_acquire(&client, &cfg).await {
                                Ok(Attempt::Leading) => last_renewal = std::time::Instant::now(),
                                Ok(Attempt::Following(holder)) => {
                                    tracing::warn!(%holder, "lost the lease; stopping the controllers");
                                    break;
                                }
                                Err(e) if last_renewal.elapsed() < cfg.duration => {
                                    tracing::warn!(error = %e, "could not renew the lease; retrying");
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "could not renew the lease in time; stopping the controllers");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            Ok(Attempt::Following(holder)) => tracing::debug!(%holder, "another replica leads"),
            Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}
