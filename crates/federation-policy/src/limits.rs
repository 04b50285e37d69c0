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
}

#[derive(Debug)]
struct PartnerState {
    /// Tokens in thousandths, to refill at sub-second precision without floats.
    milli_tokens: u64,
    last_refill_ms: u64,
    window_start_ms: u64,
    contacts: HashSet<String>,
    last_seen_ms: u64,
}

/// Per-worker limiter state for discovered partners.
#[derive(Debug)]
pub struct DiscoveryLimiter {
    limits: DiscoveryLimits,
    max_partners: usize,
    partners: HashMap<DomainName, PartnerState>,
}

impl DiscoveryLimiter {
    /// `max_partners` bounds memory: beyond it the least recently seen partner is forgotten.
    pub fn new(limits: DiscoveryLimits, max_partners: usize) -> Self {
        DiscoveryLimiter {
            limits,
            max_partners: max_partners.max(1),
            partners: HashMap::new(),
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
    pub fn check(&mut self, partner: &DomainName, internal_contact: &str, now_ms: u64) -> LimitVerdict {
        let capacity = u64::from(self.limits.messages_per_second.max(1)) * 1000;
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
        let s = self
            .partners
            .entry(partner.clone())
            .or_insert_with(|| PartnerState {
                milli_tokens: capacity,
                last_refill_ms: now_ms,
                window_start_ms: now_ms,
                contacts: HashSet::new(),
                last_seen_ms: now_ms,
            });
        s.last_seen_ms = now_ms;
        let elapsed = now_ms.saturating_sub(s.last_refill_ms);
        let refill = elapsed.saturating_mul(u64::from(self.limits.messages_per_second));
        s.milli_tokens = s.milli_tokens.saturating_add(refill).min(capacity);
        s.last_refill_ms = now_ms;
        if now_ms.saturating_sub(s.window_start_ms) >= window_ms {
            s.window_start_ms = now_ms;
            s.contacts.clear();
        }
        if s.milli_tokens < 1000 {
            return LimitVerdict::Throttle {
                retry_after_secs: 1,
                rate: true,
            };
        }
        let contact = internal_contact.to_ascii_lowercase();
        if !s.contacts.contains(&contact) {
            if s.contacts.len() >= self.limits.distinct_contacts as usize {
                let left_ms = window_ms.saturating_sub(now_ms.saturating_sub(s.window_start_ms));
                let secs = u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX).max(1);
                return LimitVerdict::Throttle {
                    retry_after_secs: secs,
                    rate: false,
                };
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
