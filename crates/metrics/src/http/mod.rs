//! The metrics endpoint on a thread of its own, never on a SIP worker: `GET /metrics` (the text
//! exposition of [`Source::families`] plus this crate's own counters, `text/plain; version=0.0.4`),
//! `GET /healthz` (200 `ok`, or 503 with [`Health::detail`](crate::Health)), `GET /readyz` (200
//! `ready` with the readiness detail after a colon when there is one, or 503 with the readiness
//! detail, e.g. `draining`). A `GET` of any other path is offered to [`Source::probe`]
//! (`/probe/push`), else 404; another method on one of the three is 405 (`Allow: GET, HEAD`).
//! `HEAD` is served wherever `GET` is (RFC 9110 §9.3.2): it is answered as a `GET` and the body left
//! off, so status and headers (`Content-Length` too) are the `GET`'s; any answer to a `HEAD` (404,
//! 504, ...) goes without its body. A probe answer that is [`Probe::Pending`] parks its connection
//! (the thread serves others, checking the answer every few milliseconds) until the answer or its
//! `wait`, then 504.
//!
//! One thread, one `mio::Poll`, non-blocking sockets: a slow or silent client holds a slot, never the
//! thread. Request heads are parsed by `httparse` (hyper's HTTP/1 parser); the IO, the routing and the
//! bounds are here. The bounds ([`Limits`], defaults in parentheses):
//! - at most `max_connections` (32) open at once; a connection past it is accepted and closed at once;
//! - a request head of at most `max_head_bytes` (8 KiB, and 64 header lines): past it, 431;
//! - the whole head must arrive within `timeout` (5 s) of the accept (not reset by each byte, so a
//!   slowloris trickle does not extend it), else the connection is closed; the response must be taken
//!   within another `timeout`;
//! - one request per connection (`Connection: close`); after the response the write side is shut and
//!   what the client still sends is read and discarded for at most 1 s and 64 KiB, so it sees the
//!   response rather than a reset;
//! - a scrape renders in one pass on this thread; the Source is called once per request.
//!
//! Refusals and cut-offs are counted in `sipedge_metrics_http_refusals_total{reason}`, samples the
//! renderer left out in `sipedge_metrics_samples_rejected_total` (see [`mod@crate::render`]).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::names::{EXPORTER, HTTP_REFUSALS, HTTP_REFUSED, SAMPLES_REJECTED};
use crate::render::Snapshot;
use crate::{Probe, Reply, Source};

mod conn;
mod respond;
use respond::{head_len, reply_bytes, response, Answer};

/// The endpoint's own bounds; [`Limits::default`] is what [`serve`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            max_head_bytes: 8 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

const MAX_HEADERS: usize = 64;
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// After a failed accept (e.g. out of descriptors) the listener is tried again this soon.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
const FIRST_CONN: usize = 2;
/// How often parked probe connections are checked for their answer.
const PROBE_POLL: Duration = Duration::from_millis(10);

/// The running endpoint. Dropping it (or [`Exporter::stop`]) stops and joins the thread.
pub struct Exporter {
    addr: SocketAddr,
    waker: Waker,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// The bound address (the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        // A failed wake leaves the thread to notice the flag at its next deadline (at most `timeout`).
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `listen` and serves on a new thread with the default [`Limits`]. Errors name the listener:
/// `metrics listener 127.0.0.1:9464: Address already in use (os error 98)`.
pub fn serve(listen: SocketAddr, source: Arc<dyn Source>) -> io::Result<Exporter> {
    serve_with(listen, source, Limits::default())
}

/// [`serve`] with other bounds (tests use short timeouts).
pub fn serve_with(listen: SocketAddr, source: Arc<dyn Source>, limits: Limits) -> io::Result<Exporter> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("metrics listener {listen}: {e}"));
    let mut listener = TcpListener::bind(listen).map_err(named)?;
    let addr = listener.local_addr().map_err(named)?;
    let poll = Poll::new().map_err(named)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(named)?;
    let waker = Waker::new(poll.registry(), WAKE).map_err(named)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = Server {
        poll,
        listener,
        conns: Slab::new(),
        source,
        limits,
        stop: Arc::clone(&stop),
        accept_retry: None,
        rejected_samples: 0,
        refusals: [0; 4],
    };
    let thread = std::thread::Builder::new()
        .name("sipedge-metrics".to_owned())
        .spawn(move || server.run())
        .map_err(named)?;
    Ok(Exporter {
        addr,
        waker,
        stop,
        thread: Some(thread),
    })
}

/// Index into [`HTTP_REFUSALS`].
#[derive(Debug, Clone, Copy)]
enum Refusal {
    ConnectionLimit = 0,
    HeadTooLarge = 1,
    Timeout = 2,
    BadRequest = 3,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    source: Arc<dyn Source>,
    limits: Limits,
    stop: Arc<AtomicBool>,
    accept_retry: Option<Instant>,
    rejected_samples: u64,
    refusals: [u64; 4],
}

struct Conn {
    stream: TcpStream,
    state: State,
    deadline: Instant,
    /// The request was a `HEAD`: whatever answer it gets is written without its body.
    bodiless: bool,
}

enum State {
    Reading(Vec<u8>),
    /// A probe's answer is still coming.
    Parked(std::sync::mpsc::Receiver<Reply>),
    Writing {
        out: Vec<u8>,
        pos: usize,
    },
    Lingering {
        discarded: usize,
    },
}

/// What a connection needs next from the server.
enum Step {
    Wait,
    Close(Option<Refusal>),
    Respond(Head),
    Written,
}

/// A request head, as far as routing cares.
enum Head {
    Request { method: Method, path: String },
    TooLarge,
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    /// Answered as a `GET`, without the body.
    Head,
    Other,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let mut timeout = self.next_deadline().map(|d| d.saturating_duration_since(now));
            if self
                .conns
                .iter()
                .any(|(_, c)| matches!(c.state, State::Parked(_)))
            {
                timeout = Some(timeout.map_or(PROBE_POLL, |t| t.min(PROBE_POLL)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    std::thread::sleep(ACCEPT_RETRY);
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    WAKE => {}
                    LISTENER => self.accept(),
                    Token(t) => {
                        if let Some(key) = t.checked_sub(FIRST_CONN) {
                            self.drive(key);
                        }
                    }
                }
            }
            self.collect_probes();
            let now = Instant::now();
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept();
            }
            self.expire(now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .map(|(_, c)| c.deadline)
            .chain(self.accept_retry)
            .min()
    }

    fn count(&mut self, refusal: Refusal) {
        if let Some(n) = self.refusals.get_mut(refusal as usize) {
            *n = n.saturating_add(1);
        }
    }

    fn accept(&mut self) {
        self.accept_retry = None;
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= self.limits.max_connections {
                        self.count(Refusal::ConnectionLimit);
                        continue; // dropped: closed
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key().saturating_add(FIRST_CONN));
                    let interest = Interest::READABLE.add(Interest::WRITABLE);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_ok()
                    {
                        let deadline = Instant::now() + self.limits.timeout;
                        entry.insert(Conn {
                            stream,
                            state: State::Reading(Vec::new()),
                            deadline,
                            bodiless: false,
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Moves connection `key` on until it waits for the socket or is closed.
    fn drive(&mut self, key: usize) {
        loop {
            let max_head = self.limits.max_head_bytes;
            let step = match self.conns.get_mut(key) {
                Some(conn) => conn.step(max_head),
                None => return,
            };
            match step {
                Step::Wait => return,
                Step::Close(refusal) => {
                    if let Some(r) = refusal {
                        self.count(r);
                    }
                    self.close(key);
                    return;
                }
                Step::Respond(head) => {
                    let bodiless = matches!(&head, Head::Request { method, .. } if *method == Method::Head);
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.bodiless = bodiless;
                    }
                    let answer = self.respond(head);
                    let source = &self.source;
                    let _ = catch_unwind(AssertUnwindSafe(|| source.after_response()));
                    match answer {
                        Answer::Now(out) => self.start_writing(key, out),
                        Answer::Later { reply, wait } => {
                            if let Some(conn) = self.conns.get_mut(key) {
                                conn.state = State::Parked(reply);
                                conn.deadline = Instant::now() + wait;
                            }
                            return;
                        }
                    }
                }
                Step::Written => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        let _ = conn.stream.shutdown(Shutdown::Write);
                        conn.state = State::Lingering { discarded: 0 };
                        conn.deadline = Instant::now() + LINGER.min(self.limits.timeout);
                    }
                }
            }
        }
    }

    fn start_writing(&mut self, key: usize, mut out: Vec<u8>) {
        let deadline = Instant::now() + self.limits.timeout;
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.bodiless {
                out.truncate(head_len(&out));
            }
            conn.state = State::Writing { out, pos: 0 };
            conn.deadline = deadline;
        }
    }

    /// Parked probe connections whose answer came (or whose sender is gone) start writing.
    fn collect_probes(&mut self) {
        let mut ready = Vec::new();
        for (key, conn) in &self.conns {
            if let State::Parked(rx) = &conn.state {
                match rx.try_recv() {
                    Ok(r) => ready.push((key, reply_bytes(&r))),
                    Err(std::sync::mpsc::TryRecvError::Empty) => {}
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        ready.push((key, response(500, "text/plain", b"probe failed\n", "")));
                    }
                }
            }
        }
        for (key, out) in ready {
            self.start_writing(key, out);
            self.drive(key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<(usize, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(key, c)| (key, !matches!(c.state, State::Lingering { .. })))
            .collect();
        for (key, cut_off) in expired {
            if self
                .conns
                .get(key)
                .is_some_and(|c| matches!(c.state, State::Parked(_)))
            {
                let out = response(504, "text/plain", b"the probe did not finish in time\n", "");
                self.start_writing(key, out);
                self.drive(key);
                continue;
            }
            if cut_off {
                self.count(Refusal::Timeout);
            }
            self.close(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::conn::parse;
    use super::*;

    fn route(raw: &[u8]) -> Option<(bool, String)> {
        match parse(raw, 64) {
            Some(Head::Request { method, path }) => Some((method == Method::Get, path)),
            _ => None,
        }
    }

    #[test]
    fn heads_parse_into_method_and_path_without_query() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some((true, "/metrics".into()))
        );
        assert_eq!(
            route(b"GET /readyz?verbose=1 HTTP/1.0\r\n\r\n"),
            Some((true, "/readyz".into()))
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some((false, "/metrics".into()))
        );
        assert!(matches!(
            parse(b"HEAD /healthz HTTP/1.1\r\n\r\n", 64),
            Some(Head::Request {
                method: Method::Head,
                ..
            })
        ));
        assert!(
            parse(b"GET /metrics HTTP/1.1\r\nHost:", 64).is_none(),
            "incomplete: wait"
        );
        assert!(matches!(
            parse(b"\x16\x03\x01 not http\r\n\r\n", 64),
            Some(Head::Bad)
        ));
        let long = [b"GET /".as_slice(), &[b'a'; 80]].concat();
        assert!(
            matches!(parse(&long, 64), Some(Head::TooLarge)),
            "incomplete past the limit"
        );
        let complete = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 60], b"\r\n\r\n"].concat();
        assert!(
            matches!(parse(&complete, 64), Some(Head::TooLarge)),
            "complete past the limit"
        );
    }

    #[test]
    fn responses_close_and_carry_their_length() {
        let out = response(405, "text/plain", b"no\n", "Allow: GET, HEAD\r\n");
        let r = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
             Connection: close\r\nAllow: GET, HEAD\r\n\r\nno\n"
        );
        assert_eq!(head_len(&out), r.len() - 3, "the head without the body");
        assert_eq!(head_len(b"no blank line"), 13);
    }
}
