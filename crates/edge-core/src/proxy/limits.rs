//! [`SharedDiscoveryLimiter`]: the discovered-partner limits (Lync: 20 messages/s, 1,000 distinct
//! internal contacts per partner per 60 minutes) held once for the whole edge, not once per worker.
//! With SO_REUSEPORT a partner's connections land on any worker, and per-worker limiters multiplied
//! the limit by the number of workers.
//!
//! The state machine is `federation_policy::DiscoveryLimiter` (sans-IO, time passed in); this wraps it
//! in a `parking_lot::Mutex` with one time origin for all workers. The lock is taken only for
//! requests to or from a *discovered* partner (never for configured partners or internal traffic),
//! once per such request, for a hash lookup: a cost that path can pay. It is one of the three parts
//! of `EdgeShared`, what the cores of one edge share.

use std::sync::Arc;
use std::time::Instant;

use federation_policy::{DiscoveryLimiter, DiscoveryLimits, DomainName, LimitVerdict, PoolMode};
use parking_lot::Mutex;

/// Partners tracked at most (least recently seen forgotten beyond it).
const MAX_PARTNERS: usize = 10_000;

/// The edge-wide limiter; clone the `Arc` into every worker's core.
#[derive(Debug)]
pub struct SharedDiscoveryLimiter {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The first instant any worker asked: the common origin of the limiter's milliseconds.
    epoch: Option<Instant>,
    /// The limiter only sees time go forward, whichever worker asks.
    last_ms: u64,
    /// What `limiter` enforces (compared by [`SharedDiscoveryLimiter::set_limits`]).
    limits: DiscoveryLimits,
    limiter: DiscoveryLimiter,
}

impl SharedDiscoveryLimiter {
    pub fn new(limits: DiscoveryLimits) -> Arc<SharedDiscoveryLimiter> {
        Arc::new(SharedDiscoveryLimiter {
            inner: Mutex::new(Inner {
                epoch: None,
                last_ms: 0,
                limits,
                limiter: DiscoveryLimiter::new(limits, MAX_PARTNERS),
            }),
        })
    }

    /// A reload's limits, applied once for the whole edge (every worker holds this same limiter).
    /// Unchanged limits keep every partner's budget and contact window as they are; changed limits
    /// start fresh, since a bucket filled under one rate means nothing under another. Returns
    /// whether the limits changed.
    pub fn set_limits(&self, limits: DiscoveryLimits) -> bool {
        let mut g = self.inner.lock();
        if g.limits == limits {
            return false;
        }
        g.limits = limits;
        let pool = g.limiter.pool();
        g.limiter = DiscoveryLimiter::new(limits, MAX_PARTNERS);
        g.limiter.set_pool(pool);
        true
    }

    /// How the edge takes part in a pool (`[pool]`; the pool's sync thread sets it as Redis comes
    /// and goes).
    pub fn set_pool(&self, mode: PoolMode) {
        self.inner.lock().limiter.set_pool(mode);
    }

    pub fn pool(&self) -> PoolMode {
        self.inner.lock().limiter.pool()
    }

    /// Each partner's messages asked for since the last call: what the pool's sync publishes.
    pub fn take_demand(&self) -> Vec<(DomainName, u64)> {
        self.inner.lock().limiter.take_demand()
    }

    /// Every partner back to the default share (Redis went away).
    pub fn reset_shares(&self) {
        self.inner.lock().limiter.reset_shares();
    }

    /// Each partner's contacts new in its window since the last call (hashes) and the window's
    /// time left: what the pool's sync adds to the pool's sets.
    pub fn take_new_contacts(&self, now: Instant) -> Vec<(DomainName, Vec<u64>, std::time::Duration)> {
        let mut g = self.inner.lock();
        let now_ms = g.epoch.map_or(0, |e| {
            u64::try_from(now.saturating_duration_since(e).as_millis()).unwrap_or(u64::MAX)
        });
        let now_ms = now_ms.max(g.last_ms);
        g.limiter
            .take_new_contacts(now_ms)
            .into_iter()
            .map(|(d, h, left)| (d, h, std::time::Duration::from_millis(left)))
            .collect()
    }

    /// The pool's distinct-contact counts, as the pool's sync read them.
    pub fn set_pool_contacts(&self, counts: &[(DomainName, usize)]) {
        self.inner
            .lock()
            .limiter
            .set_pool_contacts(counts.iter().map(|(d, n)| (d, *n)));
    }

    /// This replica's shares of the partners' limits, as the pool's sync computed them.
    pub fn set_shares(&self, shares: &[(DomainName, u32)]) {
        self.inner
            .lock()
            .limiter
            .set_shares(shares.iter().map(|(d, s)| (d, *s)));
    }

    /// The limits enforced now.
    pub fn limits(&self) -> DiscoveryLimits {
        self.inner.lock().limits
    }

    /// Discovered partners tracked now.
    pub fn tracked(&self) -> usize {
        self.inner.lock().limiter.tracked_partners()
    }

    /// The `n` discovered partners seen most recently, newest first: (domain, distinct internal
    /// contacts in the window, how long ago it was last seen). For the status page.
    pub fn recent(&self, n: usize, now: Instant) -> Vec<(DomainName, usize, std::time::Duration)> {
        let g = self.inner.lock();
        let now_ms = g.epoch.map_or(0, |e| {
            u64::try_from(now.saturating_duration_since(e).as_millis()).unwrap_or(u64::MAX)
        });
        g.limiter
            .recent(n)
            .into_iter()
            .map(|(d, contacts, seen)| {
                (
                    d,
                    contacts,
                    std::time::Duration::from_millis(now_ms.saturating_sub(seen)),
                )
            })
            .collect()
    }

    /// One message between our `internal_contact` and the discovered `partner`, at `now`.
    pub fn check(&self, partner: &DomainName, internal_contact: &str, now: Instant) -> LimitVerdict {
        let mut g = self.inner.lock();
        let epoch = *g.epoch.get_or_insert(now);
        let ms = u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX);
        let ms = ms.max(g.last_ms);
        g.last_ms = ms;
        g.limiter.check(partner, internal_contact, ms)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Two workers asking with their own clocks share one budget, and a worker whose `now` is a
    /// little behind another's does not move the limiter's time backwards.
    #[test]
    fn workers_share_one_budget() {
        let limits = DiscoveryLimits {
            messages_per_second: 4,
            ..DiscoveryLimits::default()
        };
        let shared = SharedDiscoveryLimiter::new(limits);
        let (w1, w2) = (Arc::clone(&shared), Arc::clone(&shared));
        let d = DomainName::parse("found.example").unwrap();
        let t0 = Instant::now();
        let mut allowed = 0;
        for i in 0..8u64 {
            let (w, at) = if i % 2 == 0 {
                (&w1, t0 + Duration::from_millis(i))
            } else {
                (&w2, t0)
            };
            if w.check(&d, &format!("u{i}@corp.example"), at) == LimitVerdict::Allow {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 4, "the rate holds for the edge, not per worker");
    }

    /// A reload with the same limits keeps a partner's spent budget; new limits start fresh.
    #[test]
    fn reload_carries_state_over_only_when_the_limits_did_not_change() {
        let limits = DiscoveryLimits {
            messages_per_second: 2,
            ..DiscoveryLimits::default()
        };
        let shared = SharedDiscoveryLimiter::new(limits);
        let d = DomainName::parse("found.example").unwrap();
        let t0 = Instant::now();
        let spend = |n: u32| {
            (0..n)
                .filter(|i| shared.check(&d, &format!("u{i}@corp.example"), t0) == LimitVerdict::Allow)
                .count()
        };
        assert_eq!(spend(3), 2, "the budget of 2 is spent");
        assert!(!shared.set_limits(limits), "same limits: no change");
        assert_eq!(spend(1), 0, "the spent budget carried over the reload");
        let higher = DiscoveryLimits {
            messages_per_second: 3,
            ..limits
        };
        assert!(shared.set_limits(higher));
        assert_eq!(shared.limits(), higher);
        assert_eq!(spend(4), 3, "new limits: a fresh budget at the new rate");
    }
}
