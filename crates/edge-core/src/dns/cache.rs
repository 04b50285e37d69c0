//! The DNS cache shared by every worker's [`DnsClient`](super::DnsClient): positive RRsets (SRV
//! records, addresses, CNAME aliases) and negative entries (NXDOMAIN/NODATA, RFC 2308), each with the
//! instant it expires. Keyed by (lower-cased name without the trailing dot, [`RrType`]). Bounded: when
//! full, the entry that expires soonest makes room. [`SharedCache`] wraps it in an `Arc<RwLock>` so
//! lookups (the common case) take the read lock and only answers from the wire take the write lock.
//! The client that fills it is in `mod.rs`, the wire format in `wire.rs`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use federation_policy::SrvRecord;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Entries a cache holds unless told otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The record types the edge asks for (and the aliases it follows on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RrType {
    Srv,
    A,
    Aaaa,
    Cname,
}

impl RrType {
    pub fn as_str(self) -> &'static str {
        match self {
            RrType::Srv => "SRV",
            RrType::A => "A",
            RrType::Aaaa => "AAAA",
            RrType::Cname => "CNAME",
        }
    }
}

/// What the cache knows about one (name, type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// SRV records, sorted by priority (`.`-targets removed: an empty set means "not available").
    Srv(Vec<SrvRecord>),
    /// A or AAAA addresses.
    Addrs(Vec<IpAddr>),
    /// The name is an alias (CNAME) for this canonical name.
    Alias(String),
    /// NXDOMAIN or NODATA.
    Negative,
}

/// The cache proper. Use it through [`SharedCache`]; it is public so a lock holder can use it.
#[derive(Debug)]
pub struct Cache {
    names: HashMap<String, Slots>,
    /// Every entry by expiry, soonest first: the eviction order.
    by_expiry: BTreeSet<(Instant, RrType, String)>,
    entries: usize,
    max_entries: usize,
}

impl Cache {
    pub fn new(max_entries: usize) -> Cache {
        Cache {
            names: HashMap::new(),
            by_expiry: BTreeSet::new(),
            entries: 0,
            max_entries,
        }
    }

    /// The unexpired entry for (`name`, `rtype`). Names compare case-insensitively, trailing dot or not.
    pub fn lookup(&self, name: &str, rtype: RrType, now: Instant) -> Option<&Cached> {
        let entry = self.names.get(key_name(name).as_ref())?.slot(rtype).as_ref()?;
        (entry.expires > now).then_some(&entry.value)
    }

    /// Stores (or replaces) the entry for (`name`, `rtype`), valid until `expires`. When the cache is
    /// full, the entry expiring soonest is dropped first (an expired one, if there is any).
    pub fn insert(&mut self, name: &str, rtype: RrType, value: Cached, expires: Instant) {
        if self.max_entries == 0 {
            return;
        }
        let name = key_name(name).into_owned();
        let exists = self
            .names
            .get(&name)
            .is_some_and(|slots| slots.slot(rtype).is_some());
        if !exists && self.entries >= self.max_entries {
            self.evict_one();
        }
        let slots = self.names.entry(name.clone()).or_default();
        let old = slots.slot_mut(rtype).replace(Entry { value, expires });
        match old {
            Some(old) => {
                self.by_expiry.remove(&(old.expires, rtype, name.clone()));
            }
            None => self.entries += 1,
        }
        self.by_expiry.insert((expires, rtype, name));
    }

    /// Drops every entry that expired at `now`; returns how many.
    pub fn remove_expired(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some((expires, _, _)) = self.by_expiry.first() {
            if *expires > now {
                break;
            }
            self.evict_one();
            removed += 1;
        }
        removed
    }

    /// Entries held, expired ones included until they are evicted or replaced.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub fn clear(&mut self) {
        self.names.clear();
        self.by_expiry.clear();
        self.entries = 0;
    }

    fn evict_one(&mut self) {
        let Some((_, rtype, name)) = self.by_expiry.pop_first() else {
            return;
        };
        if let Some(slots) = self.names.get_mut(&name) {
            if slots.slot_mut(rtype).take().is_some() {
                self.entries = self.entries.saturating_sub(1);
            }
            if slots.is_empty() {
                self.names.remove(&name);
            }
        }
    }
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::new(DEFAULT_MAX_ENTRIES)
    }
}

/// One [`Cache`] for all workers. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct SharedCache(Arc<RwLock<Cache>>);

impl SharedCache {
    pub fn new(max_entries: usize) -> SharedCache {
        SharedCache(Arc::new(RwLock::new(Cache::new(max_entries))))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.0.read()
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.0.write()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub fn clear(&self) {
        self.write().clear();
    }
}

#[derive(Debug)]
struct Entry {
    value: Cached,
    expires: Instant,
}

/// The entries of one name, one slot per type.
#[derive(Debug, Default)]
struct Slots {
    srv: Option<Entry>,
    a: Option<Entry>,
    aaaa: Option<Entry>,
    cname: Option<Entry>,
}

impl Slots {
    fn slot(&self, rtype: RrType) -> &Option<Entry> {
        match rtype {
            RrType::Srv => &self.srv,
            RrType::A => &self.a,
            RrType::Aaaa => &self.aaaa,
            RrType::Cname => &self.cname,
        }
    }

    fn slot_mut(&mut self, rtype: RrType) -> &mut Option<Entry> {
        match rtype {
            RrType::Srv => &mut self.srv,
            RrType::A => &mut self.a,
            RrType::Aaaa => &mut self.aaaa,
            RrType::Cname => &mut self.cname,
        }
    }

    fn is_empty(&self) -> bool {
        self.srv.is_none() && self.a.is_none() && self.aaaa.is_none() && self.cname.is_none()
    }
}

/// Lower case, no trailing dot; borrowed when the name already is.
fn key_name(name: &str) -> Cow<'_, str> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addrs(last: u8) -> Cached {
        Cached::Addrs(vec![IpAddr::from([192, 0, 2, last])])
    }

    #[test]
    fn lookup_is_case_insensitive_and_honours_expiry() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert("Host.Example.", RrType::A, addrs(1), t0 + Duration::from_secs(5));
        assert_eq!(cache.lookup("host.example", RrType::A, t0), Some(&addrs(1)));
        assert_eq!(cache.lookup("HOST.EXAMPLE.", RrType::A, t0), Some(&addrs(1)));
        assert_eq!(cache.lookup("host.example", RrType::Aaaa, t0), None);
        assert_eq!(
            cache.lookup("host.example", RrType::A, t0 + Duration::from_secs(5)),
            None
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn replacing_an_entry_keeps_the_count_and_the_new_expiry() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert("h", RrType::A, addrs(1), t0 + Duration::from_secs(1));
        cache.insert("h", RrType::A, addrs(2), t0 + Duration::from_secs(9));
        cache.insert("h", RrType::Aaaa, Cached::Negative, t0 + Duration::from_secs(9));
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.lookup("h", RrType::A, t0 + Duration::from_secs(5)),
            Some(&addrs(2))
        );
        assert_eq!(cache.remove_expired(t0 + Duration::from_secs(5)), 0);
        assert_eq!(cache.remove_expired(t0 + Duration::from_secs(9)), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_the_entry_expiring_soonest() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        cache.insert("a", RrType::A, addrs(1), t0 + Duration::from_secs(30));
        cache.insert("b", RrType::A, addrs(2), t0 + Duration::from_secs(10));
        cache.insert("c", RrType::A, addrs(3), t0 + Duration::from_secs(20));
        cache.insert("d", RrType::A, addrs(4), t0 + Duration::from_secs(40));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.lookup("b", RrType::A, t0), None, "b expired soonest");
        for name in ["a", "c", "d"] {
            assert!(cache.lookup(name, RrType::A, t0).is_some(), "{name} kept");
        }
        // Replacing an existing entry when full evicts nothing.
        cache.insert("a", RrType::A, addrs(9), t0 + Duration::from_secs(5));
        assert_eq!(cache.len(), 3);
        assert!(cache.lookup("c", RrType::A, t0).is_some());
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.lookup("a", RrType::A, t0), None);
    }

    #[test]
    fn a_zero_sized_cache_holds_nothing() {
        let t0 = Instant::now();
        let shared = SharedCache::new(0);
        shared
            .write()
            .insert("a", RrType::A, addrs(1), t0 + Duration::from_secs(30));
        assert!(shared.is_empty());
    }
}
