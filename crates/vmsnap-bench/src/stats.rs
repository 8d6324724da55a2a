//! Small statistics over samples, and the reading of a guest's timestamp trace.

use std::time::Duration;

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median (the upper one of an even count); NaN when empty.
pub fn median(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}

/// The nearest-rank percentile `p` (0 to 100); NaN when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What a guest recorded during one online snapshot: the `freeze`/`thaw` lines of its fsfreeze
/// hook log and the timestamps `tswriter` wrote, all in CLOCK_REALTIME microseconds of the guest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FreezeTrace {
    /// The first freeze and the first thaw after it in the hook log (later thaws are repeated
    /// unfreeze calls of a guest that is no longer frozen).
    pub hook: Option<(u64, u64)>,
    /// The timestamps, in file order.
    pub stamps: Vec<u64>,
}

impl FreezeTrace {
    /// Reads `cat hook.log; echo ---; cat ts` output.
    pub fn parse(text: &str) -> FreezeTrace {
        let (hook_text, stamps_text) = text.split_once("---").unwrap_or(("", text));
        let (mut freeze, mut thaw) = (None, None);
        for line in hook_text.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next().and_then(|w| w.parse::<u64>().ok())) {
                (Some("freeze"), Some(t)) => freeze = freeze.or(Some(t)),
                (Some("thaw"), Some(t)) if freeze.is_some() => thaw = thaw.or(Some(t)),
                _ => {}
            }
        }
        let stamps = stamps_text
            .lines()
            .filter_map(|l| l.split_whitespace().next().and_then(|w| w.parse().ok()))
            .collect();
        FreezeTrace { hook: freeze.zip(thaw).filter(|(f, t)| t >= f), stamps }
    }

    /// The freeze window the writer saw: the largest gap between two consecutive timestamps that
    /// overlaps the hook's freeze..thaw (the largest gap anywhere when the hook logged nothing).
    pub fn window(&self) -> Option<Duration> {
        let gaps = self.stamps.windows(2).filter(|pair| match self.hook {
            Some((freeze, thaw)) => pair[1] >= freeze && pair[0] <= thaw,
            None => true,
        });
        gaps.map(|pair| pair[1].saturating_sub(pair[0])).max().map(Duration::from_micros)
    }

    /// The time from freeze to thaw as the guest's hook logged it.
    pub fn hook_window(&self) -> Option<Duration> {
        self.hook.map(|(freeze, thaw)| Duration::from_micros(thaw - freeze))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_freeze_window_is_the_largest_gap_overlapping_the_hook_window() {
        let text = "freeze 1000\nthaw 1300\nthaw 2000\n---\n0 0\n900 1\n1400 2\n1410 3\n3000 4\n3001 5\n";
        let trace = FreezeTrace::parse(text);
        assert_eq!(trace.hook, Some((1000, 1300)));
        assert_eq!(trace.window(), Some(Duration::from_micros(500)));
        assert_eq!(trace.hook_window(), Some(Duration::from_micros(300)));
    }

    #[test]
    fn without_a_hook_log_the_largest_gap_anywhere_counts() {
        let trace = FreezeTrace::parse("---\n10 0\n20 1\n50 2\n");
        assert_eq!(trace.window(), Some(Duration::from_micros(30)));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }
}
