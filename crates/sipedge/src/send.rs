//! `sipedge send`: the edge's own first-request client. It connects to an edge's internal listener
//! over mutual TLS as a known server (rustls, ring), sends one well-formed out-of-dialog request
//! (OPTIONS or MESSAGE), reads what comes back with the `sip_codec` framer until a final response or
//! the timeout, and prints each response's status line with its `ms-diagnostics`,
//! `ms-diagnostics-public` and `Warning` headers. Without flags it is a client of `sipedge run`
//! without `--config`: the local PKI's `client.pem`/`client.key`/`ca.pem` (`config::local_pki`) and
//! the internal address that run recorded (else the embedded default's `internal.listen`).
//!
//! Exit status: 0 on a 2xx final response, 1 on any other final response, 2 when no final response
//! came (connect or TLS failure, the edge closed, timeout) or the arguments or files are unusable.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sip_codec::{Frame, Framer, HeaderName};

use crate::config::local_pki::{self, LocalPki};
use crate::config::Config;

/// Longest single socket wait, so the overall deadline holds.
const SLICE: Duration = Duration::from_millis(100);
/// Longest TCP connect wait (within the overall timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const NO_ANSWER: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Options,
    Message,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The edge's internal listener. Default: the address the last `sipedge run` without --config
    /// recorded in the state directory (internal.addr), else the embedded default's internal.listen.
    #[arg(long, value_name = "ADDR")]
    edge: Option<SocketAddr>,
    /// The name the edge's certificate must carry. Default: the embedded default's internal FQDN.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// This client's certificate (PEM chain of a known server). Default: <state dir>/client.pem.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Its private key (PEM). Default: <state dir>/client.key.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The CA(s) the edge's certificate must chain to (PEM). Default: <state dir>/ca.pem.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Method::Options, ignore_case = true)]
    method: Method,
    /// Request-URI and To. The default is a partner domain the embedded default does not federate
    /// with, so the edge answers with its refusal and diagnostic.
    #[arg(long, value_name = "URI", default_value = "sip:bob@partner.example")]
    to: String,
    /// From. Default: sip:alice@<the embedded default's first SIP domain>.
    #[arg(long, value_name = "URI")]
    from: Option<String>,
    /// Body (sent as text/plain). Default: none for OPTIONS, a greeting for MESSAGE.
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,
    /// How long to wait for a final response, in milliseconds (the edge's own Timer F is 32 s).
    #[arg(long, value_name = "N", default_value_t = 35_000)]
    timeout_ms: u64,
}

pub fn run(args: &Args) -> ExitCode {
    match send(args) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sipedge send: {e}");
            ExitCode::from(NO_ANSWER)
        }
    }
}

/// The final status, or why there was none.
fn send(args: &Args) -> Result<u16, String> {
    let state = local_pki::state_dir();
    let files = LocalPki::client_paths(&state.path);
    let needs_default = args.edge.is_none() || args.server_name.is_none() || args.from.is_none();
    let default = if needs_default {
        Some(Config::embedded_default().map_err(|issues| {
            let all: Vec<String> = issues.iter().map(ToString::to_string).collect();
            format!(
                "the embedded default configuration is invalid: {}",
                all.join("; ")
            )
        })?)
    } else {
        None
    };
    let edge = match (args.edge, &default) {
        (Some(a), _) => a,
        (None, d) => local_pki::read_internal_addr(&state.path)
            .or(d.as_ref().map(|c| c.internal().listen))
            .ok_or("no edge address: give --edge ADDR")?,
    };
    let server_name = match (&args.server_name, &default) {
        (Some(n), _) => n.clone(),
        (None, d) => d
            .as_ref()
            .map_or_else(|| "localhost".to_owned(), |c| c.internal().fqdn.to_string()),
    };
    let from = match (&args.from, &default) {
        (Some(f), _) => f.clone(),
        (None, d) => format!(
            "sip:alice@{}",
            d.as_ref()
                .and_then(|c| c.edge().sip_domains.first())
                .map_or_else(|| "localhost".to_owned(), ToString::to_string)
        ),
    };
    let cert = args.cert.clone().unwrap_or(files.cert);
    let key = args.key.clone().unwrap_or(files.key);
    let ca = args.ca.clone().unwrap_or(files.ca);
    let tls = client_config(&cert, &key, &ca).map_err(|e| {
        format!(
            "{e} (the local PKI is written by `sipedge run` without --config into {}, chosen by {}; \
             or give --cert, --key and --ca)",
            state.path.display(),
            state.from
        )
    })?;
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    let mut link = Link::connect(edge, &server_name, tls, deadline)?;
    let body = match (&args.body, args.method) {
        (Some(b), _) => b.clone(),
        (None, Method::Message) => "Hello from sipedge send.".to_owned(),
        (None, Method::Options) => String::new(),
    };
    let call_id = format!("{:016x}@sipedge-send", random());
    let request = request(args.method, &args.to, &from, &call_id, link.local, &body);
    println!(
        "{} {} -> {edge} (TLS as {}, server {server_name})",
        args.method.as_str(),
        args.to,
        first_name(&cert).unwrap_or_else(|| cert.display().to_string())
    );
    link.write(request.as_bytes(), edge)?;
    link.read_final(&call_id, deadline, args.timeout_ms)
}

fn client_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the client certificate {}: {e}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the client key {}: {e}", key.display()))?;
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
    for c in cas {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a usable CA: {e}", ca.display()))?;
    }
    let cfg = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "{} and {} are not a usable certificate and key: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Arc::new(cfg))
}

/// The first DNS name of the client certificate, to say whom we connect as.
fn first_name(cert: &Path) -> Option<String> {
    let der = CertificateDer::from_pem_file(cert).ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
        _ => None,
    })
}

/// 64 unpredictable bits (SipHash under the process's random keys) for branch, tag and Call-ID.
fn random() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, std::process::id()))
}

fn request(method: Method, to: &str, from: &str, call_id: &str, local: SocketAddr, body: &str) -> String {
    let m = method.as_str();
    let content_type = if body.is_empty() {
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
         User-Agent: sipedge-send/{version}\r\n\
         {content_type}\
         Content-Length: {len}\r\n\r\n{body}",
        branch = random(),
        tag = random() & 0xffff_ffff,
        version = env!("CARGO_PKG_VERSION"),
        len = body.len(),
    )
}

struct Link {
    stream: StreamOwned<ClientConnection, TcpStream>,
    local: SocketAddr,
}

impl Link {
    fn connect(
        edge: SocketAddr,
        server_name: &str,
        tls: Arc<ClientConfig>,
        deadline: Instant,
    ) -> Result<Link, String> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("--server-name {server_name:?}: {e}"))?;
        let conn = ClientConnection::new(tls, name).map_err(|e| format!("TLS setup: {e}"))?;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), CONNECT_TIMEOUT);
        let sock = TcpStream::connect_timeout(&edge, wait).map_err(|e| {
            format!("cannot connect to {edge}: {e} (is `sipedge run` running and listening there?)")
        })?;
        let local = sock
            .local_addr()
            .map_err(|e| format!("cannot connect to {edge}: {e}"))?;
        sock.set_read_timeout(Some(SLICE))
            .and_then(|()| sock.set_nodelay(true))
            .map_err(|e| format!("cannot connect to {edge}: {e}"))?;
        Ok(Link {
            stream: StreamOwned::new(conn, sock),
            local,
        })
    }

    /// Writes (the TLS handshake happens here; its failure is reported as such).
    fn write(&mut self, bytes: &[u8], edge: SocketAddr) -> Result<(), String> {
        let sent = self.stream.write_all(bytes).and_then(|()| self.stream.flush());
        sent.map_err(|e| format!("TLS with {edge} failed: {e}"))
    }

    /// Prints every response to `call_id` until a final one; returns its status.
    fn read_final(&mut self, call_id: &str, deadline: Instant, timeout_ms: u64) -> Result<u16, String> {
        let mut framer = Framer::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match framer.poll(&buf) {
                Ok(Frame::NeedMore) => {}
                Ok(Frame::Message { len, .. }) => {
                    let status = buf.get(..len).and_then(|m| show(m, call_id));
                    buf.drain(..len.min(buf.len()));
                    if let Some(s) = status.filter(|s| *s >= 200) {
                        return Ok(s);
                    }
                    continue;
                }
                Ok(frame) => {
                    if frame == Frame::Ping {
                        // RFC 5626 pong.
                        self.stream
                            .write_all(b"\r\n")
                            .map_err(|e| format!("the edge's connection failed: {e}"))?;
                    }
                    buf.drain(..frame.consumed().min(buf.len()));
                    continue;
                }
                Err(e) => return Err(format!("the edge sent a stream that cannot be framed: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!("no final response within {timeout_ms} ms"));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the edge closed the connection before a final response".into()),
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("the edge's connection failed: {e}")),
            }
        }
    }
}

/// Prints a response to our request (status line and diagnostic headers); returns its status.
/// Anything else (a request, another Call-ID, unparsable bytes) is skipped.
fn show(bytes: &[u8], call_id: &str) -> Option<u16> {
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
    println!("{}", String::from_utf8_lossy(start));
    for h in msg.headers() {
        if matches!(
            h.name,
            HeaderName::MsDiagnostics | HeaderName::MsDiagnosticsPublic | HeaderName::Warning
        ) {
            println!("{}: {}", h.name_str(), String::from_utf8_lossy(&h.unfolded()));
        }
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_well_formed() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let text = request(
            Method::Message,
            "sip:bob@partner.example",
            "sip:alice@localhost",
            "c1@sipedge-send",
            local,
            "hi",
        );
        let m = sip_codec::parse(text.as_bytes()).unwrap();
        m.validate().unwrap();
        m.check_mandatory().unwrap();
        assert_eq!(m.method(), Some("MESSAGE"));
        assert!(m.top_via().unwrap().branch().unwrap().starts_with("z9hG4bK"));
        assert!(m.from().unwrap().tag().is_some());
        assert_eq!(m.max_forwards(), Some(70));
        assert_eq!(m.body(), b"hi");
        let again = request(Method::Message, "sip:b@x", "sip:a@y", "c", local, "");
        let again = sip_codec::parse(again.as_bytes()).unwrap();
        assert_ne!(
            again.top_via().unwrap().branch(),
            m.top_via().unwrap().branch(),
            "a fresh branch per request"
        );
        assert!(again.header(HeaderName::ContentType).is_none());
    }
}
