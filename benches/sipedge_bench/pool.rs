//! [`Pool`]: many client TLS connections to one target on one `mio` thread, for the connection
//! scenarios of issue 11 (`conns.rs`: `idle`, `handshakes`, `burst`). Each connection is bound to
//! one of the `--source` loopback addresses in turn (several 127.0.0.x spread ephemeral ports and
//! per-IP limits), handshakes (mutual TLS: the front end's certificate), and then, by [`After`]:
//!
//! - `Request`: sends one OPTIONS (`sip::options`) and waits for the first whole SIP message back —
//!   a final response from a proxy, the request itself from an echo server — then is *held* open,
//!   answering keepalive pings, until the pool is dropped;
//! - `Close`: waits for the server's first record after the handshake (a TLS 1.3 server sends its
//!   session tickets once it has the client's Finished; [`TICKET_GRACE`] at most), so the tickets
//!   are stored for the next resumption, then sends close_notify and reads until the server
//!   closes, then is dropped.
//!
//! Every connection has a deadline (from its connect to its answer, or to the server's close);
//! what failed is counted by kind (`connect: …`, `handshake: …`, `closed before the answer`,
//! `timeout: handshake`, …). Connect-to-established latency goes into an HdrHistogram (µs).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use mio::{Events, Poll, Token};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::sip::{self, classify, Inbound, RequestTemplate};
use crate::stream::{connect_from, scratch, Stream};

/// Where and how the pool connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Local addresses to bind, in turn (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    pub tls: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    pub template: RequestTemplate,
    /// A connection not answered (or, `Close`, not closed by the server) by then is given up.
    pub timeout: Duration,
}

/// What a connection does once its handshake is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Request,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    /// `Close`: handshake done, waiting for the server's tickets (octets read at the handshake's end).
    Tickets(u64),
    Waiting,
    Held,
    Closing,
}

/// How long a `Close` connection waits for the server's post-handshake records (tickets).
pub const TICKET_GRACE: Duration = Duration::from_millis(100);

struct Client {
    stream: Stream,
    id: u32,
    via: String,
    started: Instant,
    deadline: Instant,
    phase: Phase,
}

/// What the pool counted (reset by [`Tally::reset`] at a measurement window's start).
#[derive(Debug)]
pub struct Tally {
    pub opened: u64,
    /// Handshakes completed.
    pub established: u64,
    /// Of those, resumed sessions.
    pub resumed: u64,
    /// First messages received after the OPTIONS: `200`, `503`, …, or `echo` (the request back).
    pub answers: BTreeMap<String, u64>,
    pub failures: BTreeMap<String, u64>,
    /// `Close`: the server closed first, as asked (the others were closed by the deadline).
    pub closed_by_server: u64,
    /// Connect to handshake done, µs.
    pub latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            opened: 0,
            established: 0,
            resumed: 0,
            answers: BTreeMap::new(),
            failures: BTreeMap::new(),
            closed_by_server: 0,
            latency: Histogram::new_with_bounds(1, 600_000_000, 3)?,
        })
    }

    pub fn reset(&mut self) {
        self.opened = 0;
        self.established = 0;
        self.resumed = 0;
        self.answers.clear();
        self.failures.clear();
        self.closed_by_server = 0;
        self.latency.reset();
    }

    pub fn answered(&self) -> u64 {
        self.answers.values().sum()
    }

    #[cfg(test)]
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn fail(&mut self, kind: String) {
        *self.failures.entry(kind).or_insert(0) += 1;
    }
}

/// How often deadlines are checked.
const SWEEP: Duration = Duration::from_millis(50);

pub struct Pool {
    poll: Poll,
    events: Events,
    conns: Vec<Option<Client>>,
    free: Vec<usize>,
    target: Target,
    after: After,
    rd: Vec<u8>,
    buf: Vec<u8>,
    next_id: u32,
    in_flight: usize,
    held: usize,
    next_sweep: Instant,
    pub tally: Tally,
}

impl Pool {
    pub fn new(target: Target, after: After) -> Result<Pool> {
        Ok(Pool {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            conns: Vec::new(),
            free: Vec::new(),
            target,
            after,
            rd: scratch(),
            buf: Vec::with_capacity(1024),
            next_id: 0,
            in_flight: 0,
            held: 0,
            next_sweep: Instant::now(),
            tally: Tally::new()?,
        })
    }

    /// Connections opened and not yet answered, closed or failed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Connections answered and held open (`After::Request`).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Starts one connection (a failure to even start is counted at once).
    pub fn open(&mut self, now: Instant) {
        self.tally.opened += 1;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let n = self.target.sources.len();
        let source = (n > 0)
            .then(|| self.target.sources.get(id as usize % n).copied())
            .flatten();
        let sock = match connect_from(source, self.target.addr) {
            Ok(s) => s,
            Err(e) => return self.tally.fail(format!("connect: {e}")),
        };
        let _ = sock.set_nodelay(true);
        let via = sock
            .local_addr()
            .map_or_else(|_| "127.0.0.1".to_owned(), |a| a.to_string());
        let tls = match rustls::ClientConnection::new(Arc::clone(&self.target.tls), self.target.name.clone())
        {
            Ok(t) => t,
            Err(e) => return self.tally.fail(format!("tls setup: {e}")),
        };
        let mut stream = Stream::new(sock, Some(rustls::Connection::Client(tls)));
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Err(e) = stream.register(self.poll.registry(), Token(slot)) {
            self.free.push(slot);
            return self.tally.fail(format!("register: {e}"));
        }
        if let Some(entry) = self.conns.get_mut(slot) {
            *entry = Some(Client {
                stream,
                id,
                via,
                started: now,
                deadline: now + self.target.timeout,
                phase: Phase::Handshaking,
            });
            self.in_flight += 1;
        }
    }

    /// One poll (at most `wait`), every ready connection driven, deadlines checked.
    pub fn turn(&mut self, wait: Duration) -> Result<()> {
        self.poll.poll(&mut self.events, Some(wait))?;
        let now = Instant::now();
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for slot in ready {
            self.drive(slot, now);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP;
            self.sweep(now);
        }
        Ok(())
    }

    /// Turns for `d`, opening nothing (held connections answer pings meanwhile).
    pub fn settle(&mut self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.turn(left.min(Duration::from_millis(20)))?;
        }
    }

    fn drive(&mut self, slot: usize, now: Instant) {
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        let was = c.phase;
        let open = match c.stream.read(&mut self.rd) {
            Ok(open) => open,
            Err(e) => {
                let kind = match was {
                    Phase::Handshaking => format!("handshake: {e}"),
                    _ => format!("after the handshake: {e}"),
                };
                return self.fail(slot, kind);
            }
        };
        if c.phase == Phase::Handshaking && c.stream.ready() {
            let us = now.duration_since(c.started).as_micros().max(1);
            let _ = self.tally.latency.record(u64::try_from(us).unwrap_or(u64::MAX));
            self.tally.established += 1;
            self.tally.resumed += u64::from(c.stream.resumed() == Some(true));
            match self.after {
                After::Request => {
                    self.buf.clear();
                    sip::options(&mut self.buf, &self.target.template, &c.via, c.id);
                    if c.stream.queue(&self.buf).is_err() {
                        return self.fail(slot, "queue: TLS writer".to_owned());
                    }
                    c.phase = Phase::Waiting;
                }
                After::Close => {
                    c.phase = Phase::Tickets(c.stream.bytes_in());
                    c.deadline = now + TICKET_GRACE;
                }
            }
        } else if let Phase::Tickets(at) = c.phase {
            if c.stream.bytes_in() > at {
                c.stream.close_notify();
                c.phase = Phase::Closing;
                c.deadline = now + self.target.timeout;
            }
        }
        let mut first = None;
        let framed = c.stream.frames(|msg| {
            if first.is_none() {
                first = Some(match classify(msg) {
                    Inbound::Final { status, .. } => status.to_string(),
                    Inbound::Provisional => return true,
                    Inbound::Foreign => "echo".to_owned(),
                });
            }
            true
        });
        if c.phase == Phase::Waiting {
            if let Some(answer) = first {
                *self.tally.answers.entry(answer).or_insert(0) += 1;
                c.phase = Phase::Held;
                self.in_flight = self.in_flight.saturating_sub(1);
                self.held += 1;
            }
        }
        if !framed {
            return self.fail(slot, "framing error".to_owned());
        }
        if !open {
            let kind = match c.phase {
                Phase::Closing | Phase::Tickets(_) => {
                    self.tally.closed_by_server += 1;
                    return self.remove(slot);
                }
                Phase::Handshaking => "closed during the handshake",
                Phase::Waiting => "closed before the answer",
                Phase::Held => "closed while held",
            };
            return self.fail(slot, kind.to_owned());
        }
        if c.stream.pending() {
            if let Err(e) = c.stream.flush(self.poll.registry(), Token(slot)) {
                self.fail(slot, format!("write: {e}"));
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get(slot) else {
                continue;
            };
            if c.phase == Phase::Held || now < c.deadline {
                continue;
            }
            match c.phase {
                // Established and asked to close; the server did not within the deadline.
                Phase::Closing => self.remove(slot),
                // No tickets came: close now.
                Phase::Tickets(_) => self.close_now(slot, now),
                Phase::Handshaking => self.fail(slot, "timeout: handshake".to_owned()),
                _ => self.fail(slot, "timeout: answer".to_owned()),
            }
        }
    }

    fn close_now(&mut self, slot: usize, now: Instant) {
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        c.stream.close_notify();
        c.phase = Phase::Closing;
        c.deadline = now + self.target.timeout;
        if let Err(e) = c.stream.flush(self.poll.registry(), Token(slot)) {
            self.fail(slot, format!("write: {e}"));
        }
    }

    fn fail(&mut self, slot: usize, kind: String) {
        self.tally.fail(kind);
        self.remove(slot);
    }

    fn remove(&mut self, slot: usize) {
        let Some(entry) = self.conns.get_mut(slot) else {
            return;
        };
        if let Some(mut c) = entry.take() {
            let _ = self.poll.registry().deregister(&mut c.stream.sock);
            if c.phase == Phase::Held {
                self.held = self.held.saturating_sub(1);
            } else {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            self.free.push(slot);
        }
    }

    /// Closes every connection (dropping the sockets).
    pub fn close_all(&mut self) {
        for slot in 0..self.conns.len() {
            self.remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> (std::path::PathBuf, Target) {
        let dir = std::env::temp_dir().join(format!(
            "sipedge-bench-pool-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let (addr, client) = crate::sink::tls_sink_for_tests(&dir);
        let target = Target {
            addr,
            sources: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
            tls: client,
            name: ServerName::try_from("edge.partner.test").unwrap(),
            template: RequestTemplate {
                uri: "sip:bob@partner.test".into(),
                from: "sip:alice@corp.test".into(),
                transport: "TLS",
                answer_each: false,
            },
            timeout: Duration::from_secs(5),
        };
        (dir, target)
    }

    #[test]
    fn requested_connections_are_answered_and_held() {
        let (dir, target) = world();
        let mut pool = Pool::new(target, After::Request).unwrap();
        let now = Instant::now();
        for _ in 0..20 {
            pool.open(now);
        }
        let end = Instant::now() + Duration::from_secs(10);
        while pool.in_flight() > 0 && Instant::now() < end {
            pool.turn(Duration::from_millis(10)).unwrap();
        }
        assert_eq!(pool.held(), 20, "{:?}", pool.tally);
        assert_eq!(pool.tally.answers.get("200"), Some(&20));
        assert_eq!(pool.tally.established, 20);
        assert_eq!(pool.tally.latency.len(), 20);
        assert_eq!(pool.tally.failed(), 0);
        pool.close_all();
        assert_eq!(pool.held(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn closing_connections_store_tickets_and_resume() {
        let (dir, target) = world();
        let mut pool = Pool::new(target, After::Close).unwrap();
        for round in 0..2 {
            for _ in 0..4 {
                pool.open(Instant::now());
            }
            let end = Instant::now() + Duration::from_secs(10);
            while pool.in_flight() > 0 && Instant::now() < end {
                pool.turn(Duration::from_millis(10)).unwrap();
            }
            assert_eq!(pool.tally.established, 4 * (round + 1), "{:?}", pool.tally);
        }
        assert_eq!(pool.tally.failed(), 0, "{:?}", pool.tally.failures);
        // The sink (rustls, default stateful session cache) sends tickets: the second round resumes.
        assert_eq!(pool.tally.resumed, 4, "{:?}", pool.tally);
        assert_eq!(pool.tally.closed_by_server, 8, "{:?}", pool.tally);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_target_is_counted_by_kind() {
        let (dir, mut target) = world();
        target.addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut pool = Pool::new(target, After::Close).unwrap();
        pool.open(Instant::now());
        let end = Instant::now() + Duration::from_secs(5);
        while pool.in_flight() > 0 && Instant::now() < end {
            pool.turn(Duration::from_millis(10)).unwrap();
        }
        assert_eq!(pool.tally.established, 0);
        assert_eq!(pool.tally.failed(), 1, "{:?}", pool.tally.failures);
        let kind = pool.tally.failures.keys().next().unwrap();
        assert!(
            kind.starts_with("handshake: ") || kind.starts_with("connect: "),
            "{kind}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
