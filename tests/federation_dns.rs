//! Issue 5, black-box: the federation decision (docs/architecture.md, Federation decision) with
//! DNS for real — the `sipedge run` binary on loopback, its `[dns] servers` pointing at a
//! `dnsmasq` we start on a free loopback port (SRV and A records from its command line, every
//! other name NXDOMAIN), no static `[dns] hosts` for the names under test, TLS peers from the test
//! PKI (`partner_leaf` certificates for the SRV targets and for the hosted provider
//! `sipfed.online.lync.com`).
//!
//! Each test has its own dnsmasq, edge and peers. Every wait is bounded; loopback only. The dnsmasq
//! query log is checked so that a test cannot pass without the edge having asked DNS.

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
use std::time::Duration;

use dnsmasq::{Dnsmasq, Record};
use sip_codec::Message;
use support::front_end::{fe_client, fe_message, final_for};
use support::pki::Identity;
use support::sip::{self, p, reply};
use support::{Edge, EdgeOpts, Reply, TestPki, TlsPeer, TlsUas};

const WAIT: Duration = Duration::from_secs(5);
/// The push path has its own timeout and retries: a little more room for its final answer.
const PUSH_WAIT: Duration = Duration::from_secs(12);

const NOT_CONFIGURED: &str =
    "The domain of the message is not configured and does not appear to belong to a federated partner";

// ---- helpers ------------------------------------------------------------------------------------

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The front end's UAS: 200 to everything but ACK.
fn fe_uas_ok(pki: &TestPki) -> TlsUas {
    TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &Message<'_>| {
        match m.method() {
            Some("ACK") => vec![],
            _ => vec![reply(m, 200, "OK", Some("fe-tag"))],
        }
    })
}

/// A partner or provider server presenting `identity`, accepting the edge's client certificate
/// (internal CA), answering 200 to everything but ACK.
fn remote_uas_ok(pki: &TestPki, identity: &Identity) -> TlsUas {
    TlsUas::start_with(identity, &pki.internal_ca.cert, |m: &Message<'_>| {
        match m.method() {
            Some("ACK") => vec![],
            _ => vec![Reply::Now(reply(m, 200, "OK", Some("remote-tag")))],
        }
    })
}

/// The edge of the scenarios (`edge.corp.test` serving `corp.test`, FE next hop `fe1.corp.test`,
/// `partner.test` pinned to a dead port and unused here) with `[dns] servers` = our dnsmasq.
fn start_edge(pki: &TestPki, fe_uas: &TlsUas, dns: &Dnsmasq, tweak: impl FnOnce(&mut EdgeOpts)) -> Edge {
    let mut opts = EdgeOpts::new(fe_uas.port(), closed_port());
    opts.dns_servers = vec![dns.server()];
    tweak(&mut opts);
    Edge::start(&opts.render(pki), pki)
}

fn lync_online(o: &mut EdgeOpts) {
    o.hosted_providers.push((
        "LyncOnline".into(),
        "sipfed.online.lync.com".into(),
        true,
        "AlwaysVerifiable".into(),
    ));
}

/// A partner on the external listener presenting `identity`.
fn partner_client(edge: &Edge, pki: &TestPki, identity: &Identity) -> TlsPeer {
    TlsPeer::connect(
        edge.external_addr,
        identity,
        &pki.internal_ca.cert,
        "edge.corp.test",
    )
    .unwrap_or_else(|e| {
        panic!(
            "{} cannot connect to the external listener: {e}\n{}",
            identity.name,
            edge.log_dump()
        )
    })
}

/// `_sipfederationtls._tcp.<domain>`.
fn srv(domain: &str) -> String {
    format!("_sipfederationtls._tcp.{domain}")
}

/// Asserts dnsmasq was asked for the SRV record of `domain` (the decision really went through DNS).
/// dnsmasq's log reaches the test through a reader thread: a query is waited for (bounded), not
/// expected on the spot.
fn assert_srv_queried(dns: &Dnsmasq, domain: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while dns.queries_for(&srv(domain)) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        dns.queries_for(&srv(domain)) >= 1,
        "the edge never asked DNS for {}; dnsmasq log:\n{}",
        srv(domain),
        dns.log_dump()
    );
}

/// The `ms-diagnostics` header value of a response to the FE (panics if absent).
fn diag_header(r: &str) -> String {
    sip::header(r, "ms-diagnostics").unwrap_or_else(|| panic!("no ms-diagnostics:\n{r}"))
}

/// The log line containing `needle`, as JSON (panics if none within WAIT or not JSON).
fn log_json(edge: &Edge, needle: &str) -> serde_json::Value {
    let line = edge
        .wait_log(needle, WAIT)
        .unwrap_or_else(|| panic!("no log line containing {needle:?}; stderr:\n{}", edge.log_dump()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
}

// ---- 1. the push.lync.com field case --------------------------------------------------------------

#[test]
fn push_lync_com_via_lync_online_504_until_allowed_then_200() {
    let pki = TestPki::new();
    let provider_id = pki.partner_leaf("sipfed.online.lync.com");
    let provider = remote_uas_ok(&pki, &provider_id);
    let fe_uas = fe_uas_ok(&pki);
    let dns = Dnsmasq::start(&[
        Record::srv("push.lync.com", "sipfed.online.lync.com", provider.port(), 0, 0),
        Record::a("sipfed.online.lync.com"),
    ]);

    // push.lync.com not on the allowed list: the SRV target is LyncOnline's, but that is not enough.
    {
        let edge = start_edge(&pki, &fe_uas, &dns, lync_online);
        let mut fe = fe_client(&edge, &pki);
        let branch = "z9hG4bKfe-push1";
        let r = fe_message(&mut fe, &edge, "sip:push@push.lync.com", branch, PUSH_WAIT);
        assert_eq!(sip::status(&r), 504, "{r}\nedge stderr:\n{}", edge.log_dump());
        let header = diag_header(&r);
        assert!(header.contains(NOT_CONFIGURED), "the field text:\n{header}");
        assert!(header.contains("domain=\"push.lync.com\""), "{header}");
        let fqdn1 = format!("fqdn1=\"sipfed.online.lync.com:{}\"", provider.port());
        assert!(header.contains(&fqdn1), "{fqdn1} in:\n{header}");
        let m = p(&r);
        let diag = m.ms_diagnostics().unwrap();
        assert_eq!(diag.source(), Some("edge.corp.test"), "{header}");
        assert_eq!(sip::via_count(&r), 1, "only the FE's Via:\n{r}");
        let rec = log_json(
            &edge,
            "domain [push.lync.com] is unknown and DNS SRV results did not match anything",
        );
        assert!(rec.get("event").is_some(), "{rec}");
        assert_srv_queried(&dns, "push.lync.com");
        assert!(
            provider.requests().is_empty(),
            "nothing may reach the provider: {:?}",
            sip::summary(&provider.requests())
        );
    }

    // Issue 8.11: with partner discovery on, the same field texts (not 1009, which is for allowed
    // domains), and an event name that says what happened.
    {
        let edge = start_edge(&pki, &fe_uas, &dns, |o| {
            lync_online(o);
            o.enable_partner_discovery = true;
        });
        let mut fe = fe_client(&edge, &pki);
        let r = fe_message(
            &mut fe,
            &edge,
            "sip:push@push.lync.com",
            "z9hG4bKfe-push1d",
            PUSH_WAIT,
        );
        assert_eq!(sip::status(&r), 504, "{r}\nedge stderr:\n{}", edge.log_dump());
        let header = diag_header(&r);
        assert!(
            header.starts_with("1005;") && header.contains(NOT_CONFIGURED),
            "{header}"
        );
        let rec = log_json(
            &edge,
            "domain [push.lync.com] is unknown and DNS SRV results did not match anything",
        );
        assert_eq!(rec["event"], "domain_not_allowed_srv_is_hosted_provider", "{rec}");
        assert!(provider.requests().is_empty());
    }

    // The fix the field applied: push.lync.com on the allowed list (no pinned FQDN).
    let edge = start_edge(&pki, &fe_uas, &dns, |o| {
        lync_online(o);
        o.allowed_srv.push("push.lync.com".into());
    });
    let mut fe = fe_client(&edge, &pki);
    let branch = "z9hG4bKfe-push2";
    let r = fe_message(&mut fe, &edge, "sip:push@push.lync.com", branch, PUSH_WAIT);
    let fwd = provider
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .unwrap_or_else(|| panic!("the provider got no MESSAGE; FE got {r}\n{}", edge.log_dump()));
    assert_eq!(p(&fwd).request_uri(), Some("sip:push@push.lync.com"), "{fwd}");
    assert_eq!(
        sip::top_sent_by(&fwd),
        format!("edge.corp.test:{}", edge.external_addr.port()),
        "{fwd}"
    );
    assert_eq!(sip::status(&r), 200, "{r}\nedge stderr:\n{}", edge.log_dump());
    assert_eq!(sip::via_count(&r), 1, "{r}");
    assert_eq!(sip::top_branch(&r), branch);
}

// ---- 2. allowed partner routed by SRV ------------------------------------------------------------

#[test]
fn allowed_partner_without_pinned_fqdn_is_routed_by_srv() {
    let pki = TestPki::new();
    let target = pki.partner_leaf("sip.srvpartner.test");
    let partner = remote_uas_ok(&pki, &target);
    let fe_uas = fe_uas_ok(&pki);
    let dns = Dnsmasq::start(&[
        Record::srv("srvpartner.test", "sip.srvpartner.test", partner.port(), 0, 0),
        Record::a("sip.srvpartner.test"),
    ]);
    let edge = start_edge(&pki, &fe_uas, &dns, |o| {
        o.allowed_srv.push("srvpartner.test".into())
    });
    let mut fe = fe_client(&edge, &pki);
    let branch = "z9hG4bKfe-srv1";
    let r = fe_message(&mut fe, &edge, "sip:bob@srvpartner.test", branch, WAIT);
    let fwd = partner
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .unwrap_or_else(|| panic!("the SRV target got no MESSAGE; FE got {r}\n{}", edge.log_dump()));
    assert_eq!(p(&fwd).request_uri(), Some("sip:bob@srvpartner.test"), "{fwd}");
    // The edge's Via alone: the front end's stays inside (topology hiding, docs/topology.md).
    assert_eq!(sip::via_count(&fwd), 1, "{fwd}");
    assert!(!fwd.contains("fe1.corp.test"), "{fwd}");
    assert_eq!(p(&fwd).max_forwards(), Some(69), "{fwd}");
    assert_eq!(p(&fwd).body(), b"hello from the test");
    assert_eq!(sip::status(&r), 200, "{r}\nedge stderr:\n{}", edge.log_dump());
    assert_eq!(sip::via_count(&r), 1, "{r}");
    assert_srv_queried(&dns, "srvpartner.test");
    assert!(
        dns.queries_for("sip.srvpartner.test") >= 1,
        "the SRV target's address came from DNS; dnsmasq log:\n{}",
        dns.log_dump()
    );
}

// ---- 3. blocked ------------------------------------------------------------------------------------

#[test]
fn blocked_domain_is_refused_403_without_dns() {
    let pki = TestPki::new();
    let fe_uas = fe_uas_ok(&pki);
    let dns = Dnsmasq::start(&[
        Record::srv("blocked.test", "sip.blocked.test", closed_port(), 0, 0),
        Record::a("sip.blocked.test"),
    ]);
    let edge = start_edge(&pki, &fe_uas, &dns, |o| {
        o.blocked.push("blocked.test".into());
        o.enable_partner_discovery = true;
    });
    let mut fe = fe_client(&edge, &pki);
    let r = fe_message(&mut fe, &edge, "sip:x@blocked.test", "z9hG4bKfe-blk1", WAIT);
    assert_eq!(sip::status(&r), 403, "{r}");
    let header = diag_header(&r);
    let m = p(&r);
    let diag = m.ms_diagnostics().unwrap();
    assert_eq!(diag.id, 1005, "{header}");
    assert_eq!(diag.param("domain"), Some("blocked.test"), "{header}");
    assert_eq!(diag.source(), Some("edge.corp.test"), "{header}");
    // Positive signal instead of a pause: a later request that does need DNS (discovery of
    // marker.test). Once dnsmasq logged its query, a query for blocked.test sent before would
    // have been logged too.
    let r = fe_message(&mut fe, &edge, "sip:x@marker.test", "z9hG4bKfe-blk2", WAIT);
    assert_eq!(sip::status(&r), 504, "{r}");
    assert_srv_queried(&dns, "marker.test");
    assert_eq!(
        dns.queries_for(&srv("blocked.test")),
        0,
        "a blocked domain needs no DNS; dnsmasq log:\n{}",
        dns.log_dump()
    );
}

// ---- 4. partner discovery and its rate limit -------------------------------------------------------

/// Partner discovery on, limited to 2 messages/s, and `disco.test` found by SRV at a partner UAS
/// (`sip.disco.test`) behind dnsmasq. Fields drop with the test.
struct DiscoveryWorld {
    pki: TestPki,
    partner: TlsUas,
    dns: Dnsmasq,
    edge: Edge,
    _fe_uas: TlsUas,
}

impl DiscoveryWorld {
    fn start(tweak: impl FnOnce(&mut EdgeOpts)) -> DiscoveryWorld {
        let pki = TestPki::new();
        let target = pki.partner_leaf("sip.disco.test");
        let partner = remote_uas_ok(&pki, &target);
        let fe_uas = fe_uas_ok(&pki);
        let dns = Dnsmasq::start(&[
            Record::srv("disco.test", "sip.disco.test", partner.port(), 0, 0),
            Record::a("sip.disco.test"),
        ]);
        let edge = start_edge(&pki, &fe_uas, &dns, |o| {
            o.enable_partner_discovery = true;
            o.discovery_messages_per_second = Some(2);
            tweak(o);
        });
        DiscoveryWorld {
            pki,
            partner,
            dns,
            edge,
            _fe_uas: fe_uas,
        }
    }
}

#[test]
fn discovered_partner_is_routed_by_srv_and_throttled_with_503_retry_after() {
    let DiscoveryWorld {
        pki,
        partner,
        dns,
        edge,
        _fe_uas,
    } = DiscoveryWorld::start(|_| {});
    let mut fe = fe_client(&edge, &pki);

    let r = fe_message(&mut fe, &edge, "sip:dan@disco.test", "z9hG4bKfe-dis0", WAIT);
    assert_eq!(sip::status(&r), 200, "{r}\nedge stderr:\n{}", edge.log_dump());
    assert!(
        partner
            .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
            .is_some(),
        "the discovered partner got the MESSAGE"
    );
    assert_srv_queried(&dns, "disco.test");

    // A burst well above 2 messages/s: the excess is refused, not forwarded.
    let n = 10;
    let branches: Vec<String> = (1..=n).map(|i| format!("z9hG4bKfe-dis{i}")).collect();
    for b in &branches {
        fe.send(&sip::message(
            "sip:dan@disco.test",
            "fe1.corp.test:5061",
            b,
            "sip:alice@corp.test",
        ));
    }
    let finals: Vec<String> = branches
        .iter()
        .map(|b| final_for(&mut fe, &edge, b, WAIT))
        .collect();
    let ok = finals.iter().filter(|r| sip::status(r) == 200).count();
    let throttled: Vec<&String> = finals.iter().filter(|r| sip::status(r) == 503).collect();
    assert_eq!(
        ok + throttled.len(),
        n,
        "only 200 or 503: {:?}",
        sip::summary(&finals)
    );
    assert!(
        !throttled.is_empty() && ok <= n / 2,
        "2 messages/s: most of a burst of {n} must get 503, got {:?}",
        sip::summary(&finals)
    );
    for r in &throttled {
        let ra = sip::header(r, "Retry-After").unwrap_or_else(|| panic!("no Retry-After:\n{r}"));
        let secs: u32 = ra
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After not a number: {ra}"));
        assert!((1..=3600).contains(&secs), "Retry-After {secs}:\n{r}");
        let header = diag_header(r);
        let m = p(r);
        let diag = m.ms_diagnostics().unwrap();
        assert_eq!(diag.id, 1007, "Temporarily cannot route:\n{header}");
        assert_eq!(diag.param("domain"), Some("disco.test"), "{header}");
    }
    // What was throttled never reached the partner (1 + the 200s of the burst). Positive signal
    // instead of a pause: one more message, sent once the bucket refilled, must arrive last; a
    // throttled message forwarded by mistake would have been sent before it.
    let marker = (0..40)
        .find_map(|i| {
            let b = format!("z9hG4bKfe-dis-marker{i}");
            let r = fe_message(&mut fe, &edge, "sip:dan@disco.test", &b, WAIT);
            if sip::status(&r) == 200 {
                return Some(b);
            }
            std::thread::sleep(Duration::from_millis(100)); // let the 2/s bucket refill
            None
        })
        .expect("a message goes through once the rate allows");
    let all = partner.requests();
    let delivered: Vec<&String> = all.iter().filter(|r| sip::method(r) == "MESSAGE").collect();
    assert!(
        delivered.last().is_some_and(|r| r.contains(&marker)),
        "the marker arrives last: {:?}",
        sip::summary(&all)
    );
    assert_eq!(delivered.len(), 1 + ok + 1, "{:?}", sip::summary(&all));
}

/// Issue 8.12: the discovered-partner rate holds for the edge, not per worker. Twelve front-end
/// connections (spread over the edge's two workers by SO_REUSEPORT; the generated 503s' To tags,
/// `se<worker>x…`, show which worker answered) send a burst to a discovered partner limited to
/// 2 messages/s: at most the bucket's 2 (plus what refills during the burst) get through in all —
/// per-worker limiters let 2 through on each worker.
#[test]
fn discovered_partner_limits_hold_across_workers() {
    // Bound whole: the DNS server and the partner must live as long as the test.
    let w = DiscoveryWorld::start(|o| o.workers = 2);
    let (pki, edge) = (&w.pki, &w.edge);
    // 12 connections: a worker ends up with at most one (and so possibly no 503 of its own) in ~0.6 % of runs.
    let mut fes: Vec<TlsPeer> = (0..12).map(|_| fe_client(edge, pki)).collect();
    let mut sent = Vec::new();
    for round in 0..2 {
        for (i, fe) in fes.iter_mut().enumerate() {
            let b = format!("z9hG4bKfe-mw{round}x{i}");
            fe.send(&sip::message(
                "sip:dan@disco.test",
                "fe1.corp.test:5061",
                &b,
                "sip:alice@corp.test",
            ));
            sent.push((i, b));
        }
    }
    let finals: Vec<String> = sent
        .iter()
        .map(|(i, b)| final_for(&mut fes[*i], edge, b, PUSH_WAIT))
        .collect();
    let ok = finals.iter().filter(|r| sip::status(r) == 200).count();
    let throttled: Vec<&String> = finals.iter().filter(|r| sip::status(r) == 503).collect();
    assert_eq!(ok + throttled.len(), finals.len(), "{:?}", sip::summary(&finals));
    let workers: std::collections::BTreeSet<String> = throttled
        .iter()
        .filter_map(|r| sip::to_tag(r))
        .filter_map(|t| {
            t.strip_prefix("se")
                .and_then(|t| t.split('x').next())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "both workers answered (connections spread): {workers:?}"
    );
    assert!(
        ok <= 3,
        "2 messages/s for the edge: {ok} of {} went through",
        finals.len()
    );
}

// ---- 5. SRV priority failover ------------------------------------------------------------------

#[test]
fn srv_failover_from_a_dead_priority_10_target_to_the_priority_20_one() {
    let pki = TestPki::new();
    let live_id = pki.partner_leaf("sip2.failover.test");
    let live = remote_uas_ok(&pki, &live_id);
    let fe_uas = fe_uas_ok(&pki);
    let dead_port = closed_port();
    let dns = Dnsmasq::start(&[
        Record::srv("failover.test", "sip1.failover.test", dead_port, 10, 0),
        Record::srv("failover.test", "sip2.failover.test", live.port(), 20, 0),
        Record::a("sip1.failover.test"),
        Record::a("sip2.failover.test"),
    ]);
    let edge = start_edge(&pki, &fe_uas, &dns, |o| {
        o.allowed_srv.push("failover.test".into())
    });
    let mut fe = fe_client(&edge, &pki);
    let branch = "z9hG4bKfe-fo1";
    let r = fe_message(&mut fe, &edge, "sip:erin@failover.test", branch, WAIT);
    assert_eq!(sip::status(&r), 200, "{r}\nedge stderr:\n{}", edge.log_dump());
    assert!(
        live.wait_request(WAIT, |r| sip::method(r) == "MESSAGE").is_some(),
        "the priority-20 target got the MESSAGE"
    );
    let rec = log_json(&edge, "srv_failover");
    assert_eq!(rec["event"], "srv_failover", "{rec}");
    let line = rec.to_string();
    assert!(
        line.contains("sip1.failover.test") && line.contains("sip2.failover.test"),
        "the failover names both targets: {line}"
    );
    assert!(
        dns.queries_for("sip1.failover.test") >= 1,
        "the priority-10 target was tried first; dnsmasq log:\n{}",
        dns.log_dump()
    );
}

// ---- 6. unacceptable or missing SRV ----------------------------------------------------------------

#[test]
fn srv_target_outside_the_domain_gets_504_1009() {
    let pki = TestPki::new();
    let elsewhere_id = pki.partner_leaf("sip.elsewhere.test");
    let elsewhere = remote_uas_ok(&pki, &elsewhere_id);
    let fe_uas = fe_uas_ok(&pki);
    let dns = Dnsmasq::start(&[
        Record::srv("outside.test", "sip.elsewhere.test", elsewhere.port(), 0, 0),
        Record::a("sip.elsewhere.test"),
    ]);
    let edge = start_edge(&pki, &fe_uas, &dns, |o| o.allowed_srv.push("outside.test".into()));
    let mut fe = fe_client(&edge, &pki);
    let r = fe_message(&mut fe, &edge, "sip:fay@outside.test", "z9hG4bKfe-out1", WAIT);
    assert_eq!(sip::status(&r), 504, "{r}\nedge stderr:\n{}", edge.log_dump());
    let header = diag_header(&r);
    let m = p(&r);
    let diag = m.ms_diagnostics().unwrap();
    assert_eq!(diag.id, 1009, "{header}");
    assert_eq!(diag.param("domain"), Some("outside.test"), "{header}");
    assert_eq!(
        diag.param("fqdn1"),
        Some(format!("sip.elsewhere.test:{}", elsewhere.port()).as_str()),
        "{header}"
    );
    assert_srv_queried(&dns, "outside.test");
    assert!(
        elsewhere.requests().is_empty() && elsewhere.handshakes().is_empty(),
        "the edge must not even connect to a target outside the domain"
    );
}

#[test]
fn missing_srv_record_gets_504_1008() {
    let pki = TestPki::new();
    let fe_uas = fe_uas_ok(&pki);
    // DNS knows other names, not _sipfederationtls._tcp.nosrv.test (NXDOMAIN).
    let dns = Dnsmasq::start(&[Record::a("sip.nosrv.test")]);
    let edge = start_edge(&pki, &fe_uas, &dns, |o| o.allowed_srv.push("nosrv.test".into()));
    let mut fe = fe_client(&edge, &pki);
    let r = fe_message(&mut fe, &edge, "sip:gus@nosrv.test", "z9hG4bKfe-nos1", WAIT);
    assert_eq!(sip::status(&r), 504, "{r}\nedge stderr:\n{}", edge.log_dump());
    let header = diag_header(&r);
    let m = p(&r);
    let diag = m.ms_diagnostics().unwrap();
    assert_eq!(diag.id, 1008, "{header}");
    assert_eq!(
        diag.reason(),
        Some("Unable to resolve DNS SRV record"),
        "{header}"
    );
    assert_eq!(diag.param("domain"), Some("nosrv.test"), "{header}");
    // DNS answered (NXDOMAIN): a "no record", not a failed lookup.
    assert_eq!(
        diag.param("dns-error"),
        None,
        "dnsmasq answered NXDOMAIN, yet the edge saw a DNS failure:\n{header}"
    );
    assert_srv_queried(&dns, "nosrv.test");
}

// ---- 7. inbound: partner identity by SRV, From-domain checks -------------------------------------

/// Inbound world: `inpartner.test` allowed without a pin, SRV → `sip.inpartner.test`; `blocked.test`
/// blocked.
fn inbound_edge(pki: &TestPki, fe_uas: &TlsUas) -> (Dnsmasq, Edge) {
    let dns = Dnsmasq::start(&[
        Record::srv("inpartner.test", "sip.inpartner.test", closed_port(), 0, 0),
        Record::a("sip.inpartner.test"),
    ]);
    let edge = start_edge(pki, fe_uas, &dns, |o| {
        o.allowed_srv.push("inpartner.test".into());
        o.blocked.push("blocked.test".into());
        o.workers = 1;
    });
    (dns, edge)
}

/// A MESSAGE from `from` to alice@corp.test, sent by `peer`; its final response.
fn partner_message(peer: &mut TlsPeer, edge: &Edge, via_host: &str, from: &str, branch: &str) -> String {
    peer.send(&sip::message("sip:alice@corp.test", via_host, branch, from));
    final_for(peer, edge, branch, WAIT)
}

/// Asserts a 403 towards the partner with `ms-diagnostics-public` id `id` (no source, no internal
/// `ms-diagnostics`), and that the FE got nothing: a legitimate partner's later MESSAGE (the one
/// worker of `inbound_edge` handles it after the refused one, and sends on the same FE link) must be
/// the only request the FE saw.
fn assert_public_403(r: &str, id: u32, fe_uas: &TlsUas, edge: &Edge, pki: &TestPki) {
    assert_eq!(sip::status(r), 403, "{r}\nedge stderr:\n{}", edge.log_dump());
    let header =
        sip::header(r, "ms-diagnostics-public").unwrap_or_else(|| panic!("no ms-diagnostics-public:\n{r}"));
    let m = p(r);
    let diag = m.ms_diagnostics_public().unwrap();
    assert_eq!(diag.id, id, "{header}");
    assert_eq!(diag.source(), None, "no source towards partners: {header}");
    assert!(
        sip::header(r, "ms-diagnostics").is_none(),
        "no internal ms-diagnostics towards a partner:\n{r}"
    );
    let legit = pki.partner_leaf("sip.inpartner.test");
    let mut peer = partner_client(edge, pki, &legit);
    let marker = "z9hG4bKin-marker";
    let ok = partner_message(
        &mut peer,
        edge,
        "sip.inpartner.test:5061",
        "sip:carol@inpartner.test",
        marker,
    );
    assert_eq!(sip::status(&ok), 200, "{ok}");
    let seen = fe_uas.requests();
    assert!(
        seen.len() == 1 && seen[0].contains(marker),
        "nothing but the later legitimate MESSAGE reaches the FE: {:?}",
        sip::summary(&seen)
    );
}

#[test]
fn inbound_rogue_certificate_for_an_srv_routed_domain_gets_403_1903() {
    let pki = TestPki::new();
    let fe_uas = fe_uas_ok(&pki);
    let (dns, edge) = inbound_edge(&pki, &fe_uas);
    let mut rogue = partner_client(&edge, &pki, &pki.rogue);
    let r = partner_message(
        &mut rogue,
        &edge,
        "rogue.partner.test:5061",
        "sip:bob@inpartner.test",
        "z9hG4bKro-1",
    );
    assert_public_403(&r, 1903, &fe_uas, &edge, &pki);
    let diag_text = sip::header(&r, "ms-diagnostics-public").unwrap();
    assert!(diag_text.contains("inpartner.test"), "{diag_text}");
    assert_srv_queried(&dns, "inpartner.test");
}

#[test]
fn inbound_from_a_blocked_domain_gets_403_1901() {
    let pki = TestPki::new();
    let fe_uas = fe_uas_ok(&pki);
    let (_dns, edge) = inbound_edge(&pki, &fe_uas);
    let mut peer = partner_client(&edge, &pki, &pki.partner);
    let r = partner_message(
        &mut peer,
        &edge,
        "edge.partner.test:5061",
        "sip:x@blocked.test",
        "z9hG4bKbl-1",
    );
    assert_public_403(&r, 1901, &fe_uas, &edge, &pki);
}

#[test]
fn inbound_from_our_own_domain_gets_403_1902() {
    let pki = TestPki::new();
    let fe_uas = fe_uas_ok(&pki);
    let (_dns, edge) = inbound_edge(&pki, &fe_uas);
    let mut peer = partner_client(&edge, &pki, &pki.partner);
    let r = partner_message(
        &mut peer,
        &edge,
        "edge.partner.test:5061",
        "sip:mallory@corp.test",
        "z9hG4bKow-1",
    );
    assert_public_403(&r, 1902, &fe_uas, &edge, &pki);
}

#[test]
fn inbound_from_the_srv_target_of_its_domain_reaches_the_front_end() {
    let pki = TestPki::new();
    let fe_uas = fe_uas_ok(&pki);
    let (dns, edge) = inbound_edge(&pki, &fe_uas);
    let id = pki.partner_leaf("sip.inpartner.test");
    let mut peer = partner_client(&edge, &pki, &id);
    let branch = "z9hG4bKin-1";
    let r = partner_message(
        &mut peer,
        &edge,
        "sip.inpartner.test:5061",
        "sip:carol@inpartner.test",
        branch,
    );
    let at_fe = fe_uas
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .unwrap_or_else(|| panic!("the FE got no MESSAGE; partner got {r}\n{}", edge.log_dump()));
    assert_eq!(p(&at_fe).request_uri(), Some("sip:alice@corp.test"), "{at_fe}");
    assert_eq!(
        sip::top_sent_by(&at_fe),
        format!("edge-int.corp.test:{}", edge.internal_addr.port()),
        "{at_fe}"
    );
    assert_eq!(sip::status(&r), 200, "{r}");
    assert_eq!(sip::via_count(&r), 1, "{r}");
    assert_eq!(sip::top_branch(&r), branch);
    assert_srv_queried(&dns, "inpartner.test");
}

/// `sipedge explain-route` with the same config and the same real DNS: the field case explained
/// (exit 1, the verbatim diagnostic and log text), then routable once allowed (exit 0, the target,
/// its address and the certificate it must present).
#[test]
fn explain_route_tells_the_push_field_case_from_dns() {
    let pki = TestPki::new();
    let dns = Dnsmasq::start(&[
        Record::srv("push.lync.com", "sipfed.online.lync.com", 5061, 0, 0),
        Record::a("sipfed.online.lync.com"),
    ]);
    let explain = |allowed: bool| {
        let mut opts = EdgeOpts::new(closed_port(), closed_port());
        opts.dns_servers = vec![dns.server()];
        lync_online(&mut opts);
        if allowed {
            opts.allowed_srv.push("push.lync.com".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("edge.toml");
        std::fs::write(&file, opts.render(&pki)).unwrap();
        let out = std::process::Command::new(sipedge_tests::sipedge_bin())
            .args(["explain-route", "push.lync.com", "--config"])
            .arg(&file)
            .env_remove("SIPEDGE__DNS__SERVERS")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, text) = explain(false);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("ms-diagnostics: 1005;reason=\"{NOT_CONFIGURED}\"")),
        "{text}"
    );
    assert!(
        text.contains("domain [push.lync.com] is unknown and DNS SRV results did not match anything"),
        "{text}"
    );
    assert!(
        text.contains("hosted provider LyncOnline (enabled): NOT acceptable"),
        "{text}"
    );
    let (code, text) = explain(true);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("target        : sipfed.online.lync.com:5061 as hosted provider LyncOnline"),
        "{text}"
    );
    assert!(text.contains("  addresses   : 127.0.0.1"), "{text}");
    assert!(
        text.contains("must name sipfed.online.lync.com exactly"),
        "{text}"
    );
    assert!(
        dns.queries_for("_sipfederationtls._tcp.push.lync.com") >= 2,
        "{}",
        dns.log_dump()
    );
}
