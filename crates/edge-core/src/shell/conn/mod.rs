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
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry};
use sip_codec::Framer;

mod dial;
use dial::connect_next;
mod read;
mod write;

pub(crate) use super::close::{CloseReason, ConnectFailure, IoCause, TlsCause};
use super::listener;
use super::settings::ShellLimits;
use super::timers::{earliest, Keepalive, KeepaliveStep};
use super::tls;
use crate::proxy::io::{ConnId, NextHop, PeerInfo, Side, Token};

/// How long a closing connection may take to flush.
const LINGER: Duration = Duration::from_secs(2);
/// Plaintext read out of rustls per step (one TLS record's worth).
const CHUNK: usize = 16 * 1024;
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

/// The stage of a connection's life, for the worker (which pools links by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Handshaking,
    Up,
    Closing,
}

/// A connection's stage with what only that stage has: the TCP connect and the TLS handshake each
/// bounded by a deadline; once up, the keepalive of a link we dialled; closing, why, whether
/// close_notify went out, bounded by the linger time. Connecting → Handshaking → Up → Closing, and
/// from any stage to the end.
#[derive(Debug)]
enum State {
    Connecting {
        deadline: Instant,
    },
    Handshaking {
        deadline: Instant,
    },
    Up {
        keepalive: Option<Keepalive>,
    },
    Closing {
        reason: CloseReason,
        deadline: Instant,
        close_notify_sent: bool,
    },
}

impl State {
    fn phase(&self) -> Phase {
        match self {
            State::Connecting { .. } => Phase::Connecting,
            State::Handshaking { .. } => Phase::Handshaking,
            State::Up { .. } => Phase::Up,
            State::Closing { .. } => Phase::Closing,
        }
    }
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
    state: State,
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
    /// What waits to be written (`write.rs`).
    out: write::Outbox,
    last_rx: Instant,
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
            .map_err(|e| CloseReason::Tls(TlsCause::of(&e), e.to_string()))?;
        Ok(Conn::new(
            id,
            side,
            stream,
            remote,
            tls.into(),
            State::Handshaking {
                deadline: now + limits.handshake_timeout,
            },
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
        let name = tls::server_name(hop.fqdn.host()).ok_or_else(|| {
            CloseReason::Tls(
                TlsCause::Protocol,
                format!("{} is not a valid TLS server name", hop.fqdn),
            )
        })?;
        let tls = rustls::ClientConnection::new(std::sync::Arc::clone(config), name)
            .map_err(|e| CloseReason::Tls(TlsCause::of(&e), e.to_string()))?;
        let mut untried: VecDeque<SocketAddr> = addrs.into();
        let (stream, remote) = connect_next(&mut untried)?;
        let side = hop.side;
        let dial = Dial {
            hop,
            untried,
            pending: Vec::new(),
        };
        Ok(Conn::new(
            id,
            side,
            stream,
            remote,
            tls.into(),
            State::Connecting {
                deadline: now + limits.connect_timeout,
            },
            Some(dial),
            limits,
            now,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        id: ConnId,
        side: Side,
        stream: TcpStream,
        remote: SocketAddr,
        tls: rustls::Connection,
        state: State,
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
            state,
            dial,
            rbuf: Vec::new(),
            message_started: None,
            framer,
            discarding: false,
            input_pending: false,
            out: write::Outbox::default(),
            last_rx: now,
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
        self.state.phase()
    }

    /// The hop of an outbound connection.
    pub fn hop(&self) -> Option<&NextHop> {
        self.dial.as_ref().map(|d| &d.hop)
    }

    /// Octets waiting to be written (or to go out once the connection is up).
    pub fn queued_bytes(&self) -> usize {
        self.out.bytes()
    }

    /// Something is still to be written (queued, waiting for the connection, or inside rustls).
    pub fn has_output(&self) -> bool {
        self.out.bytes() > 0 || self.tls.wants_write()
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
        match &self.state {
            State::Connecting { deadline }
            | State::Handshaking { deadline }
            | State::Closing { deadline, .. } => Some(*deadline),
            State::Up { keepalive } => earliest(
                earliest(
                    Some(self.last_rx + self.limits.idle_timeout),
                    keepalive.as_ref().map(Keepalive::deadline),
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
        if self.phase() == Phase::Connecting && !self.connect_finished(now, registry, token)? {
            return Ok(());
        }
        if self.phase() == Phase::Closing {
            return self.flush_closing();
        }
        self.read(now, sink)?;
        self.flush()?;
        Ok(())
    }

    /// Whether messages were queued since the last flush (the worker keeps a list of such links).
    pub fn is_dirty(&self) -> bool {
        self.out.dirty
    }

    /// The end of a loop turn: writes what was queued during it.
    pub fn flush_pending(&mut self) -> Result<(), CloseReason> {
        if !self.out.dirty {
            return Ok(());
        }
        match self.phase() {
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
        match self.phase() {
            Phase::Up => {
                self.enqueue(bytes)?;
                self.out.dirty = true;
                Ok(())
            }
            Phase::Connecting | Phase::Handshaking => {
                let bound = self.limits.write_bound;
                match self.dial.as_mut() {
                    Some(dial) => {
                        self.out.reserve(bytes.len(), bound)?;
                        dial.pending.push((token, bytes));
                        Ok(())
                    }
                    None if self.out.bytes() + bytes.len() > bound => Err(CloseReason::WriteOverflow),
                    None => Ok(()),
                }
            }
            Phase::Closing => Ok(()),
        }
    }

    /// Starts an orderly close: close_notify and the queue are flushed, bounded by a linger time.
    /// `Err` carries the reason once the connection is done (at once when nothing is left to write).
    pub fn close(&mut self, now: Instant, reason: CloseReason) -> Result<(), CloseReason> {
        match self.phase() {
            Phase::Up => {}
            // Already closing: the first close's flush and linger stand (two unparseable messages
            // in one read make the core ask twice).
            Phase::Closing => return Ok(()),
            _ => return Err(reason),
        }
        self.state = State::Closing {
            reason,
            deadline: now + LINGER,
            close_notify_sent: false,
        };
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
        match &mut self.state {
            State::Connecting { deadline } if now >= *deadline => {
                self.deregister(registry);
                self.connect_next(now, registry, token, CloseReason::ConnectTimeout)
            }
            State::Handshaking { deadline } if now >= *deadline => Err(CloseReason::HandshakeTimeout),
            State::Closing { deadline, reason, .. } if now >= *deadline => Err(reason.clone()),
            State::Up { .. } => {
                if self.message_deadline().is_some_and(|d| now >= d) {
                    return self.message_stalled(sink);
                }
                if now >= self.last_rx + self.limits.idle_timeout {
                    return Err(CloseReason::IdleTimeout);
                }
                let step = match &mut self.state {
                    State::Up { keepalive: Some(k) } => Some(k.on_timer(now)),
                    _ => None,
                };
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
}
