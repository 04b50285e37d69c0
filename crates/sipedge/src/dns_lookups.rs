//! Real DNS for the command-line tools (`explain-route`): the edge's own sans-IO client
//! (`edge_core::dns`) driven with blocking std sockets, so the CLI asks exactly what the edge would.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use edge_core::dns::{Answer, DnsClient, DnsConfig, Question, SharedCache, Transport};
use edge_core::proxy::io::SrvResult;

use crate::config::Config;
use crate::explain_route::Lookups;

/// A lookup is abandoned after this (a DNS-over-TCP exchange in progress may add up to its own 2 s
/// read timeouts before the check comes round).
const LIMIT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct BlockingDns {
    client: DnsClient,
    udp4: Option<UdpSocket>,
    udp6: Option<UdpSocket>,
    next: u64,
}

impl BlockingDns {
    pub fn from_config(config: &Config) -> BlockingDns {
        let servers = crate::run::dns_servers(config);
        let bind = |any: &str, want: bool| want.then(|| UdpSocket::bind(any).ok()).flatten();
        let udp4 = bind("0.0.0.0:0", servers.iter().any(SocketAddr::is_ipv4));
        let udp6 = bind("[::]:0", servers.iter().any(SocketAddr::is_ipv6));
        let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        BlockingDns {
            client: DnsClient::new(DnsConfig::new(servers), SharedCache::new(1000), seed),
            udp4,
            udp6,
            next: 0,
        }
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
                        let sock = if t.server.is_ipv4() {
                            &self.udp4
                        } else {
                            &self.udp6
                        };
                        if let Some(s) = sock {
                            let _ = s.send_to(&t.bytes, t.server);
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
            let wait = wait.clamp(Duration::from_millis(1), Duration::from_millis(100));
            for sock in [&self.udp4, &self.udp6].into_iter().flatten() {
                let _ = sock.set_read_timeout(Some(wait));
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    self.client
                        .handle_udp(from, buf.get(..n).unwrap_or(&[]), Instant::now());
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
        match self.ask(Question::Srv(name.to_owned())) {
            Answer::Srv(r) if !r.is_empty() => SrvResult::Records(r),
            Answer::Srv(_) | Answer::NoRecord => SrvResult::NoRecord,
            Answer::Hosts(_) => SrvResult::Failed("unexpected address answer".to_owned()),
            Answer::Failed(e) => SrvResult::Failed(e),
        }
    }

    fn hosts(&mut self, host: &str) -> Result<Vec<IpAddr>, String> {
        match self.ask(Question::Host(host.to_owned())) {
            Answer::Hosts(ips) => Ok(ips),
            Answer::NoRecord => Ok(Vec::new()),
            Answer::Srv(_) => Err("unexpected SRV answer".to_owned()),
            Answer::Failed(e) => Err(e),
        }
    }
}
