//! The retry schedule and state bookkeeping of the port mapper, kept pure (no clock, no I/O) so
//! it can be tested by itself.

use std::time::Duration;

/// Exponential backoff between failed mapping attempts: `min`, `2·min`, `4·min`, … capped at
/// `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `min` and never waiting longer than `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// Records one more failure and returns how long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let shift = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        self.min
            .checked_mul(1u32 << shift)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// A success: the next failure starts again at `min`.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// When to renew a lease of `lease` seconds: at half its life (RFC 6886 §3.3 recommends renewing
/// well before expiry), never sooner than 10 s from now.
pub(crate) fn renew_after(lease_secs: u32) -> Duration {
    Duration::from_secs(u64::from(lease_secs / 2).max(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(15), Duration::from_secs(600));
        let got: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [15, 30, 60, 120, 240, 480, 600, 600, 600]);
        // a long run of failures never overflows
        for _ in 0..100 {
            assert_eq!(b.next_delay(), Duration::from_secs(600));
        }
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(15));
    }

    #[test]
    fn max_below_min_waits_min() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
    }

    #[test]
    fn renewal_at_half_life() {
        assert_eq!(renew_after(3600), Duration::from_secs(1800));
        assert_eq!(renew_after(4), Duration::from_secs(10));
    }
}
