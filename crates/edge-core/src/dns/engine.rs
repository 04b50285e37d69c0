//! The inside of [`DnsClient`](super::DnsClient): what happens to one wire query — sent to the
//! servers in rounds, moved on at a timeout, an error rcode, a refused datagram or a TCP failure,
//! switched to TCP when truncated — and how its answer reaches the lookups waiting on it (cached,
//! combined, or followed to the alias). The public calls that drive this are in `mod.rs`; reading a
//! response is `wire.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;

use super::cache::{Cache, Cached, RrType};
use super::{wire, Answer, DnsClient, QueryId, Transmit, Transport, MAX_TTL, NO_SERVERS};

impl DnsClient {
    /// Joins the query in flight for (`name`, `rtype`) or starts one.
    pub(super) fn query(&mut self, name: String, rtype: RrType, waiter: Waiter, now: Instant) {
        let key = (name, rtype);
        if let Some(id) = self.inflight.get(&key) {
            if let Some(pending) = self.queries.get_mut(id) {
                pending.waiters.push(waiter);
                return;
            }
        }
        let Some(&server) = self.config.servers.first() else {
            self.complete(waiter, Answer::Failed(NO_SERVERS.to_owned()));
            return;
        };
        let id = QueryId(self.next_query);
        self.next_query += 1;
        let (name, rtype) = key;
        let mut pending = Pending {
            name,
            rtype,
            step: 0,
            sent: 0,
            server,
            transport: Transport::Udp,
            dns_id: 0,
            deadline: now,
            excluded: Vec::new(),
            last_error: String::new(),
            waiters: vec![waiter],
            started: now,
        };
        match self.send(id, &mut pending, now) {
            Ok(()) => {
                self.inflight.insert((pending.name.clone(), rtype), id);
                self.queries.insert(id, pending);
            }
            Err(reason) => self.complete(waiter, Answer::Failed(reason)),
        }
    }

    /// Queues the query to `pending.server` over `pending.transport` with a fresh id.
    pub(super) fn send(&mut self, id: QueryId, pending: &mut Pending, now: Instant) -> Result<(), String> {
        pending.dns_id = self.rng.next_u16();
        let message = wire::encode_query(pending.dns_id, &pending.name, pending.rtype)?;
        let bytes = match pending.transport {
            Transport::Udp => message,
            Transport::Tcp => {
                let len = u16::try_from(message.len()).map_err(|_| "DNS query too long".to_owned())?;
                let mut framed = Vec::with_capacity(message.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&message);
                framed
            }
        };
        pending.sent += 1;
        if let Some(n) = super::DnsStats::slot(pending.rtype).and_then(|i| self.stats.queries.get_mut(i)) {
            *n += 1;
        }
        pending.deadline = now.checked_add(self.config.timeout).unwrap_or(now);
        self.transmits.push_back(Transmit {
            server: pending.server,
            transport: pending.transport,
            query: id,
            bytes,
        });
        Ok(())
    }

    /// The next server of the rounds that has not refused, or the end of the query.
    pub(super) fn next_attempt(&mut self, id: QueryId, mut pending: Pending, now: Instant) {
        let servers = self.config.servers.len();
        let steps = servers.saturating_mul(self.config.attempts.max(1) as usize);
        while pending.step + 1 < steps {
            pending.step += 1;
            let Some(&server) = self.config.servers.get(pending.step % servers) else {
                break;
            };
            if pending.excluded.contains(&server) {
                continue;
            }
            pending.server = server;
            pending.transport = Transport::Udp;
            match self.send(id, &mut pending, now) {
                Ok(()) => {
                    self.queries.insert(id, pending);
                    return;
                }
                Err(reason) => pending.last_error = reason,
            }
        }
        let attempts = if pending.sent == 1 { "attempt" } else { "attempts" };
        let reason = format!("{} after {} {attempts}", pending.last_error, pending.sent);
        self.finish(pending, Resolution::Done(Answer::Failed(reason)), now);
    }

    pub(super) fn on_response(&mut self, id: QueryId, message: &Message, now: Instant) {
        let Some(mut pending) = self.queries.remove(&id) else {
            return;
        };
        if message.truncated() && pending.transport == Transport::Udp {
            pending.transport = Transport::Tcp;
            match self.send(id, &mut pending, now) {
                Ok(()) => {
                    self.queries.insert(id, pending);
                }
                Err(reason) => {
                    pending.last_error = reason;
                    self.next_attempt(id, pending, now);
                }
            }
            return;
        }
        let depth = self.config.max_cname_depth;
        match wire::analyse(message, &pending.name, pending.rtype, depth) {
            wire::Verdict::ServerError(rcode) => {
                pending.last_error = format!("{rcode} from {}", pending.server);
                pending.excluded.push(pending.server);
                self.next_attempt(id, pending, now);
            }
            wire::Verdict::Answer(analysis) => {
                self.store(&analysis, pending.rtype, now);
                let resolution = match analysis.found {
                    wire::Found::Records { value, .. } => Resolution::Done(to_answer(value)),
                    wire::Found::Negative { .. } => Resolution::Done(Answer::NoRecord),
                    wire::Found::Alias { target, hops } => Resolution::Alias { target, hops },
                    wire::Found::TooDeep => Resolution::Done(Answer::Failed(too_deep(depth))),
                };
                self.finish(pending, resolution, now);
            }
        }
    }

    /// Caches what an answer established: each alias, and the RRset or negative at the chain's end.
    pub(super) fn store(&self, analysis: &wire::Analysis, rtype: RrType, now: Instant) {
        let expiry = |ttl: u32| {
            (ttl > 0)
                .then(|| now.checked_add(Duration::from_secs(u64::from(ttl.min(MAX_TTL)))))
                .flatten()
        };
        let mut cache = self.cache.write();
        for alias in &analysis.aliases {
            if let Some(expires) = expiry(alias.ttl) {
                let value = Cached::Alias(alias.target.clone());
                cache.insert(&alias.owner, RrType::Cname, value, expires);
            }
        }
        match &analysis.found {
            wire::Found::Records { name, value, ttl } => {
                if let Some(expires) = expiry(*ttl) {
                    cache.insert(name, rtype, value.clone(), expires);
                }
            }
            wire::Found::Negative { name, ttl } => {
                if let Some(expires) = expiry(*ttl) {
                    cache.insert(name, rtype, Cached::Negative, expires);
                }
            }
            wire::Found::Alias { .. } | wire::Found::TooDeep => {}
        }
    }

    /// Ends a wire query: every lookup part waiting on it is done, or follows the alias.
    pub(super) fn finish(&mut self, pending: Pending, resolution: Resolution, now: Instant) {
        if let Some(i) = super::DnsStats::slot(pending.rtype) {
            if let Some(h) = self.stats.latency.get_mut(i) {
                h.observe(now.saturating_duration_since(pending.started));
            }
            if let Resolution::Done(Answer::Failed(reason)) = &resolution {
                let kind = super::DnsStats::failure_kind(reason);
                if let Some(n) = self.stats.failures.get_mut(i).and_then(|r| r.get_mut(kind)) {
                    *n += 1;
                }
            }
        }
        self.inflight.remove(&(pending.name, pending.rtype));
        for waiter in pending.waiters {
            match &resolution {
                Resolution::Done(answer) => self.complete(waiter, answer.clone()),
                Resolution::Alias { target, hops } => self.follow(waiter, target, *hops, now),
            }
        }
    }

    pub(super) fn follow(&mut self, waiter: Waiter, target: &str, hops: usize, now: Instant) {
        let max = self.config.max_cname_depth;
        let Some(part) = self
            .lookups
            .get_mut(&waiter.lookup)
            .and_then(|l| l.parts.get_mut(waiter.part))
        else {
            return;
        };
        part.depth = part.depth.saturating_add(hops);
        let (rtype, depth) = (part.rtype, part.depth);
        if depth > max {
            self.complete(waiter, Answer::Failed(too_deep(max)));
            return;
        }
        let from_cache = cached(&self.cache.read(), target.to_owned(), rtype, depth, max, now);
        match from_cache {
            FromCache::Hit(answer) => self.complete(waiter, answer),
            FromCache::Miss { name, depth } => {
                if let Some(part) = self
                    .lookups
                    .get_mut(&waiter.lookup)
                    .and_then(|l| l.parts.get_mut(waiter.part))
                {
                    part.depth = depth;
                }
                self.query(name, rtype, waiter, now);
            }
        }
    }

    /// One part of a lookup is done; the lookup is answered when all are.
    pub(super) fn complete(&mut self, waiter: Waiter, answer: Answer) {
        let Some(lookup) = self.lookups.get_mut(&waiter.lookup) else {
            return;
        };
        if let Some(part) = lookup.parts.get_mut(waiter.part) {
            part.done = Some(answer);
        }
        if lookup.parts.iter().all(|p| p.done.is_some()) {
            if let Some(lookup) = self.lookups.remove(&waiter.lookup) {
                self.answers.push_back((lookup.token, combine(lookup.parts)));
            }
        }
    }
}

/// One question of a lookup: SRV, or the A or AAAA half of a host.
#[derive(Debug)]
pub(super) struct Part {
    pub(super) rtype: RrType,
    /// CNAMEs followed so far.
    pub(super) depth: usize,
    pub(super) done: Option<Answer>,
}

impl Part {
    pub(super) fn done(rtype: RrType, answer: Answer) -> Part {
        Part {
            rtype,
            depth: 0,
            done: Some(answer),
        }
    }
}

#[derive(Debug)]
pub(super) struct Lookup {
    pub(super) token: u64,
    pub(super) parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Waiter {
    pub(super) lookup: u64,
    pub(super) part: usize,
}

/// One (name, type) on the wire, and the lookup parts waiting for it.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) name: String,
    pub(super) rtype: RrType,
    /// Position in the rounds over the servers.
    pub(super) step: usize,
    /// Transmissions so far (UDP and TCP).
    pub(super) sent: u32,
    pub(super) server: SocketAddr,
    pub(super) transport: Transport,
    pub(super) dns_id: u16,
    pub(super) deadline: Instant,
    /// Servers that answered SERVFAIL/REFUSED/... or refused the datagram: not asked again for this
    /// query.
    pub(super) excluded: Vec<SocketAddr>,
    pub(super) last_error: String,
    pub(super) waiters: Vec<Waiter>,
    /// When the query was first sent (its latency runs from here).
    pub(super) started: Instant,
}

#[derive(Debug)]
pub(super) enum Resolution {
    Done(Answer),
    Alias { target: String, hops: usize },
}

#[derive(Debug)]
pub(super) enum FromCache {
    Hit(Answer),
    /// Not cached: ask for `name` (where the cached aliases end), `depth` CNAMEs in.
    Miss {
        name: String,
        depth: usize,
    },
}

/// Looks (`name`, `rtype`) up in the cache, following cached aliases.
pub(super) fn cached(
    cache: &Cache,
    mut name: String,
    rtype: RrType,
    mut depth: usize,
    max: usize,
    now: Instant,
) -> FromCache {
    loop {
        match cache.lookup(&name, rtype, now) {
            Some(value @ (Cached::Srv(_) | Cached::Addrs(_) | Cached::Negative)) => {
                return FromCache::Hit(to_answer(value.clone()));
            }
            Some(Cached::Alias(_)) | None => {}
        }
        match cache.lookup(&name, RrType::Cname, now) {
            Some(Cached::Alias(target)) => {
                depth += 1;
                if depth > max {
                    return FromCache::Hit(Answer::Failed(too_deep(max)));
                }
                name.clone_from(target);
            }
            _ => return FromCache::Miss { name, depth },
        }
    }
}

pub(super) fn to_answer(value: Cached) -> Answer {
    match value {
        Cached::Srv(records) if records.is_empty() => Answer::NoRecord,
        Cached::Srv(records) => Answer::Srv(records),
        Cached::Addrs(addrs) if addrs.is_empty() => Answer::NoRecord,
        Cached::Addrs(addrs) => Answer::Hosts(addrs),
        Cached::Alias(_) | Cached::Negative => Answer::NoRecord,
    }
}

/// The lookup's answer from its parts: SRV as is; for a host, the addresses of both halves, else the
/// first failure, else no record.
pub(super) fn combine(parts: Vec<Part>) -> Answer {
    let mut addrs = Vec::new();
    let mut failure = None;
    for answer in parts.into_iter().filter_map(|p| p.done) {
        match answer {
            Answer::Srv(records) => return Answer::Srv(records),
            Answer::Hosts(found) => addrs.extend(found),
            Answer::NoRecord => {}
            Answer::Failed(reason) => {
                failure.get_or_insert(reason);
            }
        }
    }
    match failure {
        _ if !addrs.is_empty() => Answer::Hosts(addrs),
        Some(reason) => Answer::Failed(reason),
        None => Answer::NoRecord,
    }
}

pub(super) fn too_deep(max: usize) -> String {
    format!("CNAME chain longer than {max}")
}

/// xorshift64* for query ids: unpredictable enough given an unpredictable seed, and reproducible in
/// tests.
#[derive(Debug)]
pub(super) struct XorShift(u64);

impl XorShift {
    pub(super) fn new(seed: u64) -> XorShift {
        // Zero is xorshift's fixed point; mix the seed so nearby seeds diverge at once.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(super) fn next_u16(&mut self) -> u16 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 48) as u16
    }
}
