//! Issue 10, the push relay, black-box: the real `sipedge run`, dnsmasq as the real DNS server
//! (`_sipfederationtls._tcp.push.lync.com` → `sipfed.online.lync.com` at a loopback TLS UAS with a
//! partner-CA certificate for that name, the enabled hosted provider LyncOnline), `push.lync.com`
//! allowed, and a front end pushing to `sip:push@push.lync.com`. The provider answers 503 with
//! Retry-After, stays silent, answers 200 slowly, or fails until it is "back"; the edge retries,
//! answers 504, never retries, or opens its breaker and closes it again — each seen at the front
//! end, at the provider and in `/metrics`. The IM URL filter rejects a push naming the prefix.
//! Every wait is bounded; loopback only.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/dnsmasq.rs"]
mod dnsmasq;
mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsmasq::Dnsmasq;
use sip_codec::Message;
use support::http;
use support::sip::{self, reply_with};
use support::{Edge, EdgeOpts, Reply, TestPki, TlsPeer, TlsUas};

const WAIT: Duration = Duration::from_secs(10);
const PUSH_URI: &str = "sip:push@push.lync.com";

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The provider answers each push with what `answer(n)` says (`n` counts pushes from 1).
type Answer = dyn Fn(usize) -> Option<(u16, &'static str, Duration)> + Send + Sync;

struct World {
    edge: Edge,
    provider: TlsUas,
    pki: TestPki,
    _fe_uas: TlsUas,
    _dns: Dnsmasq,
}

impl World {
    fn start(push_keys: &str, answer: Arc<Answer>) -> World {
        let pki = TestPki::new();
        let id = pki.partner_leaf("sipfed.online.lync.com");
        let seen = Arc::new(AtomicUsize::new(0));
        let provider = TlsUas::start_with(&id, &pki.internal_ca.cert, move |m: &Message<'_>| {
            if m.method() != Some("MESSAGE") {
                return vec![];
            }
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            match answer(n) {
                None => vec![],
                Some((status, extra, delay)) => {
                    let r = reply_with(m, status, "Provider", Some("lync-online"), extra);
                    vec![if delay.is_zero() {
                        Reply::Now(r)
                    } else {
                        Reply::After(delay, r)
                    }]
                }
            }
        });
        let fe_uas = TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &Message<'_>| {
            vec![sip::reply(m, 200, "OK", Some("fe"))]
        });
        let dns = Dnsmasq::lync_online(provider.port());
        let mut opts = EdgeOpts::new(fe_uas.port(), closed_port());
        opts.dns_servers = vec![dns.server()];
        opts.lync_online();
        opts.allowed_srv.push("push.lync.com".into());
        opts.transaction_timeout_ms = 8000;
        opts.workers = 1;
        opts.extra_toml = format!("[push]\nproxy_uri = \"{PUSH_URI}\"\n{push_keys}\n");
        let edge = Edge::start(&opts.render(&pki), &pki);
        World {
            edge,
            provider,
            pki,
            _fe_uas: fe_uas,
            _dns: dns,
        }
    }

    fn fe(&self) -> TlsPeer {
        TlsPeer::connect(
            self.edge.internal_addr,
            &self.pki.fe,
            &self.pki.internal_ca.cert,
            "edge-int.corp.test",
        )
        .unwrap_or_else(|e| panic!("FE cannot connect: {e}\n{}", self.edge.log_dump()))
    }

    /// One push (body without any URL); its final response and how long it took.
    fn push(&self, fe: &mut TlsPeer, branch: &str) -> (String, Duration) {
        let started = Instant::now();
        fe.send(&sip::message(
            PUSH_URI,
            "fe1.corp.test:5061",
            branch,
            "sip:mobility@corp.test",
        ));
        let r = fe
            .recv_matching(WAIT + WAIT, |m| {
                sip::status(m) >= 200 && sip::top_branch(m) == branch
            })
            .unwrap_or_else(|| panic!("no final answer to {branch}\n{}", self.edge.log_dump()));
        (r, started.elapsed())
    }

    fn pushes_seen(&self) -> usize {
        self.provider
            .requests()
            .iter()
            .filter(|r| sip::method(r) == "MESSAGE")
            .count()
    }

    /// The value of one exact series line of `/metrics` once it is at least `at_least` (or after
    /// 5 s); the scrape must answer 200 and the series must be there.
    fn metric(&self, series: &str, at_least: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = http::get(self.edge.metrics_addr.unwrap(), "/metrics").unwrap();
            assert_eq!(status, 200, "{body}");
            let v = http::sample(&body, series);
            match v {
                Some(v) if v >= at_least || Instant::now() >= deadline => return v,
                None if Instant::now() >= deadline => panic!("no series {series} in /metrics:\n{body}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

fn diag_id(r: &str) -> u32 {
    sip::p(r).ms_diagnostics().map(|d| d.id).unwrap_or(0)
}

const FAST: &str =
    "timeout_ms = 1500\nmax_retries = 1\nbackoff_ms = 100\nbreaker_failures = 5\nbreaker_cooldown_ms = 2000";

#[test]
fn a_503_with_retry_after_is_retried_once_after_that_time() {
    let w = World::start(
        FAST,
        Arc::new(|n| match n {
            1 => Some((503, "Retry-After: 1\n", Duration::ZERO)),
            _ => Some((200, "", Duration::ZERO)),
        }),
    );
    let mut fe = w.fe();
    let (r, took) = w.push(&mut fe, "z9hG4bKpush-ra");
    assert_eq!(sip::status(&r), 200, "{r}\n{}", w.edge.log_dump());
    assert_eq!(w.pushes_seen(), 2, "one retry");
    assert!(
        took >= Duration::from_secs(1),
        "retried after Retry-After, not before: {took:?}"
    );
    assert_eq!(w.metric(r#"sipedge_push_attempts_total{kind="retry"}"#, 1.0), 1.0);
    assert_eq!(
        w.metric(
            r#"sipedge_push_outcomes_total{outcome="accepted",class="2xx"}"#,
            1.0
        ),
        1.0
    );
}

#[test]
fn a_silent_provider_is_retried_then_answered_504() {
    let w = World::start(FAST, Arc::new(|_| None));
    let mut fe = w.fe();
    let (r, took) = w.push(&mut fe, "z9hG4bKpush-silent");
    assert_eq!(sip::status(&r), 504, "{r}");
    assert_eq!(diag_id(&r), 1911, "{r}");
    assert_eq!(w.pushes_seen(), 2, "the first attempt and one retry");
    // Within push.timeout_ms + one retry (+ the backoff and a margin for this machine).
    assert!(took >= Duration::from_millis(3000), "{took:?}");
    assert!(took < Duration::from_millis(3100 + 1500), "{took:?}");
    assert_eq!(
        w.metric(
            r#"sipedge_push_outcomes_total{outcome="timed_out",class="5xx"}"#,
            1.0
        ),
        1.0
    );
}

#[test]
fn a_provider_that_answers_200_slowly_is_never_retried() {
    let w = World::start(FAST, Arc::new(|_| Some((200, "", Duration::from_millis(1200)))));
    let mut fe = w.fe();
    let (r, _) = w.push(&mut fe, "z9hG4bKpush-slow");
    assert_eq!(sip::status(&r), 200, "{r}");
    // Positive signal that no retry is pending: a second push is answered, and the provider saw two.
    let (r2, _) = w.push(&mut fe, "z9hG4bKpush-slow2");
    assert_eq!(sip::status(&r2), 200);
    assert_eq!(w.pushes_seen(), 2, "exactly one transmission per push");
    // Both pushes published (so the retry count read next is not a stale 0), then no retry.
    assert_eq!(w.metric(r#"sipedge_push_attempts_total{kind="first"}"#, 2.0), 2.0);
    assert_eq!(w.metric(r#"sipedge_push_attempts_total{kind="retry"}"#, 0.0), 0.0);
}

#[test]
fn the_breaker_opens_answers_at_once_then_closes_when_the_provider_is_back() {
    let back = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&back);
    let w = World::start(
        "timeout_ms = 1500\nmax_retries = 0\nbreaker_failures = 3\nbreaker_cooldown_ms = 2000",
        Arc::new(move |_| match flag.load(Ordering::SeqCst) {
            false => Some((503, "", Duration::ZERO)),
            true => Some((200, "", Duration::ZERO)),
        }),
    );
    let mut fe = w.fe();
    for i in 0..3 {
        let (r, _) = w.push(&mut fe, &format!("z9hG4bKpush-down{i}"));
        assert_eq!(sip::status(&r), 503, "the provider's own 503 is forwarded: {r}");
    }
    assert_eq!(w.pushes_seen(), 3);
    // Open: answered by the edge at once, with Retry-After and the diagnostic, nothing sent.
    let mut fastest = Duration::MAX;
    for i in 0..5 {
        let (r, took) = w.push(&mut fe, &format!("z9hG4bKpush-open{i}"));
        assert_eq!(sip::status(&r), 503, "{r}");
        assert_eq!(diag_id(&r), 1007, "{r}");
        assert!(sip::header(&r, "Retry-After").is_some(), "{r}");
        assert!(
            sip::header(&r, "ms-diagnostics")
                .unwrap()
                .contains("provider=\"LyncOnline\""),
            "{r}"
        );
        fastest = fastest.min(took);
    }
    eprintln!("short-circuited push answered in {fastest:?} (fastest of 5, round trip over TLS)");
    assert!(
        fastest < Duration::from_millis(100),
        "answered at once: {fastest:?}"
    );
    assert_eq!(w.pushes_seen(), 3, "nothing reached the provider while open");
    assert_eq!(
        w.metric(r#"sipedge_push_breaker_state{partner="LyncOnline"}"#, 2.0),
        2.0
    );
    // The provider is back; after the cool-down the probe goes through and closes the breaker.
    back.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2100)); // the cool-down is the subject of this test
    let (r, _) = w.push(&mut fe, "z9hG4bKpush-probe");
    assert_eq!(sip::status(&r), 200, "the probe: {r}");
    let (r, _) = w.push(&mut fe, "z9hG4bKpush-after");
    assert_eq!(sip::status(&r), 200, "closed: {r}");
    assert_eq!(w.pushes_seen(), 5);
    assert_eq!(
        w.metric(r#"sipedge_push_breaker_state{partner="LyncOnline"}"#, 0.0),
        0.0
    );
    assert_eq!(
        w.metric(
            r#"sipedge_push_outcomes_total{outcome="short_circuited",class="5xx"}"#,
            5.0
        ),
        5.0
    );
}

#[test]
fn the_im_url_filter_rejects_a_push_naming_the_prefix() {
    // The default filter blocks http: and https: (check-config warns about it for pushes).
    let w = World::start(FAST, Arc::new(|_| Some((200, "", Duration::ZERO))));
    let mut fe = w.fe();
    let body = r#"{"deeplink":"https://teams.example/x"}"#;
    let text = format!(
        "MESSAGE {PUSH_URI} SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.test:5061;branch=z9hG4bKpush-url\nMax-Forwards: 70\nFrom: <sip:mobility@corp.test>;tag=m\nTo: <{PUSH_URI}>\nCall-ID: push-url\nCSeq: 1 MESSAGE\nContent-Type: application/json\nContent-Length: {}\n\n{body}",
        body.len()
    );
    fe.send(&text);
    let r = fe
        .recv_matching(WAIT, |m| sip::status(m) >= 200)
        .unwrap_or_else(|| panic!("no answer\n{}", w.edge.log_dump()));
    assert_eq!(sip::status(&r), 403, "{r}");
    let d = sip::header(&r, "ms-diagnostics").unwrap();
    assert!(
        d.starts_with("1909;") && d.contains("Push Notification request was rejected"),
        "{d}"
    );
    assert!(d.contains("prefix=\"https:\""), "{d}");
    // A push without a URL still goes through (positive signal), and only it reached the provider.
    let (ok, _) = w.push(&mut fe, "z9hG4bKpush-plain");
    assert_eq!(sip::status(&ok), 200);
    assert_eq!(w.pushes_seen(), 1);
}
