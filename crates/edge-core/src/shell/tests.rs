//! Loopback tests of the whole shell: real listeners, TLS and workers, driven by [`Script`], a fake
//! core that echoes, forwards (`X-Fwd: host:port`) or closes (`X-Close`) on request and writes every
//! `Input` it gets into a shared log; partners are small blocking rustls servers on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use federation_policy::Fqdn;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, ServerName};

use super::testpki::Pki;
use super::*;
use crate::proxy::io::{Destination, NextHop, Token};

type Log = Arc<Mutex<Vec<String>>>;

/// The fake core.
struct Script {
    log: Log,
    next_token: u64,
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

impl Core for Script {
    fn handle(&mut self, input: Input<'_>, _now: Instant, out: &mut Vec<Effect>) {
        let line = match input {
            Input::ConnUp { conn, peer } => format!(
                "up {} {} {} {}",
                conn.0,
                peer.side.as_str(),
                peer.identities.join(","),
                peer.dialled.map_or("-".to_owned(), |d| d.to_string())
            ),
            Input::Unframeable { conn, error, .. } => {
                out.push(Effect::Close { conn });
                format!("unframeable {} {error}", conn.0)
            }
            Input::Message { conn, bytes } => {
                let text = String::from_utf8_lossy(bytes);
                if let Some(hop) = header(&text, "X-Fwd") {
                    self.next_token += 1;
                    out.push(Effect::Send {
                        dest: Destination::Hop(NextHop {
                            fqdn: Fqdn::parse(hop).unwrap(),
                            side: Side::External,
                        }),
                        bytes: bytes.to_vec(),
                        token: Some(Token(self.next_token)),
                    });
                } else if header(&text, "X-Close").is_some() {
                    out.push(Effect::Close { conn });
                } else {
                    out.push(Effect::Send {
                        dest: Destination::Conn(conn),
                        bytes: b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
                        token: None,
                    });
                }
                format!("msg {} {}", conn.0, text.lines().next().unwrap_or(""))
            }
            Input::ConnClosed { conn, reason } => format!("closed {} {}", conn.0, reason.as_str()),
            Input::Delivered { token, conn } => format!("delivered {} {}", token.0, conn.0),
            Input::DeliveryFailed { token, failure } => format!("failed {} {failure:?}", token.0),
            Input::Srv { token, result } => format!("srv {} {result:?}", token.0),
        };
        self.log.lock().unwrap().push(line);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant, _out: &mut Vec<Effect>) {}

    fn open_transactions(&self) -> usize {
        0
    }

    fn begin_shutdown(&mut self) {
        self.log.lock().unwrap().push("shutdown".to_owned());
    }
}

fn start_script(settings: ShellSettings) -> (EdgeHandle, Log) {
    let log: Log = Arc::default();
    let for_core = Arc::clone(&log);
    let make: MakeCore<Script> = Arc::new(move |i, internal, external| {
        let log = Arc::clone(&for_core);
        log.lock()
            .unwrap()
            .push(format!("made {i} {internal} {external}"));
        Script { log, next_token: 0 }
    });
    (start(settings, make).unwrap(), log)
}

/// Waits up to 5 s for a log line starting with `prefix`.
fn wait_log(log: &Log, prefix: &str) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = log.lock().unwrap().iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        assert!(
            Instant::now() < until,
            "no {prefix:?} in {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The shell's event counts as the scrape sees them: every worker's published snapshot (at most
/// `PUBLISH_PERIOD` old), summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    accepted: u64,
    dialled: u64,
    framing_errors: u64,
    handshake_failures: u64,
    certificate_mismatches: u64,
    connect_failures: u64,
    keepalive_failures: u64,
    rejected_max_connections: u64,
}

fn totals(edge: &EdgeHandle) -> Totals {
    let mut t = Totals::default();
    let count = |m: &std::collections::BTreeMap<(&'static str, &'static str), u64>,
                 keep: &dyn Fn(&str) -> bool| {
        m.iter()
            .filter(|((_, k), _)| keep(k))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    for s in edge.stats().worker_snapshots() {
        t.accepted += s.accepted.iter().sum::<u64>();
        t.dialled += s.dialled.iter().sum::<u64>();
        t.framing_errors += count(&s.framing, &|k| k != "message_timeout" && k != "bad_start_line");
        t.handshake_failures += count(&s.handshake_failures, &|b| b != "certificate_mismatch");
        t.certificate_mismatches += s.closes_with("certificate_mismatch");
        t.connect_failures += s.closes_with("connect_failed") + s.closes_with("connect_timeout");
        t.keepalive_failures += s.closes_with("keepalive_failed");
        t.rejected_max_connections += count(&s.refused, &|l| l == "max_connections");
    }
    t
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(pki: &Pki) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

type Client = StreamOwned<ClientConnection, TcpStream>;

/// A front end: a TLS client with a certificate naming `sans`, connected to `addr`.
fn client(pki: &Pki, sans: &[&str], addr: SocketAddr, server: &str) -> Client {
    let leaf = pki.leaf(sans);
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki))
        .with_client_auth_cert(
            vec![leaf.der()],
            PrivateKeyDer::from_pem_slice(&leaf.key_pem()).unwrap(),
        )
        .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn =
        ClientConnection::new(Arc::new(config), ServerName::try_from(server.to_owned()).unwrap()).unwrap();
    StreamOwned::new(conn, sock)
}

/// Reads until the received bytes contain `needle`.
fn read_until(c: &mut impl Read, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = c.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[derive(Debug)]
enum PartnerEvent {
    Peer(Vec<String>),
    Data(Vec<u8>),
    Closed,
}

/// A partner edge: a TLS server whose certificate names `sans`, requiring a client certificate from
/// the test CA; answers pings when asked to.
fn partner(pki: &Pki, sans: &[&str], answer_pings: bool) -> (SocketAddr, Receiver<PartnerEvent>) {
    let leaf = pki.leaf(sans);
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(pki)), provider())
        .build()
        .unwrap();
    let config = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![leaf.der()],
                PrivateKeyDer::from_pem_slice(&leaf.key_pem()).unwrap(),
            )
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let (config, tx) = (Arc::clone(&config), tx.clone());
            std::thread::spawn(move || serve(sock, config, tx, answer_pings));
        }
    });
    (addr, rx)
}

fn serve(sock: TcpStream, config: Arc<ServerConfig>, tx: Sender<PartnerEvent>, answer_pings: bool) {
    let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
    let mut told_peer = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = match tls.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(PartnerEvent::Closed);
                return;
            }
            Ok(n) => n,
        };
        if !told_peer {
            told_peer = true;
            let leaf = tls.conn.peer_certificates().and_then(|c| c.first()).cloned();
            let _ = tx.send(PartnerEvent::Peer(
                leaf.map(|c| peer_identities(&c)).unwrap_or_default(),
            ));
        }
        if answer_pings && &buf[..n] == b"\r\n\r\n" {
            tls.write_all(b"\r\n").unwrap();
        }
        let _ = tx.send(PartnerEvent::Data(buf[..n].to_vec()));
    }
}

fn next_event(rx: &Receiver<PartnerEvent>) -> PartnerEvent {
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

const OPTIONS: &[u8] = b"OPTIONS sip:edge.corp.example SIP/2.0\r\nVia: SIP/2.0/TLS fe1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

fn forward(host: &str) -> Vec<u8> {
    format!("MESSAGE sip:bob@partner.test SIP/2.0\r\nX-Fwd: {host}\r\nContent-Length: 5\r\n\r\nhello")
        .into_bytes()
}

#[test]
fn handshake_between_shell_client_and_server_configs() {
    let pki = Pki::new();
    let configs = TlsConfigs::build(&pki.settings(&["edge.corp.example"])).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_config = Arc::clone(&configs.internal.server);
    let server = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(server_config).unwrap(), sock);
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).unwrap();
        let leaf = tls.conn.peer_certificates().unwrap()[0].clone();
        (peer_identities(&leaf), tls.conn.protocol_version())
    });
    let name = ServerName::try_from("edge.corp.example").unwrap();
    let conn = ClientConnection::new(Arc::clone(&configs.internal.client), name).unwrap();
    let mut tls = StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
    tls.write_all(b"hello").unwrap();
    tls.flush().unwrap();
    let (client_ids, version) = server.join().unwrap();
    assert_eq!(client_ids, vec!["edge.corp.example".to_owned()]);
    assert!(version.is_some());
    let server_leaf = tls.conn.peer_certificates().unwrap()[0].clone();
    assert_eq!(san_dns_names(&server_leaf), vec!["edge.corp.example".to_owned()]);
}

#[test]
fn inbound_messages_are_framed_answered_and_pinged() {
    let pki = Pki::new();
    let (edge, log) = start_script(pki.settings(&["edge.corp.example"]));
    let mut c = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    // A ping, then one message written in two pieces, then a second message.
    c.write_all(b"\r\n\r\n").unwrap();
    read_until(&mut c, b"\r\n");
    c.write_all(&OPTIONS[..20]).unwrap();
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    c.write_all(&OPTIONS[20..]).unwrap();
    c.write_all(OPTIONS).unwrap();
    read_until(&mut c, b"200 OK\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK");
    let up = wait_log(&log, "up ");
    assert_eq!(up, "up 1 internal fe1.corp.example -");
    wait_until("two messages", || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("msg 1 OPTIONS"))
            .count()
            == 2
    });
    // The core closes the connection on request: the client sees close_notify then EOF.
    c.write_all(b"OPTIONS sip:x SIP/2.0\r\nX-Close: yes\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    // The core asked: a local close, not a failed link.
    assert_eq!(wait_log(&log, "closed"), "closed 1 local");
    wait_until("one accepted connection published", || {
        totals(&edge).accepted == 1
    });
    wait_until("the connection slot back", || edge.open_connections() == 0);
    // Published for the scrape within a publication period, even with the loop idle: the
    // handshake, the close with its reason, loop turns, and a fresh heartbeat for every worker.
    wait_until("the close published", || {
        edge.stats()
            .worker_snapshots()
            .iter()
            .any(|w| w.closes.get(&("internal", "requested")) == Some(&1))
    });
    let snaps = edge.stats().worker_snapshots();
    assert_eq!(snaps.iter().map(|w| w.handshakes_ok[0]).sum::<u64>(), 1);
    assert!(snaps
        .iter()
        .all(|w| w.loop_turns.count() > 0 && w.open_connections == [0, 0]));
    assert!(
        snaps.iter().all(|w| w.core.is_none()),
        "the script core counts nothing"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    wait_until("idle workers still turn", || {
        edge.stats().heartbeats().iter().all(|&h| h > now_ms)
    });
    edge.shutdown(Duration::ZERO);
    edge.try_join().unwrap();
}

#[test]
fn framing_errors_and_untrusted_clients_are_closed_and_counted() {
    let pki = Pki::new();
    let (edge, log) = start_script(pki.settings(&["edge.corp.example"]));
    let mut c = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    c.write_all(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TLS a\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    wait_until("framing error counted", || totals(&edge).framing_errors == 1);
    assert_eq!(wait_log(&log, "closed"), "closed 1 local");

    // A client certificate from another CA never reaches the core.
    let stranger = Pki::new();
    let mut c = client(
        &stranger,
        &["fe2.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    let _ = c.write_all(OPTIONS);
    let _ = c.read_to_end(&mut rest);
    wait_until("handshake failure counted", || {
        totals(&edge).handshake_failures == 1
    });
    assert_eq!(
        log.lock().unwrap().iter().filter(|l| l.starts_with("up")).count(),
        1
    );
    edge.shutdown(Duration::ZERO);
    edge.try_join().unwrap();
}

#[test]
fn outbound_links_are_pooled_and_checked_against_the_hop() {
    let pki = Pki::new();
    let (partner_addr, events) = partner(&pki, &["partner.test"], true);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = pki.settings(&["edge.corp.example"]);
    let lo = "127.0.0.1".parse().unwrap();
    settings.hosts = vec![
        ("partner.test".to_owned(), lo),
        ("other.test".to_owned(), lo),
        ("closed.test".to_owned(), lo),
        ("sip.wild.test".to_owned(), lo),
    ];
    let (edge, log) = start_script(settings);
    let mut c = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    let port = partner_addr.port();

    c.write_all(&forward(&format!("partner.test:{port}"))).unwrap();
    let delivered = wait_log(&log, "delivered 1 ");
    let PartnerEvent::Peer(ids) = next_event(&events) else {
        panic!("expected the peer first")
    };
    assert_eq!(ids, vec!["edge.example.com".to_owned()]);
    let PartnerEvent::Data(data) = next_event(&events) else {
        panic!("expected data")
    };
    assert!(data.ends_with(b"hello"), "{data:?}");
    let up = wait_log(&log, "up 2 ");
    assert_eq!(up, format!("up 2 external partner.test partner.test:{port}"));

    // The next message to the hop reuses the link.
    c.write_all(&forward(&format!("partner.test:{port}"))).unwrap();
    let again = wait_log(&log, "delivered 2 ");
    assert_eq!(delivered.rsplit(' ').next(), again.rsplit(' ').next());

    // A certificate that does not name the host exactly.
    c.write_all(&forward(&format!("other.test:{port}"))).unwrap();
    let failed = wait_log(&log, "failed 3 ");
    assert_eq!(
        failed,
        r#"failed 3 CertificateMismatch { presented: ["partner.test"] }"#
    );
    // No address, and nobody listening.
    c.write_all(&forward("nowhere.test")).unwrap();
    assert!(wait_log(&log, "failed 4 ").contains("Resolve(\"nowhere.test: no DNS servers configured\")"));
    c.write_all(&forward(&format!("closed.test:{closed_port}")))
        .unwrap();
    assert!(wait_log(&log, "failed 5 ").starts_with("failed 5 Connect("));
    // A wildcard certificate never names a federation host.
    let (wild, _wild_events) = partner(&pki, &["*.wild.test"], true);
    c.write_all(&forward(&format!("sip.wild.test:{}", wild.port())))
        .unwrap();
    let failed = wait_log(&log, "failed 6 ");
    assert_eq!(
        failed,
        r#"failed 6 CertificateMismatch { presented: ["*.wild.test"] }"#
    );
    let counted = |t: Totals| (t.dialled, t.certificate_mismatches, t.connect_failures);
    wait_until("dials and their failures published", || {
        counted(totals(&edge)) == (4, 2, 1)
    });
    edge.shutdown(Duration::ZERO);
    edge.try_join().unwrap();
}

#[test]
fn keepalive_finds_a_dead_link_and_keeps_a_live_one() {
    let pki = Pki::new();
    let (live, live_events) = partner(&pki, &["live.test"], true);
    let (dead, _dead_events) = partner(&pki, &["dead.test"], false);
    let mut settings = pki.settings(&["edge.corp.example"]);
    let lo = "127.0.0.1".parse().unwrap();
    settings.hosts = vec![("live.test".to_owned(), lo), ("dead.test".to_owned(), lo)];
    settings.limits.keepalive_interval = Duration::from_secs(1);
    let (edge, log) = start_script(settings);
    let mut c = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    c.write_all(&forward(&format!("live.test:{}", live.port())))
        .unwrap();
    c.write_all(&forward(&format!("dead.test:{}", dead.port())))
        .unwrap();
    wait_log(&log, "delivered 2 ");
    // Ping after 1 s, pong due 2 s later: the silent partner's link closes after about 3 s.
    let dead_conn = wait_log(&log, "up 3 ");
    assert!(dead_conn.contains("dead.test"), "{dead_conn}");
    // The core hears why: the link failed (what ends the subscriptions that depend on it).
    assert_eq!(wait_log(&log, "closed 3"), "closed 3 keepalive_failed");
    wait_until("the keepalive failure published", || {
        totals(&edge).keepalive_failures == 1
    });
    assert!(!log.lock().unwrap().iter().any(|l| l.starts_with("closed 2")));
    let pings = live_events
        .try_iter()
        .filter(|e| matches!(e, PartnerEvent::Data(d) if d == b"\r\n\r\n"))
        .count();
    assert!(pings >= 2, "{pings} pings");
    edge.shutdown(Duration::ZERO);
    edge.try_join().unwrap();
}

#[test]
fn connection_limit_and_two_workers_on_one_port() {
    let pki = Pki::new();
    let mut settings = pki.settings(&["edge.corp.example"]);
    settings.workers = 2;
    settings.limits.max_connections = 1;
    let (edge, log) = start_script(settings);
    let edge_addrs = (edge.internal_addr(), edge.external_addr());
    assert_ne!(edge.internal_addr().port(), 0);
    assert_ne!(edge.external_addr().port(), edge.internal_addr().port());
    let mut first = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    first.write_all(OPTIONS).unwrap();
    read_until(&mut first, b"200 OK");
    // Over the limit: accepted, then closed at once.
    let mut second = TcpStream::connect(edge.internal_addr()).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
    wait_until("rejection counted", || {
        totals(&edge).rejected_max_connections == 1
    });
    edge.shutdown(Duration::from_secs(1));
    edge.try_join().unwrap();
    assert_eq!(log.lock().unwrap().iter().filter(|l| *l == "shutdown").count(), 2);
    // Each worker's core was told the addresses as bound.
    let (internal, external) = (edge_addrs.0, edge_addrs.1);
    for i in 0..2 {
        assert!(log
            .lock()
            .unwrap()
            .contains(&format!("made {i} {internal} {external}")));
    }
}

/// 3,000 pipelined messages (~300 KB, several read budgets) in one write: every one is answered.
/// Reads stop at a budget and the connection is served again next turn; were it left waiting for
/// a readiness event (edge-triggered: none comes for data already buffered), answers would stop.
#[test]
fn a_pipelining_peer_is_read_in_budgets_and_fully_served() {
    let pki = Pki::new();
    let (edge, _log) = start_script(pki.settings(&["edge.corp.example"]));
    let mut c = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    let burst: Vec<u8> = OPTIONS
        .iter()
        .copied()
        .cycle()
        .take(OPTIONS.len() * 3000)
        .collect();
    c.sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&burst).unwrap();
    c.flush().unwrap();
    let ok = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < ok.len() * 3000 && Instant::now() < deadline {
        let n = c
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("stalled after {} answers: {e}", got / ok.len()));
        assert!(n > 0, "closed after {} answers", got / ok.len());
        got += n;
    }
    assert_eq!(got, ok.len() * 3000, "answers to all 3000 requests");
}

/// Messages for a hop whose address is being looked up wait, but only up to the write bound: with
/// a DNS server that never answers, the excess fails at once as Overloaded instead of piling up.
#[test]
fn sends_waiting_for_an_address_are_bounded() {
    let pki = Pki::new();
    let silent_dns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut settings = pki.settings(&["edge.corp.example"]);
    settings.dns_servers = vec![silent_dns.local_addr().unwrap()];
    settings.limits.max_message_bytes = 4096;
    settings.limits.max_write_queue_bytes = 0; // the bound is then 2 × 4096 octets
    let (edge, log) = start_script(settings);
    let mut c = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    let one = forward("unresolved.test");
    let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 300).collect();
    c.write_all(&burst).unwrap();
    c.flush().unwrap();
    let line = wait_log(&log, "failed ");
    assert!(line.contains("Overloaded"), "{line}");
    let fits = 2 * 4096 / one.len();
    let failed = || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("failed "))
            .count()
    };
    wait_until("the excess refused", || failed() >= 300 - fits - 1);
}

static IDLE_HOOK_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_idle_hook() {
    IDLE_HOOK_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// The idle hook (the binary gives its allocator's free pages back there) runs on a worker about a
/// second after its last I/O, once per spell of work, and not while the worker is busy.
#[test]
fn the_idle_hook_runs_once_a_second_after_the_work() {
    use std::sync::atomic::Ordering;
    let pki = Pki::new();
    let mut settings = pki.settings(&["edge.corp.example"]);
    settings.idle_hook = Some(count_idle_hook);
    let (edge, _log) = start_script(settings);
    let mut c = client(
        &pki,
        &["fe1.corp.example"],
        edge.internal_addr(),
        "edge.corp.example",
    );
    c.write_all(OPTIONS).unwrap();
    read_until(&mut c, b"200 OK\r\nContent-Length: 0\r\n\r\n");
    // Busy: a message every 300 ms keeps the worker from being idle for a second.
    let busy_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < busy_until {
        c.write_all(OPTIONS).unwrap();
        read_until(&mut c, b"200 OK\r\nContent-Length: 0\r\n\r\n");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(IDLE_HOOK_CALLS.load(Ordering::SeqCst), 0, "not while busy");
    wait_until("the hook after a second idle", || {
        IDLE_HOOK_CALLS.load(Ordering::SeqCst) == 1
    });
    // Once per spell: another two seconds of idleness run it no more.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(IDLE_HOOK_CALLS.load(Ordering::SeqCst), 1);
    edge.shutdown(Duration::ZERO);
    edge.try_join().unwrap();
}
