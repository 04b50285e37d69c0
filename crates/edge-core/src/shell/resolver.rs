//! Name resolution for one worker: IP literals as they are, then the static hosts table
//! (`[dns] hosts`), then DNS — the sans-IO client of `crate::dns`, whose sockets live here: one UDP
//! socket per address family (kernel-chosen ephemeral port) and a short-lived TCP connection per
//! truncated answer, all registered in the worker's `mio::Poll` under tokens of their own.
//!
//! Lookups that DNS must answer return `Pending`; the answer comes out of [`Resolver::poll_answer`]
//! with the token given. The cache behind the client is shared by every worker (read-mostly).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use federation_policy::Fqdn;
use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token as MioToken};
use slab::Slab;

use super::pool::StaticHosts;
use crate::dns::{Answer, DnsClient, DnsConfig, QueryId, Question, SharedCache, Transport};
use crate::proxy::io::{DeliveryFailure, SrvResult};

const UDP4: MioToken = MioToken(usize::MAX - 20);
const UDP6: MioToken = MioToken(usize::MAX - 21);
/// TCP exchanges use `TCP_BASE - k` for slab key `k < MAX_TCP`.
const TCP_BASE: usize = usize::MAX - 64;
const MAX_TCP: usize = 64;
/// A TCP exchange that has not completed by then is abandoned (the client's own timer retries).
const TCP_LIMIT: Duration = Duration::from_secs(10);

/// An answer that may need DNS.
#[derive(Debug)]
pub(crate) enum Lookup<T> {
    Ready(T),
    Pending,
}

struct TcpExchange {
    query: QueryId,
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    started: Instant,
}

pub(crate) struct Resolver {
    statics: StaticHosts,
    client: DnsClient,
    udp4: Option<UdpSocket>,
    udp6: Option<UdpSocket>,
    tcp: Slab<TcpExchange>,
    ready: VecDeque<(u64, Answer)>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("tcp", &self.tcp.len())
            .finish_non_exhaustive()
    }
}

/// Whether a mio token belongs to the resolver.
pub(crate) fn is_dns_token(t: MioToken) -> bool {
    t == UDP4 || t == UDP6 || (TCP_BASE - MAX_TCP < t.0 && t.0 <= TCP_BASE)
}

impl Resolver {
    /// Binds the UDP sockets the servers need and registers them.
    pub fn new(
        statics: StaticHosts,
        config: DnsConfig,
        cache: SharedCache,
        seed: u64,
        registry: &Registry,
    ) -> io::Result<Resolver> {
        let bind = |any: &str, token, want: bool| -> io::Result<Option<UdpSocket>> {
            if !want {
                return Ok(None);
            }
            let addr: SocketAddr = any
                .parse()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let mut s = UdpSocket::bind(addr)?;
            registry.register(&mut s, token, Interest::READABLE)?;
            Ok(Some(s))
        };
        let udp4 = bind("0.0.0.0:0", UDP4, config.servers.iter().any(SocketAddr::is_ipv4))?;
        let udp6 = bind("[::]:0", UDP6, config.servers.iter().any(SocketAddr::is_ipv6))?;
        Ok(Resolver {
            statics,
            client: DnsClient::new(config, cache, seed),
            udp4,
            udp6,
            tcp: Slab::new(),
            ready: VecDeque::new(),
        })
    }

    /// Addresses of a hop: literal, static, cached, or `Pending` (answer under `token`).
    pub fn host(
        &mut self,
        fqdn: &Fqdn,
        token: u64,
        now: Instant,
        registry: &Registry,
    ) -> Lookup<Result<Vec<SocketAddr>, DeliveryFailure>> {
        let port = fqdn.port();
        if let Ok(ip) = fqdn.host().as_str().parse::<IpAddr>() {
            return Lookup::Ready(Ok(vec![SocketAddr::new(ip, port)]));
        }
        if let Some(ips) = self.statics.get(fqdn.host()) {
            return Lookup::Ready(Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()));
        }
        let answer = self
            .client
            .lookup(Question::Host(fqdn.host().to_string()), token, now);
        self.flush(now, registry);
        match answer {
            Some(a) => Lookup::Ready(host_result(a, port, fqdn)),
            None => Lookup::Pending,
        }
    }

    /// SRV records of `name`, or `Pending` (answer under `token`).
    pub fn srv(&mut self, name: &str, token: u64, now: Instant, registry: &Registry) -> Lookup<SrvResult> {
        let answer = self.client.lookup(Question::Srv(name.to_owned()), token, now);
        self.flush(now, registry);
        match answer {
            Some(a) => Lookup::Ready(srv_result(a)),
            None => Lookup::Pending,
        }
    }

    /// Readiness of one of the resolver's sockets.
    pub fn ready(&mut self, token: MioToken, now: Instant, registry: &Registry) {
        if token == UDP4 || token == UDP6 {
            let mut buf = [0u8; 4096];
            loop {
                let sock = if token == UDP4 {
                    self.udp4.as_ref()
                } else {
                    self.udp6.as_ref()
                };
                let Some(sock) = sock else { break };
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => self.client.handle_udp(from, buf.get(..n).unwrap_or(&[]), now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface here on some systems; the client's timer handles the loss.
                    Err(_) => break,
                }
            }
        } else if let Some(key) = TCP_BASE.checked_sub(token.0) {
            self.tcp_ready(key, now, registry);
        }
        self.flush(now, registry);
    }

    fn tcp_ready(&mut self, key: usize, now: Instant, registry: &Registry) {
        let Some(x) = self.tcp.get_mut(key) else { return };
        let mut failed = false;
        while x.written < x.out.len() {
            match x.stream.write(x.out.get(x.written..).unwrap_or(&[])) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => x.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let mut buf = [0u8; 4096];
        while !failed {
            match x.stream.read(&mut buf) {
                Ok(0) => {
                    failed = true;
                }
                Ok(n) => {
                    x.input.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    if x.input.len() > 2 + usize::from(u16::MAX) {
                        failed = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => failed = true,
            }
            if let [hi, lo, rest @ ..] = x.input.as_slice() {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                if let Some(body) = rest.get(..len) {
                    let query = x.query;
                    let body = body.to_vec();
                    self.close_tcp(key, registry);
                    self.client.handle_tcp(query, &body, now);
                    return;
                }
            }
        }
        if failed {
            let query = x.query;
            self.close_tcp(key, registry);
            self.client.tcp_failed(query, now);
        }
    }

    fn close_tcp(&mut self, key: usize, registry: &Registry) {
        if self.tcp.contains(key) {
            let mut x = self.tcp.remove(key);
            let _ = registry.deregister(&mut x.stream);
        }
    }

    /// Sends what the client queued: UDP datagrams, or a new TCP exchange.
    fn flush(&mut self, now: Instant, registry: &Registry) {
        while let Some(t) = self.client.poll_transmit() {
            match t.transport {
                Transport::Udp => {
                    let sock = if t.server.is_ipv4() {
                        self.udp4.as_ref()
                    } else {
                        self.udp6.as_ref()
                    };
                    // A lost datagram (WouldBlock, unreachable) is retried by the client's timer.
                    if let Some(s) = sock {
                        let _ = s.send_to(&t.bytes, t.server);
                    }
                }
                Transport::Tcp => {
                    if self.tcp.len() >= MAX_TCP {
                        self.client.tcp_failed(t.query, now);
                        continue;
                    }
                    let entry = self.tcp.vacant_entry();
                    let token = MioToken(TCP_BASE - entry.key());
                    let opened = TcpStream::connect(t.server).and_then(|mut stream| {
                        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                        Ok(stream)
                    });
                    match opened {
                        Ok(stream) => {
                            entry.insert(TcpExchange {
                                query: t.query,
                                stream,
                                out: t.bytes,
                                written: 0,
                                input: Vec::new(),
                                started: now,
                            });
                        }
                        Err(_) => self.client.tcp_failed(t.query, now),
                    }
                }
            }
        }
        while let Some(a) = self.client.poll_answer() {
            self.ready.push_back(a);
        }
    }

    /// What the DNS client counted (queries, cache hits, failures, latency).
    pub fn dns_stats(&self) -> &crate::dns::DnsStats {
        self.client.stats()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let tcp = self.tcp.iter().map(|(_, x)| x.started + TCP_LIMIT).min();
        match (self.client.poll_timeout(), tcp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, registry: &Registry) {
        let stale: Vec<(usize, QueryId)> = self
            .tcp
            .iter()
            .filter(|(_, x)| x.started + TCP_LIMIT <= now)
            .map(|(k, x)| (k, x.query))
            .collect();
        for (key, query) in stale {
            self.close_tcp(key, registry);
            self.client.tcp_failed(query, now);
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        self.flush(now, registry);
    }

    /// Whether finished lookups are waiting to be collected.
    pub fn has_answers(&self) -> bool {
        !self.ready.is_empty()
    }

    /// A finished lookup: its token and answer.
    pub fn poll_answer(&mut self) -> Option<(u64, Answer)> {
        self.ready.pop_front()
    }
}

/// A host answer as the pool needs it.
pub(crate) fn host_result(a: Answer, port: u16, fqdn: &Fqdn) -> Result<Vec<SocketAddr>, DeliveryFailure> {
    match a {
        Answer::Hosts(ips) if !ips.is_empty() => {
            Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
        }
        Answer::Hosts(_) | Answer::NoRecord => Err(DeliveryFailure::Resolve(format!(
            "{} has no A/AAAA record",
            fqdn.host()
        ))),
        Answer::Srv(_) => Err(DeliveryFailure::Resolve("unexpected SRV answer".to_owned())),
        Answer::Failed(e) => Err(DeliveryFailure::Resolve(format!("{}: {e}", fqdn.host()))),
    }
}

/// An SRV answer as the core needs it.
pub(crate) fn srv_result(a: Answer) -> SrvResult {
    match a {
        Answer::Srv(r) if !r.is_empty() => SrvResult::Records(r),
        Answer::Srv(_) | Answer::NoRecord => SrvResult::NoRecord,
        Answer::Hosts(_) => SrvResult::Failed("unexpected address answer".to_owned()),
        Answer::Failed(e) => SrvResult::Failed(e),
    }
}
