//! [`Conn`]: one TLS connection, inbound (accepted) or outbound (dialled by the pool): the mio stream,
//! the rustls session, the read buffer and its [`Framer`], the bounded write queue, and the deadlines
//! (connect, handshake, idle, keepalive, close linger). It reports what the core must hear through a
//! sink of [`ConnEvent`]s and ends with a [`CloseReason`] (`close.rs`); the worker (`worker.rs`) owns the slab of
//! connections and turns both into `Input`s. Name resolution and hop bookkeeping are in `pool.rs`.
//!
//! Lifecycle: (outbound) `Connecting` — TCP connect, trying each resolved address in turn →
//! `Handshaking` (TLS; outbound: the certificate must name the dialled host exactly) → `Up` (messages
//! framed; bytes queued while connecting go out, each reported `Delivered`) → `Closing` (close_notify
//! and what is queued are flushed, bounded by a linger time) → gone. Any error ends it at once.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry};
use sip_codec::{Frame, Framer};

pub(crate) use super::close::CloseReason;
use super::listener;
use super::settings::ShellLimits;
use super::timers::{earliest, Keepalive, KeepaliveStep};
use super::tls;
use crate::proxy::io::{ConnId, NextHop, PeerInfo, Side, Token};

/// TLS input read from one connection per turn of the worker loop.
const READ_BUDGET: usize = 64 * 1024;

/// The socket as rustls reads it, noting whether a read returned less than the buffer offered.
struct ShortRead<'a> {
    stream: &'a mut TcpStream,
    short: bool,
}

impl io::Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
}
/// How long a closing connection may take to flush.
const LINGER: Duration = Duration::from_secs(2);
/// Plaintext read out of rustls per step (one TLS record's worth).
const CHUNK: usize = 16 * 1024;
/// Queued messages handed to rustls in one vectored write.
const FEED_SLICES: usize = 32;
/// Written buffers a connection keeps for the worker between two `take_spent` calls, at most.
const SPENT_KEPT: usize = 64;
const PING: &[u8] = b"\r\n\r\n";
const PONG: &[u8] = b"\r\n";

/// What a connection tells the worker while it handles I/O.
#[derive(Debug)]
pub(crate) enum ConnEvent<'a> {
    /// The handshake completed (and, outbound, the certificate named the host).
    Up(PeerInfo),
    /// Bytes queued while connecting went out on this connection.
    Delivered(Token),
    /// One framed SIP message.
    Message(&'a [u8]),
    /// The stream cannot be framed past this complete header section (body too large, bad or
    /// missing Content-Length): the core may answer it (513/400) and then closes the connection.
    Unframeable {
        head: &'a [u8],
        error: sip_codec::FrameError,
    },
}

/// The per-connection part of the limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub framing: sip_codec::Limits,
    pub write_bound: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub message_timeout: Duration,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
}

impl From<&ShellLimits> for ConnLimits {
    fn from(l: &ShellLimits) -> Self {
        ConnLimits {
            framing: l.framing(),
            write_bound: l.write_queue_bound(),
            handshake_timeout: l.handshake_timeout,
            idle_timeout: l.idle_timeout,
            message_timeout: l.message_timeout,
            connect_timeout: l.connect_timeout,
            keepalive_interval: l.keepalive_interval,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Handshaking,
    Up,
    Closing,
}

/// An outbound connection's dial state.
#[derive(Debug)]
struct Dial {
    hop: NextHop,
    /// Addresses not tried yet.
    untried: VecDeque<SocketAddr>,
    /// Messages waiting for the connection to come up.
    pending: Vec<(Option<Token>, Vec<u8>)>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    id: ConnId,
    side: Side,
    remote: SocketAddr,
    stream: TcpStream,
    tls: rustls::Connection,
    phase: Phase,
    /// Connect, handshake or linger deadline, by phase.
    phase_deadline: Instant,
    closing: Option<CloseReason>,
    close_notify_sent: bool,
    dial: Option<Dial>,
    rbuf: Vec<u8>,
    /// When the bytes now waiting in `rbuf` (an incomplete message) began to arrive: the message
    /// must complete by this plus `message_timeout`. `None` while `rbuf` is empty.
    message_started: Option<Instant>,
    framer: Framer,
    /// Set after an unframeable message was reported: further input is ignored until the close.
    discarding: bool,
    /// The last read stopped at its budget with input left: the worker must come back without
    /// waiting for a readiness event (mio is edge-triggered; none will come for data already there).
    input_pending: bool,
    wq: VecDeque<Vec<u8>>,
    /// Messages were queued since the last flush: the worker flushes once at the end of the loop
    /// turn (`flush_pending`), so what a turn produced for this peer leaves in as few TLS records
    /// and syscalls as the peer allows.
    dirty: bool,
    /// Octets of the front of `wq` already handed to rustls.
    wq_head: usize,
    /// Buffers rustls has taken every byte of, for the worker to give back to the core
    /// ([`Conn::take_spent`]) so it writes the next messages into them instead of new ones.
    spent: Vec<Vec<u8>>,
    wq_bytes: usize,
    last_rx: Instant,
    keepalive: Option<Keepalive>,
    limits: ConnLimits,
    /// The deadline armed in the worker's `Deadlines` (owned by the worker).
    pub armed: Option<Instant>,
}

impl Conn {
    /// An accepted connection; the TLS handshake starts with the client's first bytes.
    pub fn accept(
        id: ConnId,
        side: Side,
        stream: TcpStream,
        remote: SocketAddr,
        config: &std::sync::Arc<rustls::ServerConfig>,
        limits: ConnLimits,
        now: Instant,
    ) -> Result<Conn, CloseReason> {
        let tls = rustls::ServerConnection::new(std::sync::Arc::clone(config))
            .map_err(|e| CloseReason::Tls(e.to_string()))?;
        Ok(Conn::new(
            id,
            side,
            stream,
            remote,
            tls.into(),
            Phase::Handshaking,
            None,
            limits,
            now,
        ))
    }

    /// Starts a connection to `hop` at the first of `addrs` that a TCP connect can be started to.
    pub fn dial(
        id: ConnId,
        hop: NextHop,
        addrs: Vec<SocketAddr>,
        config: &std::sync::Arc<rustls::ClientConfig>,
        limits: ConnLimits,
        now: Instant,
    ) -> Result<Conn, CloseReason> {
        let name = tls::server_name(hop.fqdn.host())
            .ok_or_else(|| CloseReason::Tls(format!("{} is not a valid TLS server name", hop.fqdn)))?;
        let tls = rustls::ClientConnection::new(std::sync::Arc::clone(config), name)
            .map_err(|e| CloseReason::Tls(e.to_string()))?;
        let mut untried: VecDeque<SocketAddr> = addrs.into();
        let (stream, remote) = connect_next(&mut untried)?;
        let side = hop.side;
        let dial = Dial {
            hop,
            untried,
            pending: Vec::new(),
        };
        let mut conn = Conn::new(
            id,
            side,
            stream,
            remote,
            tls.into(),
            Phase::Connecting,
            Some(dial),
            limits,
            now,
        );
        conn.phase_deadline = now + limits.connect_timeout;
        Ok(conn)
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        id: ConnId,
        side: Side,
        stream: TcpStream,
        remote: SocketAddr,
        tls: rustls::Connection,
        phase: Phase,
        dial: Option<Dial>,
        limits: ConnLimits,
        now: Instant,
    ) -> Conn {
        // On links we dial we send the pings, so a lone CRLF there is the pong.
        let framer = if dial.is_some() {
            Framer::pinging(limits.framing)
        } else {
            Framer::new(limits.framing)
        };
        Conn {
            id,
            side,
            remote,
            stream,
            tls,
            phase,
            phase_deadline: now + limits.handshake_timeout,
            closing: None,
            close_notify_sent: false,
            dial,
            rbuf: Vec::new(),
            message_started: None,
            framer,
            discarding: false,
            input_pending: false,
            wq: VecDeque::new(),
            spent: Vec::new(),
            dirty: false,
            wq_head: 0,
            wq_bytes: 0,
            last_rx: now,
            keepalive: None,
            limits,
            armed: None,
        }
    }

    pub fn register(&mut self, registry: &Registry, token: mio::Token) -> io::Result<()> {
        registry.register(&mut self.stream, token, Interest::READABLE | Interest::WRITABLE)
    }

    pub fn deregister(&mut self, registry: &Registry) {
        // The socket is closed right after; an error here changes nothing.
        let _ = registry.deregister(&mut self.stream);
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The hop of an outbound connection.
    pub fn hop(&self) -> Option<&NextHop> {
        self.dial.as_ref().map(|d| &d.hop)
    }

    /// Octets waiting to be written (or to go out once the connection is up).
    pub fn queued_bytes(&self) -> usize {
        self.wq_bytes
    }

    /// Something is still to be written (queued, waiting for the connection, or inside rustls).
    pub fn has_output(&self) -> bool {
        self.wq_bytes > 0 || self.tls.wants_write()
    }

    /// Tokens of messages that never went out; for `DeliveryFailed` when the connection failed.
    pub fn take_pending_tokens(&mut self) -> Vec<Token> {
        self.dial
            .as_mut()
            .map(|d| d.pending.drain(..).filter_map(|(t, _)| t).collect())
            .unwrap_or_default()
    }

    /// When [`Conn::on_timer`] next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting | Phase::Handshaking | Phase::Closing => Some(self.phase_deadline),
            Phase::Up => earliest(
                earliest(
                    Some(self.last_rx + self.limits.idle_timeout),
                    self.keepalive.as_ref().map(Keepalive::deadline),
                ),
                self.message_deadline(),
            ),
        }
    }

    /// Handles readiness: completes a connect, reads and frames, writes what is queued.
    pub fn on_ready(
        &mut self,
        now: Instant,
        registry: &Registry,
        token: mio::Token,
        sink: &mut dyn FnMut(ConnEvent<'_>),
    ) -> Result<(), CloseReason> {
        if self.phase == Phase::Connecting && !self.connect_finished(now, registry, token)? {
            return Ok(());
        }
        if self.phase == Phase::Closing {
            return self.flush_closing();
        }
        self.read(now, sink)?;
        self.flush()?;
        Ok(())
    }

    /// Whether messages were queued since the last flush (the worker keeps a list of such links).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The end of a loop turn: writes what was queued during it.
    pub fn flush_pending(&mut self) -> Result<(), CloseReason> {
        if !self.dirty {
            return Ok(());
        }
        match self.phase {
            Phase::Closing => self.flush_closing(),
            _ => self.flush(),
        }
    }

    /// Whether input is left over from the last read (see `read`).
    pub fn input_pending(&self) -> bool {
        self.input_pending
    }

    /// Queues one message. Before the connection is up it waits (outbound only) and `token` is
    /// reported `Delivered` when it goes out; once up, `token` is the caller's to report. Nothing is
    /// written here: the worker calls [`Conn::flush_pending`] once per loop turn.
    pub fn send(&mut self, bytes: Vec<u8>, token: Option<Token>) -> Result<(), CloseReason> {
        match self.phase {
            Phase::Up => {
                self.enqueue(bytes)?;
                self.dirty = true;
                Ok(())
            }
            Phase::Connecting | Phase::Handshaking => {
                let len = bytes.len();
                if self.wq_bytes + len > self.limits.write_bound {
                    return Err(CloseReason::WriteOverflow);
                }
                match self.dial.as_mut() {
                    Some(dial) => {
                        dial.pending.push((token, bytes));
                        self.wq_bytes += len;
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
            Phase::Closing => Ok(()),
        }
    }

    /// Starts an orderly close: close_notify and the queue are flushed, bounded by a linger time.
    /// `Err` carries the reason once the connection is done (at once when nothing is left to write).
    pub fn close(&mut self, now: Instant, reason: CloseReason) -> Result<(), CloseReason> {
        match self.phase {
            Phase::Up => {}
            // Already closing: the first close's flush and linger stand (two unparseable messages
            // in one read make the core ask twice).
            Phase::Closing => return Ok(()),
            _ => return Err(reason),
        }
        self.phase = Phase::Closing;
        self.phase_deadline = now + LINGER;
        self.closing = Some(reason);
        self.flush_closing()
    }

    /// When the message now arriving must be complete.
    fn message_deadline(&self) -> Option<Instant> {
        match self.discarding {
            true => None,
            false => self.message_started.map(|t| t + self.limits.message_timeout),
        }
    }

    /// Deadlines: connect (next address), handshake, idle, keepalive, message, linger. A message
    /// that stalled after its whole header section is handed to the core (`sink`) to answer.
    pub fn on_timer(
        &mut self,
        now: Instant,
        registry: &Registry,
        token: mio::Token,
        sink: &mut dyn FnMut(ConnEvent<'_>),
    ) -> Result<(), CloseReason> {
        match self.phase {
            Phase::Connecting if now >= self.phase_deadline => {
                self.deregister(registry);
                self.connect_next(now, registry, token, CloseReason::ConnectTimeout)
            }
            Phase::Handshaking if now >= self.phase_deadline => Err(CloseReason::HandshakeTimeout),
            Phase::Closing if now >= self.phase_deadline => {
                Err(self.closing.clone().unwrap_or(CloseReason::Requested))
            }
            Phase::Up => {
                if self.message_deadline().is_some_and(|d| now >= d) {
                    return self.message_stalled(sink);
                }
                if now >= self.last_rx + self.limits.idle_timeout {
                    return Err(CloseReason::IdleTimeout);
                }
                let step = self.keepalive.as_mut().map(|k| k.on_timer(now));
                match step {
                    Some(KeepaliveStep::Dead) => Err(CloseReason::KeepaliveDead),
                    Some(KeepaliveStep::SendPing) => {
                        self.enqueue(PING.to_vec())?;
                        self.flush()
                    }
                    Some(KeepaliveStep::Wait) | None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// A connect in progress: `Ok(true)` once connected, `Ok(false)` while still waiting.
    fn connect_finished(
        &mut self,
        now: Instant,
        registry: &Registry,
        token: mio::Token,
    ) -> Result<bool, CloseReason> {
        let failed = match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match self.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            self.deregister(registry);
            let reason = CloseReason::Connect(format!("{}: {e}", self.remote));
            self.connect_next(now, registry, token, reason)?;
            return Ok(false);
        }
        // Best effort: a socket without these options still works.
        let _ = listener::tune(&self.stream);
        self.phase = Phase::Handshaking;
        self.phase_deadline = now + self.limits.handshake_timeout;
        Ok(true)
    }

    /// Tries the next resolved address after `failure`, or fails with it.
    fn connect_next(
        &mut self,
        now: Instant,
        registry: &Registry,
        token: mio::Token,
        failure: CloseReason,
    ) -> Result<(), CloseReason> {
        let Some(dial) = self.dial.as_mut() else {
            return Err(failure);
        };
        if dial.untried.is_empty() {
            return Err(failure);
        }
        let (stream, remote) = connect_next(&mut dial.untried)?;
        self.stream = stream;
        self.remote = remote;
        self.phase_deadline = now + self.limits.connect_timeout;
        self.register(registry, token)
            .map_err(|e| CloseReason::Connect(e.to_string()))
    }

    /// Reads until the socket would block, a read comes back short (the queue is empty), or
    /// `READ_BUDGET` octets came in (then `input_pending`):
    /// TLS records in, handshake progress, plaintext framed. The budget keeps one fast peer from
    /// holding the worker — its timers, its other connections, the effects of what was read.
    fn read(&mut self, now: Instant, sink: &mut dyn FnMut(ConnEvent<'_>)) -> Result<(), CloseReason> {
        let mut budget = READ_BUDGET;
        self.input_pending = false;
        loop {
            if budget == 0 {
                self.input_pending = true;
                return Ok(());
            }
            let mut probe = ShortRead {
                stream: &mut self.stream,
                short: false,
            };
            let read = self.tls.read_tls(&mut probe);
            let short = probe.short;
            let eof = match read {
                Ok(0) => true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CloseReason::Io(e.to_string())),
            };
            if !eof {
                self.last_rx = now;
            }
            let state = match self.tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // Send the alert rustls queued; the connection is over either way.
                    let _ = self.tls.write_tls(&mut self.stream);
                    return Err(match tls::mismatch_names(&e) {
                        Some(presented) if self.dial.is_some() => CloseReason::CertificateMismatch(presented),
                        _ => CloseReason::Tls(e.to_string()),
                    });
                }
            };
            if self.phase == Phase::Handshaking && !self.tls.is_handshaking() {
                self.handshake_done(now, sink)?;
            }
            if self.phase == Phase::Up {
                self.read_plaintext(now, sink)?;
            }
            if eof || state.peer_has_closed() {
                return Err(if self.phase == Phase::Handshaking {
                    CloseReason::Tls("peer closed during the TLS handshake".to_owned())
                } else {
                    CloseReason::PeerClosed
                });
            }
            if short {
                // The socket gave less than asked: its receive queue was empty after this read, so
                // the next octet to arrive raises a new edge. Reading again would only fetch
                // EAGAIN — one syscall per wake-up (tokio clears readiness on a short read too).
                return Ok(());
            }
        }
    }

    /// The message in `rbuf` did not complete in time. With its header section there, the core
    /// answers it (408) and closes; without, there is nothing to answer.
    fn message_stalled(&mut self, sink: &mut dyn FnMut(ConnEvent<'_>)) -> Result<(), CloseReason> {
        let ms = u64::try_from(self.limits.message_timeout.as_millis()).unwrap_or(u64::MAX);
        let error = sip_codec::FrameError::Stalled(ms);
        let head = memchr::memmem::find(&self.rbuf, b"\r\n\r\n").and_then(|i| self.rbuf.get(..i + 4));
        match head {
            Some(head) => {
                sink(ConnEvent::Unframeable { head, error });
                self.discarding = true;
                self.rbuf.clear();
                self.message_started = None;
                Ok(())
            }
            None => Err(CloseReason::Framing(error)),
        }
    }

    fn handshake_done(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(ConnEvent<'_>),
    ) -> Result<(), CloseReason> {
        // On links we dialled the exact-name check already ran inside the handshake (tls.rs,
        // ExactNameVerifier): a mismatch never gets here.
        let leaf = self.tls.peer_certificates().and_then(|c| c.first());
        let identities = leaf.map(tls::peer_identities).unwrap_or_default();
        self.phase = Phase::Up;
        self.last_rx = now;
        if self.dial.is_some() {
            self.keepalive = Keepalive::new(now, self.limits.keepalive_interval);
        }
        sink(ConnEvent::Up(PeerInfo {
            side: self.side,
            remote: self.remote,
            identities,
            dialled: self.dial.as_ref().map(|d| d.hop.fqdn.clone()),
        }));
        let pending = self
            .dial
            .as_mut()
            .map(|d| std::mem::take(&mut d.pending))
            .unwrap_or_default();
        self.wq_bytes = 0;
        for (token, bytes) in pending {
            self.enqueue(bytes)?;
            if let Some(token) = token {
                sink(ConnEvent::Delivered(token));
            }
        }
        Ok(())
    }

    fn read_plaintext(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(ConnEvent<'_>),
    ) -> Result<(), CloseReason> {
        let mut chunk = [0u8; CHUNK];
        if self.discarding {
            // Drain rustls so the connection can still flush and close; the bytes are dropped.
            while matches!(self.tls.reader().read(&mut chunk), Ok(n) if n > 0) {}
            return Ok(());
        }
        loop {
            match self.tls.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.rbuf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Closed without close_notify: frame what arrived, the read loop sees the EOF.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(CloseReason::Io(e.to_string())),
            }
        }
        let mut start = 0usize;
        loop {
            let rest = self.rbuf.get(start..).unwrap_or(&[]);
            let frame = match self.framer.poll(rest) {
                Ok(frame) => frame,
                Err(error) => {
                    // With a whole header section the core can still answer (513/400) before the
                    // close; without one there is nothing to answer.
                    let head = memchr::memmem::find(rest, b"\r\n\r\n").and_then(|i| rest.get(..i + 4));
                    let answerable = !matches!(
                        error,
                        sip_codec::FrameError::HeadTooLarge(_)
                            | sip_codec::FrameError::TooManyHeaders(_)
                            | sip_codec::FrameError::NotSip(_)
                    );
                    match head {
                        Some(head) if answerable => {
                            sink(ConnEvent::Unframeable { head, error });
                            self.discarding = true;
                            self.rbuf.clear();
                            return Ok(());
                        }
                        _ => return Err(CloseReason::Framing(error)),
                    }
                }
            };
            match frame {
                Frame::NeedMore => break,
                Frame::Ping => self.enqueue(PONG.to_vec())?,
                Frame::Pong => {
                    if let Some(k) = self.keepalive.as_mut() {
                        k.on_pong();
                    }
                }
                Frame::Message { len, .. } => sink(ConnEvent::Message(rest.get(..len).unwrap_or(&[]))),
            }
            start += frame.consumed();
        }
        self.rbuf.drain(..start.min(self.rbuf.len()));
        // The bound runs from the first octet of a message; what completes a message resets it.
        if self.rbuf.is_empty() {
            self.message_started = None;
        } else if start > 0 || self.message_started.is_none() {
            self.message_started = Some(now);
        }
        // One large message must not pin its buffer for the rest of a long-lived link.
        if self.rbuf.capacity() > 4 * CHUNK && self.rbuf.len() < CHUNK {
            self.rbuf.shrink_to(CHUNK);
        }
        Ok(())
    }

    /// The buffers written out since the last call (see `spent`).
    pub fn take_spent(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.spent.drain(..)
    }

    fn enqueue(&mut self, bytes: Vec<u8>) -> Result<(), CloseReason> {
        if self.wq_bytes + bytes.len() > self.limits.write_bound {
            return Err(CloseReason::WriteOverflow);
        }
        self.wq_bytes += bytes.len();
        self.wq.push_back(bytes);
        Ok(())
    }

    /// Writes until the socket would block or nothing is left. Queued messages are handed to rustls
    /// (coalesced into records) until its own buffer is full (its limit,
    /// 64 KiB by default, bounds it), then written with as few syscalls as the socket takes; what
    /// still waits is counted in `wq_bytes` against the write bound.
    fn flush(&mut self) -> Result<(), CloseReason> {
        self.dirty = false;
        self.flush_inner().map(|_| ())
    }

    /// Hands rustls the queued plaintext (up to `FEED_SLICES` messages in one vectored write, which
    /// rustls packs into as few records as their size allows). The number of octets rustls took; 0
    /// when its buffer is full or nothing waits.
    fn feed_tls(&mut self) -> Result<usize, CloseReason> {
        // rustls's vectored write coalesces the slices into records itself: no copy of ours, and
        // no buffer kept per connection.
        let mut slices = [io::IoSlice::new(&[]); FEED_SLICES];
        let mut count = 0;
        let mut head = self.wq_head;
        for (slot, m) in slices.iter_mut().zip(self.wq.iter()) {
            *slot = io::IoSlice::new(m.get(head..).unwrap_or(&[]));
            head = 0;
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        let n = self
            .tls
            .writer()
            .write_vectored(slices.get(..count).unwrap_or(&[]))
            .map_err(|e| CloseReason::Io(e.to_string()))?;
        // Drop what rustls took from the front of the queue.
        let mut left = n;
        while left > 0 {
            let Some(front) = self.wq.front() else { break };
            let rest = front.len().saturating_sub(self.wq_head);
            if left >= rest {
                left -= rest;
                if let Some(done) = self.wq.pop_front() {
                    if self.spent.len() < SPENT_KEPT {
                        self.spent.push(done);
                    }
                }
                self.wq_head = 0;
            } else {
                self.wq_head += left;
                left = 0;
            }
        }
        self.wq_bytes = self.wq_bytes.saturating_sub(n);
        Ok(n)
    }

    /// `Ok(true)` when everything is written.
    fn flush_inner(&mut self) -> Result<bool, CloseReason> {
        if self.phase == Phase::Connecting {
            return Ok(false);
        }
        loop {
            if matches!(self.phase, Phase::Up | Phase::Closing) {
                while self.feed_tls()? > 0 {}
            }
            if !self.tls.wants_write()
                && !self.wq.is_empty()
                && matches!(self.phase, Phase::Up | Phase::Closing)
            {
                // rustls takes nothing and has nothing to write: wait for the next readiness.
                return Ok(false);
            }
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(CloseReason::Io("socket accepted no bytes".to_owned())),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(CloseReason::Io(e.to_string())),
                }
            }
            if !matches!(self.phase, Phase::Up | Phase::Closing) || self.wq.is_empty() {
                return Ok(true);
            }
        }
    }

    /// Closing: the queue, then close_notify, then a TCP half-close; `Err(reason)` when done.
    fn flush_closing(&mut self) -> Result<(), CloseReason> {
        let reason = self.closing.clone().unwrap_or(CloseReason::Requested);
        if !self.flush_inner()? {
            return Ok(());
        }
        if !self.close_notify_sent {
            self.tls.send_close_notify();
            self.close_notify_sent = true;
            if !self.flush_inner()? {
                return Ok(());
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        Err(reason)
    }
}

/// Starts a TCP connect to the first address that accepts one.
fn connect_next(untried: &mut VecDeque<SocketAddr>) -> Result<(TcpStream, SocketAddr), CloseReason> {
    let mut last = CloseReason::Connect("no address to connect to".to_owned());
    while let Some(addr) = untried.pop_front() {
        match TcpStream::connect(addr) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = CloseReason::Connect(format!("{addr}: {e}")),
        }
    }
    Err(last)
}
