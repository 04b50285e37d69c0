//! [`TlsUas`]: a SIP-over-TLS server peer — the front end the edge forwards to (its internal next
//! hop) or the partner edge the edge dials. A std `TcpListener` on 127.0.0.1:0, rustls with its own
//! certificate, client certificates required from one CA; one thread per connection. Each request
//! is recorded and handed to the handler, whose replies are sent on the same connection (at once
//! or after a delay, without blocking the reading of e.g. a CANCEL). [`TlsUas::stop`] closes the
//! listener and every connection: the peer is "killed".

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::CertificateDer;
use sip_codec::{parse, Frame, Framer, Message};

use super::pki::Identity;

/// What the handler wants sent back for one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Now(String),
    After(Duration, String),
}

impl From<String> for Reply {
    fn from(s: String) -> Reply {
        Reply::Now(s)
    }
}

type Handler = dyn Fn(&Message<'_>) -> Vec<Reply> + Send + Sync;

/// A connection's lifetime cap: no thread of the harness outlives a test by much.
const MAX_LIFETIME: Duration = Duration::from_secs(300);
const SLICE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<String>>,
    responses: Mutex<Vec<String>>,
    /// Certificate names the connecting clients presented (leaf SAN/CN, raw DER kept short).
    handshakes: Mutex<Vec<Result<usize, String>>>,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
    /// Hung: reads nothing, answers nothing (no pong either), keeps every socket open — a peer
    /// only the keepalive can find dead.
    frozen: AtomicBool,
}

pub struct TlsUas {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for TlsUas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsUas").field("addr", &self.addr).finish()
    }
}

fn server_config(identity: &Identity, client_ca: &CertificateDer<'static>) -> Arc<ServerConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(client_ca.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider())
        .build()
        .unwrap();
    let cfg = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key())
        .unwrap();
    Arc::new(cfg)
}

impl TlsUas {
    /// A UAS whose handler answers each request with zero or more responses sent at once.
    pub fn start(
        identity: &Identity,
        client_ca: &CertificateDer<'static>,
        handler: impl Fn(&Message<'_>) -> Vec<String> + Send + Sync + 'static,
    ) -> TlsUas {
        TlsUas::start_with(identity, client_ca, move |m| {
            handler(m).into_iter().map(Reply::Now).collect()
        })
    }

    /// A UAS answering 200 (with `to_tag`) to every request but ACK.
    pub fn ok(identity: &Identity, client_ca: &CertificateDer<'static>, to_tag: &'static str) -> TlsUas {
        TlsUas::start(identity, client_ca, move |m: &Message<'_>| match m.method() {
            Some("ACK") => vec![],
            _ => vec![super::sip::reply(m, 200, "OK", Some(to_tag))],
        })
    }

    /// A UAS that records requests and never answers.
    pub fn silent(identity: &Identity, client_ca: &CertificateDer<'static>) -> TlsUas {
        TlsUas::start(identity, client_ca, |_| Vec::new())
    }

    /// A UAS whose handler may also delay its responses.
    pub fn start_with(
        identity: &Identity,
        client_ca: &CertificateDer<'static>,
        handler: impl Fn(&Message<'_>) -> Vec<Reply> + Send + Sync + 'static,
    ) -> TlsUas {
        TlsUas::start_at(0, identity, client_ca, handler)
    }

    /// [`TlsUas::start_with`] on a given port of 127.0.0.1 (0: any) — a peer restarted where the
    /// edge's configuration points.
    pub fn start_at(
        port: u16,
        identity: &Identity,
        client_ca: &CertificateDer<'static>,
        handler: impl Fn(&Message<'_>) -> Vec<Reply> + Send + Sync + 'static,
    ) -> TlsUas {
        let cfg = server_config(identity, client_ca);
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let workers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let shared = Arc::clone(&shared);
            let workers = Arc::clone(&workers);
            std::thread::spawn(move || {
                let started = Instant::now();
                while !shared.stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LIFETIME {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let _ = sock.set_nonblocking(false);
                            if let Ok(clone) = sock.try_clone() {
                                shared.conns.lock().unwrap().push(clone);
                            }
                            let (shared, handler, cfg) =
                                (Arc::clone(&shared), Arc::clone(&handler), Arc::clone(&cfg));
                            let h = std::thread::spawn(move || serve(sock, cfg, &shared, &*handler));
                            workers.lock().unwrap().push(h);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                // The listener is dropped here: new connections are refused from now on.
            })
        };
        TlsUas {
            addr,
            shared,
            threads: vec![accept],
            workers,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every response received so far (to requests the edge sent... none expected of a UAS).
    pub fn responses(&self) -> Vec<String> {
        self.shared.responses.lock().unwrap().clone()
    }

    /// TLS handshakes: Ok(connection number) or the error.
    pub fn handshakes(&self) -> Vec<Result<usize, String>> {
        self.shared.handshakes.lock().unwrap().clone()
    }

    /// Waits (bounded) for a request with `pred`, the `nth` such (0-based).
    pub fn wait_request(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_nth(timeout, 0, pred)
    }

    pub fn wait_nth(&self, timeout: Duration, nth: usize, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.requests().into_iter().filter(|r| pred(r)).nth(nth) {
                return Some(r);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until at least `n` requests with `pred` arrived; how many did.
    pub fn wait_count(&self, timeout: Duration, n: usize, pred: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.requests().iter().filter(|r| pred(r)).count();
            if c >= n || Instant::now() >= deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the peer: the listener closes, every connection is shut down.
    /// The peer hangs from now on (see `Shared::frozen`).
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let workers: Vec<JoinHandle<()>> = self.workers.lock().unwrap().drain(..).collect();
        for t in workers {
            let _ = t.join();
        }
    }
}

impl Drop for TlsUas {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(sock: TcpStream, cfg: Arc<ServerConfig>, shared: &Shared, handler: &Handler) {
    let started = Instant::now();
    let n = shared.handshakes.lock().unwrap().len();
    let Ok(conn) = ServerConnection::new(cfg) else {
        return;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = sock.set_nodelay(true);
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        if shared.stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(10) {
            return;
        }
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            shared.handshakes.lock().unwrap().push(Err(e.to_string()));
            return;
        }
    }
    shared.handshakes.lock().unwrap().push(Ok(n));
    let _ = stream.sock.set_read_timeout(Some(SLICE));
    let mut buf: Vec<u8> = Vec::new();
    let mut framer = Framer::default();
    let mut scheduled: Vec<(Instant, String)> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    while !shared.stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LIFETIME {
        if shared.frozen.load(Ordering::SeqCst) {
            std::thread::sleep(SLICE);
            continue;
        }
        // Due delayed replies first.
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = scheduled.into_iter().partition(|(at, _)| *at <= now);
        scheduled = later;
        for (_, text) in due {
            if stream
                .write_all(text.as_bytes())
                .and_then(|()| stream.flush())
                .is_err()
            {
                return;
            }
        }
        // Every whole frame in the buffer.
        for _ in 0..1000 {
            match framer.poll(&buf) {
                Ok(Frame::Message { len, .. }) => {
                    let bytes: Vec<u8> = buf.drain(..len).collect();
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let Ok(msg) = parse(&bytes) else {
                        shared.requests.lock().unwrap().push(text);
                        continue;
                    };
                    if !msg.is_request() {
                        shared.responses.lock().unwrap().push(text);
                        continue;
                    }
                    shared.requests.lock().unwrap().push(text);
                    for r in handler(&msg) {
                        match r {
                            Reply::Now(t) => {
                                if stream
                                    .write_all(t.as_bytes())
                                    .and_then(|()| stream.flush())
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Reply::After(d, t) => scheduled.push((Instant::now() + d, t)),
                        }
                    }
                }
                Ok(Frame::Ping) => {
                    buf.drain(..4);
                    let _ = stream.write_all(b"\r\n");
                    let _ = stream.flush();
                }
                Ok(Frame::Pong) => {
                    buf.drain(..2);
                }
                Ok(Frame::NeedMore) => break,
                Err(_) => return,
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}
