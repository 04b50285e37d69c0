//! A sans-IO DNS stub resolver for the edge (issue 5): SRV lookups of `_sipfederationtls._tcp.<D>`
//! and A+AAAA lookups of their targets (docs/architecture.md, Message path). [`DnsClient`] owns no
//! socket, reads no clock and draws no randomness of its own: the shell feeds it datagrams, TCP
//! responses and the time, and sends what [`DnsClient::poll_transmit`] hands out (from a
//! randomised source port: ids alone are 16 bits). Answers are cached in a [`SharedCache`]
//! (`cache.rs`) shared by all workers; the wire format is `wire.rs` (hickory-proto's codec), the
//! server list comes from `resolv_conf.rs`.
//!
//! Lifecycle of one lookup: [`DnsClient::lookup`] answers from the cache at once (following cached
//! CNAMEs), or waits on one wire query per (name, type) — shared by every lookup that needs it. A
//! query goes to the servers in rounds (server 1, server 2, … then again, `attempts` rounds), a new
//! random id each time; it moves on at its timeout, on SERVFAIL/REFUSED or a refused connection (ICMP
//! port unreachable: nothing listens there; that server is not asked again), or on a TCP failure; a
//! truncated UDP answer is asked again over TCP of the same server.
//! A matching answer is cached and either ends the query or, when it stops at a CNAME, starts a
//! query for the alias (bounded depth). A lookup is answered through [`DnsClient::poll_answer`] once
//! all its parts (SRV; or A and AAAA) are done.

pub mod cache;
mod engine;
pub mod resolv_conf;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use federation_policy::SrvRecord;

pub use cache::{Cache, Cached, RrType, SharedCache};

use engine::{cached, combine, FromCache, Lookup, Part, Pending, Waiter, XorShift};
pub use resolv_conf::nameservers;

/// How long a server has to answer one attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per server.
pub const DEFAULT_ATTEMPTS: u32 = 2;
/// CNAMEs followed for one lookup, in answers and across queries.
pub const DEFAULT_MAX_CNAME_DEPTH: usize = 8;
/// Servers asked, in the configured order; later ones are left out. Each is one UDP socket per
/// worker in the shell (connected, so that an ICMP port unreachable comes back as a refusal), and
/// a lookup that went through this many servers in two rounds has long outlived a SIP transaction.
pub const MAX_SERVERS: usize = 8;
/// Positive TTLs are capped at one day.
pub const MAX_TTL: u32 = 86_400;

const NO_SERVERS: &str = "no DNS servers configured";

/// What to look up. Names are absolute (no search list); a trailing dot is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Question {
    /// SRV records of the full name, e.g. `_sipfederationtls._tcp.partner.example`.
    Srv(String),
    /// A and AAAA records of a host (an IP literal is answered as itself).
    Host(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Sorted by priority; weights kept for the caller's RFC 2782 selection.
    Srv(Vec<SrvRecord>),
    /// IPv4 addresses first, then IPv6. Present if either family had some (the other may have
    /// failed).
    Hosts(Vec<IpAddr>),
    /// NXDOMAIN or NODATA (for SRV: also a lone `.` target, "service not available").
    NoRecord,
    /// Timeout, SERVFAIL, REFUSED, invalid name...: the text says which.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    /// Open a TCP connection to the server, write the bytes, read one length-prefixed response and
    /// give it to [`DnsClient::handle_tcp`] (or report [`DnsClient::tcp_failed`]).
    Tcp,
}

/// One wire query, unique for the client's lifetime; correlates TCP exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub server: SocketAddr,
    pub transport: Transport,
    pub query: QueryId,
    /// One DNS message; for TCP with its 2-octet length prefix.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Asked in order, in rounds (the first [`MAX_SERVERS`]). Empty: every lookup the cache cannot
    /// answer fails.
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
    /// Rounds over the servers (at least one is made).
    pub attempts: u32,
    pub max_cname_depth: usize,
}

impl DnsConfig {
    /// These servers with the default timeout, attempts and CNAME depth.
    pub fn new(servers: Vec<SocketAddr>) -> DnsConfig {
        DnsConfig {
            servers,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            max_cname_depth: DEFAULT_MAX_CNAME_DEPTH,
        }
    }
}

/// The resolver of one worker. See the module doc for the lifecycle.
#[derive(Debug)]
pub struct DnsClient {
    config: DnsConfig,
    cache: SharedCache,
    rng: XorShift,
    next_query: u64,
    next_lookup: u64,
    lookups: HashMap<u64, Lookup>,
    queries: HashMap<QueryId, Pending>,
    inflight: HashMap<(String, RrType), QueryId>,
    transmits: VecDeque<Transmit>,
    answers: VecDeque<(u64, Answer)>,
    stats: DnsStats,
}

/// What one client counted: plain integers indexed by record type (`SRV`, `A`, `AAAA`), owned by the
/// worker that owns the client and published with its other counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsStats {
    /// Wire queries sent (retries and TCP fallbacks included).
    pub queries: [u64; 3],
    /// Lookup parts answered from the cache.
    pub cache_hits: [u64; 3],
    /// Wire queries that ended without a usable answer, by kind: `timeout`, `servfail`, `refused`
    /// (the rcode REFUSED), `malformed`, `io_error` (a socket error, e.g. a connection refused: no
    /// server on that port), `other` (see [`DnsStats::FAILURE_KINDS`]).
    pub failures: [[u64; 6]; 3],
    /// Time from a wire query's first transmission to its end.
    pub latency: [crate::proxy::stats::Histogram; 3],
}

impl Default for DnsStats {
    fn default() -> Self {
        DnsStats {
            queries: [0; 3],
            cache_hits: [0; 3],
            failures: [[0; 6]; 3],
            latency: std::array::from_fn(|_| crate::proxy::stats::Histogram::default()),
        }
    }
}

impl DnsStats {
    pub const TYPES: [&'static str; 3] = ["SRV", "A", "AAAA"];
    pub const FAILURE_KINDS: [&'static str; 6] =
        ["timeout", "servfail", "refused", "malformed", "io_error", "other"];

    /// The index of a record type in the arrays (a CNAME counts with the type it was chasing: `None`).
    pub(crate) fn slot(rtype: RrType) -> Option<usize> {
        match rtype {
            RrType::Srv => Some(0),
            RrType::A => Some(1),
            RrType::Aaaa => Some(2),
            RrType::Cname => None,
        }
    }

    /// The kind of a failure, from the reason the engine wrote.
    pub(crate) fn failure_kind(reason: &str) -> usize {
        let r = reason.to_ascii_lowercase();
        if r.contains("timed out") || r.contains("timeout") {
            0
        } else if r.contains("servfail") || r.contains("server failure") {
            1
        } else if r.contains("connection refused") {
            // ICMP port unreachable (see `DnsClient::udp_refused`), not the rcode REFUSED.
            4
        } else if r.contains("refused") {
            2
        } else if r.contains("malformed") || r.contains("cannot parse") || r.contains("decode") {
            3
        } else if r.contains("os error") || r.contains("i/o") || r.contains("connect") {
            4
        } else {
            5
        }
    }

    pub fn merge(&mut self, o: &DnsStats) {
        for i in 0..3 {
            if let (Some(a), Some(b)) = (self.queries.get_mut(i), o.queries.get(i)) {
                *a += b;
            }
            if let (Some(a), Some(b)) = (self.cache_hits.get_mut(i), o.cache_hits.get(i)) {
                *a += b;
            }
            if let (Some(a), Some(b)) = (self.failures.get_mut(i), o.failures.get(i)) {
                for (x, y) in a.iter_mut().zip(b.iter()) {
                    *x += y;
                }
            }
            if let (Some(a), Some(b)) = (self.latency.get_mut(i), o.latency.get(i)) {
                a.merge(b);
            }
        }
    }
}

impl DnsClient {
    /// `seed` drives the query ids; give each client a different, unpredictable one.
    pub fn new(mut config: DnsConfig, cache: SharedCache, seed: u64) -> DnsClient {
        config.servers.truncate(MAX_SERVERS);
        DnsClient {
            config,
            cache,
            rng: XorShift::new(seed),
            next_query: 0,
            next_lookup: 0,
            lookups: HashMap::new(),
            queries: HashMap::new(),
            inflight: HashMap::new(),
            transmits: VecDeque::new(),
            answers: VecDeque::new(),
            stats: DnsStats::default(),
        }
    }

    /// The servers asked, in order (the configured ones, at most [`MAX_SERVERS`]).
    pub fn servers(&self) -> &[SocketAddr] {
        &self.config.servers
    }

    /// What this client counted so far.
    pub fn stats(&self) -> &DnsStats {
        &self.stats
    }

    /// `Some`: answered now (cache, IP literal, invalid name, no servers). `None`: `token` is
    /// answered through [`poll_answer`](Self::poll_answer), exactly once. There is no cancel: a
    /// caller that lost interest drops the answer.
    pub fn lookup(&mut self, question: Question, token: u64, now: Instant) -> Option<Answer> {
        let (name, rtypes): (&str, &[RrType]) = match &question {
            Question::Srv(name) => (name, &[RrType::Srv]),
            Question::Host(name) => (name, &[RrType::A, RrType::Aaaa]),
        };
        if let Question::Host(host) = &question {
            if let Ok(ip) = host.trim().parse::<IpAddr>() {
                return Some(Answer::Hosts(vec![ip]));
            }
        }
        let name = match wire::canonical_input(name) {
            Ok(name) => name,
            Err(reason) => return Some(Answer::Failed(reason)),
        };
        let key = self.next_lookup;
        let max = self.config.max_cname_depth;
        let mut parts = Vec::new();
        let mut misses = Vec::new();
        {
            let cache = self.cache.read();
            for (idx, &rtype) in rtypes.iter().enumerate() {
                match cached(&cache, name.clone(), rtype, 0, max, now) {
                    FromCache::Hit(answer) => {
                        if let Some(n) = DnsStats::slot(rtype).and_then(|i| self.stats.cache_hits.get_mut(i))
                        {
                            *n += 1;
                        }
                        parts.push(Part::done(rtype, answer))
                    }
                    FromCache::Miss { name, depth } => {
                        parts.push(Part {
                            rtype,
                            depth,
                            done: None,
                        });
                        misses.push((
                            Waiter {
                                lookup: key,
                                part: idx,
                            },
                            name,
                            rtype,
                        ));
                    }
                }
            }
        }
        if misses.is_empty() {
            return Some(combine(parts));
        }
        if self.config.servers.is_empty() {
            for part in parts.iter_mut().filter(|p| p.done.is_none()) {
                part.done = Some(Answer::Failed(NO_SERVERS.to_owned()));
            }
            return Some(combine(parts));
        }
        self.next_lookup += 1;
        self.lookups.insert(key, Lookup { token, parts });
        for (waiter, name, rtype) in misses {
            self.query(name, rtype, waiter, now);
        }
        None
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// A datagram from `from`. Ignored unless it answers a query in flight over UDP to that server
    /// (an IPv4-mapped IPv6 source, as a dual-stack socket reports it, counts as the IPv4 server)
    /// with its id and question.
    pub fn handle_udp(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        let Some(message) = wire::decode(datagram) else {
            return;
        };
        let query = self.queries.iter().find_map(|(&id, p)| {
            (p.transport == Transport::Udp
                && same_endpoint(p.server, from)
                && wire::answers(&message, p.dns_id, &p.name, p.rtype))
            .then_some(id)
        });
        if let Some(query) = query {
            self.on_response(query, &message, now);
        }
    }

    /// The response read from the TCP connection opened for `query` (length prefix removed).
    pub fn handle_tcp(&mut self, query: QueryId, response: &[u8], now: Instant) {
        let Some(pending) = self.queries.get(&query) else {
            return;
        };
        if pending.transport != Transport::Tcp {
            return;
        }
        let Some(message) = wire::decode(response) else {
            return;
        };
        if wire::answers(&message, pending.dns_id, &pending.name, pending.rtype) {
            self.on_response(query, &message, now);
        }
    }

    /// The TCP exchange for `query` failed (connect, reset, closed before a response): next server.
    pub fn tcp_failed(&mut self, query: QueryId, now: Instant) {
        let Some(mut pending) = self.queries.remove(&query) else {
            return;
        };
        if pending.transport != Transport::Tcp {
            self.queries.insert(query, pending);
            return;
        }
        pending.last_error = format!("TCP to {} failed", pending.server);
        self.next_attempt(query, pending, now);
    }

    /// `server` refused a UDP datagram (ICMP port unreachable: nothing listens there; a connected UDP
    /// socket reports it as `ECONNREFUSED` on its next receive or send). Every query in flight over
    /// UDP to it moves on to the next server at once instead of waiting for its timeout, and does
    /// not ask that server again; the query's failure, if it is the last, says so.
    pub fn udp_refused(&mut self, server: SocketAddr, now: Instant) {
        let mut refused: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, p)| p.transport == Transport::Udp && same_endpoint(p.server, server))
            .map(|(&id, _)| id)
            .collect();
        refused.sort();
        for query in refused {
            if let Some(mut pending) = self.queries.remove(&query) {
                pending.last_error = format!(
                    "connection refused by {}: no DNS server on that port",
                    pending.server
                );
                pending.excluded.push(pending.server);
                self.next_attempt(query, pending, now);
            }
        }
    }

    /// The earliest deadline of a query in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queries.values().map(|p| p.deadline).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        expired.sort();
        for query in expired {
            if let Some(mut pending) = self.queries.remove(&query) {
                pending.last_error = "timeout".to_owned();
                self.next_attempt(query, pending, now);
            }
        }
    }

    /// A finished lookup: its token and answer.
    pub fn poll_answer(&mut self) -> Option<(u64, Answer)> {
        self.answers.pop_front()
    }

    pub fn cache(&self) -> &SharedCache {
        &self.cache
    }

    /// Wire queries in flight.
    pub fn queries_in_flight(&self) -> usize {
        self.queries.len()
    }
}

/// The same address and port, with IPv4-mapped IPv6 addresses taken as the IPv4 address.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}
