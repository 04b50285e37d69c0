//! The load generator: `C` client connections (TLS or plain TCP) to one target, each pipelining up
//! to `inflight` MESSAGE requests, paced by a [`TokenBucket`] (or unpaced), for a warm-up and then a
//! measured window. Each final response is matched to its request by the branch of its top Via;
//! latency goes into an HdrHistogram; non-2xx finals, timeouts and lost connections are counted;
//! the CPU ticks of the process under test and of the generator are sampled at both ends of the
//! window. Ends with a [`Measured`] for `report.rs`.
//!
//! Why one `mio` thread and not a thread per connection: one `epoll_wait` serves every connection,
//! each connection's new requests of a turn are queued into one buffer and leave in one TLS write
//! (one record, one syscall), and no wake-up crosses threads. Per transaction that is about one
//! read and one write shared by up to `inflight` transactions, where threads would pay a blocking
//! read and a write per transaction plus the context switches, on a 2-core box whose other core is
//! the proxy's.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Poll, Token};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::procstat::{self, CpuTicks};
use crate::rate::TokenBucket;
use crate::report::{ticks_between, Failures, Measured};
use crate::sip::{classify, Inbound, RequestTemplate};
use crate::stream::{scratch, Stream};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct GenOpts {
    pub label: String,
    pub target: SocketAddr,
    /// `None`: plain TCP.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub connections: u32,
    pub inflight: u32,
    /// Transactions per second over all connections; 0: unpaced.
    pub rate: u64,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    pub template: RequestTemplate,
    /// The process(es) under test, for their CPU ticks.
    pub pids: Vec<u32>,
    /// Bursts: a connection writes `inflight` requests at once only when none is outstanding.
    pub bursts: bool,
}

/// Longest poll wait: timeouts and the window's end are checked at least this often.
const TICK: Duration = Duration::from_millis(5);

struct Conn {
    stream: Stream,
    via_host: String,
    next_seq: u64,
    /// Requests sent and not answered, oldest first: (seq, when written).
    outstanding: VecDeque<(u64, Instant)>,
    alive: bool,
    /// Whether it carried anything (a connection that never did counts once as a failure).
    used: bool,
}

/// Counters of the measured window.
struct Tally {
    measuring: bool,
    completed: u64,
    failures: Failures,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            measuring: false,
            completed: 0,
            failures: Failures::default(),
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        })
    }

    /// Starts the window. Connections already lost stay counted: they carry nothing in it, and a
    /// run whose connections all failed during the warm-up must not report zero failures.
    fn reset(&mut self) {
        self.completed = 0;
        self.failures = Failures {
            connection: self.failures.connection,
            ..Failures::default()
        };
        self.latency.reset();
        self.measuring = true;
    }

    fn lost(&mut self, conn: &mut Conn) {
        conn.alive = false;
        let n = conn.outstanding.len() as u64;
        self.failures.connection += if conn.used { n } else { n.max(1) };
        conn.outstanding.clear();
    }
}

/// Runs the load and returns what was measured, with the latency histogram (µs).
pub fn run(o: &GenOpts) -> Result<(Measured, Histogram<u64>)> {
    let hz = procstat::ticks_per_second();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut conns = Vec::new();
    for i in 0..o.connections {
        let sock = TcpStream::connect(o.target).with_context(|| format!("connect {}", o.target))?;
        let _ = sock.set_nodelay(true);
        let via_host = sock
            .local_addr()
            .map_or_else(|_| "127.0.0.1".to_owned(), |a| a.to_string());
        let tls = match &o.tls {
            Some((cfg, name)) => Some(rustls::Connection::Client(rustls::ClientConnection::new(
                Arc::clone(cfg),
                name.clone(),
            )?)),
            None => None,
        };
        let mut stream = Stream::new(sock, tls);
        stream.register(poll.registry(), Token(i as usize))?;
        conns.push(Conn {
            stream,
            via_host,
            next_seq: 0,
            outstanding: VecDeque::new(),
            alive: true,
            used: false,
        });
    }
    let mut bucket = TokenBucket::for_rate(o.rate);
    let mut tally = Tally::new()?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut rd = scratch();
    let start = Instant::now();
    let end = start + o.warmup + o.duration;
    let mut window_start = start;
    let (mut proxy0, mut own0): (Option<CpuTicks>, Option<CpuTicks>) = (None, None);
    let mut rr = 0usize;
    let mut now = start;
    loop {
        if !tally.measuring && now >= start + o.warmup {
            tally.reset();
            window_start = now;
            proxy0 = procstat::read_all(&o.pids);
            own0 = procstat::read(None);
        }
        if now >= end || conns.iter().all(|c| !c.alive) {
            break;
        }
        // Timeouts: the oldest request of each connection first.
        for c in conns.iter_mut().filter(|c| c.alive) {
            while let Some(&(_, sent)) = c.outstanding.front() {
                if now.duration_since(sent) < o.timeout {
                    break;
                }
                c.outstanding.pop_front();
                if tally.measuring {
                    tally.failures.timeouts += 1;
                }
            }
        }
        // New requests: round robin over the connections that have room, as the bucket allows.
        let t = now.duration_since(start);
        let n = conns.len();
        for k in 0..n {
            let Some(c) = conns.get_mut((rr + k) % n) else {
                continue;
            };
            if !c.alive || !c.stream.ready() {
                continue;
            }
            let room = match o.bursts {
                // The next burst only once every request of the last one has its final.
                true if !c.outstanding.is_empty() => 0,
                _ => u64::from(o.inflight).saturating_sub(c.outstanding.len() as u64),
            };
            let take = if room == 0 { 0 } else { bucket.take(t, room) };
            if take == 0 {
                continue;
            }
            buf.clear();
            let id = ((rr + k) % n) as u32;
            for _ in 0..take {
                o.template.write(&mut buf, &c.via_host, id, c.next_seq);
                c.outstanding.push_back((c.next_seq, now));
                c.next_seq += 1;
            }
            c.used = true;
            if c.stream.queue(&buf).is_err() {
                c.alive = false;
                tally.lost(c);
            }
        }
        rr = rr.wrapping_add(1);
        for (i, c) in conns.iter_mut().enumerate() {
            if c.alive && c.stream.pending() && c.stream.flush(poll.registry(), Token(i)).is_err() {
                c.alive = false;
                tally.lost(c);
            }
        }
        // Sleep until a token is due (paced), an event, or the next tick.
        let mut wait = TICK.min(end.saturating_duration_since(now));
        if let Some(w) = bucket.wait(t) {
            let room = conns
                .iter()
                .any(|c| c.alive && c.stream.ready() && c.outstanding.len() < o.inflight as usize);
            if room {
                wait = wait.min(w);
            }
        }
        poll.poll(&mut events, Some(wait))?;
        now = Instant::now();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i) else { continue };
            if !c.alive {
                continue;
            }
            let open = c.stream.read(&mut rd).unwrap_or(false);
            let outstanding = &mut c.outstanding;
            let framed = c.stream.frames(|msg| {
                account(outstanding, i as u32, &mut tally, classify(msg), now);
                true
            });
            if !framed || !open {
                c.alive = false;
                tally.lost(c);
                let _ = poll.registry().deregister(&mut c.stream.sock);
                continue;
            }
            if c.stream.pending() && c.stream.flush(poll.registry(), Token(i)).is_err() {
                c.alive = false;
                tally.lost(c);
            }
        }
    }
    let window_end = now;
    let proxy1 = procstat::read_all(&o.pids);
    let own1 = procstat::read(None);
    let window_s = if tally.measuring {
        window_end.duration_since(window_start).as_secs_f64()
    } else {
        0.0
    };
    let measured = Measured {
        label: o.label.clone(),
        transport: if o.tls.is_some() { "tls" } else { "tcp" },
        connections: o.connections,
        inflight: o.inflight,
        rate: o.rate,
        window_s,
        completed: tally.completed,
        failures: tally.failures,
        // `read_all` of no pids is None: nothing measured.
        proxy_ticks: ticks_between(proxy0, proxy1),
        own_ticks: ticks_between(own0, own1).unwrap_or(0),
        ticks_per_second: hz,
    };
    Ok((measured, tally.latency))
}

/// Matches one message from the target to its request and counts it.
fn account(
    outstanding: &mut VecDeque<(u64, Instant)>,
    id: u32,
    tally: &mut Tally,
    inbound: Inbound,
    now: Instant,
) {
    let Inbound::Final { status, conn, seq } = inbound else {
        return;
    };
    // Responses come back in order on one connection; search only when they do not. A response
    // naming another connection matches nothing here.
    let pos = match outstanding.front() {
        _ if conn != id => None,
        Some(&(s, _)) if s == seq => Some(0),
        _ => outstanding.iter().position(|&(s, _)| s == seq),
    };
    let Some((_, sent)) = pos.and_then(|p| outstanding.remove(p)) else {
        if tally.measuring {
            tally.failures.unmatched += 1;
        }
        return;
    };
    if !tally.measuring {
        return;
    }
    if (200..300).contains(&status) {
        tally.completed += 1;
        let us = now.duration_since(sent).as_micros().max(1);
        let _ = tally.latency.record(u64::try_from(us).unwrap_or(u64::MAX));
    } else {
        *tally.failures.non_2xx.entry(status).or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(target: SocketAddr, tls: Option<(Arc<ClientConfig>, ServerName<'static>)>) -> GenOpts {
        GenOpts {
            label: "direct".into(),
            target,
            tls,
            connections: 2,
            inflight: 8,
            rate: 2000,
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
            template: RequestTemplate {
                uri: "sip:bob@partner.test".into(),
                from: "sip:alice@corp.test".into(),
                transport: "TLS",
                answer_each: false,
            },
            pids: vec![std::process::id()],
            bursts: false,
        }
    }

    #[test]
    fn a_paced_tls_run_against_the_sink_completes_at_the_rate_without_failures() {
        let dir = std::env::temp_dir().join(format!("sipedge-bench-gen-{}", std::process::id()));
        let (addr, client) = crate::sink::tls_sink_for_tests(&dir);
        let name = ServerName::try_from("edge.partner.test").unwrap();
        let (m, latency) = run(&opts(addr, Some((client, name)))).unwrap();
        assert_eq!(m.failures, Failures::default(), "{m:?}");
        // 2,000/s for ~0.5 s (plus the bucket's 5 ms burst): not more, and not much less.
        assert!((800..=1100).contains(&m.completed), "{m:?}");
        assert_eq!(latency.len(), m.completed);
        assert!((0.45..0.7).contains(&m.window_s), "{m:?}");
        assert_eq!(m.transport, "tls");
        assert!(m.proxy_ticks.is_some(), "our own pid stands in for the proxy");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bursts_wait_for_every_final_and_the_sink_answers_each_alone() {
        let dir = std::env::temp_dir().join(format!("sipedge-bench-burst-{}", std::process::id()));
        let (addr, client) = crate::sink::tls_sink_for_tests(&dir);
        let name = ServerName::try_from("edge.partner.test").unwrap();
        let mut o = opts(addr, Some((client, name)));
        o.rate = 0;
        o.bursts = true;
        o.template.answer_each = true;
        let (m, latency) = run(&o).unwrap();
        assert_eq!(m.failures, Failures::default(), "{m:?}");
        assert!(m.completed > 100, "{m:?}");
        assert_eq!(latency.len(), m.completed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_target_counts_each_connection_as_failed() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut o = opts(addr, None);
        o.warmup = Duration::ZERO;
        o.duration = Duration::from_millis(300);
        let (m, _) = run(&o).unwrap();
        assert_eq!(m.completed, 0);
        // Plain TCP takes requests at once: those queued before the refusal are lost with it.
        assert!(m.failures.connection >= 2, "{m:?}");
        assert_eq!(m.failures.total(), m.failures.connection);
        assert!(m.window_s < 0.3, "ends once every connection is gone: {m:?}");
    }

    #[test]
    fn connections_lost_in_the_warm_up_are_still_reported() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut o = opts(addr, None);
        o.warmup = Duration::from_millis(300);
        let (m, _) = run(&o).unwrap();
        assert_eq!(m.completed, 0);
        assert!(m.failures.connection >= 2, "{m:?}");
    }

    #[test]
    fn a_silent_target_times_out_every_request() {
        // Accepts and never answers (the kernel queue does the accepting).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut o = opts(l.local_addr().unwrap(), None);
        o.warmup = Duration::ZERO;
        o.duration = Duration::from_millis(400);
        o.timeout = Duration::from_millis(100);
        let (m, _) = run(&o).unwrap();
        assert_eq!(m.completed, 0);
        // 2 connections × 8 in flight, refilled after each timeout: at least two rounds.
        assert!(m.failures.timeouts >= 32, "{m:?}");
        assert_eq!(m.failures.connection, 0);
        drop(l);
    }
}
