//! Discovered-partner limits (Lync's defaults: 20 messages per second, 1000 distinct internal contacts
//! per partner per 60 minutes), as a pure state machine: time is passed in as milliseconds from any
//! fixed origin, and memory is bounded (partners tracked and contacts per window are capped).
//!
//! Lifecycle per partner: first message creates a full token bucket and an empty contact window; each
//! message takes a token (refilled at the rate) and records the internal contact; a window older than
//! its length restarts empty. Over either limit → `Throttle` with the seconds to wait.

use std::collections::{HashMap, HashSet};

use crate::names::DomainName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryLimits {
    pub messages_per_second: u32,
    pub distinct_contacts: u32,
    pub contact_window_secs: u64,
}

impl Default for DiscoveryLimits {
    fn default() -> Self {
        DiscoveryLimits {
            messages_per_second: 20,
            distinct_contacts: 1000,
            contact_window_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    Allow,
    /// Over a limit: answer 503 with `Retry-After: retry_after_secs`.
    Throttle {
        retry_after_secs: u32,
        rate: bool,
    },
    /// The edge is one replica of a pool whose shared state is unreachable, and the pool is set to
    /// refuse discovered partners then (`[pool] redis_down = "refuse"`): 503 with Retry-After.
    PoolUnavailable {
        retry_after_secs: u32,
    },
}

/// New contacts kept per partner between two pool syncs at most (more than any limit admits in
/// 200 ms at the default 20 messages a second).
const MAX_UNSYNCED: usize = 4096;

/// A contact as the pool stores it: FNV-1a 64 of the lower-cased `user@host` — the same on every
/// replica and every version, and no user's address in Redis.
pub fn contact_hash(contact: &str) -> u64 {
    contact.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A replica's share of a partner's limit in millionths under `pool`, the pool's word for that
/// partner (`partner`) taking the place of the default; `None` while the pool refuses.
fn share_in(pool: PoolMode, partner: Option<u32>) -> Option<u64> {
    match pool {
        PoolMode::Alone => Some(u64::from(WHOLE_SHARE)),
        PoolMode::Shared { default_share } => Some(u64::from(partner.unwrap_or(default_share))),
        PoolMode::Refuse => None,
    }
}

/// One share of a limit, in millionths: a replica of a pool admits `share × limit`.
pub const WHOLE_SHARE: u32 = 1_000_000;

/// How this replica's limiter takes part in a pool ([`DiscoveryLimiter::set_pool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Standalone (no `[pool]`): the whole limit.
    Alone,
    /// In a pool: `default_share` for a partner the pool has told nothing about yet (limit ÷
    /// replicas seen), or the share [`DiscoveryLimiter::set_shares`] gave it.
    Shared { default_share: u32 },
    /// In a pool whose shared state is unreachable and set to refuse discovered partners.
    Refuse,
}

#[derive(Debug)]
struct PartnerState {
    /// Tokens in thousandths, to refill at sub-second precision without floats.
    milli_tokens: u64,
    last_refill_ms: u64,
    window_start_ms: u64,
    contacts: HashSet<String>,
    last_seen_ms: u64,
    /// Messages asked for since the last [`DiscoveryLimiter::take_demand`] (admitted or not): what
    /// the pool divides the limit by.
    demand: u64,
    /// This replica's share of the limit as the pool last computed it (`None`: the default).
    share: Option<u32>,
    /// New contacts of this window not yet handed to the pool ([`DiscoveryLimiter::take_new_contacts`]).
    unsynced: Vec<u64>,
    /// The pool's distinct contacts of this partner at the last sync (ours included).
    pool_contacts: usize,
}

/// Per-worker limiter state for discovered partners.
#[derive(Debug)]
pub struct DiscoveryLimiter {
    limits: DiscoveryLimits,
    max_partners: usize,
    partners: HashMap<DomainName, PartnerState>,
    pool: PoolMode,
}

impl DiscoveryLimiter {
    /// `max_partners` bounds memory: beyond it the least recently seen partner is forgotten.
    pub fn new(limits: DiscoveryLimits, max_partners: usize) -> Self {
        DiscoveryLimiter {
            limits,
            max_partners: max_partners.max(1),
            partners: HashMap::new(),
            pool: PoolMode::Alone,
        }
    }

    /// How this replica takes part in a pool (kept across the partners' states).
    pub fn set_pool(&mut self, mode: PoolMode) {
        self.pool = mode;
    }

    pub fn pool(&self) -> PoolMode {
        self.pool
    }

    /// Each partner's messages asked for since the last call (partners with none left out), the
    /// counts then reset: what this replica tells the pool.
    pub fn take_demand(&mut self) -> Vec<(DomainName, u64)> {
        self.partners
            .iter_mut()
            .filter(|(_, s)| s.demand > 0)
            .map(|(d, s)| (d.clone(), std::mem::take(&mut s.demand)))
            .collect()
    }

    /// Each partner's contacts new in its window since the last call (as [`contact_hash`]es, not
    /// the addresses), with the time left in the window: what this replica adds to the pool's
    /// distinct-contact sets. Only kept in a pool.
    pub fn take_new_contacts(&mut self, now_ms: u64) -> Vec<(DomainName, Vec<u64>, u64)> {
        let window_ms = self.limits.contact_window_secs.saturating_mul(1000);
        self.partners
            .iter_mut()
            .filter(|(_, s)| !s.unsynced.is_empty())
            .map(|(d, s)| {
                let left = window_ms.saturating_sub(now_ms.saturating_sub(s.window_start_ms));
                (d.clone(), std::mem::take(&mut s.unsynced), left.max(1))
            })
            .collect()
    }

    /// The pool's distinct-contact count of each listed partner (this replica's included), as the
    /// pool's sync read it.
    pub fn set_pool_contacts<'a>(&mut self, counts: impl IntoIterator<Item = (&'a DomainName, usize)>) {
        for (d, n) in counts {
            if let Some(s) = self.partners.get_mut(d) {
                s.pool_contacts = n;
            }
        }
    }

    /// Every partner back to the default share (the pool's division is no longer known).
    pub fn reset_shares(&mut self) {
        for s in self.partners.values_mut() {
            s.share = None;
        }
    }

    /// The pool's division of the limits: this replica's share of each listed partner's limit.
    /// A partner not tracked here is ignored (its first message starts at the default share).
    pub fn set_shares<'a>(&mut self, shares: impl IntoIterator<Item = (&'a DomainName, u32)>) {
        for (d, share) in shares {
            if let Some(s) = self.partners.get_mut(d) {
                s.share = Some(share.min(WHOLE_SHARE));
            }
        }
    }

    pub fn tracked_partners(&self) -> usize {
        self.partners.len()
    }

    /// The `n` discovered partners seen most recently, newest first: (domain, distinct internal
    /// contacts in the current window, when last seen in the limiter's milliseconds). O(partners)
    /// to select the `n`, then a sort of those; the tracked set is bounded by `max_partners`.
    pub fn recent(&self, n: usize) -> Vec<(DomainName, usize, u64)> {
        let newest_first =
            |a: &(&DomainName, u64), b: &(&DomainName, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
        // Only names and times are ordered (no clone per partner); the `n` newest are selected in
        // linear time and only they are sorted and copied out.
        let mut all: Vec<(&DomainName, u64)> =
            self.partners.iter().map(|(d, p)| (d, p.last_seen_ms)).collect();
        if n < all.len() {
            all.select_nth_unstable_by(n, newest_first);
            all.truncate(n);
        }
        all.sort_unstable_by(newest_first);
        all.into_iter()
            .filter_map(|(d, _)| {
                let p = self.partners.get(d)?;
                Some((d.clone(), p.contacts.len(), p.last_seen_ms))
            })
            .collect()
    }

    /// One message between `internal_contact` (our user) and the discovered `partner`, at `now_ms`.
    ///
    /// In a pool the bucket refills at this replica's share of the rate and holds one second of it
    /// (at least one message, so a replica whose share is still small can admit its first).
    pub fn check(&mut self, partner: &DomainName, internal_contact: &str, now_ms: u64) -> LimitVerdict {
        let window_ms = self.limits.contact_window_secs.saturating_mul(1000);
        if !self.partners.contains_key(partner) && self.partners.len() >= self.max_partners {
            let oldest = self
                .partners
                .iter()
                .min_by_key(|(_, s)| s.last_seen_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.partners.remove(&k);
            }
        }
        let pool = self.pool;
        let rate = u64::from(self.limits.messages_per_second.max(1));
        let fresh_share = share_in(pool, None).unwrap_or(0);
        let s = self
            .partners
            .entry(partner.clone())
            .or_insert_with(|| PartnerState {
                milli_tokens: (rate * fresh_share / 1000).max(1000),
                last_refill_ms: now_ms,
                window_start_ms: now_ms,
                contacts: HashSet::new(),
                last_seen_ms: now_ms,
                demand: 0,
                share: None,
                unsynced: Vec::new(),
                pool_contacts: 0,
            });
        s.last_seen_ms = now_ms;
        s.demand = s.demand.saturating_add(1);
        let Some(share) = share_in(pool, s.share) else {
            return LimitVerdict::PoolUnavailable { retry_after_secs: 5 };
        };
        // Tokens in thousandths: `rate × share` messages a second is `rate × share / 10⁶` tokens a
        // millisecond, `rate × share / 10³` thousandths of one.
        let capacity = (rate * share / 1000).max(1000);
        let elapsed = now_ms.saturating_sub(s.last_refill_ms);
        let refill = elapsed.saturating_mul(rate * share) / u64::from(WHOLE_SHARE);
        s.milli_tokens = s.milli_tokens.saturating_add(refill).min(capacity);
        s.last_refill_ms = now_ms;
        if now_ms.saturating_sub(s.window_start_ms) >= window_ms {
            s.window_start_ms = now_ms;
            s.contacts.clear();
            s.unsynced.clear();
            s.pool_contacts = 0;
        }
        if s.milli_tokens < 1000 {
            return LimitVerdict::Throttle {
                retry_after_secs: 1,
                rate: true,
            };
        }
        let contact = internal_contact.to_ascii_lowercase();
        if !s.contacts.contains(&contact) {
            // In a pool: the pool's count at the last sync plus what is new here since.
            let seen = match pool {
                PoolMode::Alone => s.contacts.len(),
                _ => s
                    .contacts
                    .len()
                    .max(s.pool_contacts.saturating_add(s.unsynced.len())),
            };
            if seen >= self.limits.distinct_contacts as usize {
                let left_ms = window_ms.saturating_sub(now_ms.saturating_sub(s.window_start_ms));
                let secs = u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX).max(1);
                return LimitVerdict::Throttle {
                    retry_after_secs: secs,
                    rate: false,
                };
            }
            if pool != PoolMode::Alone && s.unsynced.len() < MAX_UNSYNCED {
                s.unsynced.push(contact_hash(&contact));
            }
            s.contacts.insert(contact);
        }
        s.milli_tokens -= 1000;
        LimitVerdict::Allow
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn the_most_recently_seen_come_first_bounded() {
        let mut l = DiscoveryLimiter::new(DiscoveryLimits::default(), 100);
        for (i, d) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            let d = DomainName::parse(d).unwrap();
            let _ = l.check(&d, "alice@corp.example", i as u64 * 10);
            let _ = l.check(&d, "bob@corp.example", i as u64 * 10);
        }
        let r = l.recent(2);
        let names: Vec<&str> = r.iter().map(|(d, _, _)| d.as_str()).collect();
        assert_eq!(names, ["c.example", "b.example"]);
        assert_eq!((r[0].1, r[0].2), (2, 20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    #[test]
    fn twenty_per_second_then_throttle_then_refill() {
        let mut l = DiscoveryLimiter::new(DiscoveryLimits::default(), 100);
        let p = d("disc.example");
        for i in 0..20 {
            assert_eq!(
                l.check(&p, "alice@corp.example", 1_000),
                LimitVerdict::Allow,
                "message {i}"
            );
        }
        assert_eq!(
            l.check(&p, "alice@corp.example", 1_000),
            LimitVerdict::Throttle {
                retry_after_secs: 1,
                rate: true
            }
        );
        // 50 ms refills one token at 20/s.
        assert_eq!(l.check(&p, "alice@corp.example", 1_050), LimitVerdict::Allow);
        assert!(matches!(
            l.check(&p, "alice@corp.example", 1_050),
            LimitVerdict::Throttle { .. }
        ));
        // Other partners have their own bucket.
        assert_eq!(
            l.check(&d("other.example"), "alice@corp.example", 1_050),
            LimitVerdict::Allow
        );
    }

    #[test]
    fn distinct_contacts_per_window() {
        let limits = DiscoveryLimits {
            messages_per_second: 1_000_000,
            distinct_contacts: 3,
            contact_window_secs: 60,
        };
        let mut l = DiscoveryLimiter::new(limits, 10);
        let p = d("disc.example");
        for c in ["a", "b", "C"] {
            assert_eq!(l.check(&p, c, 0), LimitVerdict::Allow);
        }
        assert_eq!(
            l.check(&p, "c", 10),
            LimitVerdict::Allow,
            "known contact, case-insensitive"
        );
        assert_eq!(
            l.check(&p, "d", 10_000),
            LimitVerdict::Throttle {
                retry_after_secs: 50,
                rate: false
            }
        );
        assert_eq!(l.check(&p, "d", 60_000), LimitVerdict::Allow, "a new window");
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = DiscoveryLimiter::new(DiscoveryLimits::default(), 2);
        for (i, name) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            l.check(&d(name), "x", i as u64);
        }
        assert_eq!(l.tracked_partners(), 2);
    }
}
