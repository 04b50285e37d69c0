//! The outbound side of one worker: which connections go to which [`NextHop`] ([`Pool`]), which of
//! them a message takes or whether a new one is opened ([`choose`], pure), and how a hop's host
//! becomes addresses ([`Resolve`]: IP literal, then the static hosts table; the DNS client of issue 5
//! plugs in behind the same trait, as do SRV lookups). The connections themselves live in the
//! worker's slab (`worker.rs`); their dial, queue-while-connecting and certificate check in `conn.rs`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use federation_policy::{DomainName, Fqdn, NameError};

use crate::proxy::io::{DeliveryFailure, NextHop, SrvResult};

/// A link with more than this queued counts as busy: the next message to its hop opens another
/// connection if the per-hop limit allows.
pub const BUSY_BYTES: usize = 64 * 1024;

/// Name resolution for the pool. Synchronous for now (static data only); the DNS client turns these
/// into lookups answered later through the same `Input`s.
pub trait Resolve: fmt::Debug + Send {
    /// Addresses of `host` (A/AAAA), each with `port`. `Err` is the human reason.
    fn lookup_host(&mut self, host: &DomainName, port: u16) -> Result<Vec<SocketAddr>, String>;
    /// `_sipfederationtls._tcp.<domain>`, as given in `Effect::LookupSrv`.
    fn lookup_srv(&mut self, name: &str) -> SrvResult;
}

/// The static hosts table (`[dns] hosts`): checked before DNS, which is not wired yet.
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
}

impl Resolve for StaticHosts {
    fn lookup_host(&mut self, host: &DomainName, port: u16) -> Result<Vec<SocketAddr>, String> {
        match self.table.get(host) {
            Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => Err("no static host entry and DNS is not wired yet".to_owned()),
        }
    }

    fn lookup_srv(&mut self, _name: &str) -> SrvResult {
        SrvResult::Failed("DNS SRV lookups arrive with the DNS client".to_owned())
    }
}

/// Addresses for a hop: an IP literal as is, else whatever `resolver` says.
pub fn resolve_hop(resolver: &mut dyn Resolve, fqdn: &Fqdn) -> Result<Vec<SocketAddr>, DeliveryFailure> {
    if let Ok(ip) = fqdn.host().as_str().parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, fqdn.port())]);
    }
    match resolver.lookup_host(fqdn.host(), fqdn.port()) {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(DeliveryFailure::Resolve(format!(
            "{} has no address",
            fqdn.host()
        ))),
        Err(reason) => Err(DeliveryFailure::Resolve(reason)),
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
    fn resolution_order() {
        let mut hosts = StaticHosts::new(&[
            ("Edge.Partner.Example.".to_owned(), "127.0.0.1".parse().unwrap()),
            ("edge.partner.example".to_owned(), "::1".parse().unwrap()),
        ])
        .unwrap();
        let fqdn = Fqdn::parse("edge.partner.example:5062").unwrap();
        assert_eq!(
            resolve_hop(&mut hosts, &fqdn).unwrap(),
            vec!["127.0.0.1:5062".parse().unwrap(), "[::1]:5062".parse().unwrap()]
        );
        let literal = Fqdn::parse("127.0.0.2").unwrap();
        assert_eq!(
            resolve_hop(&mut hosts, &literal).unwrap(),
            vec!["127.0.0.2:5061".parse().unwrap()]
        );
        assert_eq!(
            resolve_hop(&mut hosts, &Fqdn::parse("unknown.example").unwrap()),
            Err(DeliveryFailure::Resolve(
                "no static host entry and DNS is not wired yet".to_owned()
            ))
        );
        assert!(matches!(
            hosts.lookup_srv("_sipfederationtls._tcp.x"),
            SrvResult::Failed(_)
        ));
        assert!(StaticHosts::new(&[("*.x".to_owned(), "127.0.0.1".parse().unwrap())]).is_err());
    }
}
