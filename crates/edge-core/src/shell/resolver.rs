//! Name resolution for one worker: IP literals as they are, then the static hosts table
//! (`[dns] hosts`), then DNS — the sans-IO client of `crate::dns`, whose sockets live here: one UDP
//! socket per server (kernel-chosen ephemeral port, connected to the server so that the kernel only
//! delivers that server's datagrams and an ICMP port unreachable comes back as `ECONNREFUSED`,
//! reported to the client as a refusal instead of waiting for the timeout) and a short-lived TCP
//! connection per truncated answer, all registered in the worker's `mio::Poll` under tokens of
//! their own.
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
use crate::dns::{Answer, DnsClient, DnsConfig, QueryId, Question, SharedCache, Transport, MAX_SERVERS};
use crate::proxy::io::{DeliveryFailure, SrvResult};

/// The UDP socket of server `i` (`i < MAX_SERVERS`) is `UDP_BASE - i`.
const UDP_BASE: usize = usize::MAX - 20;
/// TCP exchanges use `TCP_BASE - k` for slab key `k < MAX_TCP`.
const TCP_BASE: usize = usize::MAX - 64;
const MAX_TCP: usize = 64;
/// Read errors taken from one UDP socket in one readiness event before it is left for the next.
const MAX_UDP_ERRORS: u8 = 8;
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

/// The UDP socket of one server, connected to it; `None` when the kernel would not connect it
/// (e.g. no route to the server's family): the datagram is then lost and the client's timer moves on.
struct ServerSocket {
    server: SocketAddr,
    socket: Option<UdpSocket>,
}

pub(crate) struct Resolver {
    statics: StaticHosts,
    client: DnsClient,
    /// Index `i` is the client's server `i`, under token `UDP_BASE - i`.
    udp: Vec<ServerSocket>,
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
    udp_index(t).is_some() || (TCP_BASE - MAX_TCP < t.0 && t.0 <= TCP_BASE)
}

/// The server index of a UDP socket's token.
fn udp_index(t: MioToken) -> Option<usize> {
    UDP_BASE.checked_sub(t.0).filter(|&i| i < MAX_SERVERS)
}

// The UDP tokens stay above the TCP ones.
const _: () = assert!(UDP_BASE - MAX_SERVERS > TCP_BASE);

impl Resolver {
    /// Binds a UDP socket per server (the first [`MAX_SERVERS`]), connects and registers it. A bind
    /// or register failure is an error; a server the kernel will not connect to (no route) keeps no
    /// socket.
    pub fn new(
        statics: StaticHosts,
        config: DnsConfig,
        cache: SharedCache,
        seed: u64,
        registry: &Registry,
    ) -> io::Result<Resolver> {
        let client = DnsClient::new(config, cache, seed);
        let mut udp = Vec::with_capacity(client.servers().len());
        for (i, &server) in client.servers().iter().enumerate() {
            let any = if server.is_ipv4() {
                SocketAddr::from(([0u8; 4], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let mut socket = UdpSocket::bind(any)?;
            let socket = match socket.connect(server) {
                Ok(()) => {
                    registry.register(&mut socket, MioToken(UDP_BASE - i), Interest::READABLE)?;
                    Some(socket)
                }
                Err(_) => None,
            };
            udp.push(ServerSocket { server, socket });
        }
        Ok(Resolver {
            statics,
            client,
            udp,
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
            Some(a) => Lookup::Ready(SrvResult::from(a)),
            None => Lookup::Pending,
        }
    }

    /// Readiness of one of the resolver's sockets.
    pub fn ready(&mut self, token: MioToken, now: Instant, registry: &Registry) {
        if let Some(i) = udp_index(token) {
            let mut buf = [0u8; 4096];
            // A socket error is consumed by the read that reports it and datagrams may be queued
            // behind it, so reading goes on (readiness is edge-triggered) — but not forever.
            let mut errors = 0u8;
            while let Some(ServerSocket {
                server,
                socket: Some(sock),
            }) = self.udp.get(i)
            {
                match sock.recv(&mut buf) {
                    Ok(n) => self.client.handle_udp(*server, buf.get(..n).unwrap_or(&[]), now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) if errors >= MAX_UDP_ERRORS => break,
                    // ICMP port unreachable: nothing listens on the server's port.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        errors += 1;
                        self.client.udp_refused(*server, now);
                    }
                    // Other ICMP errors (unreachable host or net): the client's timer handles the loss.
                    Err(_) => errors += 1,
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
                    let sock = self
                        .udp
                        .iter()
                        .find(|s| s.server == t.server)
                        .and_then(|s| s.socket.as_ref());
                    // A refusal of an earlier datagram may surface on this send (and this one is
                    // not sent): the server refuses. A lost datagram (WouldBlock, unreachable) is
                    // retried by the client's timer.
                    if let Some(s) = sock {
                        if let Err(e) = s.send(&t.bytes) {
                            if e.kind() == io::ErrorKind::ConnectionRefused {
                                self.client.udp_refused(t.server, now);
                            }
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    /// A 127.0.0.1 UDP port with nothing listening: bound for a free port, then closed.
    fn dead_port() -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    }

    /// Drives one SRV lookup on a real poll until it is answered or `limit` passes.
    fn lookup(servers: Vec<SocketAddr>, timeout: Duration, limit: Duration) -> (Answer, Duration) {
        let mut poll = Poll::new().unwrap();
        let mut config = DnsConfig::new(servers);
        config.timeout = timeout;
        let statics = StaticHosts::new(&[]).unwrap();
        let mut r = Resolver::new(statics, config, SharedCache::default(), 7, poll.registry()).unwrap();
        let started = Instant::now();
        let name = "_sipfederationtls._tcp.partner.example";
        if let Lookup::Ready(a) = r.srv(name, 1, started, poll.registry()) {
            panic!("answered without DNS: {a:?}");
        }
        let mut events = Events::with_capacity(8);
        while started.elapsed() < limit {
            let now = Instant::now();
            let wait = r.poll_timeout().map(|t| t.saturating_duration_since(now));
            poll.poll(&mut events, wait.or(Some(limit))).unwrap();
            let now = Instant::now();
            for e in events.iter() {
                r.ready(e.token(), now, poll.registry());
            }
            r.handle_timeout(now, poll.registry());
            if let Some((token, answer)) = r.poll_answer() {
                assert_eq!(token, 1);
                return (answer, started.elapsed());
            }
        }
        panic!("no answer within {limit:?}");
    }

    /// A server that answers every query it gets with NXDOMAIN, on its own thread.
    fn nxdomain_server() -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let Ok(mut m) = hickory_proto::op::Message::from_vec(&buf[..n]) else {
                    continue;
                };
                m.set_message_type(hickory_proto::op::MessageType::Response);
                m.set_response_code(hickory_proto::op::ResponseCode::NXDomain);
                let _ = s.send_to(&m.to_vec().unwrap(), from);
            }
        });
        addr
    }

    /// ICMP port unreachable from the only server: a refusal, reported at once, not a timeout.
    #[test]
    fn a_server_port_with_nothing_listening_is_refused_at_once() {
        let dead = dead_port();
        let (answer, took) = lookup(vec![dead], Duration::from_secs(3), Duration::from_secs(8));
        match &answer {
            Answer::Failed(reason) => {
                assert!(
                    reason.contains(&format!("connection refused by {dead}")),
                    "{reason}"
                );
                assert!(!reason.contains("timeout"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(took < Duration::from_secs(1), "{took:?}: not at the 3 s timeout");
    }

    /// The next configured server is asked as soon as the first refuses.
    #[test]
    fn a_refused_server_fails_over_to_the_next_at_once() {
        let (answer, took) = lookup(
            vec![dead_port(), nxdomain_server()],
            Duration::from_secs(3),
            Duration::from_secs(8),
        );
        assert_eq!(answer, Answer::NoRecord);
        assert!(took < Duration::from_secs(1), "{took:?}: not at the 3 s timeout");
    }
}
