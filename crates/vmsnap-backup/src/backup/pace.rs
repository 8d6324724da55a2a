//! Pacing a backup's reads: a token bucket of bytes, so that a backup reading a running VM's disk
//! leaves the CPUs to the guests once it has read more than a burst.
//!
//! Reading and naming a chunk that is already stored takes a CPU flat out (0.37 s per GiB on the
//! 2-core test machine), and a guest under TCG needs more than one of its two CPUs to write at full
//! speed: a backup reading at full speed took 10 to 25 % of the guest's write throughput, whatever
//! its threads' nice value (`docs/benchmarks.md`). New data is held back by its uploads (about
//! 100 MB/s to SeaweedFS on that machine), far below the limit, so in practice the reads slowed
//! are those of data the repository already has: a forced full backup, the first backup of a
//! second VM made from the same image, a full read after the base layer was compacted away. An
//! incremental's few changed chunks fit in the burst. The limit counts bytes, not CPU time.

use std::time::{Duration, Instant};

/// How fast a backup reads a disk, sustained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimit {
    /// Bytes per second, on average over more than a burst.
    pub bytes_per_second: u64,
    /// Bytes read at full speed before the rate applies (and again after a pause as long).
    pub burst_bytes: u64,
}

impl ReadLimit {
    /// The default: 256 MiB/s after a burst of 64 MiB.
    pub const DEFAULT: ReadLimit = ReadLimit { bytes_per_second: 256 << 20, burst_bytes: 64 << 20 };
}

/// The shortest wait: a debt below this much time is carried to the next read rather than slept
/// (a timer's granularity is a millisecond; a chunk read takes a fraction of one).
const QUANTUM: Duration = Duration::from_millis(10);

/// A token bucket over [`ReadLimit`].
#[derive(Debug)]
pub(crate) struct ReadPace {
    rate: f64,
    burst: f64,
    /// Bytes that may be read now; negative: a debt to wait for.
    tokens: f64,
    last: Instant,
}

impl ReadPace {
    pub(crate) fn new(limit: ReadLimit) -> ReadPace {
        let burst = limit.burst_bytes as f64;
        ReadPace { rate: limit.bytes_per_second.max(1) as f64, burst, tokens: burst, last: Instant::now() }
    }

    /// Takes `bytes` at `now`: how long to wait before reading them.
    fn take_at(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - bytes as f64;
        let debt = Duration::from_secs_f64((-self.tokens).max(0.0) / self.rate);
        if debt < QUANTUM { Duration::ZERO } else { debt }
    }

    /// Waits until `bytes` may be read.
    pub(crate) async fn take(&mut self, bytes: u64) {
        let wait = self.take_at(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn reads_within_the_burst_do_not_wait_and_the_rest_are_held_to_the_rate() {
        let limit = ReadLimit { bytes_per_second: 100 * MIB, burst_bytes: 10 * MIB };
        let mut pace = ReadPace::new(limit);
        let start = pace.last;
        // The burst: ten 1 MiB reads at once.
        for _ in 0..10 {
            assert_eq!(pace.take_at(MIB, start), Duration::ZERO);
        }
        // A debt under the quantum (half a MiB at 100 MiB/s: 5 ms) is carried...
        assert_eq!(pace.take_at(MIB / 2, start), Duration::ZERO);
        // ...and waited for with the next one: 1.5 MiB at 100 MiB/s.
        let wait = pace.take_at(MIB, start);
        assert!((wait.as_secs_f64() - 0.015).abs() < 1e-6, "{wait:?}");
        // After the wait, the bucket is even; reading on at the rate waits for nothing more.
        let mut now = start + wait;
        for _ in 0..100 {
            now += Duration::from_millis(10);
            assert_eq!(pace.take_at(MIB, now), Duration::ZERO);
        }
        // 100 MiB more at once: a second's worth of debt.
        let wait = pace.take_at(100 * MIB, now);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // A long pause refills the bucket up to the burst, not beyond.
        let later = now + wait + Duration::from_secs(3600);
        assert_eq!(pace.take_at(10 * MIB, later), Duration::ZERO);
        let wait = pace.take_at(2 * MIB, later);
        assert!((wait.as_secs_f64() - 0.02).abs() < 1e-6, "{wait:?}");
    }

    #[tokio::test]
    async fn a_large_read_after_the_burst_takes_its_time() {
        let mut pace = ReadPace::new(ReadLimit { bytes_per_second: 100 * MIB, burst_bytes: MIB });
        let started = Instant::now();
        pace.take(MIB).await;
        assert!(started.elapsed() < Duration::from_millis(5), "the burst is free");
        pace.take(20 * MIB).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "20 MiB at 100 MiB/s: {took:?}");
    }
}
