//! [`TokenBucket`]: the generator's pacing at `--rate R` transactions/s, on a clock the caller passes
//! in (a `Duration` since the run began), so the tests drive it on a virtual clock and never sleep.
//! Tokens accrue at `rate` per second up to `burst`; a transaction may start when a whole token is
//! there. Rate 0 means unpaced: every request the in-flight window allows may start.
//! The event loop (`gen.rs`) asks [`TokenBucket::take`] how many may start now and
//! [`TokenBucket::wait`] how long to sleep when none may.

use std::time::Duration;

/// A token bucket refilled continuously from the caller's clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second; 0: unlimited.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// `rate` tokens per second (0: unlimited) with room for `burst` (at least 1). Starts full.
    pub fn new(rate: u64, burst: u64) -> TokenBucket {
        let burst = burst.max(1) as f64;
        TokenBucket {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: Duration::ZERO,
        }
    }

    /// The generator's bucket for `rate`: room for 5 ms of tokens, so a loop that wakes less often
    /// than one token's interval (at 5,000/s: every 0.2 ms) still reaches the rate.
    pub fn for_rate(rate: u64) -> TokenBucket {
        TokenBucket::new(rate, rate / 200)
    }

    /// Whether the bucket limits at all.
    pub fn unlimited(&self) -> bool {
        self.rate <= 0.0
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let dt = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Takes up to `want` whole tokens at `now`; returns how many were taken.
    pub fn take(&mut self, now: Duration, want: u64) -> u64 {
        if self.unlimited() {
            return want;
        }
        self.refill(now);
        let n = (self.tokens.floor() as u64).min(want);
        self.tokens -= n as f64;
        n
    }

    /// How long after `now` the next whole token is there (zero if one is; `None` if unlimited).
    pub fn wait(&self, now: Duration) -> Option<Duration> {
        if self.unlimited() {
            return None;
        }
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        let have = (self.tokens + elapsed * self.rate).min(self.burst);
        if have >= 1.0 {
            return Some(Duration::ZERO);
        }
        Some(Duration::from_secs_f64((1.0 - have) / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_bucket_gives_its_burst_then_the_rate() {
        let mut b = TokenBucket::new(1000, 10);
        assert_eq!(b.take(Duration::ZERO, 100), 10, "starts full: the burst");
        assert_eq!(b.take(Duration::ZERO, 100), 0, "then empty");
        assert_eq!(b.take(5 * MS, 100), 5, "1000/s: 5 in 5 ms");
        assert_eq!(b.take(5 * MS, 100), 0);
    }

    #[test]
    fn one_virtual_second_yields_the_rate_within_one_token() {
        let mut b = TokenBucket::for_rate(5000);
        let mut total = b.take(Duration::ZERO, u64::MAX);
        // Polled every 0.3 ms, as a busy loop would: fractions carry over between calls.
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(1) {
            t += Duration::from_micros(300);
            total += b.take(t, u64::MAX);
        }
        // The initial burst (25) plus 1 s of tokens, polled at 1.5 token intervals.
        assert!((5024..=5026).contains(&total), "{total} tokens in ~1 s at 5000/s");
    }

    #[test]
    fn a_burst_of_one_underdelivers_when_polled_slower_than_the_rate() {
        // Why `for_rate` keeps 5 ms of room: capped at 1, a poll every 0.3 ms gets 1 token, not 1.5.
        let mut b = TokenBucket::new(5000, 1);
        let mut total = 0;
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(1) {
            t += Duration::from_micros(300);
            total += b.take(t, u64::MAX);
        }
        assert!(total < 3400, "{total}");
    }

    #[test]
    fn idle_time_accrues_no_more_than_the_burst() {
        let mut b = TokenBucket::new(100, 4);
        b.take(Duration::ZERO, 4);
        assert_eq!(b.take(Duration::from_secs(60), 1000), 4);
    }

    #[test]
    fn want_caps_the_take_and_keeps_the_rest() {
        let mut b = TokenBucket::new(100, 8);
        assert_eq!(b.take(Duration::ZERO, 3), 3);
        assert_eq!(b.take(Duration::ZERO, 10), 5);
    }

    #[test]
    fn wait_says_when_the_next_token_is_due() {
        let mut b = TokenBucket::new(1000, 1);
        assert_eq!(b.wait(Duration::ZERO), Some(Duration::ZERO));
        b.take(Duration::ZERO, 1);
        let w = b.wait(Duration::ZERO).unwrap();
        assert!(w > Duration::from_micros(990) && w <= MS, "{w:?}");
        let w = b.wait(Duration::from_micros(600)).unwrap();
        assert!(
            w > Duration::from_micros(390) && w <= Duration::from_micros(400),
            "{w:?}"
        );
        assert_eq!(b.wait(2 * MS), Some(Duration::ZERO));
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let mut b = TokenBucket::new(0, 1);
        assert!(b.unlimited());
        assert_eq!(b.take(Duration::ZERO, 12345), 12345);
        assert_eq!(b.wait(Duration::ZERO), None);
    }
}
