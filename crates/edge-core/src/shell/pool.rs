//! The outbound side of one worker: which connections go to which [`NextHop`] ([`Pool`]), which of
//! them a message takes or whether a new one is opened ([`choose`], pure), and the static hosts table
//! (names become addresses in `resolver.rs`: literal, static entry, then DNS). The connections themselves live in the
//! worker's slab (`worker.rs`); their dial, queue-while-connecting and certificate check in `conn.rs`.

use std::collections::HashMap;
use std::net::IpAddr;

use federation_policy::{DomainName, NameError};

use crate::proxy::io::NextHop;

/// A link with more than this queued counts as busy: the next message to its hop opens another
/// connection if the per-hop limit allows.
pub const BUSY_BYTES: usize = 64 * 1024;

/// The static hosts table (`[dns] hosts`): checked before DNS (DMZs often have no internal DNS).
#[derive(Debug, Clone, Default)]
pub struct StaticHosts {
    table: HashMap<DomainName, Vec<IpAddr>>,
}

impl StaticHosts {
    /// Names are normalised like every other domain (case, trailing dot); a name may repeat to give
    /// several addresses, tried in order.
    pub fn new(entries: &[(String, IpAddr)]) -> Result<StaticHosts, NameError> {
        let mut table: HashMap<DomainName, Vec<IpAddr>> = HashMap::new();
        for (name, ip) in entries {
            table.entry(DomainName::parse(name)?).or_default().push(*ip);
        }
        Ok(StaticHosts { table })
    }

    /// The addresses of `host`, in the order configured.
    pub fn get(&self, host: &DomainName) -> Option<&[IpAddr]> {
        self.table.get(host).map(Vec::as_slice)
    }
}

/// The outbound connections of one worker, by hop (slab keys of the worker's connections).
#[derive(Debug, Default)]
pub(crate) struct Pool {
    hops: HashMap<NextHop, Vec<usize>>,
}

impl Pool {
    pub fn links(&self, hop: &NextHop) -> &[usize] {
        self.hops.get(hop).map_or(&[], Vec::as_slice)
    }

    pub fn insert(&mut self, hop: NextHop, key: usize) {
        self.hops.entry(hop).or_default().push(key);
    }

    pub fn remove(&mut self, hop: &NextHop, key: usize) {
        if let Some(keys) = self.hops.get_mut(hop) {
            keys.retain(|&k| k != key);
            if keys.is_empty() {
                self.hops.remove(hop);
            }
        }
    }

    /// Hops with at least one connection.
    #[cfg(test)]
    pub fn hop_count(&self) -> usize {
        self.hops.len()
    }
}

/// What [`choose`] needs to know of one connection to a hop (closing ones are left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkView {
    pub key: usize,
    pub up: bool,
    pub queued: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Send on this connection (queued there if it is still connecting).
    Use(usize),
    /// Open a new connection.
    Open,
    /// No connection and none may be opened.
    Refuse,
}

/// Picks the connection for one message to a hop: the least-loaded established one, unless all are
/// busy and another may be opened; while the only links are still connecting, wait on one rather
/// than dial again (a dead host costs one connect, not one per message); open when there is none.
pub(crate) fn choose(links: &[LinkView], max_per_hop: usize, may_open: bool) -> Choice {
    let room = may_open && links.len() < max_per_hop.max(1);
    let best_up = links.iter().filter(|l| l.up).min_by_key(|l| l.queued);
    if let Some(best) = best_up {
        if best.queued < BUSY_BYTES || !room {
            return Choice::Use(best.key);
        }
        return Choice::Open;
    }
    if let Some(connecting) = links.iter().min_by_key(|l| l.queued) {
        return Choice::Use(connecting.key);
    }
    if room {
        Choice::Open
    } else {
        Choice::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::io::Side;
    use federation_policy::Fqdn;

    fn up(key: usize, queued: usize) -> LinkView {
        LinkView {
            key,
            up: true,
            queued,
        }
    }

    fn connecting(key: usize) -> LinkView {
        LinkView {
            key,
            up: false,
            queued: 0,
        }
    }

    #[test]
    fn choice_rules() {
        assert_eq!(choose(&[], 4, true), Choice::Open);
        assert_eq!(choose(&[], 4, false), Choice::Refuse);
        // Reuse the least loaded established link.
        assert_eq!(choose(&[up(1, 500), up(2, 10)], 4, true), Choice::Use(2));
        // All busy: another link, while the limit allows.
        assert_eq!(choose(&[up(1, BUSY_BYTES)], 4, true), Choice::Open);
        let full = [
            up(1, BUSY_BYTES + 5),
            up(2, BUSY_BYTES),
            up(3, BUSY_BYTES + 1),
            up(4, BUSY_BYTES),
        ];
        assert_eq!(choose(&full, 4, true), Choice::Use(2));
        assert_eq!(choose(&[up(1, BUSY_BYTES)], 4, false), Choice::Use(1));
        // A link still connecting takes the message rather than a second dial.
        assert_eq!(choose(&[connecting(7)], 4, true), Choice::Use(7));
        // An established link beats one still connecting.
        assert_eq!(choose(&[connecting(7), up(8, 100)], 4, true), Choice::Use(8));
        // A limit of 0 still allows one connection.
        assert_eq!(choose(&[], 0, true), Choice::Open);
        assert_eq!(choose(&[up(1, BUSY_BYTES)], 0, true), Choice::Use(1));
    }

    #[test]
    fn pool_bookkeeping() {
        let hop = |s: &str| NextHop {
            fqdn: Fqdn::parse(s).unwrap(),
            side: Side::External,
        };
        let mut pool = Pool::default();
        pool.insert(hop("a.example"), 1);
        pool.insert(hop("a.example"), 3);
        pool.insert(hop("b.example:5062"), 2);
        assert_eq!(pool.links(&hop("a.example")), &[1, 3]);
        assert_eq!(pool.hop_count(), 2);
        // The same host on another port or side is another hop.
        assert!(pool.links(&hop("a.example:5062")).is_empty());
        let internal = NextHop {
            fqdn: Fqdn::parse("a.example").unwrap(),
            side: Side::Internal,
        };
        assert!(pool.links(&internal).is_empty());
        pool.remove(&hop("a.example"), 1);
        assert_eq!(pool.links(&hop("a.example")), &[3]);
        pool.remove(&hop("a.example"), 3);
        pool.remove(&hop("b.example:5062"), 2);
        assert_eq!(pool.hop_count(), 0);
    }

    #[test]
    fn static_hosts() {
        let hosts = StaticHosts::new(&[
            ("Edge.Partner.Example.".to_owned(), "127.0.0.1".parse().unwrap()),
            ("edge.partner.example".to_owned(), "::1".parse().unwrap()),
        ])
        .unwrap();
        let name = DomainName::parse("edge.partner.example").unwrap();
        let want: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(hosts.get(&name), Some(want.as_slice()));
        assert_eq!(hosts.get(&DomainName::parse("unknown.example").unwrap()), None);
        assert!(StaticHosts::new(&[("*.x".to_owned(), "127.0.0.1".parse().unwrap())]).is_err());
    }
}
