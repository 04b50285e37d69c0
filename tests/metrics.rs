//! Issue 9, metrics, black-box: the real `sipedge run` binary serves `/metrics`, `/healthz` and
//! `/readyz` on `metrics.listen` (the `metrics http <addr>` line); a real Prometheus (the Debian
//! package, started here on loopback) scrapes it, and the test asks Prometheus's HTTP API for the
//! series it drove — requests by method, a refusal by reason, a reload. `promtool check metrics` is
//! clean on the edge's real exposition. SIGTERM fails `/readyz` at once while `/healthz` stays 200
//! until the edge exits. Every wait is bounded; loopback only.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sip_codec::Message;
use support::front_end::{fe_client, fe_message};
use support::http;
use support::prometheus::{free_port, Prometheus};
use support::sip::{self, reply};
use support::{Edge, EdgeOpts, Reply, TestPki, TlsUas};

const WAIT: Duration = Duration::from_secs(5);

/// A UAS answering 200 to everything but ACK (`silent`: nothing at all).
fn uas(pki: &TestPki, identity: &support::pki::Identity, silent: bool) -> TlsUas {
    TlsUas::start_with(identity, &pki.internal_ca.cert, move |m: &Message<'_>| {
        match m.method() {
            Some("ACK") => vec![],
            _ if silent => vec![],
            _ => vec![Reply::Now(reply(m, 200, "OK", Some("uas-tag")))],
        }
    })
}

fn metrics_addr(edge: &Edge) -> SocketAddr {
    edge.metrics_addr.expect("the edge printed `metrics http <addr>`")
}

/// The value of the first sample line of `/metrics` that starts with `series` (name and labels
/// exactly as rendered), polled until `pred` holds (the workers publish twice a second).
fn scrape_until(edge: &Edge, series: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http::get(metrics_addr(edge), "/metrics").unwrap();
        assert_eq!(status, 200, "{body}");
        let v = http::sample(&body, series);
        if let Some(v) = v.filter(|v| pred(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series}: {v:?} within {WAIT:?}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_real_prometheus_scrapes_what_the_test_drove() {
    let pki = TestPki::new();
    let fe_uas = uas(&pki, &pki.fe, false);
    let partner = uas(&pki, &pki.partner, false);
    let mut opts = EdgeOpts::new(fe_uas.port(), partner.port());
    opts.blocked.push("blocked.test".into());
    let edge = Edge::start(&opts.render(&pki), &pki);
    let prom = Prometheus::start(metrics_addr(&edge));

    let mut c = fe_client(&edge, &pki);
    for i in 0..3 {
        assert_eq!(
            sip::status(&fe_message(
                &mut c,
                &edge,
                "sip:bob@partner.test",
                &format!("z9hG4bKm-ok{i}"),
                WAIT
            )),
            200
        );
    }
    assert_eq!(
        sip::status(&fe_message(
            &mut c,
            &edge,
            "sip:x@blocked.test",
            "z9hG4bKm-blk",
            WAIT
        )),
        403
    );
    // A reload with the same file: applied, generation 2.
    let pid = edge.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    edge.wait_log("reload_applied", Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no reload_applied\n{}", edge.log_dump()));

    let q = |s: &str| s.to_owned();
    let n = prom.value_when(
        &q(r#"sipedge_requests_total{direction="outbound",method="MESSAGE"}"#),
        |v| v >= 4.0,
    );
    assert_eq!(n, 4.0);
    assert_eq!(
        prom.value_when(&q(r#"sipedge_refusals_total{reason="blocked"}"#), |v| v >= 1.0),
        1.0
    );
    assert_eq!(
        prom.value_when(
            &q(r#"sipedge_responses_total{direction="outbound",method="MESSAGE",class="2xx"}"#),
            |v| v >= 3.0
        ),
        3.0
    );
    assert_eq!(
        prom.value_when(&q(r#"sipedge_config_reloads_total{result="success"}"#), |v| v
            >= 1.0),
        1.0
    );
    assert_eq!(
        prom.value_when(&q("sipedge_config_generation"), |v| v >= 2.0),
        2.0
    );
    assert_eq!(
        prom.value_when(
            &q(r#"sipedge_federation_partner_decisions_total{partner="partner.test",verdict="accept"}"#),
            |v| v >= 3.0
        ),
        3.0
    );
    // A histogram Prometheus can compute with: the 3 answered MESSAGEs.
    assert_eq!(
        prom.value_when(
            &q(r#"sipedge_transaction_duration_seconds_count{method="MESSAGE"}"#),
            |v| v >= 3.0
        ),
        3.0
    );
    assert!(prom.value_when(&q(r#"up{job="sipedge"}"#), |v| v == 1.0) == 1.0);
}

#[test]
fn promtool_finds_the_real_exposition_clean() {
    let pki = TestPki::new();
    let fe_uas = uas(&pki, &pki.fe, false);
    let partner = uas(&pki, &pki.partner, false);
    let edge = Edge::start(&EdgeOpts::new(fe_uas.port(), partner.port()).render(&pki), &pki);
    let mut c = fe_client(&edge, &pki);
    assert_eq!(
        sip::status(&fe_message(
            &mut c,
            &edge,
            "sip:bob@partner.test",
            "z9hG4bKm-pt1",
            WAIT
        )),
        200
    );
    scrape_until(
        &edge,
        r#"sipedge_transaction_duration_seconds_count{method="MESSAGE"}"#,
        |v| v >= 1.0,
    );
    let (_, body) = http::get(metrics_addr(&edge), "/metrics").unwrap();
    for family in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = family.split_whitespace().nth(2).unwrap();
        assert!(body.contains(&format!("# HELP {name} ")), "HELP for {name}");
        assert!(name.starts_with("sipedge_"), "{name}");
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool missing ({e}): install the Debian package `prometheus`"));
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );
}

#[test]
fn sigterm_fails_readyz_at_once_while_healthz_stays_up_until_exit() {
    let pki = TestPki::new();
    let fe_uas = uas(&pki, &pki.fe, false);
    let silent = uas(&pki, &pki.partner, true);
    let mut opts = EdgeOpts::new(fe_uas.port(), silent.port());
    opts.transaction_timeout_ms = 3000;
    let mut edge = Edge::start(&opts.render(&pki), &pki);
    let addr = metrics_addr(&edge);
    let (status, body) = http::get(addr, "/readyz").unwrap();
    assert_eq!((status, body.contains("generation 1")), (200, true), "{body}");
    assert_eq!(http::get(addr, "/healthz").unwrap().0, 200);
    assert_eq!(http::get(addr, "/nothing-here").unwrap().0, 404);
    // An open transaction keeps the edge draining for up to Timer F.
    let mut c = fe_client(&edge, &pki);
    c.send(&sip::message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKm-open",
        "sip:alice@corp.test",
    ));
    silent
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .expect("the MESSAGE reached the silent partner");
    let pid = edge.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = http::get(addr, "/readyz").unwrap();
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz still {status} after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(body.contains("draining"), "{body}");
    // The same as a gauge, for dashboards and alerts.
    let (_, exposition) = http::get(addr, "/metrics").unwrap();
    assert!(exposition.lines().any(|l| l == "sipedge_ready 0"), "{exposition}");
    assert_eq!(
        http::get(addr, "/healthz").unwrap().0,
        200,
        "alive while draining"
    );
    // New requests get 503 with Retry-After while the open one finishes by its timer — once every
    // worker has taken the drain (each logs shutdown_started; /readyz fails before that).
    let deadline = Instant::now() + WAIT;
    while edge.logs_with("\"shutdown_started\"").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "workers never started draining\n{}",
            edge.log_dump()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.send(&sip::message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKm-late",
        "sip:alice@corp.test",
    ));
    let late = c
        .recv_matching(WAIT, |m| sip::top_branch(m) == "z9hG4bKm-late")
        .expect("an answer while draining");
    assert_eq!(sip::status(&late), 503, "{late}");
    assert!(sip::header(&late, "Retry-After").is_some(), "{late}");
    let open = c
        .recv_matching(WAIT, |m| sip::top_branch(m) == "z9hG4bKm-open")
        .expect("the open transaction finished");
    assert_eq!(sip::status(&open), 408);
    let code = edge.stop(WAIT).expect("the edge exited");
    assert!(code.success(), "{code:?}");
    assert!(
        http::get(addr, "/healthz").is_err(),
        "the endpoint is gone with the process"
    );
}

/// Issue 17: a freshly started, idle edge already exports every family, with every label
/// combination known at start at 0 (methods, sides, reasons, each configured partner and hosted
/// provider, each certificate) and the configured limits — a dashboard shows 0, never "No data".
#[test]
fn a_fresh_edge_exports_every_family_from_the_first_scrape() {
    let pki = TestPki::new();
    let fe = uas(&pki, &pki.fe, false);
    let mut opts = EdgeOpts::new(fe.port(), free_port());
    opts.lync_online();
    opts.max_connections = Some(1234);
    let edge = Edge::start(&opts.render(&pki), &pki);
    let (status, body) = http::get(metrics_addr(&edge), "/metrics").unwrap();
    assert_eq!(status, 200);
    let samples: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for desc in sipedge_metrics::names::ALL {
        let present = samples.iter().any(|l| {
            l.strip_prefix(desc.name).is_some_and(|rest| {
                rest.starts_with(['{', ' ']) || rest.starts_with("_bucket") || rest.starts_with("_count")
            })
        });
        assert!(present, "{} is missing from a fresh edge:\n{body}", desc.name);
    }
    let has = |line: &str| {
        assert!(samples.contains(&line), "no {line:?} in:\n{body}");
    };
    has(r#"sipedge_requests_total{direction="inbound",method="INVITE"} 0"#);
    has(r#"sipedge_responses_total{direction="outbound",method="MESSAGE",class="6xx"} 0"#);
    has(r#"sipedge_refusals_total{reason="no_srv"} 0"#);
    has(r#"sipedge_refusals_total{reason="push_filtered"} 0"#);
    has(r#"sipedge_generated_responses_total{status="504",reason="connect_failed"} 0"#);
    has(
        r#"sipedge_federation_decisions_total{direction="outbound",verdict="accept",reason="hosted_provider"} 0"#,
    );
    has(
        r#"sipedge_federation_decisions_total{direction="inbound",verdict="refuse",reason="peer_mismatch"} 0"#,
    );
    has(r#"sipedge_federation_partner_decisions_total{partner="partner.test",verdict="refuse"} 0"#);
    has(r#"sipedge_tls_handshakes_total{side="external",result="certificate_untrusted"} 0"#);
    has(r#"sipedge_connections_refused_total{side="internal",limit="max_connections"} 0"#);
    has(r#"sipedge_hostile_closes_total{side="external",kind="not_sip"} 0"#);
    has(r#"sipedge_dns_failures_total{type="SRV",kind="timeout"} 0"#);
    has(r#"sipedge_transaction_outcomes_total{method="INVITE",outcome="timed_out"} 0"#);
    has(r#"sipedge_transaction_duration_seconds_count{method="INVITE"} 0"#);
    has(r#"sipedge_push_outcomes_total{outcome="accepted",class="2xx"} 0"#);
    has(r#"sipedge_push_duration_seconds_count 0"#);
    has(r#"sipedge_push_breaker_state{partner="LyncOnline"} 0"#);
    has(r#"sipedge_config_max_connections 1234"#);
    has("sipedge_ready 1");
    has(r#"sipedge_config_max_subscriptions 100000"#);
    for role in ["internal", "external"] {
        assert!(
            samples.iter().any(|l| l.starts_with(&format!(
                "sipedge_certificate_expiry_timestamp_seconds{{certificate=\"{role}\""
            ))),
            "{role} certificate expiry:\n{body}"
        );
    }
    // Within the bound for this configuration.
    let partners = 1 + 1; // partner.test and the provider
    let bound = sipedge_metrics::names::max_series(2, partners, 2);
    assert!(samples.len() <= bound, "{} series > bound {bound}", samples.len());
    println!("a fresh edge: {} series (bound {bound})", samples.len());
}
