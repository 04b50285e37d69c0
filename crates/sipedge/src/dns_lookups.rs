//! Real DNS for the command-line tools (`explain-route`): the edge's own sans-IO client
//! (`edge_core::dns`) driven with blocking std sockets, so the CLI asks exactly what the edge would:
//! as in the edge, one UDP socket per server, connected to it, so that a server port with nothing
//! listening (ICMP port unreachable, `ECONNREFUSED`) is reported as refused at once, not as a
//! timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use edge_core::dns::{Answer, DnsClient, DnsConfig, Question, SharedCache, Transport};
use edge_core::proxy::io::SrvResult;

use crate::config::Config;
use crate::explain_route::{HostsError, Lookups};

/// A lookup is abandoned after this (a DNS-over-TCP exchange in progress may add up to its own 2 s
/// read timeouts before the check comes round).
const LIMIT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct BlockingDns {
    client: DnsClient,
    /// One per server the client asks, connected to it; `None` when it could not be set up (the
    /// datagram is then lost and the client's timer moves on).
    udp: Vec<(SocketAddr, Option<UdpSocket>)>,
    next: u64,
}

impl BlockingDns {
    pub fn from_config(config: &Config) -> BlockingDns {
        BlockingDns::new(DnsConfig::new(crate::run::dns_servers(config)))
    }

    pub fn new(config: DnsConfig) -> BlockingDns {
        let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        let client = DnsClient::new(config, SharedCache::new(1000), seed);
        let udp = client
            .servers()
            .iter()
            .map(|&server| {
                let any = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let socket = UdpSocket::bind(any)
                    .and_then(|s| s.connect(server).map(|()| s))
                    .ok();
                (server, socket)
            })
            .collect();
        BlockingDns { client, udp, next: 0 }
    }

    fn ask(&mut self, question: Question) -> Answer {
        self.next += 1;
        let token = self.next;
        let started = Instant::now();
        if let Some(a) = self.client.lookup(question, token, started) {
            return a;
        }
        let mut buf = [0u8; 4096];
        while started.elapsed() < LIMIT {
            let now = Instant::now();
            while let Some(t) = self.client.poll_transmit() {
                match t.transport {
                    Transport::Udp => {
                        let sock = self.udp.iter().find(|(s, _)| *s == t.server);
                        if let Some((_, Some(s))) = sock {
                            // A refusal of an earlier datagram may surface on this send.
                            if let Err(e) = s.send(&t.bytes) {
                                if e.kind() == ErrorKind::ConnectionRefused {
                                    self.client.udp_refused(t.server, now);
                                }
                            }
                        }
                    }
                    Transport::Tcp => match tcp_exchange(t.server, &t.bytes) {
                        Ok(body) => self.client.handle_tcp(t.query, &body, now),
                        Err(_) => self.client.tcp_failed(t.query, now),
                    },
                }
            }
            // Only this lookup's answer: one abandoned at LIMIT may still complete later.
            while let Some((t, a)) = self.client.poll_answer() {
                if t == token {
                    return a;
                }
            }
            let wait = self
                .client
                .poll_timeout()
                .map_or(Duration::from_millis(100), |t| t.saturating_duration_since(now));
            // The wait shared by the sockets, each read in turn.
            let sockets = u32::try_from(self.udp.len()).unwrap_or(u32::MAX).max(1);
            let wait = (wait / sockets).clamp(Duration::from_millis(1), Duration::from_millis(100));
            for (server, sock) in &self.udp {
                let Some(sock) = sock else { continue };
                let _ = sock.set_read_timeout(Some(wait));
                match sock.recv(&mut buf) {
                    Ok(n) => self
                        .client
                        .handle_udp(*server, buf.get(..n).unwrap_or(&[]), Instant::now()),
                    // ICMP port unreachable: nothing listens on the server's port.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        self.client.udp_refused(*server, Instant::now())
                    }
                    Err(_) => {}
                }
            }
            let now = Instant::now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
        }
        Answer::Failed(format!("no answer within {}s", LIMIT.as_secs()))
    }
}

/// One DNS-over-TCP exchange: `query` carries its length prefix; returns the response body.
fn tcp_exchange(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(query)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body)?;
    Ok(body)
}

impl Lookups for BlockingDns {
    fn srv(&mut self, name: &str) -> SrvResult {
        SrvResult::from(self.ask(Question::Srv(name.to_owned())))
    }

    fn hosts(&mut self, host: &str) -> Result<Vec<IpAddr>, HostsError> {
        match self.ask(Question::Host(host.to_owned())) {
            Answer::Hosts(ips) => Ok(ips),
            Answer::NoRecord => Ok(Vec::new()),
            Answer::Srv(_) => Err(HostsError::UnexpectedSrv),
            Answer::Failed(e) => Err(HostsError::Failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRV: &str = "_sipfederationtls._tcp.partner.example";

    /// A 127.0.0.1 UDP port with nothing listening: bound for a free port, then closed.
    fn dead_port() -> SocketAddr {
        UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    fn client(servers: Vec<SocketAddr>) -> BlockingDns {
        let mut config = DnsConfig::new(servers);
        config.timeout = Duration::from_secs(3);
        BlockingDns::new(config)
    }

    /// A server that answers every query with NXDOMAIN (the query's bytes, flagged a response).
    fn nxdomain_server() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                buf[2] |= 0x80; // QR: a response
                buf[3] = (buf[3] & 0xf0) | 3; // NXDOMAIN
                let _ = s.send_to(&buf[..n], from);
            }
        });
        addr
    }

    #[test]
    fn a_server_port_with_nothing_listening_is_refused_at_once() {
        let dead = dead_port();
        let started = Instant::now();
        match client(vec![dead]).srv(SRV) {
            SrvResult::Failed(reason) => {
                assert!(
                    reason.contains(&format!("connection refused by {dead}")),
                    "{reason}"
                );
                assert!(!reason.contains("timeout"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}: not at the 3 s timeout");
    }

    #[test]
    fn a_refused_server_fails_over_to_the_next_at_once() {
        let started = Instant::now();
        let answer = client(vec![dead_port(), nxdomain_server()]).srv(SRV);
        assert!(matches!(answer, SrvResult::NoRecord), "{answer:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}: not at the 3 s timeout");
    }
}
