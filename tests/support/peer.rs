//! [`TlsPeer`]: a SIP-over-TLS client (rustls on a std `TcpStream`, every read with a timeout) — a
//! front end on the internal listener, or a partner on the external one. What it receives is cut
//! into messages with `sip_codec::Framer`; RFC 5626 pings are answered.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName};
use sip_codec::{Frame, Framer};

use super::pki::Identity;
use super::sip;

/// Longest single socket wait; longer waits are loops of these (so deadlines hold).
const SLICE: Duration = Duration::from_millis(100);

pub struct TlsPeer {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    framer: Framer,
    /// Received but not yet handed out (skipped by `recv_matching`).
    queue: VecDeque<String>,
    /// Every message received, in order.
    pub received: Vec<String>,
    closed: Option<String>,
    pub local_addr: SocketAddr,
}

impl std::fmt::Debug for TlsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPeer")
            .field("local_addr", &self.local_addr)
            .field("closed", &self.closed)
            .finish()
    }
}

pub fn client_config(identity: &Identity, trust: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let cfg = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain.clone(), identity.key())
        .unwrap();
    Arc::new(cfg)
}

impl TlsPeer {
    /// Connects to `addr` presenting `identity`, trusting `trust` for the server certificate, with
    /// SNI (and the name checked) `server_name`. The TLS handshake is completed here (bounded).
    pub fn connect(
        addr: SocketAddr,
        identity: &Identity,
        trust: &CertificateDer<'static>,
        server_name: &str,
    ) -> std::io::Result<TlsPeer> {
        let cfg = client_config(identity, trust);
        let name = ServerName::try_from(server_name.to_owned()).map_err(std::io::Error::other)?;
        let conn = ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        sock.set_write_timeout(Some(Duration::from_secs(5)))?;
        sock.set_nodelay(true)?;
        let local_addr = sock.local_addr()?;
        let mut stream = StreamOwned::new(conn, sock);
        let deadline = Instant::now() + Duration::from_secs(5);
        while stream.conn.is_handshaking() {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ));
            }
            stream.conn.complete_io(&mut stream.sock)?;
        }
        stream.sock.set_read_timeout(Some(SLICE))?;
        Ok(TlsPeer {
            stream,
            buf: Vec::new(),
            framer: Framer::default(),
            queue: VecDeque::new(),
            received: Vec::new(),
            closed: None,
            local_addr,
        })
    }

    /// The end-entity certificate the server presented in the handshake.
    pub fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
    }

    /// Sends SIP text, `\n` line ends turned into `\r\n`.
    pub fn send(&mut self, text: &str) {
        self.send_raw(sip::crlf(text).as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Sends, reporting a failure instead of panicking (the edge may have closed the link).
    pub fn try_send(&mut self, text: &str) -> std::io::Result<()> {
        self.stream.write_all(sip::crlf(text).as_bytes())?;
        self.stream.flush()
    }

    /// Why the connection is known closed (EOF, TLS alert, reset), if it is.
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// The next message within `timeout`; `None` on timeout or close (see [`TlsPeer::closed`]).
    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        if let Some(m) = self.queue.pop_front() {
            return Some(m);
        }
        self.read_one(Instant::now() + timeout)
    }

    /// The next message for which `pred` holds within `timeout`; others stay queued for `recv`.
    pub fn recv_matching(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(i) = self.queue.iter().position(|m| pred(m)) {
            return self.queue.remove(i);
        }
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000 {
            let m = self.read_one(deadline)?;
            if pred(&m) {
                return Some(m);
            }
            self.queue.push_back(m);
        }
        None
    }

    /// The response with `status` for CSeq method `method`.
    pub fn recv_response(&mut self, timeout: Duration, status: u16, method: &str) -> Option<String> {
        self.recv_matching(timeout, |m| {
            sip::status(m) == status && sip::cseq_method(m) == method
        })
    }

    /// The first final (>= 200) response to CSeq method `method`.
    pub fn recv_final(&mut self, timeout: Duration, method: &str) -> Option<String> {
        self.recv_matching(timeout, |m| {
            sip::status(m) >= 200 && sip::cseq_method(m) == method
        })
    }

    /// Every message arriving within `window` (queued ones first).
    pub fn drain(&mut self, window: Duration) -> Vec<String> {
        let mut out: Vec<String> = self.queue.drain(..).collect();
        let deadline = Instant::now() + window;
        for _ in 0..10_000 {
            match self.read_one(deadline) {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }

    /// Waits until the connection is closed by the other side; whether it was within `timeout`.
    /// Messages arriving meanwhile are kept in `received`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000 {
            if self.closed.is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if let Some(m) = self.read_one(deadline) {
                self.queue.push_back(m);
            }
        }
        self.closed.is_some()
    }

    fn read_one(&mut self, deadline: Instant) -> Option<String> {
        for _ in 0..100_000 {
            match self.framer.poll(&self.buf) {
                Ok(Frame::Message { len, .. }) => {
                    let bytes: Vec<u8> = self.buf.drain(..len).collect();
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    self.received.push(text.clone());
                    return Some(text);
                }
                Ok(Frame::Ping) => {
                    self.buf.drain(..4);
                    let _ = self.stream.write_all(b"\r\n");
                    let _ = self.stream.flush();
                    continue;
                }
                Ok(Frame::Pong) => {
                    self.buf.drain(..2);
                    continue;
                }
                Ok(Frame::NeedMore) => {}
                Err(e) => panic!(
                    "the edge sent an unframeable stream ({e}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
            if self.closed.is_some() || Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = Some("EOF".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => self.closed = Some(e.to_string()),
            }
        }
        None
    }
}
