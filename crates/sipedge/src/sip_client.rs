//! The edge's own SIP client, shared by `sipedge send` and `sipedge test-push` (and the in-process
//! `/probe/push`): a rustls client configuration (on the edge's provider) from a known server's
//! certificate, key and the CA the edge's certificate chains to ([`client_config`] from PEM files,
//! [`client_config_der`] from loaded DER); one mutual-TLS connection to an edge's internal listener; one well-formed
//! out-of-dialog request ([`request`]); every response to it read with the `sip_codec` framer until
//! a final one or the deadline ([`transact`]). Failures come back as a [`ClientError`] that says
//! which step failed (setup, connect, TLS, the connection, the deadline), so callers can name the
//! flag or key to check. Nothing here prints.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sip_codec::{Frame, Framer, HeaderName};

/// Longest single socket wait, so the overall deadline holds.
const SLICE: Duration = Duration::from_millis(100);
/// Longest TCP connect wait (within the overall timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no final response came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Unusable arguments, files or TLS material (nothing was sent).
    Setup(String),
    /// The TCP connection to the edge failed.
    Connect { edge: SocketAddr, error: String },
    /// The TLS handshake (or the first write) failed.
    Tls { edge: SocketAddr, error: String },
    /// The edge closed the connection before a final response (e.g. a client certificate that
    /// names no known server: the edge closes at once).
    Closed,
    /// The connection failed after the handshake (a TLS alert, a reset).
    Connection(String),
    /// The edge sent bytes that are not SIP.
    Stream(String),
    /// No final response within the timeout (milliseconds).
    Timeout(u64),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Setup(e) => f.write_str(e),
            ClientError::Connect { edge, error } => write!(
                f,
                "cannot connect to {edge}: {error} (is `sipedge run` running and listening there?)"
            ),
            ClientError::Tls { edge, error } => write!(f, "TLS with {edge} failed: {error}"),
            ClientError::Closed => f.write_str("the edge closed the connection before a final response"),
            ClientError::Connection(e) => write!(f, "the edge's connection failed: {e}"),
            ClientError::Stream(e) => write!(f, "the edge sent a stream that cannot be framed: {e}"),
            ClientError::Timeout(ms) => write!(f, "no final response within {ms} ms"),
        }
    }
}

/// One response to our request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The reason phrase (`Server Time-out`).
    pub reason: String,
    /// The status line as received.
    pub start_line: String,
    /// `ms-diagnostics`, `ms-diagnostics-public` and `Warning` headers, (name as written, unfolded
    /// value), in order.
    pub diagnostics: Vec<(String, String)>,
}

impl Response {
    /// The value of the first `ms-diagnostics` header, if any.
    pub fn ms_diagnostics(&self) -> Option<&str> {
        self.diagnostics
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("ms-diagnostics"))
            .map(|(_, v)| v.as_str())
    }
}

/// What [`transact`] reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// The TCP connection is up (the TLS handshake comes with the first write).
    Connected,
    /// A response to our request, provisional or final.
    Response(&'a Response),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub edge: SocketAddr,
    /// The name the edge's certificate must carry.
    pub server_name: String,
    pub tls: Arc<ClientConfig>,
}

/// One out-of-dialog request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Request-URI and To.
    pub to: &'a str,
    pub from: &'a str,
    /// Sent as text/plain when not empty.
    pub body: &'a str,
    pub user_agent: &'a str,
}

/// Why [`client_config`] cannot make a client identity from its files. The texts of rustls's
/// refusals come as [`DerError`] has them.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("cannot read the client certificate {}: {source}", .path.display())]
    Cert { path: PathBuf, source: pem::Error },
    #[error("cannot read the client key {}: {source}", .path.display())]
    Key { path: PathBuf, source: pem::Error },
    #[error("cannot read the CA file {}: {source}", .path.display())]
    Ca { path: PathBuf, source: pem::Error },
    /// A certificate of the CA file is not a usable trust anchor ([`DerError::Root`]).
    #[error("{}: not a usable CA: {error}", .ca.display())]
    UnusableCa { ca: PathBuf, error: String },
    /// The chain and key do not make a client identity ([`DerError::Identity`]).
    #[error("{} and {} are not a usable certificate and key: {error}", .cert.display(), .key.display())]
    UnusableIdentity {
        cert: PathBuf,
        key: PathBuf,
        error: String,
    },
    /// [`DerError::Setup`].
    #[error("{0}")]
    Setup(String),
}

/// A client configuration from PEM files: the known server's chain and key, the CA(s) the edge's
/// certificate must chain to.
pub fn client_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<ClientConfig>, ClientConfigError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| ClientConfigError::Cert {
            path: cert.to_path_buf(),
            source,
        })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| ClientConfigError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let cas = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| ClientConfigError::Ca {
            path: ca.to_path_buf(),
            source,
        })?;
    client_config_der(chain, key_der, cas).map_err(|e| match e {
        DerError::Root(error) => ClientConfigError::UnusableCa {
            ca: ca.to_path_buf(),
            error,
        },
        DerError::Identity(error) => ClientConfigError::UnusableIdentity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            error,
        },
        DerError::Setup(e) => ClientConfigError::Setup(e),
    })
}

/// Why [`client_config_der`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerError {
    /// A root is not a usable trust anchor.
    Root(String),
    /// The chain and key do not make a client identity.
    Identity(String),
    Setup(String),
}

/// A client configuration from loaded certificates (the edge's own, for `/probe/push`).
pub fn client_config_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, DerError> {
    let mut store = RootCertStore::empty();
    for c in roots {
        store.add(c).map_err(|e| DerError::Root(e.to_string()))?;
    }
    let cfg = ClientConfig::builder_with_provider(edge_core::shell::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| DerError::Setup(format!("TLS setup: {e}")))?
        .with_root_certificates(store)
        .with_client_auth_cert(chain, key)
        .map_err(|e| DerError::Identity(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// The first DNS name of a certificate (PEM file), to say whom we connect as.
pub fn first_name(cert: &Path) -> Option<String> {
    let der = CertificateDer::from_pem_file(cert).ok()?;
    first_name_der(&der)
}

/// The first DNS name of a certificate.
pub fn first_name_der(der: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
        _ => None,
    })
}

/// 64 unpredictable bits (SipHash under the process's random keys) for branch, tag and Call-ID.
pub fn random() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, std::process::id()))
}

/// The request's text: fresh branch and tag, Max-Forwards 70, CSeq 1.
pub fn request(req: &Request<'_>, call_id: &str, local: SocketAddr) -> String {
    let m = req.method;
    let content_type = if req.body.is_empty() {
        ""
    } else {
        "Content-Type: text/plain\r\n"
    };
    format!(
        "{m} {to} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch:016x}\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag={tag:08x}\r\n\
         To: <{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {m}\r\n\
         User-Agent: {ua}/{version}\r\n\
         {content_type}\
         Content-Length: {len}\r\n\r\n{body}",
        to = req.to,
        from = req.from,
        ua = req.user_agent,
        body = req.body,
        branch = random(),
        tag = random() & 0xffff_ffff,
        version = env!("CARGO_PKG_VERSION"),
        len = req.body.len(),
    )
}

/// Connects, sends `req` and returns its final response (reporting each step to `on_event`), or
/// why there was none, all within `timeout`.
pub fn transact(
    target: &Target,
    req: &Request<'_>,
    timeout: Duration,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut link = Link::connect(target, deadline)?;
    on_event(Event::Connected);
    let call_id = format!("{:016x}@{}", random(), req.user_agent);
    let text = request(req, &call_id, link.local);
    link.write(text.as_bytes(), target.edge)?;
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    link.read_final(&call_id, deadline, ms, on_event)
}

struct Link {
    stream: StreamOwned<ClientConnection, TcpStream>,
    local: SocketAddr,
}

impl Link {
    fn connect(target: &Target, deadline: Instant) -> Result<Link, ClientError> {
        let edge = target.edge;
        let name = ServerName::try_from(target.server_name.clone())
            .map_err(|e| ClientError::Setup(format!("server name {:?}: {e}", target.server_name)))?;
        let conn = ClientConnection::new(Arc::clone(&target.tls), name)
            .map_err(|e| ClientError::Setup(format!("TLS setup: {e}")))?;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), CONNECT_TIMEOUT);
        let failed = |e: std::io::Error| ClientError::Connect {
            edge,
            error: e.to_string(),
        };
        let sock = TcpStream::connect_timeout(&edge, wait).map_err(failed)?;
        let local = sock.local_addr().map_err(failed)?;
        sock.set_read_timeout(Some(SLICE))
            .and_then(|()| sock.set_nodelay(true))
            .map_err(failed)?;
        Ok(Link {
            stream: StreamOwned::new(conn, sock),
            local,
        })
    }

    /// Writes (the TLS handshake happens here; its failure is reported as such).
    fn write(&mut self, bytes: &[u8], edge: SocketAddr) -> Result<(), ClientError> {
        let sent = self.stream.write_all(bytes).and_then(|()| self.stream.flush());
        sent.map_err(|e| ClientError::Tls {
            edge,
            error: e.to_string(),
        })
    }

    /// Reports every response to `call_id` until a final one, which it returns.
    fn read_final(
        &mut self,
        call_id: &str,
        deadline: Instant,
        timeout_ms: u64,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Response, ClientError> {
        let mut framer = Framer::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match framer.poll(&buf) {
                Ok(Frame::NeedMore) => {}
                Ok(Frame::Message { len, .. }) => {
                    let resp = buf.get(..len).and_then(|m| response(m, call_id));
                    buf.drain(..len.min(buf.len()));
                    if let Some(r) = resp {
                        on_event(Event::Response(&r));
                        if r.status >= 200 {
                            return Ok(r);
                        }
                    }
                    continue;
                }
                Ok(frame) => {
                    if frame == Frame::Ping {
                        // RFC 5626 pong.
                        self.stream
                            .write_all(b"\r\n")
                            .map_err(|e| ClientError::Connection(e.to_string()))?;
                    }
                    buf.drain(..frame.consumed().min(buf.len()));
                    continue;
                }
                Err(e) => return Err(ClientError::Stream(e.to_string())),
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(timeout_ms));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(ClientError::Connection(e.to_string())),
            }
        }
    }
}

/// A response to our request; anything else (a request, another Call-ID, unparsable bytes) is
/// `None`.
fn response(bytes: &[u8], call_id: &str) -> Option<Response> {
    let msg = sip_codec::parse(bytes).ok()?;
    let status = msg.status()?;
    let ours = msg
        .header(HeaderName::CallId)
        .is_some_and(|h| h.raw_value == call_id.as_bytes());
    if !ours {
        return None;
    }
    let start = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let start_line = String::from_utf8_lossy(start).into_owned();
    // `SIP/2.0 504 Server Time-out`: the reason is what follows the code.
    let reason = start_line.splitn(3, ' ').nth(2).unwrap_or_default().to_owned();
    let diagnostics = msg
        .headers()
        .iter()
        .filter(|h| {
            matches!(
                h.name,
                HeaderName::MsDiagnostics | HeaderName::MsDiagnosticsPublic | HeaderName::Warning
            )
        })
        .map(|h| {
            (
                h.name_str().to_owned(),
                String::from_utf8_lossy(&h.unfolded()).into_owned(),
            )
        })
        .collect();
    Some(Response {
        status,
        reason,
        start_line,
        diagnostics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_unusable_client_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = (
            dir.path().join("client.pem"),
            dir.path().join("client.key"),
            dir.path().join("ca.pem"),
        );
        let e = client_config(&cert, &key, &ca).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot read the client certificate {}: ",
                cert.display()
            )),
            "{text}"
        );
        assert!(std::error::Error::source(&e).is_some(), "the pem error is kept");
        let unusable = ClientConfigError::UnusableIdentity {
            cert: cert.clone(),
            key: key.clone(),
            error: "bad".into(),
        };
        assert_eq!(
            unusable.to_string(),
            format!(
                "{} and {} are not a usable certificate and key: bad",
                cert.display(),
                key.display()
            )
        );
        let root = ClientConfigError::UnusableCa {
            ca: ca.clone(),
            error: "bad".into(),
        };
        assert_eq!(
            root.to_string(),
            format!("{}: not a usable CA: bad", ca.display())
        );
    }

    #[test]
    fn the_request_is_well_formed() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let req = Request {
            method: "MESSAGE",
            to: "sip:bob@partner.example",
            from: "sip:alice@localhost",
            body: "hi",
            user_agent: "sipedge-send",
        };
        let text = request(&req, "c1@sipedge-send", local);
        let m = sip_codec::parse(text.as_bytes()).unwrap();
        m.validate().unwrap();
        m.check_mandatory().unwrap();
        assert_eq!(m.method(), Some("MESSAGE"));
        assert!(m.top_via().unwrap().branch().unwrap().starts_with("z9hG4bK"));
        assert!(m.from().unwrap().tag().is_some());
        assert_eq!(m.max_forwards(), Some(70));
        assert_eq!(m.body(), b"hi");
        let empty = Request { body: "", ..req };
        let again = request(&empty, "c", local);
        let again = sip_codec::parse(again.as_bytes()).unwrap();
        assert_ne!(
            again.top_via().unwrap().branch(),
            m.top_via().unwrap().branch(),
            "a fresh branch per request"
        );
        assert!(again.header(HeaderName::ContentType).is_none());
    }

    #[test]
    fn responses_to_our_call_id_carry_reason_and_diagnostics() {
        let raw = "SIP/2.0 504 Server Time-out\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bKx\r\n\
                   From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\n\
                   ms-diagnostics: 1008;reason=\"Unable to resolve DNS SRV record\"\r\n\
                   Content-Length: 0\r\n\r\n";
        let r = response(raw.as_bytes(), "c1").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (504, "Server Time-out"));
        assert_eq!(
            r.ms_diagnostics(),
            Some("1008;reason=\"Unable to resolve DNS SRV record\"")
        );
        assert!(response(raw.as_bytes(), "other").is_none(), "not ours");
    }
}
