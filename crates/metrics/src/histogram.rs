//! The edge's fixed histogram bucket bounds. The workers observe into edge-core's `Histogram` over
//! the same bounds (the binary's tests check they agree); the binary sums the workers' at scrape
//! time and hands the sum over as a [`crate::Sample::Histogram`]. The descriptors that use these
//! bounds are in [`crate::names`].

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

/// A bound or sum in microseconds as the seconds the exposition carries.
pub fn micros_to_seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_strictly_increasing() {
        for bounds in [&LATENCY_BOUNDS_MICROS[..], &TURN_BOUNDS_MICROS[..]] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
        assert_eq!(micros_to_seconds(500), 0.0005);
        assert_eq!(micros_to_seconds(60_000_000), 60.0);
    }
}
