//! A background loop that keeps an "agent connected" flag for the controller
//! (KubeVirt's `AgentConnected` condition).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use vmsnap_qemu::client::QgaClient;
use vmsnap_qemu::error::CommandError;
use vmsnap_qemu::qga::commands::GuestPing;

/// The agent health flag, updated by a background task that pings the agent.
/// Dropping it stops the task.
#[derive(Debug)]
pub struct GuestAgentHealth {
    connected: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl GuestAgentHealth {
    /// A receiver of the flag: `true` while the last ping was answered in time.
    /// `changed()` on it wakes on every flip.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// The current value of the flag.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the flag equals `connected`, or the loop has stopped (its
    /// client is gone), after which the flag no longer changes.
    pub async fn wait_for(&mut self, connected: bool) {
        // An error means the task and its sender are gone: nothing more to wait for.
        let _ = self.connected.wait_for(|value| *value == connected).await;
    }
}

impl Drop for GuestAgentHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pings the agent behind `qga` every `interval`, each ping bounded by
/// `ping_timeout`, and publishes whether it answered. The flag starts `false`.
/// A ping that never got the channel because another command held it (a
/// freeze whose hooks take seconds) is no verdict: the flag keeps its value, as
/// KubeVirt's stays connected while the agent serves a long call. A hung call
/// is noticed when it times out and the next ping has to resynchronise.
/// A hung agent costs one timed-out ping per interval, never a stuck loop; the
/// loop ends when the client is dropped (it holds it weakly) or the returned
/// [`GuestAgentHealth`] is dropped.
pub fn spawn_guest_agent_health(
    qga: &Arc<QgaClient>,
    interval: Duration,
    ping_timeout: Duration,
) -> GuestAgentHealth {
    let (tx, connected) = watch::channel(false);
    let task = tokio::spawn(health_loop(Arc::downgrade(qga), tx, interval, ping_timeout));
    GuestAgentHealth { connected, task }
}

async fn health_loop(
    qga: Weak<QgaClient>,
    tx: watch::Sender<bool>,
    interval: Duration,
    ping_timeout: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(client) = qga.upgrade() else { return };
        let answered = client.execute_with_timeout::<GuestPing>((), ping_timeout).await;
        drop(client);
        if matches!(answered, Err(CommandError::Busy { .. })) {
            continue;
        }
        let now = answered.is_ok();
        let changed = tx.send_if_modified(|connected| std::mem::replace(connected, now) != now);
        if changed {
            match answered {
                Ok(_) => tracing::info!("guest agent connected"),
                Err(error) => tracing::warn!(%error, "guest agent disconnected"),
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use vmsnap_qemu::client::QgaOptions;
    use vmsnap_qemu::fake::{Behavior, FakeQga};

    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);
    const PING_TIMEOUT: Duration = Duration::from_millis(300);
    const PATIENCE: Duration = Duration::from_secs(5);

    async fn flips_to(health: &mut GuestAgentHealth, connected: bool) -> Duration {
        let started = Instant::now();
        tokio::time::timeout(PATIENCE, health.wait_for(connected))
            .await
            .unwrap_or_else(|_| panic!("the flag did not become {connected} within {PATIENCE:?}"));
        started.elapsed()
    }

    #[tokio::test]
    async fn a_hung_agent_flips_the_flag_to_false_and_an_answering_one_back_to_true() {
        let dir = tempfile::tempdir().unwrap();
        let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
        let qga = Arc::new(QgaClient::new(agent.path(), QgaOptions::default()));
        let mut health = spawn_guest_agent_health(&qga, INTERVAL, PING_TIMEOUT);
        flips_to(&mut health, true).await;

        // A slow agent: every ping is answered, but too late.
        agent.set_behavior(
            "guest-ping",
            Behavior::delayed(Duration::from_secs(1), Behavior::Reply(serde_json::json!({}))),
        );
        let to_false = flips_to(&mut health, false).await;
        agent.clear_behaviors();
        let to_true = flips_to(&mut health, true).await;

        // A hung agent that stops reading its channel, then comes back on a new connection.
        agent.set_behavior("guest-ping", Behavior::Hang);
        flips_to(&mut health, false).await;
        agent.clear_behaviors();
        agent.disconnect_all();
        flips_to(&mut health, true).await;

        assert!(to_false < Duration::from_secs(2), "took {to_false:?} to notice a slow agent");
        assert!(to_true < Duration::from_secs(3), "took {to_true:?} to notice the agent answering again");
    }

    #[tokio::test]
    async fn the_flag_stays_up_while_the_agent_serves_a_long_command() {
        let dir = tempfile::tempdir().unwrap();
        let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
        let qga = Arc::new(QgaClient::new(agent.path(), QgaOptions::default()));
        let mut health = spawn_guest_agent_health(&qga, INTERVAL, PING_TIMEOUT);
        flips_to(&mut health, true).await;
        let mut flag = health.subscribe();
        flag.mark_unchanged();

        // A freeze whose hooks take 1.5 s holds the channel for five ping timeouts.
        agent.set_behavior(
            "guest-fsfreeze-freeze",
            Behavior::delayed(Duration::from_millis(1500), Behavior::Reply(serde_json::json!(1))),
        );
        let frozen = qga.execute_raw("guest-fsfreeze-freeze", serde_json::Value::Null).await;

        assert_eq!(frozen.unwrap(), serde_json::json!(1));
        assert!(!flag.has_changed().unwrap(), "the flag flipped while the agent was busy");
        assert!(health.is_connected());
    }

    #[tokio::test]
    async fn the_loop_stops_when_the_client_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
        let qga = Arc::new(QgaClient::new(agent.path(), QgaOptions::default()));
        let mut health = spawn_guest_agent_health(&qga, INTERVAL, PING_TIMEOUT);
        flips_to(&mut health, true).await;

        drop(qga);

        tokio::time::timeout(PATIENCE, async {
            while !health.task.is_finished() {
                tokio::time::sleep(INTERVAL).await;
            }
        })
        .await
        .expect("the health loop outlived its client");
    }
}
