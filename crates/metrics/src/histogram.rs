//! The edge's fixed histogram bucket bounds and [`LocalHistogram`], the plain per-thread accumulator a
//! worker owns: no atomics, no lock, a bucket search and three additions per observation. The binary
//! copies or merges the workers' histograms through its own mechanism at scrape time and turns the sum
//! into a [`Sample`] with [`LocalHistogram::sample`]. The descriptors that use these bounds are in
//! [`crate::names`].

use std::time::Duration;

use crate::Sample;

/// How many finite buckets [`LATENCY_BOUNDS_MICROS`] has.
pub const LATENCY_BUCKETS: usize = 16;

/// Upper bounds of latency histograms (transactions, DNS), in microseconds: 0.5 ms to 60 s. A SIP
/// transaction's timers end at 32 s (Timer B/F), so the last finite bucket holds every outcome.
pub const LATENCY_BOUNDS_MICROS: [u64; LATENCY_BUCKETS] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// How many finite buckets [`TURN_BOUNDS_MICROS`] has.
pub const TURN_BUCKETS: usize = 12;

/// Upper bounds of the event-loop turn histogram, in microseconds: 10 µs to 1 s. A healthy turn is tens
/// of microseconds; the upper buckets show a worker that blocks.
pub const TURN_BOUNDS_MICROS: [u64; TURN_BUCKETS] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 100_000, 1_000_000,
];

/// A histogram owned by one thread over fixed bounds: per-bucket (not cumulative) counts, the
/// observations above the last bound, and the sum in whole microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHistogram<const N: usize> {
    bounds: &'static [u64; N],
    counts: [u64; N],
    above: u64,
    sum_micros: u64,
}

/// Transactions and DNS queries.
pub type LatencyHistogram = LocalHistogram<LATENCY_BUCKETS>;
/// Event-loop turns.
pub type TurnHistogram = LocalHistogram<TURN_BUCKETS>;

impl<const N: usize> LocalHistogram<N> {
    /// An empty histogram over `bounds_micros` (strictly increasing).
    pub const fn new(bounds_micros: &'static [u64; N]) -> Self {
        LocalHistogram {
            bounds: bounds_micros,
            counts: [0; N],
            above: 0,
            sum_micros: 0,
        }
    }

    pub fn bounds_micros(&self) -> &'static [u64; N] {
        self.bounds
    }

    /// Counts one observation in the first bucket whose bound is at least `d` (sub-microsecond
    /// durations count as 0 µs). Counters wrap like any Prometheus counter would on overflow, which at
    /// one observation per nanosecond takes centuries.
    #[inline]
    pub fn observe(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match self
            .bounds
            .iter()
            .position(|b| micros <= *b)
            .and_then(|i| self.counts.get_mut(i))
        {
            Some(count) => *count = count.wrapping_add(1),
            None => self.above = self.above.wrapping_add(1),
        }
        self.sum_micros = self.sum_micros.wrapping_add(micros);
    }

    /// Adds `other`'s observations to this one (summing workers at scrape time). Returns false, and
    /// changes nothing, when the two are over different bounds.
    #[must_use]
    pub fn merge(&mut self, other: &Self) -> bool {
        if self.bounds != other.bounds {
            return false;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.wrapping_add(*theirs);
        }
        self.above = self.above.wrapping_add(other.above);
        self.sum_micros = self.sum_micros.wrapping_add(other.sum_micros);
        true
    }

    /// Every observation.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(self.above, |acc, c| acc.wrapping_add(*c))
    }

    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros)
    }

    /// The series of this histogram with these label values: cumulative counts per bound, the sum in
    /// seconds, every observation as the count.
    pub fn sample(&self, labels: Vec<String>) -> Sample {
        let mut running = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                running = running.wrapping_add(*c);
                running
            })
            .collect();
        Sample::Histogram {
            labels,
            cumulative,
            sum: micros_to_seconds(self.sum_micros),
            count: self.count(),
        }
    }
}

impl LocalHistogram<LATENCY_BUCKETS> {
    pub const fn latency() -> Self {
        LocalHistogram::new(&LATENCY_BOUNDS_MICROS)
    }
}

impl LocalHistogram<TURN_BUCKETS> {
    pub const fn turn() -> Self {
        LocalHistogram::new(&TURN_BOUNDS_MICROS)
    }
}

/// A bound or sum in microseconds as the seconds the exposition carries.
pub fn micros_to_seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cumulative(s: &Sample) -> (Vec<u64>, f64, u64) {
        match s {
            Sample::Histogram {
                cumulative,
                sum,
                count,
                ..
            } => (cumulative.clone(), *sum, *count),
            Sample::Value { .. } => panic!("not a histogram"),
        }
    }

    #[test]
    fn observations_land_in_the_first_bucket_at_least_as_large() {
        static B: [u64; 3] = [10, 100, 1000];
        let mut h = LocalHistogram::new(&B);
        h.observe(Duration::from_nanos(300)); // 0 µs
        h.observe(Duration::from_micros(10)); // on the bound: that bucket
        h.observe(Duration::from_micros(11));
        h.observe(Duration::from_micros(1000));
        h.observe(Duration::from_secs(3)); // above every bound
        let (cum, sum, count) = cumulative(&h.sample(vec![]));
        assert_eq!(cum, vec![2, 3, 4]);
        assert_eq!(count, 5);
        assert!((sum - (10 + 11 + 1000 + 3_000_000) as f64 / 1e6).abs() < 1e-12);
        assert_eq!(h.sum(), Duration::from_micros(3_001_021));
    }

    #[test]
    fn merge_adds_workers_and_refuses_other_bounds() {
        let mut a = LatencyHistogram::latency();
        let mut b = LatencyHistogram::latency();
        a.observe(Duration::from_millis(1));
        b.observe(Duration::from_millis(1));
        b.observe(Duration::from_secs(100));
        assert!(a.merge(&b));
        assert_eq!(a.count(), 3);
        let (cum, _, count) = cumulative(&a.sample(vec![]));
        assert_eq!(cum.get(1), Some(&2)); // 1 ms bound
        assert_eq!(cum.last(), Some(&2));
        assert_eq!(count, 3);

        static OTHER: [u64; LATENCY_BUCKETS] = [1; LATENCY_BUCKETS];
        let c = LocalHistogram::new(&OTHER);
        let before = a.clone();
        assert!(!a.merge(&c));
        assert_eq!(a, before);
    }

    #[test]
    fn bounds_are_strictly_increasing() {
        for bounds in [&LATENCY_BOUNDS_MICROS[..], &TURN_BOUNDS_MICROS[..]] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
        assert_eq!(micros_to_seconds(500), 0.0005);
        assert_eq!(micros_to_seconds(60_000_000), 60.0);
    }
}
