//! Subscription liveness (issue 12; docs/architecture.md, Subscriptions), black-box: the real
//! `sipedge` binary, real TLS, a watcher and a presentity on either side. When the link a
//! subscription depends on dies — the peer killed, or hung so that only the keepalive can tell —
//! the watcher gets a NOTIFY with `Subscription-State: terminated;reason=deactivated` and id 1912
//! naming the link, re-subscribes, is refused while the link is down, and gets presence again once
//! the peer is back.
//!
//! Without the feature the watcher hears nothing until its refresh (Expires: 3600 here: an hour).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip_codec::{ContactValue, HeaderName, Message};
use support::front_end::fe_client;
use support::sip::{self, reply, reply_with};
use support::{Edge, EdgeOpts, Reply, TestPki, TlsPeer, TlsUas};

const WAIT: Duration = Duration::from_secs(5);

fn header(m: &Message<'_>, name: HeaderName) -> String {
    m.header(name)
        .map(|h| String::from_utf8_lossy(&h.unfolded()).into_owned())
        .unwrap_or_default()
}

/// A presentity's UAS: 200 to a SUBSCRIBE (tag `n1`, an hour), then at once a NOTIFY with its state
/// in the new dialog — Request-URI the subscriber's Contact, Route the SUBSCRIBE's Record-Route —
/// on the same connection; 200 to anything else.
fn presentity(contact: String) -> impl Fn(&Message<'_>) -> Vec<Reply> + Send + Sync + 'static {
    let cseq = AtomicU32::new(1);
    move |m| {
        if m.method() != Some("SUBSCRIBE") {
            return vec![Reply::Now(reply(m, 200, "OK", None))];
        }
        let ok = reply_with(
            m,
            200,
            "OK",
            Some("n1"),
            &format!("Expires: 3600\nContact: <{contact}>\n"),
        );
        let target = m
            .contacts()
            .find_map(|c| match c {
                Ok(ContactValue::Addr(c)) => Some(c.addr.uri.to_owned()),
                _ => None,
            })
            .unwrap();
        let routes: String = m
            .headers()
            .iter()
            .filter(|h| h.name == HeaderName::RecordRoute)
            .map(|h| format!("Route: {}\n", String::from_utf8_lossy(h.raw_value)))
            .collect();
        let n = cseq.fetch_add(1, Ordering::SeqCst);
        let body = "<presence entity=\"presentity\"><basic>open</basic></presence>";
        let notify = sip::crlf(&format!(
            "NOTIFY {target} SIP/2.0\nVia: SIP/2.0/TLS presentity.test:5061;branch=z9hG4bKpn{n}\n{routes}\
             Max-Forwards: 70\nFrom: {to};tag=n1\nTo: {from}\nCall-ID: {call_id}\nCSeq: {n} NOTIFY\n\
             Contact: <{contact}>\nEvent: presence\nSubscription-State: active;expires=3599\n\
             Content-Type: application/pidf+xml\nContent-Length: {}\n\n{body}",
            body.len(),
            to = header(m, HeaderName::To),
            from = header(m, HeaderName::From),
            call_id = m.call_id().unwrap(),
        ));
        vec![Reply::Now(ok), Reply::Now(notify)]
    }
}

fn subscribe(uri: &str, from: &str, via_host: &str, rr: &str, contact: &str, n: u32) -> String {
    sip::crlf(&format!(
        "SUBSCRIBE {uri} SIP/2.0\nVia: SIP/2.0/TLS {via_host};branch=z9hG4bKw{n}\nRecord-Route: <{rr}>\n\
         Max-Forwards: 70\nFrom: <{from}>;tag=w{n}\nTo: <{uri}>\nCall-ID: watch-{n}\nCSeq: 1 SUBSCRIBE\n\
         Contact: <{contact}>\nEvent: presence\nExpires: 3600\nContent-Length: 0\n\n"
    ))
}

fn is_notify(text: &str, call_id: &str, state: &str) -> bool {
    sip::method(text) == "NOTIFY"
        && text.contains(&format!("Call-ID: {call_id}\r\n"))
        && text.contains(&format!("Subscription-State: {state}"))
}

/// The edge, the front end's UAS (where requests for the watcher arrive) and the partner presentity.
struct Inside {
    edge: Edge,
    fe_uas: TlsUas,
    partner: TlsUas,
    partner_port: u16,
    pki: Arc<TestPki>,
}

impl Inside {
    fn start(keepalive_s: Option<u64>) -> Inside {
        let pki = Arc::new(TestPki::new());
        let fe_uas = TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m| {
            vec![reply(m, 200, "OK", None)]
        });
        let partner = Self::partner_at(&pki, 0);
        let partner_port = partner.port();
        let mut opts = EdgeOpts::new(fe_uas.port(), partner_port);
        opts.keepalive_interval_s = keepalive_s;
        let edge = Edge::start(&opts.render(&pki), &pki);
        Inside {
            edge,
            fe_uas,
            partner,
            partner_port,
            pki,
        }
    }

    fn partner_at(pki: &TestPki, port: u16) -> TlsUas {
        let contact = "sip:bob@edge.partner.test;transport=tls".to_owned();
        TlsUas::start_at(port, &pki.partner, &pki.internal_ca.cert, presentity(contact))
    }

    /// The watcher alice@corp.test subscribes to bob@partner.test: the final response's status.
    fn subscribe(&self, fe: &mut TlsPeer, n: u32) -> u16 {
        sip::status(&self.subscribe_final(fe, n))
    }

    /// The same, the final response itself.
    fn subscribe_final(&self, fe: &mut TlsPeer, n: u32) -> String {
        let fe_host = format!("fe1.corp.test:{}", self.fe_uas.port());
        fe.send(&subscribe(
            "sip:bob@partner.test",
            "sip:alice@corp.test",
            &fe_host,
            &format!("sip:{fe_host};transport=tls;lr"),
            &format!("sip:alice@{fe_host};transport=tls"),
            n,
        ));
        fe.recv_final(WAIT, "SUBSCRIBE")
            .unwrap_or_else(|| panic!("no final to SUBSCRIBE {n}\n{}", self.edge.log_dump()))
    }

    /// The NOTIFY of `call_id` in `state` at the front end, or a panic with the edge's log.
    fn notify_at_fe(&self, call_id: &str, state: &str, wait: Duration) -> String {
        self.fe_uas
            .wait_request(wait, |t| is_notify(t, call_id, state))
            .unwrap_or_else(|| {
                panic!(
                    "no NOTIFY {state} for {call_id} at the front end; it got {:?}\n{}",
                    self.fe_uas.requests(),
                    self.edge.log_dump()
                )
            })
    }
}

/// Waits (3 s: the workers publish twice a second) for `line` in a scrape of `/metrics`: the scrape
/// must answer 200 and the series must be there with that value.
fn wait_metric(edge: &Edge, line: &str) {
    let addr = edge.metrics_addr.expect("a metrics listener");
    let (series, value) = line.rsplit_once(' ').unwrap();
    let t0 = Instant::now();
    let mut body = String::new();
    while t0.elapsed() < Duration::from_secs(3) {
        let (status, text) = support::http::get(addr, "/metrics").expect("a scrape");
        assert_eq!(status, 200, "{text}");
        body = text;
        let found = body.lines().find_map(|l| l.strip_prefix(series).map(str::trim));
        if found == Some(value) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let near: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("sipedge_subscriptions"))
        .collect();
    panic!("no {line:?} in /metrics: {near:#?}");
}

/// The terminating NOTIFY names the cause, and the link towards the front end only
/// (`ms-diagnostics`); towards a partner (`ms-diagnostics-public`) the dead link is an internal
/// host, which never crosses.
fn check_terminating(text: &str, diag_header: HeaderName, link: &str, cause: &str) {
    let m = sip::p(text);
    let diag = header(&m, diag_header);
    assert!(diag.starts_with("1912;reason=\""), "{text}");
    if diag_header == HeaderName::MsDiagnosticsPublic {
        assert!(
            !diag.contains("link=") && !text.contains(link),
            "{link} reached the partner: {text}"
        );
        assert!(m.header(HeaderName::MsDiagnostics).is_none(), "{text}");
    } else {
        assert!(diag.contains(&format!("link=\"{link}\"")), "{diag}");
    }
    assert!(diag.contains(&format!("cause=\"{cause}\"")), "{diag}");
    assert_eq!(header(&m, HeaderName::Event), "presence");
}

#[test]
fn a_killed_partner_ends_the_watchers_subscription_at_once_and_it_recovers() {
    let mut w = Inside::start(None);
    let mut fe = fe_client(&w.edge, &w.pki);
    assert_eq!(w.subscribe(&mut fe, 1), 200);
    w.notify_at_fe("watch-1", "active", WAIT);
    wait_metric(
        &w.edge,
        "sipedge_subscriptions_active{side=\"internal\",partner=\"partner.test\"} 1",
    );

    // The partner is killed: its connection closes; the watcher hears of it at once.
    let t0 = Instant::now();
    w.partner.stop();
    let text = w.notify_at_fe("watch-1", "terminated;reason=deactivated", WAIT);
    let took = t0.elapsed();
    check_terminating(
        &text,
        HeaderName::MsDiagnostics,
        "edge.partner.test",
        "peer_closed",
    );
    eprintln!("terminating NOTIFY {took:?} after the partner was killed");
    let m = sip::p(&text);
    assert_eq!(m.from().unwrap().tag(), Some("n1"));
    assert_eq!(m.to().unwrap().tag(), Some("w1"));
    // The presentity's NOTIFY had CSeq 1: the edge's is 1 + 1,001 (dialogs.rs, CSEQ_MARGIN).
    assert_eq!(m.cseq().unwrap().number, 1002, "above the notifier's CSeq");

    // The watcher re-subscribes at once: refused with a diagnostic while the partner is down.
    let refused = w.subscribe_final(&mut fe, 2);
    let m = sip::p(&refused);
    assert_eq!(m.status(), Some(504), "{refused}");
    assert!(
        header(&m, HeaderName::MsDiagnostics).starts_with("1904;"),
        "{refused}"
    );
    wait_metric(
        &w.edge,
        "sipedge_subscriptions_ended_total{cause=\"notifier_link_failed\"} 1",
    );
    wait_metric(
        &w.edge,
        "sipedge_subscriptions_active{side=\"internal\",partner=\"partner.test\"} 0",
    );

    // The partner is back on its port: presence flows again.
    w.partner = Inside::partner_at(&w.pki, w.partner_port);
    assert_eq!(w.subscribe(&mut fe, 3), 200);
    w.notify_at_fe("watch-3", "active", WAIT);
    assert!(
        w.edge
            .wait_log("subscription_link_failed", Duration::from_secs(1))
            .is_some(),
        "the failure is logged"
    );
}

#[test]
fn a_hung_partner_is_found_by_the_keepalive() {
    let interval = Duration::from_secs(2);
    let w = Inside::start(Some(interval.as_secs()));
    let mut fe = fe_client(&w.edge, &w.pki);
    assert_eq!(w.subscribe(&mut fe, 1), 200);
    w.notify_at_fe("watch-1", "active", WAIT);

    // The partner stops answering but keeps its sockets: only the keepalive can tell.
    let t0 = Instant::now();
    w.partner.freeze();
    let text = w.notify_at_fe(
        "watch-1",
        "terminated;reason=deactivated",
        interval + Duration::from_secs(4),
    );
    let took = t0.elapsed();
    check_terminating(
        &text,
        HeaderName::MsDiagnostics,
        "edge.partner.test",
        "keepalive_failed",
    );
    eprintln!("terminating NOTIFY {took:?} after the partner hung (keepalive interval {interval:?})");
    // Keepalive interval + 2 s (the pong wait), and a little for the loop and the test's polling.
    assert!(took < interval + Duration::from_millis(2500), "{took:?}");
}

/// A partner's watcher of a presentity behind the front end (the watcher outside, the notifier
/// inside): the edge, the front end's presentity UAS, the partner's UAS (where requests for the
/// watcher arrive: the edge dials it) and the partner's client on the external listener.
struct Outside {
    edge: Edge,
    fe_uas: TlsUas,
    fe_port: u16,
    partner_uas: TlsUas,
    partner: TlsPeer,
    pki: Arc<TestPki>,
}

impl Outside {
    fn start(keepalive_s: Option<u64>) -> Outside {
        let pki = Arc::new(TestPki::new());
        let fe_uas = Self::fe_at(&pki, 0);
        let fe_port = fe_uas.port();
        let partner_uas = TlsUas::start(&pki.partner, &pki.internal_ca.cert, |m| {
            vec![reply(m, 200, "OK", None)]
        });
        let mut opts = EdgeOpts::new(fe_port, partner_uas.port());
        opts.keepalive_interval_s = keepalive_s;
        let edge = Edge::start(&opts.render(&pki), &pki);
        let partner = TlsPeer::connect(
            edge.external_addr,
            &pki.partner,
            &pki.internal_ca.cert,
            "edge.corp.test",
        )
        .unwrap();
        Outside {
            edge,
            fe_uas,
            fe_port,
            partner_uas,
            partner,
            pki,
        }
    }

    fn fe_at(pki: &TestPki, port: u16) -> TlsUas {
        let contact = "sip:alice@fe1.corp.test;transport=tls".to_owned();
        TlsUas::start_at(port, &pki.fe, &pki.internal_ca.cert, presentity(contact))
    }

    /// bob@partner.test subscribes to alice@corp.test: the final response.
    fn subscribe(&mut self, n: u32) -> String {
        let host = format!("edge.partner.test:{}", self.partner_uas.port());
        self.partner.send(&subscribe(
            "sip:alice@corp.test",
            "sip:bob@partner.test",
            &host,
            &format!("sip:{host};transport=tls;lr"),
            &format!("sip:bob@{host};transport=tls"),
            n,
        ));
        self.partner
            .recv_final(WAIT, "SUBSCRIBE")
            .unwrap_or_else(|| panic!("no final to SUBSCRIBE {n}\n{}", self.edge.log_dump()))
    }

    fn notify_at_partner(&self, call_id: &str, state: &str, wait: Duration) -> String {
        self.partner_uas
            .wait_request(wait, |t| is_notify(t, call_id, state))
            .unwrap_or_else(|| {
                panic!(
                    "no NOTIFY {state} for {call_id} at the partner; it got {:?}\n{}",
                    self.partner_uas.requests(),
                    self.edge.log_dump()
                )
            })
    }
}

#[test]
fn a_dead_front_end_ends_the_partners_subscription_and_it_recovers() {
    let mut w = Outside::start(None);
    assert_eq!(sip::status(&w.subscribe(7)), 200);
    w.notify_at_partner("watch-7", "active", WAIT);
    // The front end dies.
    w.fe_uas.stop();
    let text = w.notify_at_partner("watch-7", "terminated;reason=deactivated", WAIT);
    // Towards a partner: the public diagnostic, without the edge's own name.
    check_terminating(
        &text,
        HeaderName::MsDiagnosticsPublic,
        "fe1.corp.test",
        "peer_closed",
    );
    assert!(!text.contains("source="), "{text}");
    // The partner's watcher re-subscribes: refused while the front end is down, answered (and
    // notified) once it is back.
    let refused = w.subscribe(8);
    assert_eq!(sip::status(&refused), 504, "{refused}");
    w.fe_uas = Outside::fe_at(&w.pki, w.fe_port);
    assert_eq!(sip::status(&w.subscribe(9)), 200);
    w.notify_at_partner("watch-9", "active", WAIT);
}

#[test]
fn a_hung_front_end_is_found_by_the_keepalive() {
    let interval = Duration::from_secs(2);
    let mut w = Outside::start(Some(interval.as_secs()));
    assert_eq!(sip::status(&w.subscribe(7)), 200);
    w.notify_at_partner("watch-7", "active", WAIT);
    let t0 = Instant::now();
    w.fe_uas.freeze();
    let text = w.notify_at_partner(
        "watch-7",
        "terminated;reason=deactivated",
        interval + Duration::from_secs(4),
    );
    let took = t0.elapsed();
    check_terminating(
        &text,
        HeaderName::MsDiagnosticsPublic,
        "fe1.corp.test",
        "keepalive_failed",
    );
    eprintln!("terminating NOTIFY to the partner {took:?} after the front end hung");
    assert!(took < interval + Duration::from_millis(2500), "{took:?}");
}

/// Private and shared-proportional memory of `pid` in KiB (PSS, `/proc/<pid>/smaps_rollup`).
fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Pss in:\n{text}"))
}

/// The 10,000-dialog soak: that many watchers subscribe through the edge (one front-end connection,
/// pipelined), each gets its NOTIFY; the edge's memory before and after gives the cost of a tracked
/// subscription. A measurement, not a CI test (no threshold): run it on the release build (a release
/// test run starts `target/release/sipedge`), `cargo build --release -p sipedge && cargo test
/// --release -p sipedge-tests --test subscriptions -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn ten_thousand_subscriptions_show_the_memory_per_dialog() {
    const N: u32 = 10_000;
    let w = Inside::start(None);
    let mut fe = fe_client(&w.edge, &w.pki);
    // Warm-up: the first subscription brings up the partner link and the worker's tables.
    assert_eq!(w.subscribe(&mut fe, 0), 200);
    // And the metrics thread's: one scrape before, as the measurement ends with scrapes (the
    // exposition's families are built on that thread, whose pages the allocator keeps).
    let _ = support::http::get(w.edge.metrics_addr.unwrap(), "/metrics");
    std::thread::sleep(Duration::from_millis(500));
    let before = pss_kib(w.edge.pid());
    let fe_host = format!("fe1.corp.test:{}", w.fe_uas.port());
    let t0 = Instant::now();
    for n in 1..=N {
        fe.send(&subscribe(
            "sip:bob@partner.test",
            "sip:alice@corp.test",
            &fe_host,
            &format!("sip:{fe_host};transport=tls;lr"),
            &format!("sip:alice@{fe_host};transport=tls"),
            n,
        ));
        // Keep at most ~200 in flight: the front end's socket and the edge's queues stay small.
        if n % 200 == 0 {
            let want = n as usize;
            while fe
                .received
                .iter()
                .filter(|m| sip::cseq_method(m) == "SUBSCRIBE" && sip::status(m) == 200)
                .count()
                < want
            {
                fe.recv_final(WAIT, "SUBSCRIBE")
                    .unwrap_or_else(|| panic!("stalled at {n}\n{}", w.edge.log_dump()));
            }
        }
    }
    let n_notify = w.fe_uas.wait_count(Duration::from_secs(60), N as usize + 1, |t| {
        sip::method(t) == "NOTIFY"
    });
    assert_eq!(n_notify, N as usize + 1, "every watcher got its NOTIFY");
    wait_metric(
        &w.edge,
        &format!(
            "sipedge_subscriptions_active{{side=\"internal\",partner=\"partner.test\"}} {}",
            N + 1
        ),
    );
    // Transactions are gone at their final (non-INVITE, TLS): what is left is the subscriptions.
    std::thread::sleep(Duration::from_millis(1000));
    let after = pss_kib(w.edge.pid());
    let per = (after.saturating_sub(before) as f64) * 1024.0 / f64::from(N);
    eprintln!(
        "{N} subscriptions in {:?}: PSS {before} KiB -> {after} KiB, {per:.0} bytes per tracked subscription",
        t0.elapsed()
    );
    // The status page with them (issue 17: bounded whatever the number of subscriptions).
    let metrics = w.edge.metrics_addr.unwrap();
    let t1 = Instant::now();
    let (code, page) = support::http::get(metrics, "/status").unwrap();
    let took = t1.elapsed();
    assert_eq!(code, 200);
    let (_, json) = support::http::get(metrics, "/status.json").unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["subscriptions"]["internal"],
        u64::from(N) + 1,
        "{}",
        v["subscriptions"]
    );
    eprintln!(
        "status page with {} subscriptions: {} bytes, served in {took:?}",
        N + 1,
        page.len()
    );
}
