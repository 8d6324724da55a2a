//! Waiting for things with a timeout, reporting what was last seen when it runs out.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::wait::Condition;
use serde::de::DeserializeOwned;

/// Polls `probe` every 50 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (with a watch) until the named object satisfies `condition`.
pub async fn await_condition<K>(
    api: &Api<K>,
    name: &str,
    condition: impl Condition<K>,
    timeout: Duration,
) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let found =
        tokio::time::timeout(timeout, kube::runtime::wait::await_condition(api.clone(), name, condition))
            .await;
    match found {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => anyhow::bail!("{name} was deleted while waiting for a condition"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            anyhow::bail!(
                "timed out after {timeout:?} waiting for a condition on {name}; last seen: {last:#?}"
            )
        }
    }
}

/// Waits until `extract` returns `Some` for the named object, checking on every change.
pub async fn await_value<K, T>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    extract: impl Fn(&K) -> Option<T>,
) -> anyhow::Result<T>
where
    K: kube::Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let start = Instant::now();
    loop {
        if let Some(obj) = api.get_opt(name).await? {
            if let Some(v) = extract(&obj) {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                anyhow::bail!("timed out after {timeout:?} waiting on {name}; last seen: {obj:#?}");
            }
        } else if start.elapsed() > timeout {
            anyhow::bail!("timed out after {timeout:?} waiting on {name}, which does not exist");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
