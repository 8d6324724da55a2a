//! When a failed attempt may be made again: KubeVirt requeues a failed freeze after a fixed
//! period, and a reconcile that a status write brings back at once must not try again earlier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The time before which each key's attempt must not be repeated.
#[derive(Debug, Default)]
pub struct RetryClock {
    not_before: Mutex<HashMap<String, Instant>>,
}

impl RetryClock {
    /// How long `key` must still wait, if it failed less than its period ago.
    pub fn wait(&self, key: &str) -> Option<Duration> {
        self.wait_at(key, Instant::now())
    }

    fn wait_at(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut map = self.not_before.lock().expect("retry clock lock");
        match map.get(key) {
            Some(&at) if at > now => Some(at - now),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// `key` failed now: the next attempt waits `period`.
    pub fn failed(&self, key: &str, period: Duration) {
        self.failed_at(key, period, Instant::now());
    }

    fn failed_at(&self, key: &str, period: Duration, now: Instant) {
        self.not_before.lock().expect("retry clock lock").insert(key.to_owned(), now + period);
    }

    /// `key` succeeded: nothing to wait for.
    pub fn succeeded(&self, key: &str) {
        self.not_before.lock().expect("retry clock lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_attempt_waits_its_period_and_only_its_own_key() {
        let clock = RetryClock::default();
        let start = Instant::now();
        clock.failed_at("ns/a", Duration::from_secs(5), start);
        assert_eq!(clock.wait_at("ns/a", start + Duration::from_secs(1)), Some(Duration::from_secs(4)));
        assert_eq!(clock.wait_at("ns/b", start), None);
        assert_eq!(clock.wait_at("ns/a", start + Duration::from_secs(6)), None);
    }

    #[test]
    fn a_success_clears_the_wait() {
        let clock = RetryClock::default();
        clock.failed("ns/a", Duration::from_secs(5));
        clock.succeeded("ns/a");
        assert_eq!(clock.wait("ns/a"), None);
    }
}
