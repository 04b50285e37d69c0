//! How the replicas of an edge pool divide a discovered partner's limits between them, sans-IO.
//!
//! Each replica admits from its own token bucket ([`crate::DiscoveryLimiter`]) at a *share* of the
//! limit, so the message path never waits on the pool. In the background each replica measures
//! how many messages each partner asked of it ([`DemandMeter`], a moving average of the counts
//! [`crate::DiscoveryLimiter::take_demand`] hands over), publishes that rate, reads the other live
//! replicas' rates, and takes the share [`share`] computes: its part of the pool's demand. The
//! shares of all live replicas add up to one, so while every replica's demand is above its share
//! the pool admits the limit; a replica that sees none of a partner's traffic keeps a small share
//! (one message a second's worth of demand) and hands the rest to the others.

use std::collections::HashMap;

use crate::limits::WHOLE_SHARE;
use crate::names::DomainName;

/// Rates in thousandths of a message per second.
pub type MilliRate = u64;

/// The demand a replica is assumed to have on top of what it measured, in the division: keeps a
/// share for a replica whose traffic for a partner has only just begun (one message a second).
pub const SMOOTHING: MilliRate = 1_000;

/// A partner's measured demand below this is forgotten (a thousandth of a message a second).
const FORGOTTEN: MilliRate = 1;

/// Each partner's recent demand on this replica: an exponentially weighted moving average of the
/// counts per interval, half the weight on the newest interval.
#[derive(Debug, Default)]
pub struct DemandMeter {
    rates: HashMap<DomainName, MilliRate>,
}

impl DemandMeter {
    /// One interval of `interval_ms` in which each listed partner asked for `count` messages; a
    /// partner not listed asked for none (its average decays, and is forgotten near zero).
    pub fn observe(&mut self, counts: &[(DomainName, u64)], interval_ms: u64) {
        let interval_ms = interval_ms.max(1);
        for rate in self.rates.values_mut() {
            *rate /= 2;
        }
        for (d, n) in counts {
            let measured = n.saturating_mul(1_000_000) / interval_ms;
            let r = self.rates.entry(d.clone()).or_insert(measured);
            *r = r.saturating_add(measured / 2);
        }
        self.rates.retain(|_, r| *r >= FORGOTTEN);
    }

    /// The partners with a demand now, and their rates.
    pub fn rates(&self) -> impl Iterator<Item = (&DomainName, MilliRate)> {
        self.rates.iter().map(|(d, r)| (d, *r))
    }

    pub fn rate(&self, d: &DomainName) -> MilliRate {
        self.rates.get(d).copied().unwrap_or(0)
    }
}

/// This replica's share of a partner's limit, in millionths: `(own + s) / (Σ + n·s)` where Σ is
/// the demand of every live replica (`pool_demand`, this one's included) and `n` the live replicas
/// (at least one: this one), `s` [`SMOOTHING`]. Over the `n` replicas the shares add up to one.
pub fn share(own: MilliRate, pool_demand: MilliRate, replicas: usize) -> u32 {
    let n = u64::try_from(replicas.max(1)).unwrap_or(u64::MAX);
    let num = u128::from(own.saturating_add(SMOOTHING)) * u128::from(WHOLE_SHARE);
    let den = u128::from(pool_demand.max(own)) + u128::from(n) * u128::from(SMOOTHING);
    u32::try_from(num / den.max(1))
        .unwrap_or(WHOLE_SHARE)
        .min(WHOLE_SHARE)
}

/// The share of a partner the pool has told nothing about yet, and of every partner while the
/// pool's state is unreachable in the `divide` mode: the limit ÷ the replicas seen last.
pub fn even_share(replicas: usize) -> u32 {
    WHOLE_SHARE / u32::try_from(replicas.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{contact_hash, DiscoveryLimiter, DiscoveryLimits, LimitVerdict, PoolMode};

    fn d(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    #[test]
    fn shares_add_up_to_one_and_follow_demand() {
        let demands = [30_000u64, 30_000];
        let sum: u64 = demands.iter().sum();
        let shares: Vec<u32> = demands.iter().map(|&o| share(o, sum, 2)).collect();
        assert_eq!(shares, [500_000, 500_000]);
        let demands = [45_000u64, 15_000, 0];
        let sum: u64 = demands.iter().sum();
        let shares: Vec<u32> = demands.iter().map(|&o| share(o, sum, 3)).collect();
        let total: u32 = shares.iter().sum();
        assert!((WHOLE_SHARE - 3..=WHOLE_SHARE).contains(&total), "{shares:?}");
        assert!(
            shares[0] > 3 * shares[1] - 50_000 && shares[2] < 20_000,
            "{shares:?}"
        );
        // No demand anywhere: an even split.
        assert_eq!(share(0, 0, 4), 250_000);
        // A pool demand read before this replica's own was published cannot give more than all.
        assert_eq!(share(50_000, 0, 1), WHOLE_SHARE);
        assert_eq!(even_share(0), WHOLE_SHARE);
        assert_eq!(even_share(3), 333_333);
    }

    #[test]
    fn the_meter_averages_and_forgets() {
        let mut m = DemandMeter::default();
        let p = d("found.example");
        m.observe(&[(p.clone(), 6)], 200); // 30 messages a second
        assert_eq!(
            m.rate(&p),
            45_000,
            "the first interval counts whole, then the average"
        );
        m.observe(&[(p.clone(), 6)], 200);
        assert_eq!(m.rate(&p), 45_000 / 2 + 15_000);
        for _ in 0..40 {
            m.observe(&[], 200);
        }
        assert_eq!(m.rate(&p), 0);
        assert_eq!(m.rates().count(), 0, "forgotten");
    }

    /// The pool's accuracy, simulated: 2, 3 and 4 replicas, one partner asking 3× its limit of
    /// 20/s spread over them in the given proportions (a message to replica `r` while `i mod Σw`
    /// falls in its weight), a sync every 200 ms. Counted after the first two seconds (the buckets
    /// start with a second's worth), the pool admits the limit ± 10 % (the figures are quoted in
    /// the README: `cargo test -p federation-policy pool -- --nocapture`).
    #[test]
    fn replicas_admit_the_limit_together() {
        let weights: [&[u64]; 7] = [
            &[1, 1],
            &[3, 1],
            &[1, 10],
            &[1, 1, 1],
            &[3, 2, 1],
            &[1, 1, 1, 1],
            &[4, 1, 1, 1],
        ];
        for w in weights {
            let n = w.len();
            let limits = DiscoveryLimits {
                messages_per_second: 20,
                ..DiscoveryLimits::default()
            };
            let p = d("found.example");
            let mut replicas: Vec<(DiscoveryLimiter, DemandMeter)> = (0..n)
                .map(|_| {
                    let mut l = DiscoveryLimiter::new(limits, 100);
                    l.set_pool(PoolMode::Shared {
                        default_share: even_share(n),
                    });
                    (l, DemandMeter::default())
                })
                .collect();
            let total_weight: u64 = w.iter().sum();
            let mut admitted = 0u64;
            // 60 messages a second = one every 16⅔ ms; 12 s.
            for i in 0..720u64 {
                let now = i * 1000 / 60;
                let mut slot = i % total_weight;
                let r = w
                    .iter()
                    .position(|&wt| {
                        let here = slot < wt;
                        slot = slot.saturating_sub(wt);
                        here
                    })
                    .unwrap();
                let v = replicas[r].0.check(&p, &format!("u{i}@corp.example"), now);
                if now >= 2_000 && v == LimitVerdict::Allow {
                    admitted += 1;
                }
                if i % 12 == 11 {
                    // a sync: each publishes, then each reads the others' rates
                    for (l, m) in replicas.iter_mut() {
                        m.observe(&l.take_demand(), 200);
                    }
                    let total: u64 = replicas.iter().map(|(_, m)| m.rate(&p)).sum();
                    for (l, m) in replicas.iter_mut() {
                        let s = share(m.rate(&p), total, n);
                        l.set_shares([(&p, s)]);
                    }
                }
            }
            let rate = admitted as f64 / 10.0;
            eprintln!("{n} replicas, demand split {w:?}: the pool admits {rate:.1}/s of 20/s");
            assert!((18.0..=22.0).contains(&rate), "split {w:?}: {rate}/s admitted");
        }
    }

    /// The distinct-contact limit holds for the pool: what one replica admitted counts on the
    /// other once synced (the pool's set is the union of the hashes both handed over).
    #[test]
    fn distinct_contacts_are_counted_for_the_pool() {
        let limits = DiscoveryLimits {
            distinct_contacts: 3,
            ..DiscoveryLimits::default()
        };
        let p = d("found.example");
        let mut a = DiscoveryLimiter::new(limits, 10);
        let mut b = DiscoveryLimiter::new(limits, 10);
        for l in [&mut a, &mut b] {
            l.set_pool(PoolMode::Shared {
                default_share: WHOLE_SHARE,
            });
        }
        assert_eq!(a.check(&p, "u1@corp.example", 0), LimitVerdict::Allow);
        assert_eq!(a.check(&p, "U2@corp.example", 0), LimitVerdict::Allow);
        assert_eq!(b.check(&p, "u1@corp.example", 0), LimitVerdict::Allow);
        // A sync: the pool's set is the union of what each handed over.
        let mut pool = std::collections::HashSet::new();
        for l in [&mut a, &mut b] {
            for (partner, hashes, left) in l.take_new_contacts(0) {
                assert_eq!((partner, left), (p.clone(), 3_600_000));
                pool.extend(hashes);
            }
        }
        assert_eq!(pool.len(), 2, "u1 counted once, u2 (any case) once");
        assert!(pool.contains(&contact_hash("u2@corp.example")));
        for l in [&mut a, &mut b] {
            l.set_pool_contacts([(&p, pool.len())]);
        }
        assert_eq!(
            b.check(&p, "u3@corp.example", 10),
            LimitVerdict::Allow,
            "the third"
        );
        assert!(
            matches!(
                b.check(&p, "u4@corp.example", 10),
                LimitVerdict::Throttle { rate: false, .. }
            ),
            "the fourth is over the pool's 3"
        );
        assert_eq!(
            b.check(&p, "u1@corp.example", 10),
            LimitVerdict::Allow,
            "a known contact"
        );
        // Standalone, b alone would have admitted u4 (its own set holds u1 and u3).
        let mut alone = DiscoveryLimiter::new(limits, 10);
        for u in ["u1", "u3", "u4"] {
            assert_eq!(
                alone.check(&p, &format!("{u}@corp.example"), 0),
                LimitVerdict::Allow
            );
        }
        assert!(alone.take_new_contacts(0).is_empty(), "nothing kept for a pool");
    }

    #[test]
    fn refuse_mode_refuses_and_alone_is_the_whole_limit() {
        let mut l = DiscoveryLimiter::new(DiscoveryLimits::default(), 100);
        let p = d("found.example");
        l.set_pool(PoolMode::Refuse);
        assert_eq!(
            l.check(&p, "a@corp.example", 0),
            LimitVerdict::PoolUnavailable { retry_after_secs: 5 }
        );
        l.set_pool(PoolMode::Alone);
        let q = d("other.example");
        let allowed = (0..30)
            .filter(|i| l.check(&q, &format!("u{i}@corp.example"), 10) == LimitVerdict::Allow)
            .count();
        assert_eq!(allowed, 20, "a fresh partner alone: the whole burst");
        let mut demand = l.take_demand();
        demand.sort();
        assert_eq!(
            demand,
            vec![(p.clone(), 1), (q, 30)],
            "every ask counts, refused too"
        );
        assert_eq!(l.take_demand(), vec![]);
        // Back from refusing: the partner's bucket refills from where it was, no burst on return.
        assert_eq!(l.check(&p, "a@corp.example", 20), LimitVerdict::Allow);
        assert!(matches!(
            l.check(&p, "a@corp.example", 20),
            LimitVerdict::Throttle { .. }
        ));
    }
}
