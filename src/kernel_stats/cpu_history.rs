//! CPU rates over a window of at least a second, whoever asks.
//!
//! kubelet has several stats consumers (the summary API, eviction, the
//! metrics endpoints) that ask back to back. A rate computed against the
//! previous caller's sample covers a few milliseconds and mostly reads 0
//! (a busy container's counter moves in scheduler ticks). Like cAdvisor's
//! housekeeping samples and containerd's stored stats, each container
//! keeps a short history of samples, and a rate is taken against the
//! newest sample at least [`MIN_WINDOW`] older than now.

use std::collections::{HashMap, VecDeque};

/// The shortest span a rate is computed over.
pub const MIN_WINDOW: i64 = 1_000_000_000;
/// Samples closer together than this are not all kept (bounds the history
/// to about `MIN_WINDOW / SPACING` samples per container).
const SPACING: i64 = 100_000_000;

/// Per key: (time ns, cumulative CPU ns), oldest first.
#[derive(Debug, Default)]
pub struct CpuHistory {
    samples: HashMap<String, VecDeque<(i64, u64)>>,
}

impl CpuHistory {
    /// Records `total` at `now` for `key` and answers the rate (nanocores)
    /// over the newest sample at least [`MIN_WINDOW`] old; `None` until
    /// there is one, or when the counter went back (a new cgroup).
    pub fn rate(&mut self, key: &str, now: i64, total: u64) -> Option<u64> {
        let history = self.samples.entry(key.to_string()).or_default();
        if history.back().is_some_and(|(_, u)| *u > total) {
            history.clear();
        }
        let base = history
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_sub(*t) >= MIN_WINDOW)
            .copied();
        let rate = base.and_then(|(t, u)| {
            let dt = u64::try_from(now.saturating_sub(t))
                .ok()
                .filter(|d| *d > 0)?;
            let du = total.checked_sub(u)?;
            u64::try_from(u128::from(du) * 1_000_000_000 / u128::from(dt)).ok()
        });
        if history
            .back()
            .is_none_or(|(t, _)| now.saturating_sub(*t) >= SPACING)
        {
            history.push_back((now, total));
        }
        // Keep one sample older than the window (the next base) and all
        // younger ones (they become bases as time goes on).
        while history
            .get(1)
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= MIN_WINDOW)
        {
            history.pop_front();
        }
        rate
    }

    /// Forgets keys `keep` says no to.
    pub fn retain(&mut self, keep: impl Fn(&String) -> bool) {
        self.samples.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn back_to_back_callers_share_a_window_of_a_second() {
        let mut h = CpuHistory::default();
        assert_eq!(h.rate("c", 0, 0), None, "nothing to compare with yet");
        // Half a core from then on; two callers 1 ms apart, 2 s later.
        assert_eq!(h.rate("c", 2 * S, 1_000_000_000), Some(500_000_000));
        assert_eq!(
            h.rate("c", 2 * S + 1_000_000, 1_000_500_000),
            Some(500_000_000),
            "the second caller is not measured against the first"
        );
    }

    #[test]
    fn a_rate_needs_a_sample_at_least_a_second_old() {
        let mut h = CpuHistory::default();
        h.rate("c", 0, 0);
        assert_eq!(h.rate("c", S / 2, 100), None);
        assert_eq!(h.rate("c", S, 1_000), Some(1_000));
        // The newest sample a second old is the base: the one at 0.5 s.
        assert_eq!(h.rate("c", S + S / 2, 1_100), Some(1_000));
    }

    #[test]
    fn the_history_stays_short_under_a_flood_of_callers() {
        let mut h = CpuHistory::default();
        for i in 0..10_000 {
            h.rate("c", i * 1_000_000, u64::try_from(i).unwrap());
        }
        let len = h.samples["c"].len();
        assert!(len <= 12, "{len} samples kept");
    }

    #[test]
    fn a_counter_that_goes_back_starts_over() {
        let mut h = CpuHistory::default();
        h.rate("c", 0, 5_000);
        assert_eq!(h.rate("c", 2 * S, 10), None);
        assert_eq!(h.rate("c", 4 * S, 2_000_000_010), Some(1_000_000_000));
    }

    #[test]
    fn keys_are_apart_and_can_be_forgotten() {
        let mut h = CpuHistory::default();
        h.rate("a", 0, 0);
        h.rate("b", 0, 0);
        h.retain(|k| k == "a");
        assert_eq!(h.rate("a", S, 10), Some(10));
        assert_eq!(h.rate("b", S, 10), None);
    }
}
