//! [`Stream`]: one non-blocking connection of the bench (a `mio` TCP stream, plain or under a
//! rustls session), shared by the generator (`gen.rs`) and the sink (`sink.rs`). Reads drain the
//! socket to `WouldBlock` into [`Stream::input`]; writes are queued ([`Stream::queue`]) and sent by
//! one [`Stream::flush`] per event-loop turn, so what a turn produced leaves in as few TLS records
//! and syscalls as the socket takes — the bench must cost less per transaction than what it measures.
//!
//! Lifecycle: connected (TLS: handshaking inside rustls, application data queued meanwhile) →
//! open → closed (EOF, error, or a TLS alert), after which the owner drops it.

use std::io::{self, ErrorKind, Read, Write};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use sip_codec::{Frame, Framer, Limits};

/// Read chunk size; one read per chunk until the socket is drained.
const CHUNK: usize = 64 * 1024;

#[derive(Debug)]
pub struct Stream {
    pub sock: TcpStream,
    tls: Option<rustls::Connection>,
    /// Plain TCP: bytes queued and not yet written.
    out: Vec<u8>,
    /// Received application bytes not yet consumed by the owner's framer.
    pub input: Vec<u8>,
    framer: Framer,
    /// The interest last registered (re-registered only when it changes).
    writable: bool,
    /// Octets read from the socket so far (TLS records included).
    bytes_in: u64,
}

impl Stream {
    pub fn new(sock: TcpStream, tls: Option<rustls::Connection>) -> Stream {
        Stream {
            sock,
            tls,
            out: Vec::new(),
            input: Vec::new(),
            framer: Framer::new(Limits::default()),
            writable: false,
            bytes_in: 0,
        }
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        self.writable = true;
        reg.register(&mut self.sock, token, Interest::READABLE | Interest::WRITABLE)
    }

    /// Whether the TLS handshake (if any) is done.
    pub fn ready(&self) -> bool {
        self.tls.as_ref().is_none_or(|t| !t.is_handshaking())
    }

    /// Reads everything the socket has into [`Stream::input`]. `Ok(false)`: the peer closed.
    pub fn read(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        match &mut self.tls {
            None => loop {
                match self.sock.read(scratch) {
                    Ok(0) => return Ok(false),
                    Ok(n) => {
                        self.bytes_in += n as u64;
                        self.input.extend_from_slice(scratch.get(..n).unwrap_or_default());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Some(tls) => loop {
                match tls.read_tls(&mut self.sock) {
                    Ok(0) => return Ok(false),
                    Ok(n) => {
                        self.bytes_in += n as u64;
                        let state = tls
                            .process_new_packets()
                            .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
                        let mut left = state.plaintext_bytes_to_read();
                        while left > 0 {
                            let n = tls.reader().read(scratch)?;
                            if n == 0 {
                                break;
                            }
                            self.input.extend_from_slice(scratch.get(..n).unwrap_or_default());
                            left = left.saturating_sub(n);
                        }
                        if state.peer_has_closed() {
                            return Ok(false);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Hands every whole message of [`Stream::input`] to `on_message`, in order, and drains them; a
    /// keepalive ping is answered with a pong. `false`: a framing error or `on_message` refused a
    /// message — the stream's boundaries are lost, close it.
    pub fn frames(&mut self, mut on_message: impl FnMut(&[u8]) -> bool) -> bool {
        let mut at = 0;
        let mut pings = 0;
        let ok = loop {
            let rest = self.input.get(at..).unwrap_or_default();
            match self.framer.poll(rest) {
                Ok(Frame::NeedMore) => break true,
                Ok(Frame::Message { len, .. }) => {
                    if !on_message(rest.get(..len).unwrap_or_default()) {
                        break false;
                    }
                    at += len;
                }
                Ok(f) => {
                    pings += usize::from(f == Frame::Ping);
                    at += f.consumed();
                }
                Err(_) => break false,
            }
        };
        self.input.drain(..at.min(self.input.len()));
        for _ in 0..pings {
            if self.queue(b"\r\n").is_err() {
                return false;
            }
        }
        ok
    }

    /// Octets read from the socket so far (TLS records included).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// TLS: queues a close_notify alert (sent by the next [`Stream::flush`]); plain TCP: nothing.
    pub fn close_notify(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
        }
    }

    /// Whether the finished handshake resumed a session (`None`: plain TCP, still handshaking, or a
    /// server-side stream).
    pub fn resumed(&self) -> Option<bool> {
        match &self.tls {
            Some(rustls::Connection::Client(c)) => {
                c.handshake_kind().map(|k| k == rustls::HandshakeKind::Resumed)
            }
            _ => None,
        }
    }

    /// Queues application bytes (sent by the next [`Stream::flush`]).
    pub fn queue(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => {
                self.out.extend_from_slice(bytes);
                Ok(())
            }
            Some(tls) => tls.writer().write_all(bytes),
        }
    }

    /// Whether anything waits to be written.
    pub fn pending(&self) -> bool {
        match &self.tls {
            None => !self.out.is_empty(),
            Some(tls) => tls.wants_write(),
        }
    }

    /// Writes what is queued until done or `WouldBlock`, then asks for WRITABLE only if bytes are
    /// left (no wake-ups for an idle writable socket).
    pub fn flush(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        match &mut self.tls {
            None => {
                let mut sent = 0;
                while sent < self.out.len() {
                    match self.sock.write(self.out.get(sent..).unwrap_or_default()) {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                self.out.drain(..sent);
            }
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let want = self.pending();
        if want != self.writable {
            self.writable = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            reg.reregister(&mut self.sock, token, interest)?;
        }
        Ok(())
    }
}

/// A non-blocking connect to `target` from `source` (port chosen by the kernel; `None`: the
/// kernel chooses the address too). Binding first spreads many connections over several loopback
/// addresses (127.0.0.x), each with its own ephemeral ports and per-IP limits.
pub fn connect_from(source: Option<std::net::IpAddr>, target: std::net::SocketAddr) -> io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(target);
    };
    let domain = socket2::Domain::for_address(target);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.bind(&std::net::SocketAddr::new(ip, 0).into())?;
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) || e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// Linux's EINPROGRESS (a non-blocking connect under way).
const EINPROGRESS: i32 = 115;

/// A scratch buffer for [`Stream::read`].
pub fn scratch() -> Vec<u8> {
    vec![0; CHUNK]
}
