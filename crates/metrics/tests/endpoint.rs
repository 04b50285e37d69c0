//! The metrics endpoint over real HTTP on loopback: `serve` with a fake Source, plain
//! `std::net::TcpStream` clients, and `promtool check metrics` (Debian package `prometheus`, installed
//! by scripts/test.sh) on what it serves. Timeouts are shortened through `serve_with` so every test
//! ends in a few seconds.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipedge_metrics::names::{self, ALL, REQUESTS};
use sipedge_metrics::{serve, serve_with, Exporter, Family, Health, Kind, Limits, Readiness, Source};

/// Every possible series of a small config but the endpoint's own, plus one sample with a label missing
/// and an empty repeat of a family (rejected or ignored).
struct Fake {
    healthy: AtomicBool,
    ready: AtomicBool,
}

impl Source for Fake {
    fn families(&self) -> Vec<Family> {
        let mut families: Vec<Family> = names::every_series(2, 1, 2)
            .into_iter()
            .filter(|f| !names::EXPORTER.contains(&f.desc))
            .collect();
        families.push(Family {
            desc: REQUESTS,
            samples: Vec::new(),
        }); // the same name again: ignored
        if let Some(first) = families.first_mut() {
            first.samples.push(sipedge_metrics::Sample::Value {
                labels: vec!["inbound".into()],
                value: 1.0,
            });
        }
        families
    }
    fn health(&self) -> Health {
        let ok = self.healthy.load(Ordering::SeqCst);
        Health {
            ok,
            detail: if ok {
                String::new()
            } else {
                "worker 1 stopped turning".into()
            },
        }
    }
    fn readiness(&self) -> Readiness {
        let ready = self.ready.load(Ordering::SeqCst);
        Readiness {
            ready,
            detail: if ready { String::new() } else { "draining".into() },
        }
    }
}

fn start(limits: Limits) -> (Exporter, Arc<Fake>) {
    let fake = Arc::new(Fake {
        healthy: AtomicBool::new(true),
        ready: AtomicBool::new(true),
    });
    let source: Arc<dyn Source> = fake.clone();
    let exporter = serve_with("127.0.0.1:0".parse().unwrap(), source, limits).unwrap();
    (exporter, fake)
}

fn short() -> Limits {
    Limits {
        timeout: Duration::from_millis(400),
        ..Limits::default()
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    assert_eq!(body.len(), length, "{head}");
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

/// A `HEAD` of `path`: the status and head, and that no body byte came before the server closed.
fn head(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(body.is_empty(), "HEAD {path}: a body came: {body:?}");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, head.to_owned())
}

/// The head's header lines but Content-Length, in order (the GET and HEAD heads must agree on them).
fn headers_but_length(head: &str) -> Vec<&str> {
    head.lines()
        .filter(|l| !l.starts_with("Content-Length: "))
        .collect()
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length")
}

/// Whether a `/healthz` request on a new connection gets any response.
fn answered(addr: SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    bytes.starts_with(b"HTTP/1.1 200 ")
}

/// Reads until the server closes; how long that took.
fn time_to_close(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the server never closed"
        );
    }
}

#[test]
fn metrics_serves_every_family_with_help_and_type_and_counts_rejects() {
    let (exporter, _) = start(short());
    let r = get(exporter.addr(), "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "{}",
        r.head
    );
    for d in ALL {
        let kind = match d.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        };
        assert!(
            r.body.contains(&format!("\n# HELP {} {}\n", d.name, d.help))
                || r.body.starts_with(&format!("# HELP {} ", d.name)),
            "{}",
            d.name
        );
        assert!(
            r.body.contains(&format!("# TYPE {} {kind}\n", d.name)),
            "{}",
            d.name
        );
    }
    assert!(r
        .body
        .contains("sipedge_requests_total{direction=\"inbound\",method=\"INVITE\"} "));
    assert!(r
        .body
        .contains("sipedge_event_loop_turn_duration_seconds_bucket{worker=\"1\",le=\"0.00001\"} 1\n"));
    assert!(r
        .body
        .contains("sipedge_federation_partner_decisions_total{partner=\"other\",verdict=\"refuse\"}"));
    // The short sample is left out and counted, cumulatively.
    assert!(
        r.body.contains("\nsipedge_metrics_samples_rejected_total 1\n"),
        "{}",
        r.body
    );
    let again = get(exporter.addr(), "/metrics");
    assert!(again
        .body
        .contains("\nsipedge_metrics_samples_rejected_total 2\n"));
    let series = r.body.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series, names::max_series(2, 1, 2));
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let (exporter, _) = start(short());
    assert_eq!(get(exporter.addr(), "/").status, 404);
    assert_eq!(get(exporter.addr(), "/metrics/x").status, 404);
    let post = exchange(
        exporter.addr(),
        b"POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
    );
    assert_eq!(post.status, 405);
    assert!(
        post.head.lines().any(|l| l == "Allow: GET, HEAD"),
        "{}",
        post.head
    );
    assert_eq!(
        exchange(exporter.addr(), b"DELETE /nope HTTP/1.1\r\n\r\n").status,
        404
    );
    assert_eq!(
        exchange(exporter.addr(), b"\x16\x03\x01\x02\x00\r\n\r\n").status,
        400
    );
    assert_eq!(get(exporter.addr(), "/metrics?name=x").status, 200);
}

#[test]
fn health_and_readiness_follow_the_source() {
    let (exporter, fake) = start(short());
    let h = get(exporter.addr(), "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let r = get(exporter.addr(), "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    fake.ready.store(false, Ordering::SeqCst);
    let r = get(exporter.addr(), "/readyz");
    assert_eq!((r.status, r.body.as_str()), (503, "draining\n"));
    assert_eq!(
        get(exporter.addr(), "/healthz").status,
        200,
        "draining keeps the process healthy"
    );

    fake.healthy.store(false, Ordering::SeqCst);
    let h = get(exporter.addr(), "/healthz");
    assert_eq!((h.status, h.body.as_str()), (503, "worker 1 stopped turning\n"));
}

#[test]
fn a_request_head_over_the_limit_is_refused_with_431() {
    let (exporter, _) = start(short());
    let mut raw = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 9 * 1024));
    raw.extend_from_slice(b"\r\n\r\n");
    let r = exchange(exporter.addr(), &raw);
    assert_eq!(r.status, 431, "{}", r.body);
    // A head just under the limit is served.
    let mut ok = b"GET /healthz HTTP/1.1\r\nX-Pad: ".to_vec();
    ok.extend(std::iter::repeat_n(b'a', 7 * 1024));
    ok.extend_from_slice(b"\r\n\r\n");
    assert_eq!(exchange(exporter.addr(), &ok).status, 200);
    let m = get(exporter.addr(), "/metrics");
    assert!(
        m.body
            .contains("sipedge_metrics_http_refusals_total{reason=\"head_too_large\"} 1\n"),
        "{}",
        m.body
    );
}

#[test]
fn a_silent_or_trickling_connection_is_closed_at_the_timeout() {
    let (exporter, _) = start(short());
    let mut silent = TcpStream::connect(exporter.addr()).unwrap();
    let waited = time_to_close(&mut silent);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // A byte every 100 ms does not extend the deadline: the head must be complete 400 ms after accept.
    let mut trickle = TcpStream::connect(exporter.addr()).unwrap();
    let start = Instant::now();
    for b in b"GET /metrics HTTP/1.1\r\nX: y" {
        if trickle.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = time_to_close(&mut trickle);
    assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
    let mut buf = Vec::new();
    assert!(matches!(trickle.read_to_end(&mut buf), Ok(0) | Err(_)));
    assert!(buf.is_empty(), "no response to a head that never completed");

    let m = get(exporter.addr(), "/metrics");
    assert!(
        m.body
            .contains("sipedge_metrics_http_refusals_total{reason=\"timeout\"} 2\n"),
        "{}",
        m.body
    );
}

#[test]
fn connections_past_the_limit_are_closed_at_once() {
    let limits = Limits {
        max_connections: 2,
        timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let (exporter, _) = start(limits);
    // The backlog is accepted in order: the third connection is the one past the limit.
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(exporter.addr()).unwrap())
        .collect();
    let mut third = TcpStream::connect(exporter.addr()).unwrap();
    let waited = time_to_close(&mut third);
    assert!(
        waited < Duration::from_secs(1),
        "closed at once, not at the timeout: {waited:?}"
    );
    // Once the two idle ones are gone a request is admitted again (the server sees the closes in its
    // own time: retry, bounded, until one is answered).
    drop(idle);
    let start = Instant::now();
    while !answered(exporter.addr()) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no connection admitted after the idle ones left"
        );
    }
    // The third connection at least (retries above may add to it).
    let m = get(exporter.addr(), "/metrics");
    assert_eq!(m.status, 200);
    let refused: u64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("sipedge_metrics_http_refusals_total{reason=\"connection_limit\"} "))
        .and_then(|v| v.parse().ok())
        .expect("the connection_limit series");
    assert!(refused >= 1, "{}", m.body);
}

#[test]
fn the_bound_address_is_reported_and_stop_frees_it() {
    let fake: Arc<dyn Source> = Arc::new(Fake {
        healthy: AtomicBool::new(true),
        ready: AtomicBool::new(true),
    });
    let exporter = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&fake)).unwrap();
    let addr = exporter.addr();
    assert_ne!(addr.port(), 0);
    let taken = serve(addr, Arc::clone(&fake)).unwrap_err();
    assert!(
        taken
            .to_string()
            .starts_with(&format!("metrics listener {addr}: ")),
        "{taken}"
    );
    assert_eq!(get(addr, "/healthz").status, 200);
    exporter.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is closed once stop returns"
    );
}

#[test]
fn promtool_check_metrics_is_clean() {
    let (exporter, _) = start(short());
    let r = get(exporter.addr(), "/metrics");
    assert_eq!(r.status, 200);
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool not runnable ({e}): install the Debian package `prometheus` (scripts/test.sh does)"
        ),
    };
    child.stdin.take().unwrap().write_all(r.body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?}\n{said}",
        out.status
    );
}

/// A Source with probe paths of every kind: ready now, answered later by a thread, never answered
/// (its sender kept), and given up (its sender dropped).
struct Prober {
    keep: std::sync::Mutex<Vec<std::sync::mpsc::Sender<sipedge_metrics::Reply>>>,
}

impl Source for Prober {
    fn families(&self) -> Vec<Family> {
        Vec::new()
    }
    fn health(&self) -> Health {
        Health {
            ok: true,
            detail: String::new(),
        }
    }
    fn readiness(&self) -> Readiness {
        Readiness {
            ready: true,
            detail: String::new(),
        }
    }
    fn probe(&self, path: &str) -> Option<sipedge_metrics::Probe> {
        use sipedge_metrics::Probe;
        let reply = |status: u16, body: &str| sipedge_metrics::Reply {
            status,
            content_type: "application/json".into(),
            body: body.into(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let wait = Duration::from_millis(600);
        match path {
            "/probe/now" => Some(Probe::Ready(reply(200, "{\"now\":true}"))),
            "/probe/later" => {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    let _ = tx.send(reply(503, "{\"later\":true}"));
                });
                Some(Probe::Pending { reply: rx, wait })
            }
            "/probe/never" => {
                self.keep.lock().unwrap().push(tx);
                Some(Probe::Pending { reply: rx, wait })
            }
            "/probe/dropped" => Some(Probe::Pending { reply: rx, wait }),
            _ => None,
        }
    }
}

#[test]
fn probe_paths_answer_now_later_or_504_without_blocking_the_thread() {
    let source: Arc<dyn Source> = Arc::new(Prober {
        keep: std::sync::Mutex::default(),
    });
    let exporter = serve_with("127.0.0.1:0".parse().unwrap(), source, short()).unwrap();
    let addr = exporter.addr();
    let r = get(addr, "/probe/now");
    assert_eq!((r.status, r.body.as_str()), (200, "{\"now\":true}"), "{}", r.head);
    assert!(r.head.contains("Content-Type: application/json"), "{}", r.head);

    // While /probe/later waits for its thread, /healthz is answered at once.
    let later = std::thread::spawn(move || {
        let started = Instant::now();
        (get(addr, "/probe/later"), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "the metrics thread was blocked: {:?}",
        started.elapsed()
    );
    let (r, took) = later.join().unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "{\"later\":true}"),
        "{}",
        r.head
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");

    let started = Instant::now();
    let r = get(addr, "/probe/never");
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "waited its `wait`"
    );
    assert_eq!(get(addr, "/probe/dropped").status, 500);
    assert_eq!(get(addr, "/probe/unknown").status, 404);
    let r = exchange(addr, b"POST /probe/now HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 404, "only GET reaches a probe");
    assert_eq!(get(addr, "/readyz").status, 200, "the known paths unchanged");
}

/// RFC 9110 §9.3.2: HEAD wherever GET is served, with GET's status and headers (its Content-Length
/// too) and no body; probes (load balancers, `curl -I`) use it.
#[test]
fn head_is_served_wherever_get_is_with_the_same_head_and_no_body() {
    let (exporter, fake) = start(short());
    let addr = exporter.addr();
    for path in ["/healthz", "/readyz", "/metrics", "/nope"] {
        let g = get(addr, path);
        let (status, h) = head(addr, path);
        assert_eq!(status, g.status, "HEAD {path}: {h}");
        assert_eq!(headers_but_length(&h), headers_but_length(&g.head), "HEAD {path}");
        // /metrics renders again for the HEAD: the rejected-samples counter goes 1 → 2, same length.
        assert_eq!(content_length(&h), g.body.len(), "HEAD {path}: {h}");
    }
    fake.healthy.store(false, Ordering::SeqCst);
    fake.ready.store(false, Ordering::SeqCst);
    for path in ["/healthz", "/readyz"] {
        let g = get(addr, path);
        let (status, h) = head(addr, path);
        assert_eq!((status, g.status), (503, 503), "HEAD {path}: {h}");
        assert_eq!(content_length(&h), g.body.len(), "HEAD {path}: {h}");
    }

    // Other methods are still refused, and a 405 names what is allowed.
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = exchange(
            addr,
            format!("{method} /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 405, "{method}: {}", r.head);
        assert!(
            r.head.lines().any(|l| l == "Allow: GET, HEAD"),
            "{method}: {}",
            r.head
        );
    }
}

#[test]
fn head_reaches_probe_paths_now_later_and_504_without_a_body() {
    let source: Arc<dyn Source> = Arc::new(Prober {
        keep: std::sync::Mutex::default(),
    });
    let exporter = serve_with("127.0.0.1:0".parse().unwrap(), source, short()).unwrap();
    let addr = exporter.addr();
    for (path, want) in [
        ("/probe/now", 200),
        ("/probe/later", 503),
        ("/probe/never", 504),
        ("/probe/dropped", 500),
        ("/probe/unknown", 404),
    ] {
        let g = get(addr, path);
        assert_eq!(g.status, want, "GET {path}");
        let (status, h) = head(addr, path);
        assert_eq!(status, want, "HEAD {path}: {h}");
        assert_eq!(headers_but_length(&h), headers_but_length(&g.head), "HEAD {path}");
        assert_eq!(content_length(&h), g.body.len(), "HEAD {path}: {h}");
    }
    let r = exchange(addr, b"POST /probe/now HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 404, "only GET and HEAD reach a probe");
}
