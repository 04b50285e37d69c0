//! Issue 17, the operator's screen and pager, black-box: two real `sipedge run` edges — one driven
//! through everything the dashboard shows, one left idle — scraped by a real Prometheus that loads
//! `deploy/prometheus/rules.yml` and `alerts.yml`. Every query of every panel of
//! `grafana/dashboards/sipedge.json` (template variables resolved, `$instance` to each edge in turn)
//! must return at least one series for its panel, on the driven edge and on the idle one alike; and
//! after the driven edge's refused reload, `SipedgeReloadFailed` is firing in `/api/v1/alerts`.
//!
//! Driven: MESSAGEs both ways, refusals of several kinds (blocked domain, no SRV record, a relay
//! attempt), a push accepted, one refused (incomplete RFC 8599 identity), one answered 503 that
//! opens the provider's breaker, the push probe, a hostile connection, a refused then a good reload,
//! and a subscription ended by a killed partner. Loopback only; every wait is bounded.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/dnsmasq.rs"]
mod dnsmasq;
// Not every harness export is used here.
#[allow(unused_imports)]
mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsmasq::Dnsmasq;
use sip_codec::Message;
use support::front_end::{fe_client, fe_message};
use support::http;
use support::prometheus::Prometheus;
use support::sip::{self, reply, reply_with};
use support::{Edge, EdgeOpts, Reply, TestPki, TlsPeer, TlsUas};

const WAIT: Duration = Duration::from_secs(10);
const PUSH_URI: &str = "sip:push@push.lync.com";

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every panel's title and its query expressions, from the dashboard JSON (rows' nested panels too).
fn panel_queries() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(repo("grafana/dashboards/sipedge.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    let mut stack: Vec<serde_json::Value> = dashboard["panels"].as_array().unwrap().clone();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested.iter().cloned());
        }
        let exprs: Vec<String> = p["targets"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["expr"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if p["type"] != "row" {
            assert!(!exprs.is_empty(), "panel {} has no query", p["title"]);
            out.push((p["title"].as_str().unwrap().to_owned(), exprs));
        }
    }
    assert!(out.len() >= 30, "{} panels", out.len());
    out
}

/// `expr` with Grafana's variables resolved for one edge.
fn resolve(expr: &str, instance: &str) -> String {
    expr.replace("${instance}", instance)
        .replace("$instance", instance)
        .replace("${partner}", ".*")
        .replace("$partner", ".*")
        .replace("${__rate_interval}", "1m")
        .replace("$__rate_interval", "1m")
        .replace("${__range}", "5m")
        .replace("$__range", "5m")
        .replace("${__interval}", "30s")
        .replace("$__interval", "30s")
}

/// The queries that return no series for `instance` (the metrics address), as (panel, query).
fn empty_queries(
    prom: &Prometheus,
    panels: &[(String, Vec<String>)],
    instance: SocketAddr,
) -> Vec<(String, String)> {
    let inst = regex_escape(&instance.to_string());
    let mut empty = Vec::new();
    for (title, exprs) in panels {
        for e in exprs {
            let q = resolve(e, &inst);
            match prom.query(&q) {
                Ok(r) if r.is_empty() => empty.push((title.clone(), q)),
                Ok(_) => {}
                Err(err) => panic!("the query does not run: {q}\n{err}"),
            }
        }
    }
    empty
}

/// A query that has no value on an idle edge by its nature: the push success ratio is
/// accepted / all pushes, undefined with no push (its panel shows the push rate beside it, 0).
fn undefined_when_idle(query: &str) -> bool {
    query.contains("sipedge_push_success:ratio_rate5m")
}

/// A PromQL regular expression matching `s` literally (the instance's dots).
fn regex_escape(s: &str) -> String {
    s.replace('.', "\\\\.")
}

/// A partner answering 200 to everything but ACK, SUBSCRIBE with a dialog (Expires, Contact).
fn partner_uas(pki: &TestPki, port: Arc<AtomicU16>) -> TlsUas {
    TlsUas::start_with(
        &pki.partner,
        &pki.internal_ca.cert,
        move |m: &Message<'_>| match m.method() {
            Some("ACK") => vec![],
            Some("SUBSCRIBE") => {
                let extra = format!(
                    "Expires: 3600\nContact: <sip:bob@edge.partner.test:{};transport=tls>\n",
                    port.load(Ordering::SeqCst)
                );
                vec![Reply::Now(reply_with(m, 200, "OK", Some("p-sub"), &extra))]
            }
            _ => vec![Reply::Now(reply(m, 200, "OK", Some("p1")))],
        },
    )
}

fn push(fe: &mut TlsPeer, edge: &Edge, uri_params: &str, branch: &str) -> String {
    let uri = format!("{PUSH_URI}{uri_params}");
    fe_message(fe, edge, &uri, branch, WAIT)
}

#[test]
fn every_panel_has_data_on_a_driven_and_an_idle_edge_and_the_reload_alert_fires() {
    let pki = TestPki::new();
    // The provider: 503 to a push whose token says so (the breaker opens), 200 to the others.
    let provider_id = pki.partner_leaf("sipfed.online.lync.com");
    let provider = TlsUas::start_with(&provider_id, &pki.internal_ca.cert, |m: &Message<'_>| {
        let fail = m.request_uri().is_some_and(|u| u.contains("pn-prid=fail"));
        match m.method() {
            Some("ACK") => vec![],
            _ if fail => vec![Reply::Now(reply(m, 503, "Service Unavailable", Some("lo")))],
            _ => vec![Reply::Now(reply(m, 200, "OK", Some("lo")))],
        }
    });
    let fe_uas = TlsUas::ok(&pki.fe, &pki.internal_ca.cert, "fe");
    let partner_port = Arc::new(AtomicU16::new(0));
    let partner = partner_uas(&pki, Arc::clone(&partner_port));
    partner_port.store(partner.port(), Ordering::SeqCst);
    let dns = Dnsmasq::lync_online(provider.port());
    let mut opts = EdgeOpts::new(fe_uas.port(), partner.port());
    opts.dns_servers = vec![dns.server()];
    opts.lync_online();
    opts.allowed_srv.push("push.lync.com".into());
    opts.blocked.push("blocked.test".into());
    opts.extra_toml = "[push]\nmax_retries = 0\nbreaker_failures = 1\nbreaker_cooldown_ms = 600000\n\n\
                       [im_filter]\naction = \"warn\"\n"
        .into();
    let config = format!(
        "{}\n[[internal.known_servers]]\nfqdn = \"edge-int.corp.test\"\nversion = 0\n",
        opts.render(&pki)
    );
    let edge = Edge::start(&config, &pki);
    let idle = Edge::start(&config, &pki);
    let (driven_at, idle_at) = (edge.metrics_addr.unwrap(), idle.metrics_addr.unwrap());
    let prom = Prometheus::start_with_rules(
        &[driven_at, idle_at],
        &[
            &repo("deploy/prometheus/rules.yml"),
            &repo("deploy/prometheus/alerts.yml"),
        ],
    );

    // Prometheus has both edges before anything happens, so every rate sees its counters move.
    for at in [driven_at, idle_at] {
        prom.value_when(&format!("up{{instance=\"{at}\"}}"), |v| v == 1.0);
    }

    // Outbound and inbound traffic; refusals of several kinds.
    let mut fe = fe_client(&edge, &pki);
    assert_eq!(
        sip::status(&fe_message(
            &mut fe,
            &edge,
            "sip:bob@partner.test",
            "z9hG4bKd-1",
            WAIT
        )),
        200
    );
    assert_eq!(
        sip::status(&fe_message(
            &mut fe,
            &edge,
            "sip:x@blocked.test",
            "z9hG4bKd-2",
            WAIT
        )),
        403
    );
    assert_eq!(
        sip::status(&fe_message(
            &mut fe,
            &edge,
            "sip:x@nowhere.test",
            "z9hG4bKd-3",
            WAIT
        )),
        504
    );
    let mut p = TlsPeer::connect(
        edge.external_addr,
        &pki.partner,
        &pki.internal_ca.cert,
        "edge.corp.test",
    )
    .unwrap();
    let via = format!("edge.partner.test:{}", partner.port());
    p.send(&sip::message(
        "sip:alice@corp.test",
        &via,
        "z9hG4bKp-1",
        "sip:bob@partner.test",
    ));
    assert_eq!(sip::status(&p.recv_final(WAIT, "MESSAGE").unwrap()), 200);
    p.send(&sip::message(
        "sip:victim@bank.test",
        &via,
        "z9hG4bKp-2",
        "sip:bob@partner.test",
    ));
    assert_eq!(sip::status(&p.recv_final(WAIT, "MESSAGE").unwrap()), 403);

    // Pushes: accepted, refused by the edge, and one the provider fails (the breaker opens).
    assert_eq!(sip::status(&push(&mut fe, &edge, "", "z9hG4bKpush-1")), 200);
    assert_eq!(
        sip::status(&push(&mut fe, &edge, ";pn-provider=apns", "z9hG4bKpush-2")),
        480
    );
    assert_eq!(
        sip::status(&push(
            &mut fe,
            &edge,
            ";pn-provider=apns;pn-prid=fail;pn-param=A.b.c",
            "z9hG4bKpush-3"
        )),
        503
    );
    let (code, _) = http::get(driven_at, "/probe/push").unwrap();
    assert_eq!(code, 503, "the breaker is open: the probe is answered at once");

    // A hostile connection: bytes that can never begin SIP.
    let mut raw = TcpStream::connect(edge.external_addr).unwrap();
    raw.write_all(b"\x16\x03\x01\x00\x05hello").ok();
    drop(raw);

    // A subscription, then its partner killed: the watcher's subscription ends (link failed).
    let subscribe = sip::request(
        "SUBSCRIBE",
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKsub-1",
        "sip:alice@corp.test",
        "Event: presence\nExpires: 3600\nContact: <sip:alice@fe1.corp.test:5061;transport=tls>\n\
         Record-Route: <sip:fe1.corp.test:5061;transport=tls;lr>\n",
    );
    fe.send(&subscribe);
    assert_eq!(sip::status(&fe.recv_final(WAIT, "SUBSCRIBE").unwrap()), 200);
    // The partner's own connection (its certificate names the same link) goes first, then the
    // partner itself: the link is dead when its last connection ends.
    drop(p);
    drop(partner);

    // A refused reload, then a good one (the alert is checked while the refused one stands).
    let good = std::fs::read_to_string(&edge.config_path).unwrap();
    std::fs::write(&edge.config_path, format!("{good}\n[nosuch]\nkey = 1\n")).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &edge.pid().to_string()])
        .status()
        .unwrap()
        .success());
    edge.wait_log("\"reload_failed\"", WAIT).unwrap();
    prom.value_when(
        &format!("sipedge_config_last_reload_success{{instance=\"{driven_at}\"}}"),
        |v| v == 0.0,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let firing = prom.alerts().into_iter().any(|a| {
            a["labels"]["alertname"] == "SipedgeReloadFailed"
                && a["labels"]["instance"] == driven_at.to_string()
                && a["state"] == "firing"
        });
        if firing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SipedgeReloadFailed never fired: {:?}",
            prom.alerts()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::fs::write(&edge.config_path, &good).unwrap();
    edge.reload_applied(WAIT);

    // Every panel, on both edges, once the subscription's end and the last scrapes are in.
    prom.value_when(
        &format!(
            "sipedge_subscriptions_ended_total{{instance=\"{driven_at}\",cause=\"notifier_link_failed\"}}"
        ),
        |v| v >= 1.0,
    );
    prom.value_when(
        &format!("sipedge_config_reloads_total{{instance=\"{driven_at}\",result=\"success\"}}"),
        |v| v >= 1.0,
    );
    let panels = panel_queries();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut driven_empty, mut idle_empty);
    loop {
        driven_empty = empty_queries(&prom, &panels, driven_at);
        idle_empty = empty_queries(&prom, &panels, idle_at);
        idle_empty.retain(|(_, q)| !undefined_when_idle(q));
        if (driven_empty.is_empty() && idle_empty.is_empty()) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Driven: every query of every panel returns data.
    assert!(
        driven_empty.is_empty(),
        "queries without data on the driven edge: {driven_empty:#?}"
    );
    // Idle: every query too, but the ratios that are undefined without traffic; and every panel
    // has data (such a ratio never stands alone in its panel).
    assert!(
        idle_empty.is_empty(),
        "queries without data on the idle edge: {idle_empty:#?}"
    );
    for (title, exprs) in &panels {
        assert!(
            exprs.iter().any(|e| !undefined_when_idle(e)),
            "panel {title} would be empty on an idle edge: {exprs:?}"
        );
    }
    let queries: usize = panels.iter().map(|(_, e)| e.len()).sum();
    println!(
        "{} panels, {queries} queries, every one with data on a driven edge and on an idle one",
        panels.len()
    );
}
